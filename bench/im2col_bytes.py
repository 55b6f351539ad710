"""The bytes the im2col launches of one training step move, counted from the shapes (no GPU needed).

One training step of the default model is run on the CPU at a small batch with every im2col call
and every parity-split gather (the GPU's im2col launches: scratchvae/ops/parity.py) recorded; the column
matrix each writes and the images each reads (each number once) are summed, and scaled to --batch
(both grow with the batch alone). With a measured time for the launches (--ms, from bench_step.py's
per-kernel table), it prints the rate they move memory at.

    python bench/im2col_bytes.py [--batch 1000] [--ms 1.527]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import scratchvae.ops.im2col  # noqa: E402
import scratchvae.ops.parity  # noqa: E402
from scratchvae.ops.parity import phase_grid  # noqa: E402


def record(calls):
    """Wrap im2col and the parity split wherever the package imported them, appending (what, read, written)."""
    im2col, parity = scratchvae.ops.im2col.im2col, scratchvae.ops.parity.conv_transpose_parity

    def im2col_seen(x, kh, kw, sy, sx, ph, pw, out=None):
        col = im2col(x, kh, kw, sy, sx, ph, pw, out)
        calls.append(("im2col", x.shape, x.size, (col if col is not None else out).size))
        return col

    def parity_seen(x, W, sy, sx, ph, pw, opy=0, opx=0, buffer=None, bias=None):
        n, ci, h, w = x.shape
        _, _, kh, kw = W.shape
        ry, rx = phase_grid(h, kh, sy, ph, opy), phase_grid(w, kw, sx, pw, opx)
        calls.append(("parity windows", x.shape, x.size, ci * ry.taps * rx.taps * ry.rows * rx.rows * n))  # GPU im2col of x
        return parity(x, W, sy, sx, ph, pw, opy, opx, buffer, bias)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("scratchvae"):
            if getattr(module, "im2col", None) is im2col:
                module.im2col = im2col_seen
            if getattr(module, "conv_transpose_parity", None) is parity:
                module.conv_transpose_parity = parity_seen
            methods = getattr(module, "BY_METHOD", None)          # the fast layers' table of methods
            if isinstance(methods, dict) and methods.get("parity") is parity:
                methods["parity"] = parity_seen


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1000, help="the batch to count for (default 1000)")
    p.add_argument("--ms", type=float, default=1.527, help="the launches' measured time, ms (default 1.527: "
                   "bench/results/h200-step-final-a.txt, tf32 and fp32 at batch 1000)")
    a = p.parse_args(argv)
    from scratchvae import VAE
    from scratchvae.run.step import train_step
    from scratchvae.model.optim import Adam
    calls, small = [], 10
    model = VAE(seed=0)
    opt = Adam(model.params)
    record(calls)
    train_step(model, opt, np.random.default_rng(0).random((small, 3, 64, 64), dtype=np.float32))
    scale = 4 * a.batch / small                                     # float32 bytes, at --batch
    for what, shape, read, written in calls:
        print(f"{what:15s} of {str(shape[1:]):16s} reads {read * scale / 1e9:6.3f} GB, writes {written * scale / 1e9:6.3f} GB")
    read, written = (sum(c[i] for c in calls) * scale / 1e9 for i in (2, 3))
    print(f"{len(calls)} launches at batch {a.batch}: read {read:.3f} GB, write {written:.3f} GB, in all {read + written:.3f} GB;"
          f" in {a.ms} ms: {(read + written) / a.ms:.2f} TB/s")


if __name__ == "__main__":
    main()
