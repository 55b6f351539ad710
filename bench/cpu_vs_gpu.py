"""The same run on two devices: does the GPU learn what the CPU learns, and how much faster?

    python bench/cpu_vs_gpu.py --data data/carracing-default [--steps 300] [--devices cpu,gpu]
                               [--batch-size 100] [--seed 0] [--eval-every 100]

Trains the default VAE (float32) once per device with the same data, seed, held-out split,
batch order and noise (the noise is drawn on the host, so both devices see the same draws),
and prints each device's held-out per-pixel MSE at every --eval-every steps, its images per
second, and the last held-out MSE of each device against the first's:

    MSE ratio    the second device's held-out MSE ÷ the first's after the same steps
                 (the two differ by float32 rounding alone, compounded over the run)

Agreement is within 2 %. `--devices cpu,cpu` trains twice on the CPU: the ratio is then
exactly 1, since a run is a function of its seed (a check of the check).
"""
import argparse
import os
import sys
import tempfile
import time

# As the tools do (bin/*): OpenBLAS's threads sleep after each product, set before NumPy loads; every core copies
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae.backend import BackendError, resolve_device  # noqa: E402
from scratchvae import threads  # noqa: E402
from scratchvae.runfolder import RunSettings  # noqa: E402
from scratchvae.train import Trainer  # noqa: E402

AGREE = 0.02                                    # the largest relative difference in held-out MSE called agreement


def train_on(device, a, out):
    """One run on `device`: (its log rows, the seconds it trained)."""
    s = RunSettings(data=a.data, out=out, steps=a.steps, batch_size=a.batch_size, seed=a.seed, device=device,
                    eval_every=a.eval_every, checkpoint_every=a.steps)
    t = Trainer(s, progress=not a.quiet, say=lambda m: None)
    start = time.perf_counter()
    t.run()
    return t.read_log(), time.perf_counter() - start


def main(argv=None):
    threads.use_every_core()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of episode files")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--devices", default="cpu,gpu", help="two devices, the reference first (default cpu,gpu)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    devices = a.devices.split(",")
    if len(devices) != 2:
        p.error(f"--devices: expected two devices, such as cpu,gpu; got {a.devices!r}")
    try:
        devices = [resolve_device(d) for d in devices]
    except BackendError as e:
        p.error(str(e))
    last = []
    print(f"{a.steps} steps of batch {a.batch_size}, seed {a.seed}, on {a.data}")
    for device in devices:
        with tempfile.TemporaryDirectory() as out:
            rows, seconds = train_on(device, a, out)
        evals = [(r["step"], r["heldout_mse"]) for r in rows if "heldout_mse" in r]
        last.append(evals[-1][1])
        shown = "  ".join(f"{step}: {mse:.5f}" for step, mse in evals)
        print(f"{device:4s} held-out MSE {shown}   {a.steps * a.batch_size / seconds:8.0f} images/s "
              f"(the whole run, evaluations and checkpoint included)", flush=True)
    ratio = last[1] / last[0]
    verdict = "agree" if abs(ratio - 1) <= AGREE else "DIFFER"
    print(f"MSE ratio {devices[1]}/{devices[0]} after {a.steps} steps: {ratio:.4f} "
          f"({verdict}: within {AGREE:.0%} is agreement)")
    return 0 if verdict == "agree" else 1


if __name__ == "__main__":
    sys.exit(main())
