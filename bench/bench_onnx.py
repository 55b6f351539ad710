"""The exported ONNX encoder in onnxruntime against our own encoder, on the CPU: one frame, and a batch of 100.

    python bench/bench_onnx.py                          # the default model, untrained (weights do not change the time)
    python bench/bench_onnx.py --checkpoint RUN         # a trained one; --batches 1,100,1000

Both sides start from the same uint8 frames (N, 64, 64, 3), as a World Models worker holds them: ours
to_model_input + VAE.encode, onnxruntime the graph bin/export writes (its Cast, ÷255 and Transpose
included), with as many threads as the process may use (os.sched_getaffinity) on both sides. They are
timed in alternating blocks, so a slow stretch of a shared machine hits both alike; each line gives the
medians, and the ratio ours ÷ onnxruntime (above 1: onnxruntime is faster). The decoder, z → pictures, the
same way.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")          # as bin/'s tools set it, before NumPy loads
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import scratchvae  # noqa: E402
from scratchvae.ops import threads  # noqa: E402
from scratchvae.use import onnxgraph  # noqa: E402
from scratchvae.use.export import session  # noqa: E402


def timed(fn, repeats):
    """Milliseconds of each of `repeats` calls."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def compare(name, ours, theirs, blocks, repeats):
    ours(), theirs()                                                # warm: buffers, first-call set-up
    a, b = [], []
    for _ in range(blocks):
        a += timed(ours, repeats)
        b += timed(theirs, repeats)
    ma, mb = float(np.median(a)), float(np.median(b))
    print(f"{name:<28} scratchvae {ma:8.2f} ms   onnxruntime {mb:8.2f} ms   ratio {ma / mb:5.2f}")
    return ma, mb


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", help="a run folder or checkpoint (default: the default VAE, untrained)")
    p.add_argument("--batches", default="1,100", help="batch sizes, comma-separated (default 1,100)")
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    import onnxruntime as ort
    threads.use_every_core()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = scratchvae.load(args.checkpoint).model if args.checkpoint else scratchvae.VAE(seed=0)
    enc = session(ort, onnxgraph.encoder(model), threads=cores)
    dec = session(ort, onnxgraph.decoder(model), threads=cores)
    print(f"{model}; onnxruntime {ort.__version__}, NumPy {np.__version__}, {cores} threads each side; medians of "
          f"{args.blocks} alternating blocks × {args.repeats} calls")
    rng = np.random.default_rng(0)
    c, h, w = model.input_shape
    for n in (int(b) for b in args.batches.split(",")):
        frames = rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)
        z = rng.standard_normal((n, model.latent_dim)).astype(model.dtype)
        compare(f"encode, batch {n}", lambda: model.encode(scratchvae.to_model_input(frames)),
                lambda: enc.run(None, {"frames": frames}), args.blocks, args.repeats)
        compare(f"decode, batch {n}", lambda: model.decode(z), lambda: dec.run(None, {"z": z}), args.blocks,
                args.repeats)


if __name__ == "__main__":
    main()
