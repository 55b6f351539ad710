"""Training on N processes: images/s and the all-reduce's share for N = 1 and 2 here, measured; and what the
same sum costs on 1 … 64 GPUs, on paper.

    python bench/bench_distributed.py [--batch 100] [--steps 40] [--processes 1,2]

Measured: the sum alone (World.allreduce over the 17.4 MB gradient buffer on 2 processes, against MPI's own
blocking Allreduce of the same buffer in the same run); then bin/train-scratch with the default model (4,348,547 parameters, float32) on synthetic episodes,
plainly for N = 1 and under mpiexec -n N for the others, reading images/s and allreduce_share (rank 0's
time in the sum, waiting for the other ranks included) from its log; the first log row, which holds the
start, is left out. The global batch is the same for every N (each rank takes B/N images). Ratios are
against N = 1 in the same run.

On paper: the step on one GPU is t(b) = a + c·b milliseconds for b images, the line through the H200's
measured fp32 steps (bench/results/h200-step-final-b.txt, queued: 1.66 ms at 100, 10.24 ms at 1000). A ring
all-reduce of S bytes over N GPUs sends 2(N − 1)/N · S through each GPU's link, in 2(N − 1) hops:

    t_sum(N) = 2(N − 1)/N · S / bandwidth + 2(N − 1) · latency

S = 4 bytes × the parameters. The sum starts when the backward has ended (nothing overlaps it), so with b
images per GPU the share of the GPUs' time that trains is t(b) / (t(b) + t_sum(N)), and it stays at 90% or
more from b = (9 · t_sum − a) / c up.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
from scratchvae import VAE  # noqa: E402
from scratchvae.run.distributed import find_mpiexec  # noqa: E402
from scratchvae.data.episodes import episode_name, write_episode  # noqa: E402

# the H200's fp32 step, queued as training runs it (ms at 100 and at 1000 images)
H200_STEP = {100: 1.66, 1000: 10.24}
# links: (name, bandwidth GB/s through each GPU's link for the ring, latency µs a hop, GPUs it reaches)
LINKS = (
    ("NVLink 4, one node", 360.0, 5.0, 8),          # H100/H200 SXM; NCCL's all-reduce bus bandwidth in one node
    ("400 Gb/s network", 45.0, 10.0, 64),           # 50 GB/s line rate, 90% of it; one NIC per GPU
    ("100 Gb/s network", 11.25, 10.0, 64),          # 12.5 GB/s line rate, 90% of it; one NIC per GPU
)


def synthetic_data(folder, episodes=4, frames=200, seed=0):
    rng = np.random.default_rng(seed)
    for e in range(episodes):
        obs = rng.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
        write_episode(os.path.join(folder, episode_name(e)), obs, rng.uniform(size=(frames, 3)),
                      rng.normal(size=frames), np.arange(frames) == frames - 1, seed=e, policy="bench")


def measure(n, data, out, batch, steps, mpiexec):
    tool = [sys.executable, os.path.join(ROOT, "bin", "train-scratch"), "--data", data, "--out", out, "--steps",
            str(steps), "--batch-size", str(batch), "--log-every", "10", "--eval-every", str(10 * steps),
            "--checkpoint-every", str(10 * steps), "--eval-frames", "8", "--heldout", "0", "--quiet"]
    cmd = [mpiexec, "-n", str(n), *tool] if n > 1 else tool
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bench: N = {n} failed: {r.stderr.strip()}")
    with open(os.path.join(out, "log.jsonl")) as f:
        rows = [json.loads(line) for line in f][1:]              # the first holds the start
    return (float(np.mean([r["images_per_s"] for r in rows])),
            float(np.mean([r.get("allreduce_share", 0.0) for r in rows])))


def sum_alone(repeats=20):
    """Child of mpiexec -n 2: median ms of World.allreduce (polled, watched) and of a blocking Allreduce."""
    from mpi4py import MPI
    from scratchvae.run import distributed
    w = distributed.world()
    a = np.ones(VAE(seed=0).num_params(), np.float32)
    out = {}
    for name, run in (("blocking", lambda: w.comm.Allreduce(MPI.IN_PLACE, a, op=MPI.SUM)),
                      ("scratchvae", lambda: w.allreduce(a))):
        times = []
        for _ in range(repeats):
            w.comm.Barrier()
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        out[name] = 1000 * float(np.median(times))
    if w.rank == 0:
        print(json.dumps(out))


def cost_model(params):
    size = 4 * params                                           # float32 gradients, bytes
    (b1, t1), (b2, t2) = sorted(H200_STEP.items())
    c = (t2 - t1) / (b2 - b1)                                   # ms an image
    a = t1 - c * b1                                             # ms a step whatever its batch
    print(f"\non paper: a ring all-reduce of {size / 1e6:.1f} MB ({params:,} float32 gradients) after each step; "
          f"one H200's fp32 step t(b) = {a:.2f} + {c * 1000:.2f}·b/1000 ms")
    print("eff@b: the share of the GPUs' time that trains at b images per GPU; b90: the images per GPU from which "
          "that share is 90% or more")
    head = f"{'GPUs':>5}" + "".join(f" | {name:^34}" for name, *_ in LINKS)
    print(head)
    print(f"{'':>5}" + " | sum ms  eff@100  eff@1000      b90" * len(LINKS))
    for n in (1, 2, 4, 8, 16, 32, 64):
        cells = []
        for _, bw, lat, reach in LINKS:
            if n > reach:
                cells.append(f" | {'(beyond one node)':^34}")
                continue
            t = 2 * (n - 1) / n * size / (bw * 1e9) * 1e3 + 2 * (n - 1) * lat * 1e-3      # ms
            eff = [(a + c * b) / (a + c * b + t) for b in (100, 1000)]
            b90 = max(1, math.ceil((9 * t - a) / c))
            cells.append(f" | {t:6.3f}  {eff[0]:6.1%}  {eff[1]:7.1%}  {b90:7d}")
        print(f"{n:>5}" + "".join(cells))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=100, help="the global batch (default 100)")
    p.add_argument("--steps", type=int, default=40, help="steps a run (default 40)")
    p.add_argument("--processes", default="1,2", help="the Ns to run (default 1,2)")
    p.add_argument("--sum-alone", action="store_true", help=argparse.SUPPRESS)     # the child of the first part
    a = p.parse_args()
    if a.sum_alone:
        return sum_alone()
    mpiexec = find_mpiexec()
    ns = [int(v) for v in a.processes.split(",")]
    if any(n > 1 for n in ns) and mpiexec is None:
        raise SystemExit('bench: no mpiexec: pip install -e ".[distributed]"')
    print(f"measured here: {os.cpu_count()} CPU cores, default model, float32, global batch {a.batch}, "
          f"{a.steps} steps a run")
    if mpiexec is not None:
        r = subprocess.run([mpiexec, "-n", "2", sys.executable, os.path.abspath(__file__), "--sum-alone"],
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"bench: the sum alone failed: {r.stderr.strip()}")
        ms = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"the sum alone on 2 processes, 17.4 MB: World.allreduce {ms['scratchvae']:.2f} ms, MPI's blocking "
              f"Allreduce {ms['blocking']:.2f} ms (ratio {ms['blocking'] / ms['scratchvae']:.2f}); medians of 20")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        synthetic_data(data)
        rates = {}
        print(f"{'N':>3} {'images/s':>9} {'ms/step':>8} {'allreduce':>10} {'vs N=1':>7}")
        for n in ns:
            rate, share = measure(n, data, os.path.join(tmp, f"run{n}"), a.batch, a.steps, mpiexec)
            rates[n] = rate
            base = rates.get(1)
            print(f"{n:>3} {rate:9.1f} {1000 * a.batch / rate:8.1f} {share:10.1%} "
                  f"{rate / base if base else float('nan'):6.2f}x")
    cost_model(VAE(seed=0).num_params())


if __name__ == "__main__":
    main()
