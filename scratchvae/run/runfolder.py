"""The run folder: what a training run writes, and every rule about it, in one place.

    RUN/run.json                        the run's settings (RunSettings) and what its data was
    RUN/log.jsonl                       one JSON row per logged step
    RUN/checkpoints/ckpt_NNNNNNN.npz    the newest `keep` checkpoints, NNNNNNN the step
    RUN/checkpoints/best.npz            the checkpoint with the lowest held-out MSE so far
    RUN/reconstructions.png, samples.png, traversal.png, loss.png   the newest checkpoint's pictures
    RUN/.lock                           held by the process that writes the run (scratchvae/files/lock.py)
    RUN/events.out.tfevents.*           with --tensorboard: the curves and pictures for TensorBoard (board.py)

The rules:
  * A folder holds a run when it holds a checkpoint: only then is there something to resume.
    A run that stopped before its first checkpoint (a NaN, a second Ctrl-C, a full disk) leaves
    its run.json and log.jsonl to be read; a new start in the folder replaces them.
  * One writer at a time: a process writes into the folder only while it holds the lock.
  * Temporary files (every file is written under a temporary name, then renamed) left by a
    process that was killed mid-write are removed by the next writer.
  * A resume continues the run with the settings it was started with: those in CAN_CHANGE may
    be given anew; the data folder may move, if it still holds the same episodes (checked by
    the data's fingerprint, which run.json and every checkpoint record).
"""
import glob
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, fields, replace
from typing import Optional

import numpy as np

from . import checkpoint, statedict
from ..files.atomic import atomic_write, remove_temporaries
from .checkpoint import CheckpointError, CheckpointUnreadable
from ..files.lock import locked
from ..model.vae import DEFAULT_DECODER, DEFAULT_ENCODER

CKPT_RE = re.compile(r"ckpt_(\d+)\.npz$")
EVENTS = "events.out.tfevents.*"
BEST = "best.npz"
PICTURES = ("reconstructions.png", "samples.png", "traversal.png", "loss.png")
# what --resume may change (each change is said); every other setting stays as the run began
CAN_CHANGE = ("steps", "epochs", "lr", "device", "tf32", "precision", "readers", "no_graph", "log_every",
              "eval_every", "checkpoint_every", "keep", "eval_frames", "tensorboard")


MAX_READERS = 64                        # train-scratch --readers: reader processes at most
PRECISIONS = ("fp32", "tf32", "fp16")   # train-scratch --precision: how a step's numbers are stored and multiplied
CONVOLUTIONS = len(DEFAULT_ENCODER)     # the World Models encoder's convolutions (as many transposed in the decoder)
WORDS = {4: "four"}                     # how the messages say their number


def parse_channels(text):
    """'32,64,128,256' → (32, 64, 128, 256): the encoder convolutions' output channels, each at least 1."""
    try:
        c = tuple(int(v) for v in str(text).split(","))
    except ValueError:
        c = ()
    if len(c) != CONVOLUTIONS or min(c) < 1:
        example = ",".join(str(ch) for ch, _, _ in DEFAULT_ENCODER)
        raise ValueError(f"channels must be {WORDS.get(CONVOLUTIONS, CONVOLUTIONS)} whole numbers of at least 1, "
                         f"separated by commas (the encoder's convolutions, e.g. {example}), got {text!r}")
    return c


@dataclass(frozen=True)
class RunSettings:
    """Everything a run is given, once: the command line builds it, the Trainer reads it, and it is
    written to run.json and into every checkpoint. The length is `steps` or `epochs`, one of them."""
    data: str                           # folder of episode files
    out: str                            # run folder
    steps: Optional[int] = None         # optimizer steps in all …
    epochs: Optional[int] = None        # … or passes over the training frames
    batch_size: int = 100
    lr: float = 1e-3
    latent_dim: int = 32
    # the output channels of the encoder's four convolutions (32,64,128,256); the decoder's first three take
    # them in reverse
    channels: str = ",".join(str(ch) for ch, _, _ in DEFAULT_ENCODER)
    dense_size: int = 1024              # the decoder's dense layer: the channels of its 1×1 (h0×w0) image
    kl_tolerance: float = 0.5           # free bits: each image's KL floored at this × latent_dim
    beta: float = 1.0
    seed: int = 0                       # weights, noise, batch order and the held-out split
    device: str = "cpu"
    tf32: bool = False                  # the same as precision "tf32" (read as that, and then False)
    precision: str = "fp32"             # fp32; tf32: GPU float32 products on TF32 tensor cores (ops/blas.py); fp16:
                                        # mixed precision, float16 layers on float32 weights (docs/precision.md)
    no_graph: bool = False              # GPU: launch the step kernel by kernel, not as a CUDA graph (step.py)
    dtype: str = "float32"
    heldout: float = 0.1                # fraction of episodes held out
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 250
    keep: int = 3                       # checkpoints kept
    eval_frames: int = 500              # held-out frames the MSE is measured on
    readers: int = 0                    # processes that read each batch's frames together (0: the feed's thread)
    tensorboard: bool = False           # TensorBoard's event files in the run folder too (run/board.py)

    def __post_init__(self):
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give the length of the run as steps or as epochs (one of them)")
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        object.__setattr__(self, "channels", ",".join(str(c) for c in parse_channels(self.channels)))
        if not 0 <= self.readers <= MAX_READERS:
            raise ValueError(f"--readers must be 0 to {MAX_READERS} processes, got {self.readers}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.tf32:                                           # --tf32: another name for --precision tf32
            if self.precision not in ("fp32", "tf32"):
                raise ValueError(f"--tf32 is --precision tf32, and --precision {self.precision} was given too; "
                                 "give one of them")
            object.__setattr__(self, "precision", "tf32")
            object.__setattr__(self, "tf32", False)
        if self.precision == "fp16" and self.dtype != "float32":
            raise ValueError(f"--precision fp16 keeps float32 weights under float16 layers; it does not go with "
                             f"--dtype {self.dtype}")

    @classmethod
    def default(cls, name):
        """The default of one setting (the command line's help shows it)."""
        return cls.__dataclass_fields__[name].default

    def as_options(self, **changes):
        """The command-line options that start this run anew (with `changes`): the data, the folder, the
        length, and every setting that is not its default."""
        s = replace(self, **changes)
        options = ["--data", s.data, "--out", s.out]
        options += ["--steps", s.steps] if s.steps is not None else ["--epochs", s.epochs]
        for f in fields(s):
            value = getattr(s, f.name)
            if f.name in ("data", "out", "steps", "epochs") or value == f.default:
                continue
            options += ["--" + f.name.replace("_", "-")] + ([] if isinstance(value, bool) else [value])
        return options

    def resumed(self, given):
        """These settings with the options given again on resuming: those in CAN_CHANGE replace the
        saved ones, and so may the data folder (the Trainer checks that it holds the same episodes);
        any other that differs is a ValueError naming each. Returns (settings, changes), changes a
        dict name → (saved, given) of what really changed."""
        given = {k: v for k, v in given.items() if k in self.__dataclass_fields__ and k != "out"}
        if "data" in given:
            given["data"] = os.path.abspath(given["data"])
        if "dtype" in given:
            given["dtype"] = np.dtype(given["dtype"]).name
        changes = {k: (getattr(self, k), v) for k, v in given.items() if getattr(self, k) != v}
        refused = [f"--{k.replace('_', '-')} ({old} → {new})" for k, (old, new) in changes.items()
                   if k not in CAN_CHANGE + ("data",)]
        if refused:
            raise ValueError(f"--resume continues {self.out} with the settings it was started with, which cannot "
                             f"change: {', '.join(refused)}; start a new run with another --out instead")
        if "steps" in given or "epochs" in given:               # the run's length is one or the other
            given.setdefault("steps", None)
            given.setdefault("epochs", None)
            changes.update({k: (getattr(self, k), given[k]) for k in ("steps", "epochs")
                            if getattr(self, k) != given[k]})
        new = replace(self, **given)
        if (self.precision == "fp16") != (new.precision == "fp16"):
            raise ValueError(f"--resume cannot change --precision {self.precision} to {new.precision}: float16 "
                             "layers are part of the model a checkpoint holds; start a new run with another --out")
        if "tf32" in changes:                                   # (said as what it is: a change of precision)
            del changes["tf32"]
            if new.precision != self.precision:
                changes["precision"] = (self.precision, new.precision)
        return new, changes

    def model_config(self, c, h, w):
        """The VAE arguments these settings fix for frames of c channels, h×w (what a checkpoint must agree with):
        the World Models architecture (vae.py's default kernels and strides) with these widths, the decoder's
        taking the encoder's in reverse and ending in the frames' c."""
        widths = parse_channels(self.channels)
        encoder = [[ch, k, s] for ch, (_, k, s) in zip(widths, DEFAULT_ENCODER)]
        decoder = [[ch, k, s] for ch, (_, k, s) in zip((*widths[-2::-1], c), DEFAULT_DECODER)]
        return dict(input_shape=[c, h, w], latent_dim=int(self.latent_dim), kl_tolerance=float(self.kl_tolerance),
                    beta=float(self.beta), dtype=self.dtype, encoder=encoder, decoder=decoder,
                    dense_size=int(self.dense_size),
                    **({"compute_dtype": "float16"} if self.precision == "fp16" else {}))


class RunFolder:
    """One run folder on disk (it need not exist yet): its files, and the rules of the module docstring."""

    def __init__(self, path):
        self.path = path

    def file(self, name):
        return os.path.join(self.path, name)

    # ---- what the folder holds ---------------------------------------------------------------------
    def check_place(self):
        """The folder can be a run folder: it is not a file."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise NotADirectoryError(f"--out {self.path} is a file; expected a run folder (new or holding a run)")

    @property
    def checkpoint_folder(self):
        return os.path.join(self.path, "checkpoints")

    def checkpoints(self):
        """[(step, path)] of the run's checkpoints, oldest first (readable or not)."""
        found = []
        for path in glob.glob(os.path.join(self.checkpoint_folder, "ckpt_*.npz")):
            m = CKPT_RE.search(path)
            if m:
                found.append((int(m.group(1)), path))
        return sorted(found)

    def holds_run(self):
        """True when there is a run to resume: a checkpoint (the one definition of 'holds a run')."""
        return bool(self.checkpoints())

    def leftovers(self):
        """The files of a run that stopped before its first checkpoint, which a new start replaces
        ([] when the folder holds a run: then nothing is replaced)."""
        if self.holds_run():
            return []
        names = ("run.json", "log.jsonl", *PICTURES, os.path.join("checkpoints", BEST))
        return [name for name in names if os.path.exists(self.file(name))] + self.event_files()

    def event_files(self):
        """The names of TensorBoard's event files in the folder (board.py), in the order TensorBoard reads them."""
        return sorted(os.path.basename(p) for p in glob.glob(self.file(EVENTS)))

    def checkpoint_path(self, step):
        return os.path.join(self.checkpoint_folder, f"ckpt_{int(step):07d}.npz")

    @property
    def best_path(self):
        return os.path.join(self.checkpoint_folder, BEST)

    # ---- writing: only while holding the lock ---------------------------------------------------------
    def lock(self, tool):
        """The folder's lock (made if need be): with folder.lock("train-scratch"): …"""
        return locked(self.path, tool)

    def remove_temporaries(self):
        """Files left under their temporary names by a writer killed mid-write. Call with the lock held."""
        for folder in (self.path, self.checkpoint_folder):
            remove_temporaries(folder)

    def remove_leftovers(self):
        """Remove what a run that never reached a checkpoint left. Call with the lock held."""
        for name in self.leftovers():
            os.unlink(self.file(name))

    # ---- settings and log ---------------------------------------------------------------------------
    def read_settings(self):
        """(RunSettings, record): the settings the folder's run was started with, and all of run.json
        (which adds the length in steps, the split's sizes and the data's fingerprint)."""
        path = self.file("run.json")
        try:
            with open(path) as f:
                record = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path} holds no run (no run.json)") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not readable JSON ({e})") from None
        d = {f.name: record[f.name] for f in fields(RunSettings) if f.name in record}
        if d.get("epochs") is not None:                         # run.json counts epochs out in steps too
            d["steps"] = None
        try:
            return RunSettings(**{**d, "out": self.path}), record
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: not the settings of a run ({e})") from None

    def diverged_at(self, lr):
        """run.json's record of a divergence of this run at learning rate lr ({"step", "what", "lr"}), or None:
        then the commands the messages print lower the learning rate (run/advice.py)."""
        try:
            record = self.read_settings()[1]
        except (OSError, ValueError):
            return None
        d = record.get("diverged")
        return d if isinstance(d, dict) and d.get("lr") == float(lr) else None

    def write_settings(self, record):
        with atomic_write(self.file("run.json"), "w") as f:
            json.dump(record, f, indent=2)

    def read_log(self):
        """The rows of log.jsonl ([] before the first). A last line cut short (the process killed
        mid-append) is left out."""
        path = self.file("log.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            lines = [line for line in f if line.strip()]
        rows = []
        for i, line in enumerate(lines):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if i != len(lines) - 1:
                    raise ValueError(f"{path}: line {i + 1} is not JSON") from None
        return rows

    def write_log(self, rows):
        with atomic_write(self.file("log.jsonl"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def append_log(self, row):
        with open(self.file("log.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")

    # ---- checkpoints --------------------------------------------------------------------------------
    def newest_readable(self, device="cpu"):
        """Load the newest checkpoint that can be read: (Checkpoint, unreadable), unreadable the
        [(path, message)] of newer files that were truncated or corrupt and passed over."""
        found = self.checkpoints()
        if not found:
            raise CheckpointError(f"{self.path} holds no checkpoint (a run folder keeps them in "
                                  f"{self.checkpoint_folder})")
        unreadable = []
        for _, path in reversed(found):
            try:
                return checkpoint.load(path, device), unreadable
            except CheckpointUnreadable as e:
                unreadable.append((path, str(e)))
        raise CheckpointUnreadable(f"none of the {len(found)} checkpoints in {self.path} is readable; "
                                   f"newest: {unreadable[0][1]}")

    def prune(self, keep):
        """Keep the newest `keep` checkpoints (best.npz is a link of its own, and stays)."""
        for _, old in self.checkpoints()[:-keep]:
            os.unlink(old)

    def best(self):
        """(step, mse) of best.npz, or None when there is none (or it cannot be read)."""
        try:
            state = checkpoint.read_state(self.best_path)
            return int(state["step"]), float(state["meta"]["eval"]["mse"])
        except (CheckpointError, KeyError, TypeError, ValueError):
            return None

    def keep_best(self, path):
        """Make checkpoint `path` the best one: best.npz becomes a second name of the same file (a copy
        where the file system has no hard links). Call with the lock held."""
        tmp = os.path.join(self.checkpoint_folder, f".{BEST}.new.tmp")
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, self.best_path)

    def drop_best_after(self, step):
        """Remove best.npz when it is from past `step` (a resume from an earlier checkpoint rewrites
        that stretch of the run, as it drops the log's rows past it)."""
        best = self.best()
        if (best is not None and best[0] > step) or (best is None and os.path.exists(self.best_path)):
            os.unlink(self.best_path)


def load(path, device="cpu", best=False):
    """A trained model from a checkpoint file or a run folder: a Checkpoint (model, optimizer, step,
    meta, path). For a run folder, its newest readable checkpoint (a damaged newer one is passed over
    with a warning), or with best=True the one with the lowest held-out MSE. A safetensors file of weights in
    PyTorch's names and layouts (bin/export's, or PyTorch's own) gives the model alone (run/statedict.py)."""
    if os.path.isdir(path):
        folder = RunFolder(path)
        if best:
            if not os.path.exists(folder.best_path):
                raise CheckpointError(f"{path} has no best checkpoint ({folder.best_path}): it is written with "
                                      "the run's first checkpoint, by training with this version")
            return checkpoint.load(folder.best_path, device)
        ck, unreadable = folder.newest_readable(device)
        for bad, why in unreadable:
            warnings.warn(f"{why}; using {ck.path} (step {ck.step}) instead", stacklevel=2)
        return ck
    if best:
        raise CheckpointError(f"best: expected a run folder, got the file {path}")
    if statedict.is_safetensors(path):
        return statedict.read(path, device)
    return checkpoint.load(path, device)

