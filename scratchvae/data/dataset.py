"""A folder of episode files as shuffled minibatches, read from disk as they are needed.

Only a table of where each episode's frames lie is kept in memory (a few numbers per
episode); every batch reads its frames straight from their places in the files. A frame is
named by two indices, its episode (ep_idx) and its place in that episode (frame_idx); a
split's frames are also numbered 0, 1, … in episode order, and ``locate`` turns those
numbers into (ep_idx, frame_idx) from the episode lengths alone. So what a training run
keeps per frame is one shuffled order of those numbers per epoch, 8 bytes a frame (a
64×64 frame's pixels are 12,288 bytes, read and dropped batch by batch).
"""
import functools
import hashlib
import os
from collections import OrderedDict

import numpy as np

from ..ops.devices import get_xp
from .episodes import RGB_CHANNELS, DataError, episode_paths, frame_table, warn_skipped


# the frames of each split, as the pictures' titles and the tools name them
SPLIT_NAMES = {"heldout": "held-out frames", "train": "training frames (nothing held out)"}


class FrameDataset:
    """Episodes in `folder`, split by episode into training and held-out sets.

    size: (H, W) every frame must have (None: whatever the first episode has).
    heldout: fraction of episodes held out (at least one when there are two or more).
    """

    def __init__(self, folder, heldout=0.1, seed=0, size=None, open_files=64):
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
        self._files = OrderedDict()
        self._open_files = open_files

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
        """An open file for episode ep (a small least-recently-used cache of descriptors)."""
        fd = self._files.pop(ep, None)
        if fd is None:
            fd = os.open(self.paths[ep], os.O_RDONLY)
            if len(self._files) >= self._open_files:
                os.close(self._files.popitem(last=False)[1])
        self._files[ep] = fd
        return fd

    def read_frames(self, ep, frames, out=None):
        """uint8 (len(frames), H, W, 3) of episode ep, read from the file."""
        h, w = self.size
        out = np.empty((len(frames), h, w, 3), np.uint8) if out is None else out
        fd = self._fd(ep)
        for i, t in enumerate(frames):
            buf = os.pread(fd, self.frame_bytes, int(self.offsets[ep] + t * self.frame_bytes))
            if len(buf) != self.frame_bytes:
                raise DataError(f"{self.paths[ep]}: truncated while reading frame {t}")
            out[i] = np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        return out

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
        while self._files:
            os.close(self._files.popitem()[1])

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

    def gather(self, ep_idx, frame_idx):
        """uint8 (N, H, W, 3) for the given (episode, frame) index pairs, read episode by episode."""
        h, w = self.size
        out = np.empty((len(ep_idx), h, w, 3), np.uint8)
        for ep in np.unique(ep_idx):
            where = np.flatnonzero(ep_idx == ep)
            out[where] = self.read_frames(int(ep), frame_idx[where])
        return out


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
    x = upload(frames) if upload is not None and device == "gpu" else xp.asarray(frames)   # (N, H, W, 3) uint8
    x = xp.ascontiguousarray(x.transpose(3, 1, 2, 0), dtype=dtype)  # (3, H, W, N)
    x /= 255
    return x.transpose(3, 0, 1, 2)                              # (N, 3, H, W) view
