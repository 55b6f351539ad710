"""Latents for the next World Models stage: every frame's mu and logvar with its actions.

One .npz for a whole data folder, episodes laid end to end:

    mu        float32 (F, D)    mean of q(z | frame), F frames in all
    logvar    float32 (F, D)    log σ² of q(z | frame)
    actions   float32 (F, 3)    the action taken at that frame
    rewards   float32 (F,)      its reward
    dones     bool    (F,)      the episode ended after that step
    starts    int64   (E + 1,)  episode e is rows starts[e]:starts[e+1]
    episodes  str     (E,)      the episode file each came from
    config    str     ()        the model's configuration (JSON)
    checkpoint str    ()        the checkpoint file the model came from (absolute path; "" if none)
    data      str     ()        the data folder (absolute path)

Episode files that cannot be read are passed over with one warning, as training does.

The memory model trains on sequences: z_t = mu_t + exp(logvar_t / 2)·eps (sampled anew each
epoch, as World Models does), a_t, and predicts z_{t+1} within one episode.
"""
import os

import numpy as np

from .atomic import atomic_write, make_folder, temporary_beside
from .backend import to_numpy
from .checkpoint import config_json
from .data.dataset import to_model_input
from .data.episodes import DataError, episode_paths, read_episode, warn_skipped
from .progress import bar as progress_bar


def episode_rows(latents, e):
    """The rows of episode e: dict of arrays."""
    s, t = int(latents["starts"][e]), int(latents["starts"][e + 1])
    return {k: latents[k][s:t] for k in ("mu", "logvar", "actions", "rewards", "dones")}


def check_writable(out):
    """Before any work: `out` can be written (its folder made if need be), or an error saying why."""
    if os.path.isdir(out):
        raise IsADirectoryError(f"--out {out} is a folder; expected the name of a .npz file to write")
    try:
        make_folder(os.path.dirname(out) or os.curdir)
        fd, trial = temporary_beside(out)                           # the file atomic_write will make
        os.close(fd)
        os.unlink(trial)
    except OSError as e:
        raise OSError(e.errno, f"cannot write here: {e.strerror}", out) from None


def encode_folder(model, folder, out, batch_size=100, progress=True, checkpoint=""):
    """Encode every readable episode of `folder` and write the latents file `out` (checked writable first)."""
    check_writable(out)
    paths = episode_paths(folder)
    c, h, w = model.input_shape
    parts = {k: [] for k in ("mu", "logvar", "actions", "rewards", "dones")}
    starts, used, skipped = [0], [], []
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
            for i in range(0, len(ep["obs"]), batch_size):
                mu, logvar = model.encode(to_model_input(ep["obs"][i:i + batch_size], model.device, model.dtype))
                parts["mu"].append(to_numpy(mu).astype(np.float32))
                parts["logvar"].append(to_numpy(logvar).astype(np.float32))
            for k in ("actions", "rewards", "dones"):
                parts[k].append(ep[k])
            starts.append(starts[-1] + len(ep["obs"]))
            used.append(path)
    finally:
        bar.close()
    warn_skipped(skipped, len(paths), folder)
    if not used:
        raise DataError(f"data folder {folder} holds no readable episodes ({len(skipped)} skipped)")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    arrays["actions"] = arrays["actions"].astype(np.float32)
    arrays["rewards"] = arrays["rewards"].astype(np.float32)
    arrays["dones"] = arrays["dones"].astype(bool)
    arrays["starts"] = np.asarray(starts, np.int64)
    arrays["episodes"] = np.array([os.path.basename(p) for p in used])
    arrays["config"] = np.array(config_json(model))
    arrays["checkpoint"] = np.array(os.path.abspath(checkpoint) if checkpoint else "")
    arrays["data"] = np.array(os.path.abspath(folder))
    with atomic_write(out) as f:
        np.savez(f, **arrays)
    return arrays
