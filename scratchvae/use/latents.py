"""Latents for the next World Models stage: every frame's mu and logvar with its actions.

One .npz for a whole data folder, episodes laid end to end:

    mu        float32 (F, D)    mean of q(z | frame), F frames in all
    logvar    float32 (F, D)    log σ² of q(z | frame)
    actions   float32 (F, 3)    the action taken at that frame
    rewards   float32 (F,)      its reward
    dones     bool    (F,)      the episode's last step (terminated | truncated)
    terminated bool   (F,)      the environment ended the episode after that step
    truncated bool    (F,)      the episode was cut after that step (a time limit, collect-rollouts' --steps)
    starts    int64   (E + 1,)  episode e is rows starts[e]:starts[e+1]
    episodes  str     (E,)      the episode file each came from
    config    str     ()        the model's configuration (JSON)
    checkpoint str    ()        the checkpoint file the model came from (absolute path; "" if none)
    data      str     ()        the data folder (absolute path)

Episode files that cannot be read are passed over with one warning, as training does. The folder is
streamed (encode_folder): memory holds one episode at a time, whatever the number of frames.

The memory model trains on sequences: z_t = mu_t + exp(logvar_t / 2)·eps (sampled anew each
epoch, as World Models does), a_t, and predicts z_{t+1} within one episode.
"""
import contextlib
import os
import zipfile

import numpy as np

from ..files.atomic import atomic_write, make_folder, temporary_beside
from ..ops.devices import to_numpy
from ..run.checkpoint import config_json
from ..data.dataset import to_model_input
from ..data.episodes import DataError, episode_paths, npy_header, read_episode, warn_skipped
from ..files.progress import bar as progress_bar


def first_rows(f, n):
    """The first n rows (fewer if it has fewer) of the .npy array in the open binary file f, read from its
    place after the header: the rest of the array is not read. A ValueError for what is not a plain array."""
    shape, fortran, dtype = npy_header(f)
    if dtype.hasobject or fortran or len(shape) == 0:
        raise ValueError(f"an array {dtype} {shape}{' in Fortran order' if fortran else ''}")
    rows = min(n, shape[0])
    row = int(np.prod(shape[1:], dtype=np.int64))
    data = f.read(rows * row * dtype.itemsize)
    if len(data) != rows * row * dtype.itemsize:
        raise ValueError(f"a file cut short: {len(data)} bytes where {rows} rows need {rows * row * dtype.itemsize}")
    return np.frombuffer(data, dtype).reshape(rows, *shape[1:]).copy()


def episode_rows(latents, e):
    """The rows of episode e: dict of arrays."""
    s, t = int(latents["starts"][e]), int(latents["starts"][e + 1])
    return {k: latents[k][s:t] for k in ROWS}


def check_writable(out):
    """Before any work: `out` can be written (its folder made if need be), or an error saying why. Returns the
    folders made (atomic.removed_on_failure removes them again if what follows fails)."""
    if os.path.isdir(out):
        raise IsADirectoryError(f"--out {out} is a folder; expected the name of a .npz file to write")
    try:
        made = make_folder(os.path.dirname(out) or os.curdir)
        fd, trial = temporary_beside(out)                           # the file atomic_write will make
        os.close(fd)
        os.unlink(trial)
    except OSError as e:
        raise OSError(e.errno, f"cannot write here: {e.strerror}", out) from None
    return made


ROWS = {"mu": np.float32, "logvar": np.float32, "actions": np.float32, "rewards": np.float32, "dones": bool,
        "terminated": bool, "truncated": bool}              # the arrays with a row per frame, and their types
EPISODE_ROWS = tuple(k for k in ROWS if k not in ("mu", "logvar"))   # the rows an episode file gives as they are
CHUNK = 1 << 22                                             # bytes copied at a time into the latents file


def encode_folder(model, folder, out, batch_size=100, progress=True, checkpoint=""):
    """Encode every readable episode of `folder` and write the latents file `out` (checked writable first).
    Returns a summary: {"episodes": E, "frames": F, "latent_dim": D}.

    Streamed, whatever the folder's size: episodes are read one at a time and encoded batch_size frames at a
    time; each array's rows are appended to a temporary file beside `out` as they come, and copied from there
    into the .npz a chunk at a time. Memory holds one episode and one batch; the disk holds the latents twice
    until the temporaries are removed."""
    check_writable(out)
    paths = episode_paths(folder)
    columns = {}                                                # key → (open temporary file, its path)
    try:
        for key in ROWS:
            fd, tmp = temporary_beside(out)
            columns[key] = (os.fdopen(fd, "wb"), tmp)
        starts, used, shapes, skipped = _encode_into(columns, model, paths, batch_size, progress)
        warn_skipped(skipped, len(paths), folder)
        if not used:
            raise DataError(f"data folder {folder} holds no readable episodes ({len(skipped)} skipped)")
        for f, _ in columns.values():
            f.close()
        small = dict(starts=np.asarray(starts, np.int64), episodes=np.array([os.path.basename(p) for p in used]),
                     config=np.array(config_json(model)),
                     checkpoint=np.array(os.path.abspath(checkpoint) if checkpoint else ""),
                     data=np.array(os.path.abspath(folder)))
        with atomic_write(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, (_, tmp) in columns.items():               # as np.savez writes each array, from the file
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member, open(tmp, "rb") as rows:
                    np.lib.format.write_array_header_2_0(member, {
                        "descr": np.lib.format.dtype_to_descr(np.dtype(ROWS[key])), "fortran_order": False,
                        "shape": (starts[-1], *shapes[key])})
                    while chunk := rows.read(CHUNK):
                        member.write(chunk)
            for key, a in small.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, a, allow_pickle=False)
        return {"episodes": len(used), "frames": starts[-1], "latent_dim": model.latent_dim}
    finally:
        for f, tmp in columns.values():
            f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _encode_into(columns, model, paths, batch_size, progress):
    """Encode the episodes of `paths`, end to end, appending each array's rows to its file in `columns`.
    Returns (starts, the paths used, each array's row shape, the messages of the files passed over)."""
    c, h, w = model.input_shape
    starts, used, skipped = [0], [], []
    shapes = {"mu": (model.latent_dim,), "logvar": (model.latent_dim,)}
    bar = progress_bar(len(paths), "encoding", "ep", enabled=progress)
    try:
        for path in paths:
            try:
                ep = read_episode(path)
            except DataError as e:
                skipped.append(str(e))
                continue
            finally:
                bar.update(1)
            if ep["obs"].shape[1:] != (h, w, c):
                raise DataError(f"{path}: frames are {ep['obs'].shape[1]}x{ep['obs'].shape[2]}, "
                                f"the model expects {h}x{w}")
            for key in EPISODE_ROWS:
                if shapes.setdefault(key, ep[key].shape[1:]) != ep[key].shape[1:]:
                    raise DataError(f"{path}: {key} has rows of shape {ep[key].shape[1:]}, where the episodes "
                                    f"before it have {shapes[key]}")
            for i in range(0, len(ep["obs"]), batch_size):
                mu, logvar = model.encode(to_model_input(ep["obs"][i:i + batch_size], model.device, model.dtype))
                columns["mu"][0].write(to_numpy(mu).astype(np.float32).tobytes())          # (B, D)
                columns["logvar"][0].write(to_numpy(logvar).astype(np.float32).tobytes())
            for key in EPISODE_ROWS:
                columns[key][0].write(np.ascontiguousarray(ep[key], ROWS[key]).tobytes())
            starts.append(starts[-1] + len(ep["obs"]))
            used.append(path)
    finally:
        bar.close()
    return starts, used, shapes, skipped
