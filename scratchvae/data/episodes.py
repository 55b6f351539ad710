"""Episode files: one uncompressed .npz per episode.

    obs       uint8   (T, H, W, 3)   preprocessed frames; obs[t] is what the agent saw before acting
    actions   float32 (T, 3)         steer, gas, brake chosen at t
    rewards   float32 (T,)           reward for that step
    terminated bool   (T,)           the environment ended the episode after step t (CarRacing: every tile
                                     visited, or the car off the playfield)
    truncated bool    (T,)           the episode was cut after step t without the environment ending it:
                                     by gymnasium's time limit, or by the collection's own --steps
    dones     bool    (T,)           terminated | truncated: the episode's last step, however it ended
    seed      int64   ()             the seed that regenerates the episode
    policy    str     ()             "brownian" or "random"
    max_steps int64   ()             the step limit it was collected with (files from before it: absent)

Files from before terminated and truncated were recorded hold dones alone, and there it marks only the
environment's end (an episode cut by --steps ends with dones False); read_episode gives them all three
fields: terminated = dones as written, truncated only at a last step that dones did not mark.

The file is a plain NumPy archive (np.load reads it). It is stored uncompressed so
that a loader can read any frame straight from its place in the file without
reading the rest; ``frame_table`` finds that place.
"""
import glob
import os
import struct
import warnings
import zipfile
from collections import namedtuple

import numpy as np

from ..files.atomic import atomic_write

FIELDS = ("obs", "actions", "rewards", "dones")
RGB_CHANNELS = 3                            # a frame's colours: obs is uint8 (T, H, W, RGB_CHANNELS)

# where an episode's frames lie in its file, and obs's CRC-32 from the zip's directory (a checksum of
# every frame, read without reading the frames)
FrameTable = namedtuple("FrameTable", "offset frames height width crc")


class DataError(ValueError):
    """A data folder or episode file that cannot be used; the message names it."""


def unreadable(path, e):
    """The DataError for an episode file that an exception `e` stopped reading."""
    return DataError(f"{path}: unreadable episode file (truncated or corrupt?): {type(e).__name__}: {e}")


def episode_paths(folder):
    """The episode files (*.npz) of a data folder, sorted; a missing or empty folder is a DataError."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise DataError(f"data folder {folder} is a file; expected a folder of episode files (*.npz)")
    if not os.path.isdir(folder):
        raise DataError(f"data folder {folder} does not exist (collect one with collect-rollouts)")
    try:
        names = os.listdir(folder)
    except OSError as e:                                    # (glob would say 'no files' for a folder it cannot read)
        raise DataError(f"data folder {folder} cannot be read: {e.strerror}") from None
    paths = sorted(os.path.join(folder, n) for n in names if n.endswith(".npz") and not n.startswith("."))
    if not paths:
        raise DataError(f"data folder {folder} holds no episode files (*.npz)")
    return paths


def warn_skipped(skipped, total, folder):
    """One warning for the unreadable episode files passed over (their DataError messages)."""
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable episode file(s) of {total} in {folder}; "
                      f"first: {skipped[0]}", stacklevel=3)


def frame_size(folder):
    """(H, W) of the frames in a folder's first readable episode file; None when it holds none."""
    for path in sorted(glob.glob(os.path.join(folder, "*.npz"))):
        try:
            table = frame_table(path)
            return table.height, table.width
        except DataError:
            continue
    return None


def episode_name(index):
    return f"episode_{index:06d}.npz"


def ends(dones=None, terminated=None, truncated=None, t=None):
    """(terminated, truncated, dones), bool (T,) each, from what an episode records: both flags (dones is
    then their union), or dones alone, as older files hold it (the environment's end: terminated = dones, and
    a last step it does not mark was cut, truncated)."""
    if terminated is None or truncated is None:
        terminated = np.asarray(dones, bool).reshape(t)
        truncated = np.zeros_like(terminated)
        if len(terminated):
            truncated[-1] = not terminated[-1]
    terminated, truncated = np.asarray(terminated, bool).reshape(t), np.asarray(truncated, bool).reshape(t)
    return terminated, truncated, terminated | truncated


def write_episode(path, obs, actions, rewards, dones=None, seed=-1, policy="", max_steps=-1, terminated=None,
                  truncated=None):
    """Write one episode atomically (temporary name, then rename). Its ends: terminated and truncated, or
    dones alone (read as an older file's: ends())."""
    obs = np.ascontiguousarray(obs, dtype=np.uint8)
    t = len(obs)
    terminated, truncated, dones = ends(dones, terminated, truncated, t)
    arrays = dict(obs=obs, actions=np.asarray(actions, np.float32).reshape(t, -1),
                  rewards=np.asarray(rewards, np.float32).reshape(t), dones=dones, terminated=terminated,
                  truncated=truncated, seed=np.int64(seed), policy=np.array(policy), max_steps=np.int64(max_steps))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def _check(path, arrays):
    missing = [k for k in FIELDS if k not in arrays]
    if missing:
        raise DataError(f"{path}: not an episode file (missing {', '.join(missing)})")
    obs = arrays["obs"]
    if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[3] != 3:
        raise DataError(f"{path}: obs must be uint8 (T, H, W, 3), got {obs.dtype} {obs.shape}")
    t = obs.shape[0]
    for k in ("actions", "rewards", "dones", "terminated", "truncated"):
        if k in arrays and len(arrays[k]) != t:
            raise DataError(f"{path}: {k} has {len(arrays[k])} entries for {t} frames")


def read_episode(path):
    """The whole episode in memory: dict of arrays, terminated and truncated among them (derived from dones in
    an older file). Damage becomes a DataError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:
        raise unreadable(path, e) from None
    _check(path, arrays)
    arrays["terminated"], arrays["truncated"], arrays["dones"] = ends(
        arrays["dones"], arrays.get("terminated"), arrays.get("truncated"), len(arrays["obs"]))
    return arrays


def npy_header(f):
    """(shape, fortran_order, dtype) from the .npy header at f's place, f left where the array's data begins;
    a ValueError for a version of the format other than 1.0 and 2.0."""
    version = np.lib.format.read_magic(f)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f"unknown .npy version {version}, expected 1.0 or 2.0")
    return read_header(f)


def frame_table(path):
    """Where the frames lie in the file, without reading them: a FrameTable (offset, T, H, W, crc).

    Reads the zip entry's local header and the .npy header of obs.npy; checks that the
    entry is stored uncompressed and that the file is long enough to hold every frame.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [k for k in FIELDS if k + ".npy" not in names]
            if missing:
                raise DataError(f"{path}: not an episode file (missing {', '.join(missing)})")
            info = zf.getinfo("obs.npy")
            if info.compress_type != zipfile.ZIP_STORED:
                raise DataError(f"{path}: obs is compressed; episodes must be saved with np.savez (uncompressed) "
                                "so frames can be read in place")
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            head = f.read(30)
            if len(head) < 30 or head[:4] != b"PK\x03\x04":
                raise DataError(f"{path}: damaged zip entry for obs")
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            try:
                shape, fortran, dtype = npy_header(f)
            except ValueError as e:
                raise DataError(f"{path}: obs.npy: {e}") from None
            offset = f.tell()
    except DataError:
        raise
    except Exception as e:
        raise unreadable(path, e) from None
    if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or fortran:
        raise DataError(f"{path}: obs must be uint8 (T, H, W, 3), got {dtype} {shape}")
    t, h, w, _ = shape
    if os.path.getsize(path) < offset + t * h * w * 3:
        raise DataError(f"{path}: truncated: holds fewer bytes than its {t} frames need")
    return FrameTable(offset, t, h, w, info.CRC)


def episode_facts(path):
    """How an episode was collected, from its own small fields: dict of seed, policy and max_steps
    (None for what the file does not say), frames and size [H, W]. Reads no frame."""
    table = frame_table(path)
    facts = {"seed": None, "policy": None, "max_steps": None}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in facts:
                if key in z.files:
                    facts[key] = z[key].item()
    except Exception as e:
        raise unreadable(path, e) from None
    facts = {k: (None if v in (-1, "") else v) for k, v in facts.items()}   # write_episode's "not given"
    return {**facts, "frames": table.frames, "size": [table.height, table.width]}
