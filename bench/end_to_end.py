"""The command-line tools end to end on real frames, on one device, each check a line PASS or FAIL.

    python bench/end_to_end.py --data data/carracing-default --device gpu [--steps 200] [--out runs/e2e]

What a user of `bin/train-scratch --device gpu` relies on, run as that user runs it (the tools
as subprocesses, on the data given):

    auto        --device auto chooses this device (checked when it is the GPU)
    train       a run writes its checkpoints, log rows, held-out MSE and four pictures
    resume      the same run stopped halfway and resumed ends bit for bit where the whole run ends
    sigint      SIGINT mid-run: exit 130, a checkpoint, and a resume from it that finishes
    nan         a diverging run (--lr 100) stops with exit 3 and one line naming the step
    encode      bin/encode-latents writes one (mu, logvar) row per frame, the rows the model gives

The tests (tests/test_train.py, on tiny synthetic frames) check each of these in detail; this
runs them on a real dataset and the real default model, where a GPU's own problems (memory,
kernels, a device-to-host copy in the wrong place) would show. Exit 0 when every check passes.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
import numpy as np  # noqa: E402
from scratchvae.run.checkpoint import load  # noqa: E402
from scratchvae.data import read_episode  # noqa: E402
from scratchvae.use.latents import episode_rows  # noqa: E402
from scratchvae.run.runfolder import RunFolder  # noqa: E402

PICTURES = ("reconstructions.png", "samples.png", "traversal.png", "loss.png")


def command(name, *args):
    """The command line that runs bin/NAME with ARGS under this Python."""
    return [sys.executable, os.path.join(ROOT, "bin", name), *args]


def tool(name, *args):
    return subprocess.run(command(name, *args), capture_output=True, text=True)


class Checks:
    def __init__(self, a):
        self.a, self.failed = a, []
        self.run = ["--data", a.data, "--device", a.device, "--batch-size", str(a.batch_size), "--quiet",
                    "--log-every", "10", "--eval-every", str(a.steps // 2), "--checkpoint-every", str(a.steps // 2)]

    def say(self, name, ok, what):
        print(f"{'PASS' if ok else 'FAIL'}  {name:<7} {what}", flush=True)
        if not ok:
            self.failed.append(name)

    def folder(self, name):
        path = os.path.join(self.a.out, name)
        shutil.rmtree(path, ignore_errors=True)
        return path

    def auto(self):
        if self.a.device != "gpu":
            return print(f"skip  auto    (checked for --device gpu; this is {self.a.device})")
        r = tool("train-scratch", *self.run, "--device", "auto", "--steps", "2", "--out", self.folder("auto"))
        self.say("auto", r.returncode == 0 and "--device auto chose gpu" in r.stdout,
                 r.stdout.strip().splitlines()[0] if r.stdout.strip() else r.stderr.strip()[-300:])

    def train(self):
        out = self.folder("whole")
        start = time.perf_counter()
        r = tool("train-scratch", *self.run, "--steps", str(self.a.steps), "--out", out)
        seconds = time.perf_counter() - start
        if r.returncode:
            return self.say("train", False, f"exit {r.returncode}: {r.stderr.strip()[-300:]}")
        rows, ckpts = RunFolder(out).read_log(), [s for s, _ in RunFolder(out).checkpoints()]
        mse = [round(row["heldout_mse"], 5) for row in rows if "heldout_mse" in row]
        pictures = [p for p in PICTURES if os.path.getsize(os.path.join(out, p)) > 1000]
        ok = ckpts[-1] == self.a.steps and len(mse) == 2 and len(pictures) == 4 and mse[-1] < mse[0]
        self.say("train", ok, f"{self.a.steps} steps in {seconds:.0f} s (start-up included); checkpoints {ckpts}; "
                              f"held-out MSE {mse}; pictures {len(pictures)} of 4")

    def resume(self):
        whole, out = os.path.join(self.a.out, "whole"), self.folder("halves")
        half = str(self.a.steps // 2)
        r1 = tool("train-scratch", *self.run, "--steps", half, "--out", out)
        r2 = tool("train-scratch", *self.run, "--steps", str(self.a.steps), "--out", out, "--resume")
        if r1.returncode or r2.returncode or not RunFolder(whole).checkpoints():
            return self.say("resume", False, f"exits {r1.returncode}, {r2.returncode}: {r2.stderr.strip()[-300:]}")
        a, b = load(RunFolder(whole).checkpoints()[-1][1]), load(RunFolder(out).checkpoints()[-1][1])
        same = [k for k in a.model.params if np.array_equal(a.model.params[k], b.model.params[k])
                and np.array_equal(a.optimizer.m[k], b.optimizer.m[k])
                and np.array_equal(a.optimizer.v[k], b.optimizer.v[k])]
        losses = [[row["loss"] for row in RunFolder(d).read_log()] for d in (whole, out)]
        losses = losses[0] == losses[1]
        self.say("resume", len(same) == len(a.model.params) and losses,
                 f"{half} + {half} steps against {self.a.steps}: {len(same)} of {len(a.model.params)} parameters "
                 f"and their Adam moments bit-identical; log losses {'equal' if losses else 'DIFFER'}")

    def sigint(self):
        out = self.folder("sigint")
        cmd = command("train-scratch", *self.run, "--steps", "100000", "--out", out, "--checkpoint-every", "100000")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        log, deadline = os.path.join(out, "log.jsonl"), time.time() + 300
        while time.time() < deadline and proc.poll() is None and not (os.path.exists(log) and os.path.getsize(log)):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
        found = RunFolder(out).checkpoints()
        if proc.returncode != 130 or len(found) != 1:
            return self.say("sigint", False, f"exit {proc.returncode}, checkpoints {found}: {stderr.strip()[-300:]}")
        step = found[0][0]
        r = tool("train-scratch", "--out", out, "--resume", "--steps", str(step + 5), "--quiet")
        self.say("sigint", r.returncode == 0 and RunFolder(out).checkpoints()[-1][0] == step + 5,
                 f"exit 130, checkpoint at step {step}; resumed to step {RunFolder(out).checkpoints()[-1][0]}")

    def nan(self):
        r = tool("train-scratch", *self.run, "--steps", "30", "--lr", "100", "--out", self.folder("nan"))
        lines = r.stderr.strip().splitlines()
        self.say("nan", r.returncode == 3 and len(lines) == 1 and "the loss became" in lines[0],
                 f"exit {r.returncode}: {lines[-1] if lines else '(nothing said)'}")

    def encode(self):
        whole = os.path.join(self.a.out, "whole")
        if not RunFolder(whole).checkpoints():
            return self.say("encode", False, "no checkpoint from the train check to encode with")
        ckpt, target = RunFolder(whole).checkpoints()[-1][1], os.path.join(self.a.out, "latents.npz")
        start = time.perf_counter()
        r = tool("encode-latents", "--checkpoint", ckpt, "--data", self.a.data, "--out", target,
                 "--device", self.a.device, "--quiet")
        seconds = time.perf_counter() - start
        if r.returncode:
            return self.say("encode", False, f"exit {r.returncode}: {r.stderr.strip()[-300:]}")
        with np.load(target) as z:
            lat = {k: z[k] for k in z.files}
        mu, starts = lat["mu"], lat["starts"]
        model = load(ckpt).model                                    # on the CPU: the reference
        frames = read_episode(os.path.join(self.a.data, str(lat["episodes"][0])))["obs"][:50]
        want, _ = model.encode(frames.transpose(0, 3, 1, 2).astype(np.float32) / 255)
        got = episode_rows(lat, 0)["mu"][:50]
        err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        self.say("encode", mu.shape == lat["logvar"].shape == (starts[-1], 32) and np.isfinite(mu).all()
                 and err < 1e-4, f"{starts[-1]} frames of {len(starts) - 1} episodes in {seconds:.0f} s; mu of the "
                                 f"first 50 frames against the CPU's: largest difference {err:.1e} of the largest mu")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of episode files")
    p.add_argument("--device", default="gpu", choices=("cpu", "gpu"))
    p.add_argument("--steps", type=int, default=200, help="length of the trained run (even; default 200)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--out", default=os.path.join("runs", "end-to-end"), help="where the runs go")
    p.add_argument("--only", help="some of the checks, by name, separated by commas")
    a = p.parse_args(argv)
    if a.steps < 2 or a.steps % 2:
        p.error(f"--steps: expected an even number of at least 2, got {a.steps}")
    os.makedirs(a.out, exist_ok=True)
    checks = Checks(a)
    names = ("auto", "train", "resume", "sigint", "nan", "encode")
    for name in (a.only.split(",") if a.only else names):
        getattr(checks, name)()
    print("every check passed" if not checks.failed else f"failed: {', '.join(checks.failed)}")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
