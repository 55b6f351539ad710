"""Loader memory: peak resident memory while reading one shuffled epoch, for a folder of K episodes
and one of 5·K episodes. Each measurement runs in a fresh process.

    python bench/bench_loader_memory.py [--episodes 10] [--frames 1000]

Synthetic 64×64 episodes are written to a temporary folder first.
"""
import argparse
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def measure(folder):
    """In a child process: iterate one epoch, print peak RSS in MB."""
    code = f"""
import resource, sys
sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
from scratchvae.data.dataset import FrameDataset
ds = FrameDataset({folder!r}, heldout=0.1, seed=0)
n = 0
for x in ds.batches(100, seed=0):
    n += len(x)
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[1])


def main():
    import numpy as np
    from scratchvae.data.episodes import episode_name, write_episode
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--frames", type=int, default=1000)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, size=(a.frames, 64, 64, 3), dtype=np.uint8)
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for scale in (1, 5):
            folder = os.path.join(root, f"x{scale}")
            os.makedirs(folder)
            for e in range(a.episodes * scale):
                write_episode(os.path.join(folder, episode_name(e)), obs, np.zeros((a.frames, 3)),
                              np.zeros(a.frames), np.zeros(a.frames))
            frames, peak = measure(folder)
            size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) / 2**20
            results[scale] = peak
            print(f"{a.episodes * scale} episodes, {size:.0f} MB on disk: one epoch of {frames} training frames, "
                  f"peak RSS {peak:.0f} MB")
    print(f"peak memory ratio 5x data / 1x data: {results[5] / results[1]:.2f}")


if __name__ == "__main__":
    main()
