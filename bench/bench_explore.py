"""How fast bin/explore's page answers a slider: one code decoded, alone and through the server.

    python bench/bench_explore.py                       # the default model, untrained, on the CPU
    python bench/bench_explore.py --checkpoint RUN      # a trained one (the time does not depend on weights)
    python bench/bench_explore.py --device gpu

Three numbers, each the median (and 90th percentile) over --codes codes drawn from N(0, I):
  * decode: Explorer.decode's own time, what the page shows (the decoder, and the picture copied to the
    host; on the GPU that copy waits for it);
  * round trip: POST /api/decode to a real server on 127.0.0.1 (make_server, as bin/explore starts it),
    over one kept-alive connection as the page's requests go: JSON in, the PNG made, JSON out;
  * reference, in the same run: a code's share of decoding a batch of 100 at once, the decoder's cost
    per image when nothing waits for one picture.
The aim is a decode under 50 ms on 2 CPU cores; the last lines say how far under it each number is.
"""
import argparse
import http.client
import json
import os
import sys
import threading
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")          # as bin/explore sets it, before NumPy loads
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae import VAE  # noqa: E402
from scratchvae.ops import threads  # noqa: E402
from scratchvae.ops.devices import resolve_device, to_numpy  # noqa: E402
from scratchvae.cli.explore import make_server  # noqa: E402
from scratchvae.use.explorer import Explorer  # noqa: E402
from scratchvae.run.runfolder import load  # noqa: E402

AIM_MS = 50.0


def stats(ms):
    return np.median(ms), np.percentile(ms, 90)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", help="a checkpoint or run folder (default: the default model, untrained)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--codes", type=int, default=200)
    args = p.parse_args()
    threads.use_every_core()
    device = resolve_device(args.device)
    if args.checkpoint:
        ck = load(args.checkpoint, device=device)
        model, what = ck.model, f"{ck.path} (step {ck.step})"
    else:
        model, what = VAE(seed=0, device=device), "the default model, untrained"
    explorer = Explorer(model, None, "", prior_images=64)
    zs = np.random.default_rng(1).standard_normal((args.codes, model.latent_dim))
    for z in zs[:10]:                                               # warm up: buffers, kernels, caches
        explorer.decode(z)

    decode = [explorer.decode(z)["decode_ms"] for z in zs]

    server = make_server(explorer, 0, dict(checkpoint=what, step=0))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    trip = []
    for z in zs:
        body = json.dumps({"z": [float(v) for v in z]})
        start = time.perf_counter()
        conn.request("POST", "/api/decode", body, {"Content-Type": "application/json"})
        answer = conn.getresponse().read()
        trip.append((time.perf_counter() - start) * 1e3)
        assert b'"image"' in answer, answer[:200]
    conn.close()
    server.shutdown()

    batch = model.xp.asarray(zs[:100].astype(model.dtype))
    to_numpy(model.decode(batch))
    per_image = []
    for _ in range(5):
        start = time.perf_counter()
        to_numpy(model.decode(batch))
        per_image.append((time.perf_counter() - start) * 1e3 / len(batch))

    print(f"bench_explore: {what}, {model}, {args.codes} codes, {threads.CORES} CPU cores")
    rows = [("decode (Explorer.decode)", stats(decode)), ("round trip (POST /api/decode)", stats(trip)),
            ("reference: a code's share of a batch of 100", stats(per_image))]
    for name, (med, p90) in rows:
        print(f"  {name:46s} median {med:7.2f} ms   90th percentile {p90:7.2f} ms")
    ref = rows[2][1][0]
    print(f"  decode / reference {rows[0][1][0] / ref:.1f}×, round trip / decode {rows[1][1][0] / rows[0][1][0]:.2f}×")
    print(f"  under the {AIM_MS:g} ms aim: decode {AIM_MS / rows[0][1][0]:.1f}× (90th percentile "
          f"{AIM_MS / rows[0][1][1]:.1f}×), round trip {AIM_MS / rows[1][1][0]:.1f}×")


if __name__ == "__main__":
    main()
