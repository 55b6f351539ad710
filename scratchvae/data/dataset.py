"""A folder of episode files as shuffled minibatches, read from disk as they are needed.

Only a table of where each episode's frames lie is kept in memory (a few numbers per
episode); every batch reads its frames straight from their places in the files. A frame is
named by two indices, its episode (ep_idx) and its place in that episode (frame_idx); a
split's frames are also numbered 0, 1, … in episode order, and ``locate`` turns those
numbers into (ep_idx, frame_idx) from the episode lengths alone. So what a training run
keeps per frame is one shuffled order of those numbers per epoch, 8 bytes a frame (a
64×64 frame's pixels are 12,288 bytes, read and dropped batch by batch).
"""
import collections
import functools
import hashlib
import os
import threading

import numpy as np

from ..ops.devices import get_xp
from .episodes import RGB_CHANNELS, DataError, episode_paths, frame_table, warn_skipped


# the frames of each split, as the pictures' titles and the tools name them
SPLIT_NAMES = {"heldout": "held-out frames", "train": "training frames (nothing held out)"}


class FrameDataset:
    """Episodes in `folder`, split by episode into training and held-out sets.

    size: (H, W) every frame must have (None: whatever the first episode has).
    heldout: fraction of episodes held out (at least one when there are two or more).
    open_files: how many episode files it keeps open at most (None: every one, as far as the process's
    limit on open files allows: open_file_limit).
    """

    def __init__(self, folder, heldout=0.1, seed=0, size=None, open_files=None):
        self.folder = folder
        paths = episode_paths(folder)
        self.paths, self.offsets, self.lengths, self.crcs, self.skipped = [], [], [], [], []
        for path in paths:
            try:
                table = frame_table(path)
            except DataError as e:
                self.skipped.append(str(e))
                continue
            h, w = table.height, table.width
            if size is None:
                size = (h, w)
            if (h, w) != tuple(size):
                raise DataError(f"{path}: frames are {h}x{w}, expected {size[0]}x{size[1]}")
            if table.frames == 0:
                continue
            self.paths.append(path)
            self.offsets.append(table.offset)
            self.lengths.append(table.frames)
            self.crcs.append(table.crc)
        warn_skipped(self.skipped, len(paths), folder)
        if not self.paths:
            raise DataError(f"data folder {folder} holds no readable episodes ({len(self.skipped)} skipped)")
        self.size = tuple(size)
        self.frame_bytes = self.size[0] * self.size[1] * 3
        self.lengths = np.asarray(self.lengths, np.int64)
        self.offsets = np.asarray(self.offsets, np.int64)

        n = len(self.paths)
        order = np.random.default_rng(seed).permutation(n)
        n_held = 0 if heldout <= 0 or n < 2 else min(n - 1, max(1, int(round(heldout * n))))
        self.heldout_episodes = np.sort(order[:n_held])
        self.train_episodes = np.sort(order[n_held:])
        # frame number past each episode's last, per split: what locate searches (a number per episode)
        self._ends = {split: np.cumsum(self.lengths[self.episodes(split)]) for split in ("train", "heldout")}
        self._fds = [-1] * n                                        # episode → its open descriptor, or -1
        self._opened = collections.deque()                          # the episodes open, oldest first
        self._open_files = open_files or open_file_limit(n)
        self._lock = threading.Lock()

    @functools.cached_property
    def fingerprint(self):
        """What the frames are, in a few characters: a SHA-256 over each episode's file name, length, frame
        size and obs checksum (the zip's CRC-32 of every frame), in order. The same episodes anywhere give
        the same fingerprint; an episode added, removed, renamed or changed gives another."""
        h, w = self.size
        lines = "".join(f"{os.path.basename(p)} {t} {h}x{w} {crc:08x}\n"
                        for p, t, crc in zip(self.paths, self.lengths, self.crcs))
        return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()

    @property
    def eval_split(self):
        """The split a run is evaluated and drawn on: "heldout", or "train" when nothing is held out."""
        return "heldout" if self.num_frames("heldout") else "train"

    @property
    def frame_shape(self):
        """(channels, H, W) of a frame as the model reads it: RGB_CHANNELS colours."""
        return (RGB_CHANNELS, *self.size)

    def describe(self):
        """'E episodes, F frames'."""
        return f"{len(self.paths)} episodes, {int(self.lengths.sum())} frames"

    def check_same(self, saved):
        """A resumed run trains on the episodes it began with, wherever they are now: DataError unless this data's
        fingerprint is the one `saved` (a checkpoint's run settings) recorded."""
        want = saved.get("data_fingerprint")
        if want is None or want == self.fingerprint:            # (a checkpoint from before fingerprints: unchecked)
            return
        was = (f"{saved.get('data_episodes')} episodes, "
               f"{saved.get('train_frames', 0) + saved.get('heldout_frames', 0)} frames")
        now = self.describe()
        how = ": as many, but other frames (an episode collected again, or changed)" if now == was else ""
        raise DataError(f"{self.folder} holds {now}, not the {was} this run was trained on{how}; a resume "
                        "trains on the same episodes (for other data, start a new run with another --out)")

    # ---- frames ------------------------------------------------------------------------------------
    def _fd(self, ep):
        """An open file for episode ep. Descriptors stay open (a read costs one system call, not three);
        past open_files of them the one opened longest ago is closed first."""
        fd = self._fds[ep]
        if fd < 0:
            if len(self._opened) >= self._open_files:
                old = self._opened.popleft()
                os.close(self._fds[old])
                self._fds[old] = -1
            fd = self._fds[ep] = os.open(self.paths[ep], os.O_RDONLY)
            self._opened.append(ep)
        return fd

    def read_frames(self, ep, frames, out=None):
        """uint8 (len(frames), H, W, 3) of episode ep, read from the file."""
        frames = np.asarray(frames, np.int64)
        return self.gather(np.full(len(frames), ep, np.int64), frames, out)

    def gather(self, ep_idx, frame_idx, out=None):
        """uint8 (N, H, W, 3): frame frame_idx[i] of episode ep_idx[i] in row i, into `out` when given (a
        C-contiguous uint8 array of that shape).

        Each frame lies in one piece in its file (12,288 bytes at 64×64), so a frame is one pread, made
        straight into its row of the batch: no bytes object, no copy after the read. Python's share is a
        few microseconds a frame, and the rows are read in the batch's own order: what a shuffled batch
        costs does not depend on how its frames fall among the episodes.

        Before the reads, every frame is announced to the system (posix_fadvise WILLNEED): frames not in
        the page cache are then fetched from the disk many at a time, not one read after another (4× the
        frames a second from a cold cache here, for 13% more time from a warm one)."""
        h, w = self.size
        fb = self.frame_bytes
        ep_idx, frame_idx, where = self.places(ep_idx, frame_idx)                          # (N,) each
        n = len(ep_idx)
        if out is None:
            out = np.empty((n, h, w, 3), np.uint8)
        elif out.dtype != np.uint8 or out.shape != (n, h, w, 3) or not out.flags.c_contiguous:
            raise ValueError(f"gather writes into a C-contiguous uint8 ({n}, {h}, {w}, 3) array, got "
                             f"{out.dtype} {out.shape}")
        rows = memoryview(out.reshape(-1))                                                   # (N·fb,) uint8
        fds, preadv = self._fds, os.preadv                          # (looked up once: this loop is the cost)
        eps, where = ep_idx.tolist(), where.tolist()
        with self._lock:                                            # (the feed's thread reads beside the run's)
            if _ADVISE and n > 1:                                   # every frame asked for before the first read
                for ep, pos in zip(eps, where):
                    _ADVISE(fds[ep] if fds[ep] >= 0 else self._fd(ep), pos, fb, os.POSIX_FADV_WILLNEED)
            for i, (ep, pos) in enumerate(zip(eps, where)):
                fd = fds[ep] if fds[ep] >= 0 else self._fd(ep)
                row = rows[i * fb:(i + 1) * fb]
                if preadv(fd, [row], pos) != fb and read_rest(fd, row, pos) != fb:
                    raise DataError(f"{self.paths[ep]}: truncated while reading frame {int(frame_idx[i])}")
        return out

    def places(self, ep_idx, frame_idx):
        """(ep_idx, frame_idx, where) as int64 arrays (N,): where[i] the byte at which frame frame_idx[i] of episode
        ep_idx[i] begins in its file; an IndexError naming the first pair that is not a frame."""
        ep_idx, frame_idx = np.asarray(ep_idx, np.int64), np.asarray(frame_idx, np.int64)   # (N,) (N,)
        n = len(ep_idx)
        if ep_idx.shape != (n,) or frame_idx.shape != (n,):
            raise ValueError(f"gather expects two index arrays of one length, got shapes {ep_idx.shape} "
                             f"and {frame_idx.shape}")
        if n and (ep_idx.min() < 0 or ep_idx.max() >= len(self.paths)):
            raise IndexError(f"episode numbers must lie in [0, {len(self.paths)}), got "
                             f"{int(ep_idx.min())} … {int(ep_idx.max())}")
        beyond = (frame_idx < 0) | (frame_idx >= self.lengths[ep_idx])                      # (N,) bool
        if beyond.any():
            i = int(np.argmax(beyond))
            raise IndexError(f"{self.paths[ep_idx[i]]} has frames 0 … {self.lengths[ep_idx[i]] - 1}, "
                             f"asked for frame {int(frame_idx[i])}")
        return ep_idx, frame_idx, self.offsets[ep_idx] + frame_idx * self.frame_bytes     # (N,) bytes

    def evict(self):
        """Ask the system to drop these files from its page cache (posix_fadvise DONTNEED): the next reads
        come from the disk, as on a machine that has not read them since it started. For benchmarks."""
        for ep in range(len(self.paths)):
            os.posix_fadvise(self._fd(ep), 0, 0, os.POSIX_FADV_DONTNEED)

    def locate(self, numbers, split="train"):
        """(ep_idx, frame_idx) of the split's frames numbered `numbers` (0 … num_frames(split) − 1: the split's
        episodes in order, each one's frames in order), found from the episodes' lengths: nothing is kept
        per frame."""
        episodes, ends = self.episodes(split), self._ends[split]
        total = int(ends[-1]) if len(ends) else 0
        numbers = np.asarray(numbers, np.int64)
        if numbers.size and (numbers.min() < 0 or numbers.max() >= total):
            raise IndexError(f"frame numbers must lie in [0, {total}) for the {split} split, "
                             f"got {int(numbers.min())} … {int(numbers.max())}")
        which = np.searchsorted(ends, numbers, side="right")      # the episode each number falls in
        return episodes[which], numbers - (ends[which] - self.lengths[episodes[which]])

    def num_frames(self, split="train"):
        return int(self.lengths[self.episodes(split)].sum())

    def episodes(self, split):
        """The episode numbers of a split, 'train' or 'heldout'."""
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        return self.train_episodes if split == "train" else self.heldout_episodes

    def close(self):
        with self._lock:
            while self._opened:
                ep = self._opened.popleft()
                os.close(self._fds[ep])
                self._fds[ep] = -1

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ---- batches -----------------------------------------------------------------------------------
    def order(self, split="train", seed=None, epoch=0):
        """The split's frame numbers in the order epoch `epoch` takes them: shuffled across episodes by a
        generator seeded with (seed, epoch), a function of those alone; in file order when seed is None."""
        n = self.num_frames(split)
        return np.arange(n) if seed is None else np.random.default_rng([seed, epoch]).permutation(n)

    def batches(self, batch_size, split="train", seed=None, epoch=0, device="cpu", dtype=np.float32):
        """One epoch: every frame of the split exactly once, in batches of `batch_size` (the last may
        be smaller), in order(split, seed, epoch), as float (N, 3, H, W) in [0, 1]."""
        for ep_idx, frame_idx in self.index_batches(batch_size, split, seed, epoch):
            yield to_model_input(self.gather(ep_idx, frame_idx), device, dtype)

    def index_batches(self, batch_size, split="train", seed=None, epoch=0):
        """(ep_idx, frame_idx) arrays per batch for one epoch, in order(split, seed, epoch)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        order = self.order(split, seed, epoch)
        for i in range(0, len(order), batch_size):
            yield self.locate(order[i:i + batch_size], split)

    def spread(self, n, split="train"):
        """uint8 (min(n, frames), H, W, 3): n of the split's frames spread evenly over it, first to last."""
        return self.gather(*self.locate(self.spread_numbers(n, split), split))

    def spread_numbers(self, n, split="train"):
        """The numbers of the frames spread() reads (min(n, frames) of them), to read a few at a time."""
        total = self.num_frames(split)
        return np.linspace(0, total - 1, min(n, total)).astype(int)


def open_file_limit(wanted, spare=256):
    """How many episode files a dataset may keep open: `wanted`, as far as the process's limit on open files
    allows with `spare` left for everything else. The soft limit is raised towards the hard one first
    (often 1,024 soft against 1,048,576 hard); a system without that limit gets `wanted`."""
    try:
        import resource
    except ImportError:                                             # (no RLIMIT_NOFILE: Windows)
        return max(1, wanted)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + spare
    if soft != resource.RLIM_INFINITY and soft < need and (hard == resource.RLIM_INFINITY or hard > soft):
        try:
            soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        except (ValueError, OSError):
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return max(1, wanted)
    return max(1, min(wanted, soft - spare))


_ADVISE = getattr(os, "posix_fadvise", None)                    # (not on every system: then no advice)


def read_rest(fd, buf, pos):
    """Read len(buf) bytes at pos of fd straight into buf, a piece at a time (a read may return less than
    asked for without the file having ended); how many came (fewer: the file ended)."""
    got = 0
    while got < len(buf):
        k = os.preadv(fd, [buf[got:]], pos + got)
        if k == 0:
            break
        got += k
    return got


def to_model_input(frames, device="cpu", dtype=np.float32, upload=None):
    """uint8 (N, H, W, 3) on the host → float (N, 3, H, W) in [0, 1] on the device, stored (3, H, W, N):
    the layout the model's layers keep images in (see scratchvae/ops/im2col.py), so it reads them as they are.
    Frames as episode files hold them (obs) and as images load (np.asarray(PIL.Image.open(f))) go in as they are.

    The bytes travel as uint8 (a quarter of float32) and are converted where they land. On the GPU,
    `upload` (a scratchvae.ops.uploads.Uploader) queues their copy without waiting for the GPU.
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        what = f"{frames.dtype} {frames.shape}" if hasattr(frames, "shape") else type(frames).__name__
        raise ValueError(f"to_model_input expects uint8 frames (N, H, W, 3) in a NumPy array, got {what}"
                         + (" (one frame: frames[None])" if getattr(frames, "ndim", 0) == 3 else ""))
    xp = get_xp(device)
    if xp is not np:                                            # one kernel turns the whole batch round
        x = upload(frames) if upload is not None else xp.asarray(frames)   # (N, H, W, 3) uint8
        x = xp.ascontiguousarray(x.transpose(3, 1, 2, 0), dtype=dtype)     # (3, H, W, N)
        x /= 255
        return x.transpose(3, 0, 1, 2)                          # (N, 3, H, W) view
    # On the CPU, turning a large batch round in one go reads each output row's N numbers from N frames
    # 12 KB apart, and caches miss on nearly every one: 104 ms for 1,000 frames on 2 cores. A block of
    # TRANSPOSE_BLOCK frames at a time (786 KB of pixels) stays in cache; the bytes are divided once at the end.
    n, h, w, c = frames.shape
    u = np.empty((c, h, w, n), np.uint8)                        # (3, H, W, N)
    for i in range(0, n, TRANSPOSE_BLOCK):
        u[..., i:i + TRANSPOSE_BLOCK] = frames[i:i + TRANSPOSE_BLOCK].transpose(3, 1, 2, 0)
    x = np.empty(u.shape, dtype)                                # (3, H, W, N)
    np.divide(u, np.dtype(dtype).type(255), out=x, dtype=dtype) # x / 255, computed in dtype: as before, bit for bit
    return x.transpose(3, 0, 1, 2)                              # (N, 3, H, W) view


TRANSPOSE_BLOCK = 64                                            # frames turned round at a time on the CPU
