"""Collection throughput: frames per second with 1 worker and with W workers, and their ratio.

    python bench/bench_collect.py [--episodes 4] [--steps 200] [--workers 2]

Both runs happen here, one after the other, into fresh temporary folders.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae.data.rollouts import collect  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    rates = {}
    for w in (1, a.workers):
        with tempfile.TemporaryDirectory() as out:
            s = collect(out, a.episodes, a.steps, workers=w, seed=1000, progress=False)
            rates[w] = s["frames"] / s["seconds"]
            per_1000 = s["bytes"] / s["frames"] * 1000
            print(f"workers={w}: {s['frames']} frames in {s['seconds']:.1f} s = {rates[w]:.1f} frames/s, "
                  f"{per_1000 / 1e6:.2f} MB on disk per 1000 frames")
    print(f"ratio {a.workers} workers / 1 worker: {rates[a.workers] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
