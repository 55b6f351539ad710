"""Training a VAE on a folder of episodes: the loop behind bin/train-scratch.

The Trainer loops, logs, evaluates and saves; what one step does is run/step.py's (plain, recorded as a
CUDA graph, or sharded over ranks), which frames it takes is run/batches.py's, what to type after a stop
is run/advice.py's, and the rules for the folder it writes into (one writer, what a resume may change,
what counts as a run) are run/runfolder.py's.

The order of the batches depends only on the seed and the step, and the checkpoint keeps the model's
noise generator and Adam's state, so a resumed run is bit-identical to one that never stopped.

Inside a step nothing is read back from the device: the step's losses go into a small device-side
buffer, which is read every log_every steps (where a NaN is found and named).

Under mpiexec several processes (ranks) train one model: each step's batch is the one a single process
would take, every rank trains on its shard of it, and one sum of the gradients joins them (ShardedStep;
scratchvae/run/distributed.py). Rank 0 alone writes the run folder.
"""
import os
import signal
import sys
import time
import warnings
from dataclasses import asdict

import numpy as np

from ..data.dataset import FrameDataset
from ..data.episodes import DataError
from ..files.progress import bar as progress_bar
from ..model.losses import LOSS_KEYS
from ..model.optim import Adam
from ..model.vae import VAE
from ..ops import blas
from ..ops.devices import to_numpy
from ..ops.uploads import Uploader
from . import checkpoint, pictures
from .advice import Advice, TrainingStopped, library_command, lower_lr  # noqa: F401 (the trainer's names)
from .batches import Batches
from .distributed import PeerLost, World
from .runfolder import RunFolder
from .step import step_for


def say_on_stderr(message, prog="scratchvae"):
    """One line on stderr, above the progress bar if there is one."""
    from tqdm import tqdm
    tqdm.write(f"{prog}: {message}", file=sys.stderr)


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
        self.resume, self.progress, self.say = resume, progress, say
        self.world = world = world or World()
        self.writer = world.rank == 0                               # the one rank that writes the folder
        self.folder = RunFolder(s.out)
        self.folder.check_place()
        self.advice = Advice(s, self.folder, command, self.folder.diverged_at(s.lr) if resume else None)
        self.model, self.opt, self.step, self.unreadable = self._start()
        self.replaces = [] if resume else self.folder.leftovers()   # what a run without a checkpoint left
        self._found = self.folder.checkpoints()                     # run() checks nobody wrote since
        self.batches = Batches(self.data, s, world, self.model.dtype, Uploader() if s.device == "gpu" else None)
        self.steps = int(s.steps) if s.steps is not None else int(s.epochs) * self.batches.steps_per_epoch
        if self.step > self.steps:
            raise ValueError(f"the newest checkpoint is at step {self.step}, past the {self.steps} steps asked for")
        # run.json: the settings as given, with the data folder made absolute, the length in steps, the
        # learning rate the optimizer has, the split's sizes, and what the data is (its fingerprint)
        self.run_json = {**asdict(s), "data": os.path.abspath(s.data), "steps": self.steps, "lr": self.opt.lr,
                         "train_frames": self.batches.n_train, "heldout_frames": self.data.num_frames("heldout"),
                         "data_episodes": len(self.data.paths), "data_fingerprint": self.data.fingerprint}
        if self.advice.diverged:                                    # still at the learning rate it diverged at
            self.run_json["diverged"] = self.advice.diverged
        if s.device == "gpu":
            blas.set_tf32(s.tf32)
        self.stepper = step_for(self.model, self.opt, world, graph=not s.no_graph)
        self._stop, self._last_eval, self._best, self._bad_step = None, None, None, None
        self._saved, self._drawn = None, None                       # the steps of this process's newest checkpoint
                                                                    # and of the pictures it drew last

    def _start(self):
        """The data checked, and (model, optimizer, step, damaged newer checkpoints passed over): a new model, or
        the newest readable checkpoint's on --resume."""
        s, world = self.settings, self.world
        if self.resume and not self.folder.holds_run():
            raise self.advice.nothing_to_resume()
        if not self.resume and self.folder.holds_run():
            raise FileExistsError(f"{s.out} already holds a run (newest checkpoint: step "
                                  f"{self.folder.checkpoints()[-1][0]}); continue it with: "
                                  f"{self.advice.command(['--resume', '--out', s.out])}, or choose another --out")
        if self.resume and not os.path.isdir(s.data):
            raise DataError(f"data folder {s.data} does not exist; if the run's data moved, give its new place with "
                            "--data (a folder that holds the same episodes resumes the run)")
        self.data = FrameDataset(s.data, heldout=s.heldout, seed=s.seed)
        n_train = self.data.num_frames("train")
        if n_train == 0:
            raise ValueError(f"{s.data}: no training frames")
        if s.batch_size > n_train:
            raise ValueError(f"batch size {s.batch_size} is more than the {n_train} training frames in "
                             f"{s.data}; give --batch-size {n_train} or less")
        if s.batch_size < world.size:
            raise ValueError(f"batch size {s.batch_size} is less than the {world.size} processes, which need at "
                             f"least an image each; give --batch-size {world.size} or more")
        config = s.model_config(*self.data.size)
        if not self.resume:
            model = VAE(**config, seed=s.seed, device=s.device)
            return model, Adam(model.params, lr=s.lr), 0, []
        ck, unreadable = self.folder.newest_readable(device=s.device)
        for bad, why in unreadable:
            warnings.warn(f"{why}; resuming from {ck.path} (step {ck.step}) instead, and keeping the damaged "
                          f"file as {os.path.basename(bad)}.corrupt", stacklevel=3)
        self.data.check_same(ck.meta.get("settings", {}))
        checkpoint.check_config(ck.path, ck.model.config, config)
        if ck.optimizer is None:
            raise checkpoint.CheckpointError(f"{ck.path}: holds no optimizer state to resume with")
        ck.optimizer.lr = float(s.lr)                               # the run's, or an override of it
        return ck.model, ck.optimizer, ck.step, unreadable

    @property
    def diverged(self):
        return self.advice.diverged

    # ---- the run ----------------------------------------------------------------------------------
    def run(self):
        """Train to the end (or to a signal or a NaN: TrainingStopped), holding the folder's lock (rank 0: the
        other ranks of a job write nothing)."""
        if not self.writer:
            return self.train()
        with self.folder.lock("train-scratch"):
            return self.train()

    def train(self):
        """run() for a caller that holds the folder's lock already (bin/train-scratch takes it before it reads
        the folder's settings)."""
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
        self.folder.write_log([r for r in self.folder.read_log() if r["step"] <= self.step])  # none past the checkpoint
        self.folder.drop_best_after(self.step)
        self._best = self.folder.best()

    def _loop(self):
        s = self.settings
        self._losses = self.model.xp.zeros((s.log_every, len(LOSS_KEYS)), dtype=np.float64)  # on the device
        self._pending, self._images = 0, 0                          # steps and images since the last row
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
            raise TrainingStopped(f"{e}; stopping at step {self.step} ({self.advice.newest()}). Resume with: "
                                  f"{self.advice.resume_again()}", 4, False) from None
        except MemoryError as e:                                    # (numpy's or CuPy's: it says how much)
            raise self.advice.out_of_memory(e, self.step + 1, self.world.alone) from None

    def _step(self):
        """One optimizer step. Its losses go into the device-side buffer; nothing is read back."""
        x, size = self.batches.for_step(self.step)
        out = self.stepper(x, size=size)                            # loss, backward and Adam (step.py)
        self._losses[self._pending] = self.model.xp.stack([out[key] for key in LOSS_KEYS])
        self._pending += 1
        self._images += size
        self.step += 1

    def _row_due(self):
        """A log row after this step: every log_every steps, before every checkpoint, at the end, and (one
        process) after a signal; several ranks agree on a signal at the next row."""
        s, step = self.settings, self.step
        return (step % s.log_every == 0 or step % s.checkpoint_every == 0 or step == self.steps
                or (self.world.alone and bool(self._stop)))

    @property
    def stopping(self):
        """The signal the run stops for after this step (0: none). With several ranks, the one they agreed on at
        the last log row: a signal reaches the ranks at different steps, and all must stop at the same one."""
        return (self._stop or 0) if self.world.alone else self._agreed_stop

    def _log_row(self):
        """Read the buffered losses (the one read from the device), stop at a NaN, append a log row (with
        the eval MSE every eval_every steps, at every checkpoint and at the end). The rows are first summed over
        the ranks (each holds its shards' shares), and a signal any rank heard agreed (a World of one: nothing)."""
        s = self.settings
        n, self._pending = self._pending, 0
        self.world.allreduce(self._losses[:n], "the losses' sum")
        self.world.wait_device("the step's sums")
        self._agreed_stop = self.world.largest(self._stop or 0)
        values = to_numpy(self._losses[:n])                         # (n, len(LOSS_KEYS))
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(bad):
            first = self.step - n + int(bad[0]) + 1
            self._bad_step = first
            raise self._diverged(f"the loss became {values[bad[0], 0]}", first)
        now = time.perf_counter()
        row = {"step": self.step, "time": round(time.time(), 3),
               **{k: float(v) for k, v in zip(LOSS_KEYS, values.mean(axis=0))},
               "images_per_s": self._images / max(now - self._t_log, 1e-9),
               **self.world.sum_share(now - self._t_log)}   # several ranks: their share of the time in the sums
        self._t_log, self._images = now, 0
        if not self.writer:
            return row
        if (self.step % s.eval_every == 0 or self.step % s.checkpoint_every == 0 or self.step == self.steps
                or self.stopping):
            row[self.batches.eval_key] = self.eval_mse()
        self.folder.append_log(row)
        return row

    def eval_mse(self):
        """Per-pixel mean squared error of reconstructions (from mu) over up to eval_frames frames of the
        eval split, a batch at a time; logged as heldout_mse, or as train_mse when nothing is held out."""
        total, count = 0.0, 0
        for x in self.batches.eval_batches():
            d = self.model.reconstruct(x) - x
            total += float((d * d).sum())
            count += d.size
        if not np.isfinite(total):              # (even with finite parameters, as diverged as a NaN loss)
            bad = checkpoint.not_finite(self.model, self.opt)
            on = "held-out MSE" if self.batches.eval_split == "heldout" else "MSE on training frames"
            raise self._diverged(f"{bad} holds NaN or infinite values" if bad else f"the {on} became {total / count}",
                                 self.step, everywhere=self.world.alone)   # (rank 0 alone evaluates)
        self._last_eval = (self.step, total / count)
        return total / count

    # ---- checkpoints and pictures ---------------------------------------------------------------------
    def _checkpoint_or_stop(self):
        """A checkpoint when one is due; after a signal, a checkpoint and TrainingStopped."""
        if self.step % self.settings.checkpoint_every == 0 and self.step != self._last_ckpt:
            self._save()
            self._last_ckpt = self.step
        if self.stopping:
            if self.step != self._last_ckpt:
                self._save()
                self._last_ckpt = self.step
            path = self.folder.checkpoint_path(self._last_ckpt)
            name = signal.Signals(self.stopping).name
            raise TrainingStopped(f"stopped by {name} after step {self.step}; checkpoint {path}. Resume with: "
                                  f"{self.advice.resume_again()}", 128 + self.stopping)

    def _save(self):
        """This step's checkpoint, written by rank 0, once every rank is seen to hold the same parameters (each
        applies the same update to the same sum, so they must; a World of one checks nothing)."""
        if not self.world.same_everywhere(lambda: to_numpy(self.model.flat_params).tobytes(), "the parameters' check"):
            raise TrainingStopped(f"the {self.world.size} processes hold different parameters after step "
                                  f"{self.step}, where the same update of the same sum should leave the same "
                                  f"numbers; stopping without a checkpoint ({self.advice.newest()})", 5)
        if self.writer:
            self.save_checkpoint()

    def save_checkpoint(self):
        """Write this step's checkpoint (the best one too, when its eval MSE is the lowest yet) and the
        pictures; parameters that are not finite stop the run instead."""
        path = self.folder.checkpoint_path(self.step)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        mse = self._last_eval[1] if self._last_eval and self._last_eval[0] == self.step else self.eval_mse()
        meta = {"settings": self.run_json, "eval": {"split": self.batches.eval_split, "mse": mse}}
        try:
            checkpoint.save(path, self.model, optimizer=self.opt, step=self.step, meta=meta)
        except checkpoint.CheckpointError as e:                     # NaN or infinite numbers: not written
            raise self._diverged(str(e), self.step, everywhere=self.world.alone) from None
        self._saved = self.step
        self.folder.prune(self.settings.keep)
        if self._best is None or mse < self._best[1]:
            self.folder.keep_best(path)
            self._best = (self.step, mse)
        self.write_pictures()
        return path

    def write_pictures(self):
        source = "held-out frames" if self.batches.eval_split == "heldout" else "training frames (nothing held out)"
        pictures.write_all(self.settings.out, self.model, self.batches.eval_images(64), self.step, source,
                           seed=self.settings.seed, rows=self.folder.read_log())
        self._drawn = self.step

    def _pictures_behind(self, step):
        """'' when the run's pictures show its newest checkpoint, at `step`; else a clause saying they do not (a
        second signal came between the checkpoint and its pictures)."""
        if self._saved != step or self._drawn == step:
            return ""
        shown = f" but of step {self._drawn}" if self._drawn is not None else ""
        return f" (the run's pictures are not of step {step}{shown}: the resumed run draws them at its next checkpoint)"

    # ---- stops ----------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        alone = self.world.alone
        if self._stop:                          # the second: stop now (files are written atomically)
            good = self.folder.checkpoints()
            if good:
                raise TrainingStopped(f"stopped at once by a second {name} during step {self.step + 1}; the newest "
                                      f"checkpoint is {good[-1][1]}{self._pictures_behind(good[-1][0])}. Resume "
                                      f"with: {self.advice.resume_again()}", 128 + signum, alone)
            raise TrainingStopped(f"stopped at once by a second {name} during step {self.step + 1}, before the "
                                  f"first checkpoint, so there is nothing to resume; start again with: "
                                  f"{self.advice.start_again()}", 128 + signum, alone)
        self._stop = signum
        if alone:
            self.say(f"{name} received: stopping after this step, with a checkpoint (send it again to stop at once)")
        elif self.writer:
            self.say(f"{name} received: stopping at the next log row (the ranks agree there, every "
                     f"{self.settings.log_every} steps), with a checkpoint (send it again to stop at once)")

    def _diverged(self, what, step, everywhere=True):
        """TrainingStopped for numbers that are no longer finite (Advice.diverged_at), recorded in run.json so that
        a later message about this run does not print its learning rate again."""
        stopped = self.advice.diverged_at(what, step, everywhere)
        if self.writer:
            self.run_json["diverged"] = self.advice.diverged
            self.folder.write_settings(self.run_json)
        return stopped
