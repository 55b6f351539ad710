"""Training a VAE on a folder of episodes: the loop behind bin/train-scratch.

What a run folder holds:
    run.json                  the settings of the run
    log.jsonl                 one JSON row per logged step
    checkpoints/ckpt_NNNNNNN.npz   the last few checkpoints (model, Adam, step, generator)
    reconstructions.png, samples.png, traversal.png, loss.png   (rewritten at each checkpoint)

The order of the batches depends only on the seed and the step (epoch e is shuffled by a
generator seeded with (seed, e)), and the checkpoint keeps the model's noise generator
and Adam's state, so a resumed run is bit-identical to one that never stopped.

Inside a step nothing is read back from the device: the step's losses go into a small
device-side buffer, which is read every log_every steps (where a NaN is found and named).
"""
import json
import math
import os
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import Optional

import numpy as np

from . import checkpoint, pictures
from .atomic import atomic_write
from .backend import to_numpy
from .checkpoint import checkpoint_path, checkpoints_in
from .data.dataset import FrameDataset, to_model_input
from .optim import Adam
from .vae import VAE

LOSS_KEYS = ("loss", "recon", "kl", "kl_raw")
# what --resume may change (each change is reported); every other setting stays as the run began
CAN_CHANGE = ("steps", "epochs", "device", "lr", "log_every", "eval_every", "checkpoint_every", "keep", "eval_frames")


class TrainingStopped(Exception):
    """The run stopped early (a signal, or a loss that was not finite); the message says why.
    resume_with: the options that resume it (besides --resume and --out), or None when there is
    no checkpoint to resume from."""

    def __init__(self, message, exit_code, resume_with=None):
        super().__init__(message)
        self.exit_code, self.resume_with = exit_code, resume_with


def epoch_order(seed, epoch, n):
    """The shuffled order of the n training frames in a given epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)


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
    kl_tolerance: float = 0.5           # free bits: each image's KL floored at this × latent_dim
    beta: float = 1.0
    seed: int = 0                       # weights, noise, batch order and the held-out split
    device: str = "cpu"
    dtype: str = "float32"
    heldout: float = 0.1                # fraction of episodes held out
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 250
    keep: int = 3                       # checkpoints kept
    eval_frames: int = 500              # held-out frames the MSE is measured on

    def __post_init__(self):
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give the length of the run as steps or as epochs (one of them)")
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)

    @classmethod
    def default(cls, name):
        """The default of one setting (the command line's help shows it)."""
        return cls.__dataclass_fields__[name].default

    @classmethod
    def saved(cls, out):
        """The settings a run folder's run was started with, read from its run.json: (RunSettings, its
        length in steps as run.json records it, for a run given in epochs too)."""
        path = os.path.join(out, "run.json")
        try:
            with open(path) as f:
                d = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"--resume: {out} holds no run (no run.json)") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not readable JSON ({e})") from None
        length = d.get("steps")                                 # for a run in epochs, the epochs counted out
        d = {f.name: d[f.name] for f in fields(cls) if f.name in d}
        if d.get("epochs") is not None:
            d["steps"] = None
        try:
            return cls(**{**d, "out": out}), length
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: not the settings of a run ({e})") from None

    def resumed(self, given):
        """These settings with the options given again on resuming: those in CAN_CHANGE replace the
        saved ones; any other that differs is a ValueError naming each. Returns (settings, changes),
        changes a dict name → (saved, given) of what really changed."""
        given = {k: v for k, v in given.items() if k in self.__dataclass_fields__ and k != "out"}
        if "data" in given:
            given["data"] = os.path.abspath(given["data"])
        if "dtype" in given:
            given["dtype"] = np.dtype(given["dtype"]).name
        changes = {k: (getattr(self, k), v) for k, v in given.items() if getattr(self, k) != v}
        refused = [f"--{k.replace('_', '-')} ({old} → {new})" for k, (old, new) in changes.items()
                   if k not in CAN_CHANGE]
        if refused:
            raise ValueError(f"--resume continues {self.out} with the settings it was started with, which cannot "
                             f"change: {', '.join(refused)}; start a new run with another --out instead")
        if "steps" in given or "epochs" in given:               # the run's length is one or the other
            given.setdefault("steps", None)
            given.setdefault("epochs", None)
            changes.update({k: (getattr(self, k), given[k]) for k in ("steps", "epochs")
                            if getattr(self, k) != given[k]})
        return replace(self, **given), changes

    def model_config(self, h, w):
        """The VAE arguments these settings fix for h×w frames (what a checkpoint must agree with)."""
        return dict(input_shape=[3, h, w], latent_dim=int(self.latent_dim), kl_tolerance=float(self.kl_tolerance),
                    beta=float(self.beta), dtype=self.dtype)


def read_log(out):
    """The rows of run folder `out`'s log.jsonl ([] before the first). A last line cut short (the
    process killed mid-append) is left out."""
    path = os.path.join(out, "log.jsonl")
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


def say_on_stderr(message, prog="scratchvae"):
    """One line on stderr, above the progress bar if there is one."""
    from tqdm import tqdm
    tqdm.write(f"{prog}: {message}", file=sys.stderr)


class Trainer:
    def __init__(self, settings, resume=False, progress=True, say=say_on_stderr):
        """Train as `settings` (a RunSettings) say; resume: go on from the newest readable checkpoint in
        settings.out (RunSettings.saved and .resumed give the settings to resume with). say(message):
        where the trainer's own messages go (that a signal was heard)."""
        s = self.settings = settings
        self.progress, self.say = progress, say
        # Everything is checked before anything is written into the run folder.
        if os.path.exists(s.out) and not os.path.isdir(s.out):
            raise NotADirectoryError(f"--out {s.out} is a file; expected a run folder (new or holding a run)")
        self.data = FrameDataset(s.data, heldout=s.heldout, seed=s.seed)
        h, w = self.data.size
        existing = checkpoints_in(s.out)
        config = s.model_config(h, w)
        self.unreadable = []                                        # damaged newer checkpoints passed over
        if resume:
            if not existing:
                raise FileNotFoundError(f"--resume: no checkpoint in {s.out}/checkpoints to continue from")
            ck, path, self.unreadable = checkpoint.newest_readable(s.out, device=s.device, expect_config=config)
            for bad, why in self.unreadable:
                warnings.warn(f"{why}; resuming from {path} (step {ck.step}) instead, and keeping the damaged "
                              f"file as {os.path.basename(bad)}.corrupt", stacklevel=2)
            self.model, self.opt, self.step = ck.model, ck.optimizer, ck.step
            if self.opt is None:
                raise checkpoint.CheckpointError(f"{path}: holds no optimizer state to resume with")
            self.opt.lr = float(s.lr)                               # the run's, or an override of it
        else:
            if existing or os.path.exists(os.path.join(s.out, "log.jsonl")):
                raise FileExistsError(f"{s.out} already holds a run; continue it with --resume, "
                                      "or choose another --out")
            self.model = VAE(**config, seed=s.seed, device=s.device)
            self.opt = Adam(self.model.params, lr=s.lr)
            self.step = 0
        self.n_train = self.data.num_frames("train")
        if self.n_train == 0:
            raise ValueError(f"{s.data}: no training frames")
        if s.batch_size > self.n_train:
            raise ValueError(f"batch size {s.batch_size} is more than the {self.n_train} training frames in "
                             f"{s.data}; give --batch-size {self.n_train} or less")
        self.eval_split = "heldout" if self.data.num_frames("heldout") else "train"
        self.eval_key = "heldout_mse" if self.eval_split == "heldout" else "train_mse"
        self.steps_per_epoch = math.ceil(self.n_train / s.batch_size)
        self.steps = int(s.steps) if s.steps is not None else int(s.epochs) * self.steps_per_epoch
        if self.step > self.steps:
            raise ValueError(f"the newest checkpoint is at step {self.step}, past the {self.steps} steps asked for")
        # run.json: the settings as given, with the data folder made absolute, the length in steps, the
        # learning rate the optimizer has, and the split's sizes
        self.run_json = {**asdict(s), "data": os.path.abspath(s.data), "steps": self.steps, "lr": self.opt.lr,
                         "train_frames": self.n_train, "heldout_frames": self.data.num_frames("heldout")}
        self._stop, self._images = None, 0
        self._order_epoch, self._order_cache = None, None

    # ---- data ---------------------------------------------------------------------------------------
    def batch_for(self, step):
        """The training batch of a given step: a function of (seed, step) alone."""
        epoch, i = divmod(step, self.steps_per_epoch)
        order = self._order(epoch)
        pick = order[i * self.settings.batch_size:(i + 1) * self.settings.batch_size]
        self._images += len(pick)                                   # an epoch's last batch may be smaller
        ep_idx, frame_idx = self.data.locate(pick, "train")
        return to_model_input(self.data.gather(ep_idx, frame_idx), self.settings.device, self.model.dtype)

    def _order(self, epoch):
        if self._order_epoch != epoch:
            self._order_cache, self._order_epoch = epoch_order(self.settings.seed, epoch, self.n_train), epoch
        return self._order_cache

    def eval_images(self, n):
        """n frames spread evenly over the held-out set (the training set when nothing is held out:
        eval_split says which), as model input."""
        total = self.data.num_frames(self.eval_split)
        pick = np.linspace(0, total - 1, min(n, total)).astype(int)
        ep_idx, frame_idx = self.data.locate(pick, self.eval_split)
        return to_model_input(self.data.gather(ep_idx, frame_idx), self.settings.device, self.model.dtype)

    def eval_mse(self):
        """Per-pixel mean squared error of reconstructions (from mu) over up to eval_frames frames of the
        eval split; logged as heldout_mse, or as train_mse when nothing is held out."""
        x_all = self.eval_images(self.settings.eval_frames)
        total, count = 0.0, 0
        for i in range(0, len(x_all), self.settings.batch_size):
            x = x_all[i:i + self.settings.batch_size]
            d = self.model.reconstruct(x) - x
            total += float((d * d).sum())
            count += d.size
        return total / count

    # ---- files --------------------------------------------------------------------------------------
    def _log_path(self):
        return os.path.join(self.settings.out, "log.jsonl")

    def read_log(self):
        return read_log(self.settings.out)

    def _write_log(self, rows):
        with atomic_write(self._log_path(), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def save_checkpoint(self):
        """Write this step's checkpoint and pictures; parameters that are not finite stop the run instead."""
        out = self.settings.out
        path = checkpoint_path(out, self.step)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            checkpoint.save(path, self.model, optimizer=self.opt, step=self.step, meta={"settings": self.run_json})
        except checkpoint.CheckpointError as e:                     # NaN or infinite numbers: not written
            raise self._diverged(f"{e} at step {self.step}") from None
        for _, old in checkpoints_in(out)[:-self.settings.keep]:
            os.unlink(old)
        self.write_pictures()
        return path

    def write_pictures(self):
        out = self.settings.out
        x = self.eval_images(64)
        source = "held-out frames" if self.eval_split == "heldout" else "training frames (nothing held out)"
        pictures.reconstructions(self.model, x, os.path.join(out, "reconstructions.png"), self.step, source)
        pictures.prior_samples(self.model, os.path.join(out, "samples.png"), self.step, seed=self.settings.seed)
        pictures.latent_traversal(self.model, x, os.path.join(out, "traversal.png"), self.step)
        rows = self.read_log()
        if rows:
            pictures.loss_curves(rows, os.path.join(out, "loss.png"))

    # ---- the loop -----------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        if self._stop:                          # the second: stop now (files are written atomically)
            good = checkpoints_in(self.settings.out)
            raise TrainingStopped(f"stopped at once by a second {name} during step {self.step + 1}; the newest "
                                  f"checkpoint is {good[-1][1] if good else 'none'}.", 128 + signum,
                                  resume_with="" if good else None)
        self._stop = signum
        self.say(f"{name} received: stopping after this step, with a checkpoint (send it again to stop at once)")

    def run(self):
        os.makedirs(self.settings.out, exist_ok=True)
        for bad, _ in self.unreadable:                              # not picked again as the newest
            os.replace(bad, bad + ".corrupt")
        self.unreadable = []
        with atomic_write(os.path.join(self.settings.out, "run.json"), "w") as f:
            json.dump(self.run_json, f, indent=2)
        rows = [r for r in self.read_log() if r["step"] <= self.step]   # drop rows past the checkpoint
        self._write_log(rows)
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop()
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
        return self.step

    def _loop(self):
        from tqdm import tqdm
        s = self.settings
        self._losses = self.model.xp.zeros((s.log_every, len(LOSS_KEYS)), dtype=np.float64)  # on the device
        self._pending = 0                                           # steps in _losses since the last row
        self._t_log, self._last_ckpt = time.perf_counter(), self.step
        bar = tqdm(total=self.steps, initial=self.step, unit="step", disable=not self.progress, desc="training",
                   dynamic_ncols=True)
        # A diverging run overflows on its way to NaN; the NaN check below names the first bad step, in one
        # line, instead of NumPy warning about each overflow.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                self._steps(bar)
            finally:
                bar.close()

    def _steps(self, bar):
        s = self.settings
        while self.step < self.steps:
            self._step()
            bar.update(1)
            # a row (where the losses are checked finite) before every checkpoint too
            if (self.step % s.log_every == 0 or self.step % s.checkpoint_every == 0 or self.step == self.steps
                    or self._stop):
                row = self._log_row()
                bar.set_postfix(loss=f"{row['loss']:.1f}", recon=f"{row['recon']:.1f}", kl=f"{row['kl']:.2f}",
                                img_s=f"{row['images_per_s']:.0f}", refresh=False)
            self._checkpoint_or_stop()
        if self.step != self._last_ckpt or not checkpoints_in(s.out):
            self.save_checkpoint()

    def _step(self):
        """One optimizer step. Its losses go into the device-side buffer; nothing is read back."""
        out = self.model.loss(self.batch_for(self.step))
        self.model.backward()
        self.opt.step(self.model.grads)
        self._losses[self._pending] = self.model.xp.stack([out[key] for key in LOSS_KEYS])
        self._pending += 1
        self.step += 1

    def _log_row(self):
        """Read the buffered losses (the one read from the device), stop at a NaN, append a log row."""
        n, self._pending = self._pending, 0
        values = to_numpy(self._losses[:n])                         # (n, len(LOSS_KEYS))
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(bad):
            first = self.step - n + int(bad[0]) + 1
            raise self._diverged(f"the loss became {values[bad[0], 0]} at step {first}")
        now = time.perf_counter()
        row = {"step": self.step, "time": round(time.time(), 3),
               **{k: float(v) for k, v in zip(LOSS_KEYS, values.mean(axis=0))},
               "images_per_s": self._images / max(now - self._t_log, 1e-9)}
        self._t_log, self._images = now, 0
        if self.step % self.settings.eval_every == 0 or self.step == self.steps:
            row[self.eval_key] = self.eval_mse()
        with open(self._log_path(), "a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    def _checkpoint_or_stop(self):
        """A checkpoint when one is due; after a signal, a checkpoint and TrainingStopped."""
        s = self.settings
        if self.step % s.checkpoint_every == 0 and self.step != self._last_ckpt:
            self.save_checkpoint()
            self._last_ckpt = self.step
        if self._stop:
            path = self.save_checkpoint() if self.step != self._last_ckpt else checkpoints_in(s.out)[-1][1]
            name = signal.Signals(self._stop).name
            raise TrainingStopped(f"stopped by {name} after step {self.step}; checkpoint {path}.",
                                  128 + self._stop, resume_with="")

    def _diverged(self, what):
        """TrainingStopped for numbers that are no longer finite, naming the newest checkpoint (every
        checkpoint was checked finite before it was written)."""
        good = checkpoints_in(self.settings.out)
        if not good:
            return TrainingStopped(f"{what}; stopping. No checkpoint was written before it; start again with a "
                                   "lower --lr.", 3)
        lr = f"{self.opt.lr / 2:g}"
        return TrainingStopped(f"{what}; stopping. Last good checkpoint: {good[-1][1]} (step {good[-1][0]}); "
                               f"resume from it with a lower learning rate, e.g. --lr {lr}.", 3,
                               resume_with=f"--lr {lr}")
