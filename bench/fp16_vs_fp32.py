"""Mixed precision against float32: does a --precision fp16 run learn what a float32 run learns?

    python bench/fp16_vs_fp32.py --data data/carracing-default [--device cpu] [--steps 2000] [--seeds 3]
                                 [--batch-size 100] [--channels 32,64,128,256] [--dense-size 1024]

For each seed, one run at --precision fp32 (tf32 on the GPU with --tf32) and one at fp16, with the same data,
split, batch order, noise and (fp16: rounded to float16) starting weights. Reported per seed: the held-out
MSE of both, the fp16 run's steps skipped for an overflow and its final loss scale, and the images a second.
One run's MSE moves with the seed, so one seed proves nothing: fp16 reaches fp32 when the mean of the
per-seed differences is within 3 standard errors of zero (PASS), printed beside the seed-to-seed spread
of the fp32 runs. On the CPU float16 is NumPy's, slower than float32 (this checks the policy, not speed).
"""
import argparse
import math
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae.ops import threads  # noqa: E402
from scratchvae.run.runfolder import RunSettings  # noqa: E402
from scratchvae.run.trainer import Trainer  # noqa: E402


def run(a, precision, seed):
    """(held-out MSE, images/s, skipped steps, final scale) of one run."""
    with tempfile.TemporaryDirectory() as out:
        s = RunSettings(data=a.data, out=out, steps=a.steps, batch_size=a.batch_size, seed=seed, device=a.device,
                        precision=precision, channels=a.channels, dense_size=a.dense_size, log_every=a.steps,
                        eval_every=a.steps, checkpoint_every=a.steps, eval_frames=a.eval_frames)
        t = Trainer(s, progress=False, say=lambda m: None)
        start = time.perf_counter()
        t.run()
        seconds = time.perf_counter() - start
        row = t.folder.read_log()[-1]
        scaler = t.model.scaler
        return (row["heldout_mse"], a.steps * a.batch_size / seconds, scaler.skipped if scaler else 0,
                scaler.scale if scaler else None)


def main():
    threads.use_every_core()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    p.add_argument("--tf32", action="store_true", help="the float32 side at --precision tf32 (GPU)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--channels", default=RunSettings.default("channels"))
    p.add_argument("--dense-size", type=int, default=RunSettings.default("dense_size"))
    p.add_argument("--eval-frames", type=int, default=500)
    a = p.parse_args()
    base = "tf32" if a.tf32 else "fp32"
    print(f"{a.steps} steps of batch {a.batch_size} on {a.device}, channels {a.channels}, dense {a.dense_size}; "
          f"{base} against fp16, seeds 0 … {a.seeds - 1}")
    print(f"{'seed':>4}{base + ' MSE':>12}{'fp16 MSE':>12}{'fp16 − ' + base:>14}{'skipped':>9}{'scale':>8}"
          f"{base + ' img/s':>12}{'fp16 img/s':>12}", flush=True)
    full, half, diffs = [], [], []
    for seed in range(a.seeds):
        f = run(a, base, seed)
        h = run(a, "fp16", seed)
        full.append(f[0])
        half.append(h[0])
        diffs.append(h[0] - f[0])
        print(f"{seed:>4}{f[0]:>12.6f}{h[0]:>12.6f}{diffs[-1]:>+14.6f}{h[2]:>9}{h[3]:>8g}{f[1]:>12.0f}{h[1]:>12.0f}",
              flush=True)
    if a.seeds < 2:
        print("(one seed: no spread to judge by)")
        return 0
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    se = sd / math.sqrt(len(diffs))
    spread = statistics.stdev(full)
    ok = abs(mean) <= 3 * se if se > 0 else mean == 0
    print(f"mean difference {mean:+.6f} ± {se:.6f} (standard error); {base}'s seed-to-seed spread {spread:.6f}; "
          f"fp16's mean MSE {statistics.mean(half):.6f} against {statistics.mean(full):.6f}")
    print(f"{'PASS' if ok else 'FAIL'}: fp16 reaches {base}'s held-out MSE within 3 standard errors of the "
          "per-seed differences")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
