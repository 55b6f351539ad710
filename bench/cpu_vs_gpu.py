"""The same training on two devices: does the GPU compute what the CPU computes, and learn what it learns?

    python bench/cpu_vs_gpu.py --data data/carracing-default [--devices cpu,gpu] [--first 12]
                               [--steps 300] [--seeds 4] [--batch-size 100] [--eval-every 100]

Two checks, each with the same data, held-out split, batch order and noise on both devices (the
noise is drawn on the host from the seed, so both see the same draws):

1. **Step by step** (--first steps, seed 0): the loss of every step, on each device, in float64
   and in float32, and the reference device again in float64 as the exact run. In float64 the
   two devices differ only in the order of their sums, so their losses must agree to FLOAT64_AGREE
   at every step. In float32 each device departs from the exact run by its own rounding, compounded
   step after step; the two float32 runs must be no further apart, at every step, than
   FLOAT32_FACTOR times the larger of the two departures (plus float32's own resolution of the loss).
2. **Over seeds** (--seeds runs of --steps steps each, float32): the held-out MSE of each device
   after the same steps. One run's MSE moves with the seed (and with the last bits of any
   difference, since training amplifies them), so one seed proves nothing; the devices agree when
   the mean of the per-seed differences is within 3 standard errors of zero, and the table puts
   that difference beside the seed-to-seed spread.

Prints both tables, each run's images per second, and PASS or FAIL per check (exit status 1 when
either fails). `--devices cpu,cpu` runs both sides on the CPU: every difference is then exactly
0 (a run is a function of its seed), a check of the check.
"""
import argparse
import math
import os
import statistics
import sys
import tempfile
import time

# As the tools do (bin/*): OpenBLAS's threads sleep after each product, set before NumPy loads; every core copies
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae.ops.devices import BackendError, resolve_device  # noqa: E402
from scratchvae.ops import threads  # noqa: E402
from scratchvae.run.runfolder import RunSettings  # noqa: E402
from scratchvae.run.trainer import Trainer  # noqa: E402

FLOAT64_AGREE = 1e-9        # float64: the largest relative difference in a step's loss called agreement
FLOAT32_FACTOR = 3          # float32: the runs may differ by this times the larger departure from float64
FLOAT32_RESOLUTION = 2e-7   # float32: differences this small relative to the loss are below its last bits


def train_on(device, a, steps, seed, dtype, every):
    """One run: (its log rows, the seconds it trained)."""
    with tempfile.TemporaryDirectory() as out:
        s = RunSettings(data=a.data, out=out, steps=steps, batch_size=a.batch_size, seed=seed, device=device,
                        dtype=dtype, log_every=every, eval_every=min(a.eval_every, steps), checkpoint_every=steps)
        t = Trainer(s, progress=not a.quiet, say=lambda m: None)
        start = time.perf_counter()
        t.run()
        return t.folder.read_log(), time.perf_counter() - start


def step_by_step(a, devices):
    """Check 1: per-step losses, float64 and float32. Returns True when both agree."""
    losses = {}
    for dtype in ("float64", "float32"):
        for device in devices:
            rows, seconds = train_on(device, a, a.first, 0, dtype, 1)
            losses[device, dtype] = [r["loss"] for r in rows]
            print(f"  {device:4s} {dtype}: {a.first} steps, {a.first * a.batch_size / seconds:.0f} images/s", flush=True)
    ref, other = devices
    exact = losses[ref, "float64"]
    print(f"\n{'step':>5}{'loss (' + ref + ', f64)':>22}{'f64 rel. diff':>15}{'f32 rel. diff':>15}"
          f"{'f32 bound':>12}")
    ok = True
    for i, loss in enumerate(exact):
        d64 = abs(losses[other, "float64"][i] - loss) / abs(loss)
        a32, b32 = losses[ref, "float32"][i], losses[other, "float32"][i]
        departs = max(abs(a32 - loss), abs(b32 - loss)) / abs(loss)
        bound = FLOAT32_FACTOR * departs + FLOAT32_RESOLUTION
        d32 = abs(b32 - a32) / abs(loss)
        good = d64 <= FLOAT64_AGREE and d32 <= bound
        ok &= good
        print(f"{i + 1:>5}{loss:>22.10f}{d64:>15.2e}{d32:>15.2e}{bound:>12.2e}{'' if good else '   <-'}")
    print(f"step by step: {'PASS' if ok else 'FAIL'} (float64 within {FLOAT64_AGREE:g}; float32 within "
          f"{FLOAT32_FACTOR}× the larger departure from float64, plus {FLOAT32_RESOLUTION:g})")
    return ok


def over_seeds(a, devices):
    """Check 2: held-out MSE after --steps steps, per seed, float32. Returns True when the devices agree."""
    mse = {d: [] for d in devices}
    for seed in range(a.seeds):
        for device in devices:
            rows, seconds = train_on(device, a, a.steps, seed, "float32", 10)
            mse[device].append([r["heldout_mse"] for r in rows if "heldout_mse" in r][-1])
            print(f"  seed {seed} {device:4s}: held-out MSE {mse[device][-1]:.6f}, "
                  f"{a.steps * a.batch_size / seconds:.0f} images/s (evaluations and the checkpoint included)",
                  flush=True)
    ref, other = devices
    diffs = [b - r for r, b in zip(mse[ref], mse[other])]
    mean = statistics.fmean(diffs)
    spread = statistics.stdev(mse[ref]) if a.seeds > 1 else float("nan")
    se = statistics.stdev(diffs) / math.sqrt(a.seeds) if a.seeds > 1 else float("nan")
    ok = a.seeds > 1 and (abs(mean) <= 3 * se or mean == 0)
    print(f"\nheld-out MSE after {a.steps} steps over {a.seeds} seeds: {ref} {statistics.fmean(mse[ref]):.6f}, "
          f"{other} {statistics.fmean(mse[other]):.6f}; mean difference {mean:+.2e} (standard error {se:.1e}); "
          f"seed-to-seed spread on {ref} {spread:.1e}")
    print(f"over seeds: {'PASS' if ok else 'FAIL'} (the mean difference within 3 standard errors of 0"
          + ("" if a.seeds > 1 else "; needs --seeds 2 or more") + ")")
    return ok


def main(argv=None):
    threads.use_every_core()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of episode files")
    p.add_argument("--devices", default="cpu,gpu", help="two devices, the reference first (default cpu,gpu)")
    p.add_argument("--first", type=int, default=12, help="steps compared one by one (default 12)")
    p.add_argument("--steps", type=int, default=300, help="steps of each run over seeds (default 300)")
    p.add_argument("--seeds", type=int, default=4, help="runs per device over seeds (default 4)")
    p.add_argument("--batch-size", type=int, default=100)
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
    print(f"batch {a.batch_size} on {a.data}; {devices[0]} is the reference")
    print(f"\n1. the first {a.first} steps, step by step")
    ok = step_by_step(a, devices)
    print(f"\n2. {a.seeds} seeds × {a.steps} steps")
    ok &= over_seeds(a, devices)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
