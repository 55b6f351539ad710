"""The reconstruction summed over pixels against a per-pixel mean, with and without free bits.

    python bench/recon_sum_vs_mean.py --data data/carracing [--steps 500]

Trains one run per variant on the same data, seed and batch order, and prints the held-out
per-pixel squared error and the raw KL every --eval-every steps (docs/vae.md shows a result).
The mean is made by dividing the package's own summed loss and its gradient by the pixels
per image, so nothing else differs. Each variant takes a few minutes on a 2-core CPU.
"""
import argparse
import contextlib
import functools
import os
import sys
import tempfile

# As the tools do (bin/*): OpenBLAS's threads sleep after each product, set before NumPy loads; every core copies
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae.model import losses  # noqa: E402
from scratchvae.run import start  # noqa: E402  (where a run makes its optimizer)
from scratchvae.ops import threads  # noqa: E402
from scratchvae.run.runfolder import RunSettings  # noqa: E402
from scratchvae.run.trainer import Trainer  # noqa: E402

VARIANTS = {                           # name: (per-pixel mean, kl_tolerance, Adam's eps)
    "sum, free bits": (False, 0.5, 1e-8),
    "mean, no free bits": (True, 0.0, 1e-8),
    "mean, free bits": (True, 0.5, 1e-8),
    "mean, free bits, eps 1e-12": (True, 0.5, 1e-12),
}


@contextlib.contextmanager
def patched(mean, eps):
    summed, adam = losses.mse_recon, start.Adam

    def mean_recon(y, x):
        value, dy = summed(y, x)
        pixels = x[0].size
        return value / pixels, dy / pixels
    losses.mse_recon = mean_recon if mean else summed
    start.Adam = functools.partial(adam, eps=eps)
    try:
        yield
    finally:
        losses.mse_recon, start.Adam = summed, adam


def main():
    threads.use_every_core()
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=100)
    a = p.parse_args()
    for name, (mean, tol, eps) in VARIANTS.items():
        with tempfile.TemporaryDirectory() as out, patched(mean, eps):
            s = RunSettings(data=a.data, out=out, steps=a.steps, kl_tolerance=tol, eval_every=a.eval_every,
                            checkpoint_every=a.steps)
            t = Trainer(s, progress=False, say=lambda m: None)
            t.run()
            rows = t.folder.read_log()
        evals = "  ".join(f"{r['step']}: {r['heldout_mse']:.4f}" for r in rows if "heldout_mse" in r)
        print(f"{name:28s} held-out MSE {evals}   raw KL at the end {rows[-1]['kl_raw']:.2g} nats", flush=True)


if __name__ == "__main__":
    main()
