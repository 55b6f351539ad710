"""How far two float32 runs of the same training drift apart when only their summation order differs.

N processes train what one trains, with each batch's gradient summed in another order (each shard's
products, then the sum over the ranks). In float64 that is rounding (about 1e-15). In float32 the
difference grows with the steps, and Adam, which divides each gradient by its own running size, turns a
rounding difference in a gradient near zero into a step of about the learning rate. This prints, for a
model and data, the largest difference of any checkpointed array (parameters and Adam's moments) relative
to that array's largest number, after each of the given steps, for:

    2 processes (1 OpenBLAS thread each)   against   1 process, 2 OpenBLAS threads
    1 process, 1 OpenBLAS thread           against   1 process, 2 OpenBLAS threads
    1 process, each batch's images (with their noise) in reverse order
                                           against   1 process, 2 OpenBLAS threads
    the first two pairs in float64

The third is the one to read: reversing a batch changes nothing but the order in which the sums over
its images are added up, in one process, with no sharding at all; when it drifts as far as the
2-process run does, the drift is float32's own (amplified by Adam), not the shards'. (OpenBLAS's
thread count turns out to change little of the order here; a float64 run is no reference for a float32
one: weights and noise are drawn in each precision's own stream.)

    python bench/float32_drift.py --data DIR [--channels 8,16,32,64 --dense-size 256] [--steps 7,30]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def train(out, data, steps, dtype, model, processes=1, threads=2):
    from scratchvae.run.distributed import find_mpiexec
    tool = [sys.executable, os.path.join(ROOT, "bin", "train-scratch"), "--data", data, "--out", out,
            "--steps", str(steps), "--dtype", dtype, "--checkpoint-every", "1", "--keep", str(steps),
            "--eval-every", "1000", "--log-every", "1", "--quiet", *model]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMPI_ALLOW_RUN_AS_ROOT": "1",
           "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    cmd = [find_mpiexec(), "-n", str(processes), *tool] if processes > 1 else tool
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"float32_drift: {' '.join(cmd)} failed:\n{r.stderr}")


REVERSED = """
import sys
sys.path.insert(0, {root!r})
from scratchvae.run.runfolder import RunSettings
from scratchvae.run.trainer import Trainer
t = Trainer(RunSettings(**{settings!r}), progress=False)
gather, sample_eps = t.data.gather, t.model.sample_eps
# every batch's images in reverse order, each with its own noise: the same sum, added up in another order
t.data.gather = lambda ep_idx, frame_idx: gather(ep_idx[::-1], frame_idx[::-1])
t.model.sample_eps = lambda n: sample_eps(n)[::-1].copy()
t.run()
"""


def reversed_batches(out, data, steps, model):
    """1 process, float32, each batch's images (and their noise) in reverse order: the same loss, in exact
    arithmetic the same run, its sums over the images taken in another order."""
    options = dict(zip(model[::2], model[1::2]))
    settings = dict(data=data, out=out, steps=steps, checkpoint_every=1, keep=steps, eval_every=1000, log_every=1,
                    channels=options["--channels"], dense_size=int(options["--dense-size"]),
                    batch_size=int(options["--batch-size"]))
    r = subprocess.run([sys.executable, "-c", REVERSED.format(root=ROOT, settings=settings)], capture_output=True,
                       text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "2"})
    if r.returncode != 0:
        sys.exit(f"float32_drift: the reversed run failed:\n{r.stderr}")


def drift(a, b, step):
    """The largest |a − b| / max|a| over the checkpointed float arrays of two run folders at a step."""
    path = os.path.join("checkpoints", f"ckpt_{step:07d}.npz")
    with np.load(os.path.join(a, path)) as fa, np.load(os.path.join(b, path)) as fb:
        return max(float(np.abs(fa[k].astype(np.float64) - fb[k]).max() / max(np.abs(fa[k]).max(), 1e-300))
                   for k in fa.files if fa[k].dtype.kind == "f")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a folder of episodes (CarRacing frames show it; see the README)")
    p.add_argument("--channels", default="8,16,32,64")
    p.add_argument("--dense-size", default="256")
    p.add_argument("--batch-size", default="100")
    p.add_argument("--steps", default="7,30", help="steps after which to compare (comma-separated)")
    a = p.parse_args(argv)
    steps = [int(s) for s in a.steps.split(",")]
    model = ["--channels", a.channels, "--dense-size", a.dense_size, "--batch-size", a.batch_size]
    from scratchvae.run.runfolder import RunSettings
    from scratchvae.model.vae import VAE
    vae = VAE(**RunSettings(data="", out="", steps=1, channels=a.channels, dense_size=int(a.dense_size))
              .model_config(3, 64, 64))
    print(f"model: channels {a.channels}, dense {a.dense_size}: {vae.num_params():,} parameters; batch "
          f"{a.batch_size}; data {a.data}; cores {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for dtype in ("float64", "float32"):
            for processes, threads in ((1, 2), (1, 1), (2, 1)):
                runs[dtype, processes, threads] = os.path.join(tmp, f"{dtype}-{processes}-{threads}")
                train(runs[dtype, processes, threads], a.data, max(steps), dtype, model, processes, threads)
        runs["reversed"] = os.path.join(tmp, "reversed")
        reversed_batches(runs["reversed"], a.data, max(steps), model)
        for dtype in ("float64", "float32"):
            base = runs[dtype, 1, 2]
            for step in steps:
                d_mpi, d_threads = drift(base, runs[dtype, 2, 1], step), drift(base, runs[dtype, 1, 1], step)
                more = f", 1 process with each batch reversed {drift(base, runs['reversed'], step):.2e}" \
                    if dtype == "float32" else ""
                print(f"{dtype} after {step:3d} steps, against 1 process with 2 threads: 2 processes {d_mpi:.2e}, "
                      f"1 process with 1 thread {d_threads:.2e}{more}")
        for key, folder in runs.items():
            rows = [r for r in _log(folder) if r["step"] == max(steps)]
            name = "float32, 1 process, each batch reversed" if key == "reversed" else \
                f"{key[0]}, {key[1]} process(es), {key[2]} OpenBLAS thread(s)"
            print(f"loss at step {max(steps)}: {name}: {rows[0]['loss']:.4f}")


def _log(folder):
    import json
    with open(os.path.join(folder, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


if __name__ == "__main__":
    main()
