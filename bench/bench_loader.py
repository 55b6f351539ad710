"""The data feed: how many frames a second the loader reads into uint8 batches, warm and cold, against the
reader it replaced, measured in the same run; and whether the feed's thread hides the reads behind a step.

    python bench/bench_loader.py [--data DIR | --episodes 1000 --frames 285 --keep DIR]
                                 [--batch 100,1000] [--seconds 3] [--step-ms 6.6] [--readers 1,2,4]

Without --data it writes a folder of synthetic 64×64 episodes first (1,000 × 285 frames: 3.3 GB; --keep
DIR keeps it there for the next run, else a temporary folder is removed at the end). Per batch size:

    before     the reader this replaced: per episode of the batch, one pread a frame into a new bytes
               object, copied into the batch (FrameDataset.gather up to 2026-12; an LRU of 64 open files)
    gather     FrameDataset.gather: one preadv a frame straight into its row of the batch, every file open
    ratio      gather's frames/s ÷ before's
    readers k  data/readers.py: k processes reading each batch together into shared memory (train-scratch
               --readers k), frames/s
    cold       gather with the files dropped from the page cache first (posix_fadvise DONTNEED): the
               reads come from the disk, as on a machine that has not read them since it started
    to_model_input   uint8 (N, H, W, 3) → float32 (N, 3, H, W) in [0, 1] on the CPU, frames/s (for scale:
               on the GPU this runs there, after a uint8 upload)

Then the feed (data/feed.py) behind a stand-in step: a step that sleeps --step-ms (the GPU's step, during
which the host waits: at tf32, batch 1000 an H200's step was 6.56 ms) takes its batch from the feed; the
time a step waits for its frames shows whether the reads hide behind the step. The same loop reading
inline is the reference: its step is the step plus the read.
"""
import argparse
import collections
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae.data.dataset import FrameDataset, to_model_input  # noqa: E402
from scratchvae.data.episodes import episode_name, write_episode  # noqa: E402
from scratchvae.data.feed import Feed  # noqa: E402
from scratchvae.data.readers import Readers  # noqa: E402


def write_folder(folder, episodes, frames, size=64):
    """Synthetic episodes: random pixels, each episode a rotation of one block (the reads don't look)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)
    for e in range(episodes):
        path = os.path.join(folder, episode_name(e))
        if not os.path.exists(path):
            write_episode(path, np.roll(base, e, axis=0), np.zeros((frames, 3)), np.zeros(frames),
                          np.zeros(frames, bool))
        if e % 100 == 99:
            print(f"  wrote {e + 1} of {episodes} episodes", file=sys.stderr)


class Before:
    """The reader gather replaced, kept here as the reference: per episode in the batch, one os.pread per
    frame into a new bytes object, copied into the batch; an LRU cache of 64 open descriptors."""

    def __init__(self, ds, open_files=64):
        self.ds, self.files, self.open_files = ds, collections.OrderedDict(), open_files

    def fd(self, ep):
        fd = self.files.pop(ep, None)
        if fd is None:
            fd = os.open(self.ds.paths[ep], os.O_RDONLY)
            if len(self.files) >= self.open_files:
                os.close(self.files.popitem(last=False)[1])
        self.files[ep] = fd
        return fd

    def read_frames(self, ep, frames):
        ds, (h, w) = self.ds, self.ds.size
        out = np.empty((len(frames), h, w, 3), np.uint8)
        fd = self.fd(ep)
        for i, t in enumerate(frames):
            buf = os.pread(fd, ds.frame_bytes, int(ds.offsets[ep] + t * ds.frame_bytes))
            out[i] = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        return out

    def gather(self, ep_idx, frame_idx):
        h, w = self.ds.size
        out = np.empty((len(ep_idx), h, w, 3), np.uint8)
        for ep in np.unique(ep_idx):
            where = np.flatnonzero(ep_idx == ep)
            out[where] = self.read_frames(int(ep), frame_idx[where])
        return out

    def close(self):
        while self.files:
            os.close(self.files.popitem()[1])


def rate(read, batches, seconds):
    """Frames a second of read over the batches in turn, repeated for at least `seconds` (median of passes of
    at least a second, or one pass)."""
    rates, start = [], time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds or not rates:
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < min(1.0, seconds) and i < 10 ** 9:
            b = batches[i % len(batches)]
            read(*b)
            n += len(b[0])
            i += 1
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def cold_rate(ds, batches):
    """gather's frames a second with the files out of the page cache: one pass over `batches` (frames
    read once each, so the cache never helps)."""
    ds.evict()
    t = time.perf_counter()
    for b in batches:
        ds.gather(*b)
    return sum(len(b[0]) for b in batches) / (time.perf_counter() - t)


def behind_a_step(ds, batch, steps, step_s, pool=None):
    """(ms a step waits for its frames with the feed, ms a step takes reading inline): a stand-in step that
    sleeps step_s seconds, `steps` steps of each, after one to warm up. pool: reader processes the feed
    reads with (else its thread reads)."""
    order = np.random.default_rng(5).permutation(ds.num_frames())

    def read(k, take=None):
        numbers = order[(k * batch) % len(order):][:batch]
        if len(numbers) < batch:
            numbers = order[:batch]
        if pool is not None and take is not None:
            return pool.gather(*ds.locate(numbers), take(batch))
        return ds.gather(*ds.locate(numbers), out=take and take(batch))

    for k in range(steps + 1):                          # warm: these frames in the page cache
        read(k)
    waits = []
    with Feed(read, (*ds.size, 3), depth=2, empty=pool and pool.empty) as feed:
        feed.get(0)
        for k in range(1, steps + 1):
            t = time.perf_counter()
            feed.get(k)
            waits.append(time.perf_counter() - t)
            time.sleep(step_s)
    inline = []
    for k in range(steps):
        t = time.perf_counter()
        read(k)
        time.sleep(step_s)
        inline.append(time.perf_counter() - t)
    return 1e3 * statistics.median(waits), 1e3 * statistics.median(inline)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="a folder of episodes to read (default: write a synthetic one)")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--frames", type=int, default=285, help="frames per synthetic episode")
    p.add_argument("--keep", help="write the synthetic folder here and keep it (reused when it is there)")
    p.add_argument("--batch", default="100,1000")
    p.add_argument("--seconds", type=float, default=3.0, help="time each warm rate at least this long")
    p.add_argument("--step-ms", type=float, default=6.6, help="the stand-in step's length, ms")
    p.add_argument("--no-cold", action="store_true", help="skip the cold reads")
    p.add_argument("--readers", default="1,2,4", help="reader process counts to time (0 or empty: none)")
    a = p.parse_args()

    made = None
    folder = a.data
    if folder is None:
        folder = a.keep or (made := tempfile.mkdtemp(prefix="bench-loader-"))
        print(f"writing {a.episodes} synthetic episodes of {a.frames} frames to {folder} …", file=sys.stderr)
        write_folder(folder, a.episodes, a.frames)
    try:
        ds = FrameDataset(folder, heldout=0)
        size = sum(os.path.getsize(p) for p in ds.paths) / 1e9
        print(f"{ds.describe()} of {ds.size[0]}x{ds.size[1]} in {folder} ({size:.1f} GB); {os.cpu_count()} cores; "
              f"{ds._open_files} files kept open")
        counts = [int(k) for k in a.readers.split(",") if k.strip() and int(k) > 0]
        pools = {k: Readers(ds, k) for k in counts}
        print(f"{'batch':>6} {'before f/s':>11} {'gather f/s':>11} {'ratio':>6} {'cold f/s':>10} "
              f"{'to_model_input f/s':>19}" + "".join(f"{f'readers {k} f/s':>16}" for k in counts))
        before = Before(ds)
        for batch in [int(b) for b in a.batch.split(",")]:
            rng = np.random.default_rng(batch)
            batches = [ds.locate(rng.permutation(ds.num_frames())[:batch]) for _ in range(32)]
            for b in batches:                                   # warm: every frame of these in the cache
                ds.gather(*b)
            r_before = rate(before.gather, batches, a.seconds)
            r_gather = rate(ds.gather, batches, a.seconds)
            cold = "-"
            if not a.no_cold:
                order = rng.permutation(ds.num_frames())
                fresh = [ds.locate(order[i:i + batch]) for i in range(0, min(len(order), 40 * batch), batch)]
                cold = f"{cold_rate(ds, fresh):,.0f}"
                for b in batches:
                    ds.gather(*b)
            frames = ds.gather(*batches[0])
            r_input = rate(lambda e, t: to_model_input(frames), batches, min(a.seconds, 1.0))
            by_readers = ""
            for k, pool in pools.items():
                out = pool.empty((batch, *ds.size, 3))
                by_readers += f"{rate(lambda e, t: pool.gather(e, t, out), batches, a.seconds):>16,.0f}"
            print(f"{batch:>6} {r_before:>11,.0f} {r_gather:>11,.0f} {r_gather / r_before:>6.2f} {cold:>10} "
                  f"{r_input:>19,.0f}{by_readers}", flush=True)
        before.close()
        print(f"\nthe feed behind a stand-in step of {a.step_ms} ms (a sleep, as the host waits on the GPU), "
              "read by its thread, then by reader processes:")
        print(f"{'batch':>6} {'reads by':>12} {'read ms':>8} {'wait/step (feed) ms':>20} {'step (inline read) ms':>22} "
              f"{'feed f/s':>10}")
        for batch in [int(b) for b in a.batch.split(",")]:
            steps = max(20, int(a.seconds / (a.step_ms / 1e3)))
            for k in [0] + counts:
                wait, inline = behind_a_step(ds, batch, steps, a.step_ms / 1e3, pools.get(k))
                step = a.step_ms + wait
                by = f"{k} readers" if k else "thread"
                print(f"{batch:>6} {by:>12} {inline - a.step_ms:>8.2f} {wait:>20.3f} {inline:>22.2f} "
                      f"{batch / step * 1e3:>10,.0f}", flush=True)
        for pool in pools.values():
            pool.close()
        ds.close()
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)


if __name__ == "__main__":
    main()
