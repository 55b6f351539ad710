"""Checkpoints: one .npz with the parameters, the configuration, the optimizer's state, the step
and the noise generator's state.

Layout (every entry a plain array; no pickles):
    param/<name>       each of model.params, e.g. param/encoder.conv1.W
    adam/m/<name>      Adam's first moments      adam/v/<name>   its second moments
    config             JSON: the VAE's constructor arguments
    state              JSON: {"format", "step", "rng", "optimizer", "meta"} (and "scaler", mixed precision's)

Saving writes a temporary file and renames it. Loading checks every name, shape and
dtype against the configuration before anything is returned, so a file that does not
match gives a CheckpointError saying what differs, never a half-loaded model.

A checkpoint never holds NaN or infinite numbers: ``save`` refuses them. Where a run keeps its
checkpoints is the run folder's business (runfolder.py).

This module builds on the model (vae.py) and the optimizer (optim.py); neither knows about it.
"""
import json
from collections import namedtuple

import numpy as np

from ..files.atomic import atomic_write
from ..ops.devices import to_numpy
from ..model.optim import Adam
from ..model.vae import VAE

FORMAT = 1
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")           # an .npz is a zip archive (the second: an empty one)

Checkpoint = namedtuple("Checkpoint", "model optimizer step meta path")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not match what was expected."""


class CheckpointUnreadable(CheckpointError):
    """A file that is not a readable checkpoint at all: truncated, corrupt, or something else."""


def config_json(model):
    """The model's configuration as the JSON text checkpoints (and latent files) carry."""
    return json.dumps(model.config, sort_keys=True)


def _arrays(model, optimizer=None):
    """(the arrays a checkpoint holds, keyed as in the file: param/NAME, adam/NAME; the optimizer's settings)."""
    arrays = {f"param/{k}": to_numpy(v) for k, v in model.params.items()}
    opt_settings = None
    if optimizer is not None:
        opt_settings, moments = optimizer.state()
        arrays.update({f"adam/{k}": to_numpy(v) for k, v in moments.items()})
    return arrays, opt_settings


def not_finite(model, optimizer=None):
    """The first of the model's parameters (then Adam's moments) that holds NaN or an infinity, named as in a
    checkpoint (param/NAME, adam/NAME); None when every number is finite: what save() would refuse."""
    return _first_not_finite(_arrays(model, optimizer)[0])


def _first_not_finite(arrays):
    return next((k for k, a in arrays.items() if not np.isfinite(a).all()), None)


def save(path, model, optimizer=None, step=0, meta=None):
    arrays, opt_settings = _arrays(model, optimizer)
    state = {"format": FORMAT, "step": int(step), "rng": model.rng.bit_generator.state,
             "optimizer": opt_settings, "meta": meta or {}}
    if model.scaler is not None:                    # mixed precision: the loss scale and its count of clean steps
        state["scaler"] = model.scaler.state()
    bad = _first_not_finite(arrays)
    if bad is not None:
        raise CheckpointError(f"{path}: not written: {bad} holds NaN or infinite values")
    arrays["config"] = np.array(config_json(model))
    arrays["state"] = np.array(json.dumps(state))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def read_arrays(path, names=None):
    """Every entry of the .npz (or only `names`), read into memory; a file that is no .npz archive, or
    any damage, becomes a CheckpointError."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file (scratchvae.load takes a run "
                              "folder too)") from None
    if head not in ZIP_MAGIC:
        raise CheckpointUnreadable(f"{path}: not a checkpoint: expected a .npz archive as train-scratch writes "
                                   "(or a safetensors file of weights, as bin/export writes), "
                                   f"got a file that begins with {head!r}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if names is None or k in names}
    except Exception as e:   # BadZipFile, EOFError, ValueError, zlib.error, …: a truncated or corrupt file
        raise CheckpointUnreadable(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                                   f"{type(e).__name__}: {e}") from None


def read_state(path):
    """The checkpoint's state (step, meta, …) alone, without reading its arrays."""
    return _config_and_state(path, read_arrays(path, ("config", "state")))[1]


def _config_and_state(path, arrays):
    """The checkpoint's configuration and state, parsed from their JSON entries."""
    try:
        return json.loads(str(arrays["config"])), json.loads(str(arrays["state"]))
    except (KeyError, ValueError) as e:
        raise CheckpointUnreadable(f"{path}: not a scratchvae checkpoint (no readable config/state: {e})") from None


def check_config(path, config, expect):
    """The configuration agrees with every key of `expect`; else a CheckpointError naming each difference."""
    diff = [f"{k}: checkpoint has {config.get(k)!r}, expected {v!r}" for k, v in expect.items() if config.get(k) != v]
    if diff:
        raise CheckpointError(f"{path}: checkpoint is from another configuration ({'; '.join(diff)})")


def load(path, device="cpu"):
    """Rebuild the model (and the optimizer, if one was saved) from a checkpoint file. (A resume checks the
    configuration against the run's own first: check_config.)"""
    arrays = read_arrays(path)
    config, state = _config_and_state(path, arrays)
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format')}, expected {FORMAT}")
    try:
        model = VAE(**{**config, "device": device})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its configuration does not build a VAE: {e}") from None

    want = {f"param/{k}": v for k, v in model.params.items()}
    have = {k: v for k, v in arrays.items() if k.startswith("param/")}
    problems = [f"missing {k}" for k in sorted(want.keys() - have.keys())]
    problems += [f"unexpected {k}" for k in sorted(have.keys() - want.keys())]
    problems += [f"{k}: expected {want[k].dtype} {tuple(want[k].shape)}, got {have[k].dtype} {tuple(have[k].shape)}"
                 for k in sorted(want.keys() & have.keys())
                 if have[k].shape != want[k].shape or have[k].dtype != want[k].dtype]
    if problems:
        raise CheckpointError(f"{path}: parameters do not match the configuration: {'; '.join(problems)}")

    optimizer = None
    if state.get("optimizer") is not None:
        optimizer = Adam(model.params)
        moments = {k[len("adam/"):]: model.xp.asarray(v) for k, v in arrays.items() if k.startswith("adam/")}
        try:
            optimizer.load_state(state["optimizer"], moments)
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{path}: optimizer state does not match: {e}") from None
    try:
        model.rng.bit_generator.state = state["rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: generator state unreadable: {e}") from None

    if model.scaler is not None and "scaler" in state:
        try:
            model.scaler.load_state(state["scaler"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: loss scaler state unreadable: {e}") from None
    for k, p in model.params.items():          # every check passed: now fill in the parameters
        p[...] = model.xp.asarray(have[f"param/{k}"])
    model.sync_compute()                        # (mixed precision: the float16 weights the layers use)
    return Checkpoint(model, optimizer, int(state.get("step", 0)), state.get("meta", {}), path)
