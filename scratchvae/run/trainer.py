"""Training a VAE on a folder of episodes: the loop behind bin/train-scratch.

What it writes, and the rules for the folder it writes into (one writer, what a resume may
change, what counts as a run), are runfolder.py's.

The order of the batches depends only on the seed and the step (epoch e is shuffled by a
generator seeded with (seed, e)), and the checkpoint keeps the model's noise generator
and Adam's state, so a resumed run is bit-identical to one that never stopped.

Inside a step nothing is read back from the device: the step's losses go into a small
device-side buffer, which is read every log_every steps (where a NaN is found and named).

Under mpiexec several processes (ranks) train one model: each step's batch is the one a single
process would take, every rank trains on its shard of it, and one sum of the gradients joins
them (Trainer._shard_step; scratchvae/run/distributed.py). Rank 0 alone writes the run folder.
"""
import contextlib
import hashlib
import math
import os
import shlex
import signal
import sys
import time
import warnings
from dataclasses import asdict

import numpy as np

from ..ops import blas
from . import checkpoint, pictures
from ..ops.devices import to_numpy
from .distributed import PeerLost, World, shard
from ..data.dataset import FrameDataset, to_model_input
from ..data.episodes import DataError
from .step import CapturedStep, train_step
from ..model.losses import LOSS_KEYS
from ..model.optim import Adam
from ..files.progress import bar as progress_bar
from .runfolder import RunFolder, RunSettings
from ..ops.uploads import Uploader
from ..model.vae import VAE


class TrainingStopped(Exception):
    """The run stopped early (a signal, or a loss that was not finite); the message says why and what
    to type next. everywhere: every rank of a job of several stops alike (False: this rank alone)."""

    def __init__(self, message, exit_code, everywhere=True):
        super().__init__(message)
        self.exit_code, self.everywhere = exit_code, everywhere


def say_on_stderr(message, prog="scratchvae"):
    """One line on stderr, above the progress bar if there is one."""
    from tqdm import tqdm
    tqdm.write(f"{prog}: {message}", file=sys.stderr)


def library_command(options):
    """How a message names the command that does something next, for a Trainer run from Python: the
    tool in bin/ that would (the command line passes its own, cli.command)."""
    return shlex.join(["train-scratch", *(str(o) for o in options)])


def lower_lr(lr):
    """The learning rate a diverged run is told to try: half its own, and no more than the default."""
    return min(lr / 2, RunSettings.default("lr"))


class Trainer:
    def __init__(self, settings, resume=False, progress=True, say=say_on_stderr, command=library_command,
                 world=None):
        """Train as `settings` (a RunSettings) say; resume: go on from the newest readable checkpoint in
        settings.out (RunFolder.read_settings and RunSettings.resumed give the settings to resume with).
        say(message): where the trainer's own messages go (that a signal was heard); command(options):
        the shell command with these options, for messages that say what to type next. world: the ranks
        that train this model together (scratchvae/run/distributed.py; None: this process alone); rank 0
        writes the run folder and evaluates, every rank trains on its shard of each batch.

        Everything is checked here and nothing is written: run() writes, holding the folder's lock."""
        s = self.settings = settings
        self.resume, self.progress, self.say, self.command = resume, progress, say, command
        self.world = world = world or World()
        self.writer = world.rank == 0                               # the one rank that writes the folder
        self.folder = RunFolder(s.out)
        self.folder.check_place()
        self.diverged = self._diverged_before() if resume else None
        if resume and not self.folder.holds_run():
            raise self._nothing_to_resume()
        if not resume and self.folder.holds_run():
            raise FileExistsError(f"{s.out} already holds a run (newest checkpoint: step "
                                  f"{self.folder.checkpoints()[-1][0]}); continue it with: "
                                  f"{command(['--resume', '--out', s.out])}, or choose another --out")
        if resume and not os.path.isdir(s.data):
            raise DataError(f"data folder {s.data} does not exist; if the run's data moved, give its new place with "
                            "--data (a folder that holds the same episodes resumes the run)")
        self.data = FrameDataset(s.data, heldout=s.heldout, seed=s.seed)
        h, w = self.data.size
        config = s.model_config(h, w)
        self.unreadable = []                                        # damaged newer checkpoints passed over
        self.replaces = [] if resume else self.folder.leftovers()   # what a run without a checkpoint left
        if resume:
            ck, self.unreadable = self.folder.newest_readable(device=s.device)
            for bad, why in self.unreadable:
                warnings.warn(f"{why}; resuming from {ck.path} (step {ck.step}) instead, and keeping the damaged "
                              f"file as {os.path.basename(bad)}.corrupt", stacklevel=2)
            self._check_same_data(ck.meta.get("settings", {}))
            checkpoint.check_config(ck.path, ck.model.config, config)
            self.model, self.opt, self.step = ck.model, ck.optimizer, ck.step
            if self.opt is None:
                raise checkpoint.CheckpointError(f"{ck.path}: holds no optimizer state to resume with")
            self.opt.lr = float(s.lr)                               # the run's, or an override of it
        else:
            self.model = VAE(**config, seed=s.seed, device=s.device)
            self.opt = Adam(self.model.params, lr=s.lr)
            self.step = 0
        self._found = self.folder.checkpoints()                     # run() checks nobody wrote since
        self.n_train = self.data.num_frames("train")
        if self.n_train == 0:
            raise ValueError(f"{s.data}: no training frames")
        if s.batch_size > self.n_train:
            raise ValueError(f"batch size {s.batch_size} is more than the {self.n_train} training frames in "
                             f"{s.data}; give --batch-size {self.n_train} or less")
        if s.batch_size < world.size:
            raise ValueError(f"batch size {s.batch_size} is less than the {world.size} processes, which need at "
                             f"least an image each; give --batch-size {world.size} or more")
        self.eval_split = "heldout" if self.data.num_frames("heldout") else "train"
        self.eval_key = "heldout_mse" if self.eval_split == "heldout" else "train_mse"
        self.steps_per_epoch = math.ceil(self.n_train / s.batch_size)
        self.steps = int(s.steps) if s.steps is not None else int(s.epochs) * self.steps_per_epoch
        if self.step > self.steps:
            raise ValueError(f"the newest checkpoint is at step {self.step}, past the {self.steps} steps asked for")
        # run.json: the settings as given, with the data folder made absolute, the length in steps, the
        # learning rate the optimizer has, the split's sizes, and what the data is (its fingerprint)
        self.run_json = {**asdict(s), "data": os.path.abspath(s.data), "steps": self.steps, "lr": self.opt.lr,
                         "train_frames": self.n_train, "heldout_frames": self.data.num_frames("heldout"),
                         "data_episodes": len(self.data.paths), "data_fingerprint": self.data.fingerprint}
        if self.diverged:                                           # still at the learning rate it diverged at
            self.run_json["diverged"] = self.diverged
        self._stop, self._images, self._last_eval, self._best, self._bad_step = None, 0, None, None, None
        self._saved, self._drawn = None, None                       # the steps of this process's newest checkpoint
                                                                    # and of the pictures it drew last
        self.captured = None                                        # GPU: the step as a CUDA graph (graph.py)
        self._upload = None                                         # GPU: the batches' copies (uploads.py)
        if s.device == "gpu":
            self._upload = Uploader()
            blas.set_tf32(s.tf32)
            if not s.no_graph and world.size == 1:              # (several ranks: the sum comes mid-step)
                self.captured = CapturedStep(self.model, self.opt)
        self._order_epoch, self._order_cache = None, None

    def _nothing_to_resume(self):
        """The error for --resume on a folder without a checkpoint, saying what to type instead."""
        s = self.settings
        if not self.folder.leftovers():
            return FileNotFoundError(f"{s.out} holds no run to resume (no checkpoint in "
                                     f"{self.folder.checkpoint_folder})")
        rows = self.folder.read_log()
        at = f" (step {rows[-1]['step']})" if rows else ""
        if self.diverged:
            d = self.diverged
            return FileNotFoundError(f"{s.out} holds a run that stopped before its first checkpoint: {d['what']} at "
                                     f"step {d['step']} with --lr {s.lr:g}, so there is nothing to resume; start it "
                                     f"again with a lower learning rate: {self._start_again()}")
        return FileNotFoundError(f"{s.out} holds a run that stopped before its first checkpoint{at}, so there is "
                                 f"nothing to resume; start it again with: {self._start_again()}")

    def _diverged_before(self):
        """run.json's record of a divergence of this run at the learning rate it has now ({"step", "what", "lr"}),
        or None: then the commands the messages print lower the learning rate (_resume_again, _start_again)."""
        try:
            record = self.folder.read_settings()[1]
        except (OSError, ValueError):
            return None
        d = record.get("diverged")
        return d if isinstance(d, dict) and d.get("lr") == float(self.settings.lr) else None

    def _lower(self):
        """['--lr', a lower one] when the run diverged at the learning rate it has, else []: a printed command
        never repeats the setting a message named as the cause."""
        return ["--lr", lower_lr(self.settings.lr)] if self.diverged else []

    def _resume_again(self):
        """The command that resumes this run (at a lower learning rate when it diverged at this one)."""
        return self.command(["--resume", "--out", self.settings.out, *self._lower()])

    def _start_again(self, **changes):
        """The command that starts this run anew, with `changes` to its settings (and at a lower learning rate
        when it diverged at this one)."""
        lower = {"lr": lower_lr(self.settings.lr)} if self.diverged else {}
        return self.command(self.settings.as_options(**lower, **changes))

    def _check_same_data(self, saved):
        """A resumed run trains on the episodes it began with, wherever they are now: the data's fingerprint
        must be the one the checkpoint recorded."""
        want = saved.get("data_fingerprint")
        if want is None or want == self.data.fingerprint:       # (a checkpoint from before fingerprints: unchecked)
            return
        was = (f"{saved.get('data_episodes')} episodes, "
               f"{saved.get('train_frames', 0) + saved.get('heldout_frames', 0)} frames")
        now = self.data.describe()
        how = ": as many, but other frames (an episode collected again, or changed)" if now == was else ""
        raise DataError(f"{self.settings.data} holds {now}, not the {was} this run was trained on{how}; a resume "
                        "trains on the same episodes (for other data, start a new run with another --out)")

    # ---- data ---------------------------------------------------------------------------------------
    def batch_for(self, step):
        """The training batch of a given step: a function of (seed, step) alone, the step's slice of its
        epoch's order (FrameDataset.order: the batches index_batches gives for that epoch). With several
        ranks, this rank's shard of it (None for an empty one); self.batch_n is the whole batch's size."""
        epoch, i = divmod(step, self.steps_per_epoch)
        order = self._order(epoch)
        pick = order[i * self.settings.batch_size:(i + 1) * self.settings.batch_size]
        self._images += len(pick)                                   # an epoch's last batch may be smaller
        self.batch_n = len(pick)
        lo, hi = shard(len(pick), self.world.rank, self.world.size)
        if hi == lo:                                                # fewer images than ranks: none here
            return None
        ep_idx, frame_idx = self.data.locate(pick[lo:hi], "train")
        return to_model_input(self.data.gather(ep_idx, frame_idx), self.settings.device, self.model.dtype,
                              upload=self._upload)

    def _order(self, epoch):
        if self._order_epoch != epoch:
            self._order_cache, self._order_epoch = self.data.order("train", self.settings.seed, epoch), epoch
        return self._order_cache

    def eval_images(self, n):
        """n frames spread evenly over the held-out set (the training set when nothing is held out:
        eval_split says which), as model input."""
        return to_model_input(self.data.spread(n, self.eval_split), self.settings.device, self.model.dtype)

    def eval_mse(self):
        """Per-pixel mean squared error of reconstructions (from mu) over up to eval_frames frames of the
        eval split, read a batch at a time (memory holds one batch, whatever eval_frames is); logged as
        heldout_mse, or as train_mse when nothing is held out."""
        numbers = self.data.spread_numbers(self.settings.eval_frames, self.eval_split)
        total, count = 0.0, 0
        for i in range(0, len(numbers), self.settings.batch_size):
            frames = self.data.gather(*self.data.locate(numbers[i:i + self.settings.batch_size], self.eval_split))
            x = to_model_input(frames, self.settings.device, self.model.dtype)
            d = self.model.reconstruct(x) - x
            total += float((d * d).sum())
            count += d.size
        if not math.isfinite(total):            # (even with finite parameters, as diverged as a NaN loss)
            bad = checkpoint.not_finite(self.model, self.opt)
            on = "held-out MSE" if self.eval_split == "heldout" else "MSE on training frames"
            raise self._diverged(f"{bad} holds NaN or infinite values" if bad else f"the {on} became {total / count}",
                                 self.step, everywhere=self.world.size == 1)   # (rank 0 alone evaluates)
        self._last_eval = (self.step, total / count)
        return total / count

    # ---- files --------------------------------------------------------------------------------------
    def read_log(self):
        return self.folder.read_log()

    def save_checkpoint(self):
        """Write this step's checkpoint (the best one too, when its eval MSE is the lowest yet) and the
        pictures; parameters that are not finite stop the run instead."""
        path = self.folder.checkpoint_path(self.step)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mse = self._last_eval[1] if self._last_eval and self._last_eval[0] == self.step else self.eval_mse()
        meta = {"settings": self.run_json, "eval": {"split": self.eval_split, "mse": mse}}
        try:
            checkpoint.save(path, self.model, optimizer=self.opt, step=self.step, meta=meta)
        except checkpoint.CheckpointError as e:                     # NaN or infinite numbers: not written
            raise self._diverged(str(e), self.step, everywhere=self.world.size == 1) from None
        self._saved = self.step
        self.folder.prune(self.settings.keep)
        if self._best is None or mse < self._best[1]:
            self.folder.keep_best(path)
            self._best = (self.step, mse)
        self.write_pictures()
        return path

    def _save(self):
        """This step's checkpoint, written by rank 0. With several ranks, first a check that every rank holds the
        same parameters (each applies the same update to the same sum, so they must), all ranks taking part."""
        if self.world.size > 1:
            digest = hashlib.sha256(to_numpy(self.model.flat_params).tobytes()).hexdigest()
            if len(set(self.world.gather(digest, "the parameters' check"))) > 1:
                raise TrainingStopped(f"the {self.world.size} processes hold different parameters after step "
                                      f"{self.step}, where the same update of the same sum should leave the same "
                                      f"numbers; stopping without a checkpoint ({self._newest()})", 5)
        if self.writer:
            self.save_checkpoint()

    def _newest(self):
        """'the newest checkpoint is PATH', or that there is none yet: what a message that stops the run says."""
        good = self.folder.checkpoints()
        return f"the newest checkpoint is {good[-1][1]}" if good else "there is no checkpoint yet"

    def write_pictures(self):
        source = "held-out frames" if self.eval_split == "heldout" else "training frames (nothing held out)"
        pictures.write_all(self.settings.out, self.model, self.eval_images(64), self.step, source,
                           seed=self.settings.seed, rows=self.read_log())
        self._drawn = self.step

    def _pictures_behind(self, step):
        """'' when the run's pictures show its newest checkpoint, at `step`; else a clause saying they do not (a
        second signal came between the checkpoint and its pictures)."""
        if self._saved != step or self._drawn == step:
            return ""
        shown = f" but of step {self._drawn}" if self._drawn is not None else ""
        return f" (the run's pictures are not of step {step}{shown}: the resumed run draws them at its next checkpoint)"

    # ---- the loop -----------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        alone = self.world.size == 1
        if self._stop:                          # the second: stop now (files are written atomically)
            good = self.folder.checkpoints()
            s = self.settings
            if good:
                raise TrainingStopped(f"stopped at once by a second {name} during step {self.step + 1}; the newest "
                                      f"checkpoint is {good[-1][1]}{self._pictures_behind(good[-1][0])}. Resume "
                                      f"with: {self._resume_again()}", 128 + signum, alone)
            raise TrainingStopped(f"stopped at once by a second {name} during step {self.step + 1}, before the "
                                  f"first checkpoint, so there is nothing to resume; start again with: "
                                  f"{self._start_again()}", 128 + signum, alone)
        self._stop = signum
        if alone:
            self.say(f"{name} received: stopping after this step, with a checkpoint (send it again to stop at once)")
        elif self.writer:
            self.say(f"{name} received: stopping at the next log row (the ranks agree there, every "
                     f"{self.settings.log_every} steps), with a checkpoint (send it again to stop at once)")

    def run(self):
        """Train to the end (or to a signal or a NaN: TrainingStopped), holding the folder's lock (rank 0: the
        other ranks of a job write nothing)."""
        with self.folder.lock("train-scratch") if self.writer else contextlib.nullcontext():
            if self.writer:
                self._prepare_folder()
            old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                self._loop()
            finally:
                for s, h in old_handlers.items():
                    signal.signal(s, h)
        return self.step

    def _prepare_folder(self):
        """The folder as the run starts: checked unchanged since it was read, a killed writer's temporaries
        and a stopped start's leftovers gone, the settings written, the log cut back to the checkpoint."""
        if self.folder.checkpoints() != self._found:
            raise FileExistsError(f"{self.settings.out} changed since it was read: another process wrote a "
                                  "checkpoint into it")
        self.folder.remove_temporaries()                            # a killed writer's
        if not self.resume:
            self.folder.remove_leftovers()
        for bad, _ in self.unreadable:                              # not picked again as the newest
            os.replace(bad, bad + ".corrupt")
        self.unreadable = []
        self.folder.write_settings(self.run_json)
        self.folder.write_log([r for r in self.read_log() if r["step"] <= self.step])   # none past the checkpoint
        self.folder.drop_best_after(self.step)
        self._best = self.folder.best()

    def _loop(self):
        s = self.settings
        self._losses = self.model.xp.zeros((s.log_every, len(LOSS_KEYS)), dtype=np.float64)  # on the device
        self._pending = 0                                           # steps in _losses since the last row
        self._t_log, self._last_ckpt, self._agreed_stop = time.perf_counter(), self.step, 0
        bar = progress_bar(self.steps, "training", "step", enabled=self.progress and self.writer, initial=self.step)
        # A diverging run overflows on its way to NaN; the NaN check below names the first bad step, in one
        # line, instead of NumPy warning about each overflow.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                self._steps(bar)
            finally:
                if self._bad_step is not None:                      # the bar ends where the message says
                    bar.n = self._bad_step
                bar.close()

    @property
    def stopping(self):
        """The signal the run stops for after this step (0: none). With several ranks, the one they agreed on at
        the last log row: a signal reaches the ranks at different steps, and all must stop at the same one."""
        return (self._stop or 0) if self.world.size == 1 else self._agreed_stop

    def _steps(self, bar):
        try:
            while self.step < self.steps:
                self._step()
                bar.update(1)
                due = self._row_due()
                if due:                                             # (where the losses are checked finite)
                    row = self._log_row()
                    bar.set_postfix(loss=f"{row['loss']:.1f}", recon=f"{row['recon']:.1f}", kl=f"{row['kl']:.2f}",
                                    img_s=f"{row['images_per_s']:.0f}", refresh=False)
                self._checkpoint_or_stop()
                if due:                 # the next row's rate counts training alone, not this evaluation or checkpoint
                    self._t_log = time.perf_counter()
            if self.step != self._last_ckpt:
                self._save()
            elif self.writer and not self.folder.checkpoints():
                self.save_checkpoint()
        except PeerLost as e:                                       # another rank ended or hangs
            raise TrainingStopped(f"{e}; stopping at step {self.step} ({self._newest()}). Resume with: "
                                  f"{self._resume_again()}", 4, False) from None
        except MemoryError as e:                                    # (numpy's or CuPy's: it says how much)
            raise self._out_of_memory(e) from None

    def _row_due(self):
        """A log row after this step: every log_every steps, before every checkpoint, at the end, and (one
        process) after a signal; several ranks agree on a signal at the next row."""
        s, step = self.settings, self.step
        return (step % s.log_every == 0 or step % s.checkpoint_every == 0 or step == self.steps
                or (self.world.size == 1 and bool(self._stop)))

    def _step(self):
        """One optimizer step. Its losses go into the device-side buffer; nothing is read back."""
        x = self.batch_for(self.step)
        if self.world.size > 1:
            terms = self._shard_step(x)                             # this rank's shard, then the sum
        else:
            if self.captured is not None:
                out = self.captured(x)                              # loss, backward and Adam, replayed
            else:
                out = train_step(self.model, self.opt, x)
            terms = self.model.xp.stack([out[key] for key in LOSS_KEYS])
        self._losses[self._pending] = terms
        self._pending += 1
        self.step += 1

    def _shard_step(self, x):
        """One step of a job of several ranks (scratchvae/run/distributed.py): the loss and backward of this rank's
        shard x of the batch, its gradient weighted by its share n_r/B, the sum over the ranks (then the whole
        batch's gradient, on every rank), and Adam. Returns the shard's loss terms, weighted alike (the next
        log row sums them over the ranks)."""
        model, n = self.model, self.batch_n
        eps = model.sample_eps(n)                                   # (B, D): the whole batch's, as one process draws it
        lo, hi = shard(n, self.world.rank, self.world.size)
        if x is None:                                               # an empty shard adds nothing to the sum
            model.flat_grads[...] = 0
            terms = model.xp.zeros(len(LOSS_KEYS), np.float64)
        else:
            out = model.loss(x, eps[lo:hi])
            model.backward()
            share = (hi - lo) / n                                   # n_r / B
            model.flat_grads *= share                               # (1/B) Σ_{i in shard} ∂ℓ_i/∂θ
            terms = model.xp.stack([out[key] for key in LOSS_KEYS]) * share
        self.world.allreduce(model.flat_grads)                      # Σ_r: ∂L/∂θ of the whole batch
        self.opt.step(model.grad_buffers)
        return terms

    def _log_row(self):
        """Read the buffered losses (the one read from the device), stop at a NaN, append a log row (with
        the eval MSE every eval_every steps, at every checkpoint and at the end). With several ranks the
        rows are first summed over them (each holds its shards' shares), and a signal any rank heard agreed."""
        s = self.settings
        n, self._pending = self._pending, 0
        if self.world.size > 1:
            self.world.allreduce(self._losses[:n], "the losses' sum")
            self.world.wait_device("the step's sums")
            self._agreed_stop = self.world.any(self._stop or 0)
        values = to_numpy(self._losses[:n])                         # (n, len(LOSS_KEYS))
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(bad):
            first = self.step - n + int(bad[0]) + 1
            self._bad_step = first
            raise self._diverged(f"the loss became {values[bad[0], 0]}", first)
        now = time.perf_counter()
        row = {"step": self.step, "time": round(time.time(), 3),
               **{k: float(v) for k, v in zip(LOSS_KEYS, values.mean(axis=0))},
               "images_per_s": self._images / max(now - self._t_log, 1e-9)}
        if self.world.size > 1:             # this rank's share of the time in the sums (with waiting for the others)
            row["allreduce_share"] = self.world.sum_seconds / max(now - self._t_log, 1e-9)
            self.world.sum_seconds = 0.0
        self._t_log, self._images = now, 0
        if not self.writer:
            return row
        if (self.step % s.eval_every == 0 or self.step % s.checkpoint_every == 0 or self.step == self.steps
                or self.stopping):
            row[self.eval_key] = self.eval_mse()
        self.folder.append_log(row)
        return row

    def _checkpoint_or_stop(self):
        """A checkpoint when one is due; after a signal, a checkpoint and TrainingStopped."""
        s = self.settings
        if self.step % s.checkpoint_every == 0 and self.step != self._last_ckpt:
            self._save()
            self._last_ckpt = self.step
        if self.stopping:
            if self.step != self._last_ckpt:
                self._save()
                self._last_ckpt = self.step
            path = self.folder.checkpoint_path(self._last_ckpt)
            name = signal.Signals(self.stopping).name
            raise TrainingStopped(f"stopped by {name} after step {self.step}; checkpoint {path}. Resume with: "
                                  f"{self._resume_again()}", 128 + self.stopping)

    def _out_of_memory(self, e):
        """TrainingStopped (exit status 2) for a step that ran out of memory: what to ask for instead."""
        s = self.settings
        what = f"out of memory in step {self.step + 1} at --batch-size {s.batch_size} ({' '.join(str(e).split())})"
        if not self.folder.checkpoints():
            return TrainingStopped(f"{what}; there is no checkpoint yet; start again with a smaller batch: "
                                   f"{self._start_again(batch_size=max(1, s.batch_size // 2))}", 2,
                                   self.world.size == 1)
        return TrainingStopped(f"{what}; {self._newest()}. A run keeps its batch size: resume it where there is more "
                               f"memory ({self._resume_again()}), or start a new run with a smaller --batch-size and "
                               "another --out", 2, self.world.size == 1)

    def _diverged(self, what, step, everywhere=True):
        """TrainingStopped for numbers that are no longer finite (`what`, first seen at `step`), naming the newest
        checkpoint (every checkpoint was checked finite before it was written) and what to type next. run.json
        records it, so that a later message about this run does not print its learning rate again."""
        self.diverged = {"step": step, "what": what, "lr": float(self.settings.lr)}
        if self.writer:
            self.run_json["diverged"] = self.diverged
            self.folder.write_settings(self.run_json)
        what = f"{what} at step {step}"
        good = self.folder.checkpoints()
        if not good:
            return TrainingStopped(f"{what}; stopping. No checkpoint was written before it; start again with a "
                                   f"lower learning rate: {self._start_again()}", 3, everywhere)
        return TrainingStopped(f"{what}; stopping. Last good checkpoint: {good[-1][1]} (step {good[-1][0]}); "
                               f"resume from it with a lower learning rate: {self._resume_again()}", 3, everywhere)
