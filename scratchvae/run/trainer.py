"""Training a VAE on a folder of episodes: the loop behind bin/train-scratch.

The Trainer only loops, logs, evaluates and saves. Around it: run/start.py checks everything and makes the
model (or reads the checkpoint it resumes), run/step.py does one step (plain, recorded as a CUDA graph, or
sharded over ranks), run/batches.py picks its frames, run/losslog.py makes the log rows, run/writer.py
writes the folder, and run/advice.py says what to type after a stop.

The order of the batches depends only on the seed and the step, and the checkpoint keeps the model's
noise generator and Adam's state, so a resumed run is bit-identical to one that never stopped. Under
mpiexec several processes (ranks) train one model, each on its shard of every batch (ShardedStep;
run/distributed.py); rank 0 alone writes the run folder and evaluates.
"""
import signal

import numpy as np

from ..files.progress import bar as progress_bar
from ..ops import blas
from ..ops.devices import to_numpy
from . import checkpoint
from .advice import TrainingStopped, library_command, say_on_stderr
from .distributed import PeerLost, World
from .losslog import LossLog
from .signals import Signals
from .start import Start
from .step import step_for
from .writer import RunWriter


class Trainer:
    def __init__(self, settings, resume=False, progress=True, say=say_on_stderr, command=library_command,
                 world=None):
        """Train as `settings` (a RunSettings) say; resume: go on from the newest readable checkpoint in
        settings.out. say(message): where the trainer's own messages go (that a signal was heard);
        command(options): the shell command a message prints; world: the ranks training this model together
        (None: this process alone). Everything is checked here (run/start.py) and nothing is written."""
        self.settings, self.progress, self.say = settings, progress, say
        self.world = world = world or World()
        self.start = s = Start(settings, resume, world, command)
        self.folder, self.advice, self.data, self.batches = s.folder, s.advice, s.data, s.batches
        self.model, self.opt, self.step, self.steps, self.run_json = s.model, s.opt, s.step, s.steps, s.run_json
        self.replaces = s.replaces
        self.writer = RunWriter(s) if world.rank == 0 else None     # the one rank that writes the folder
        if settings.device == "gpu":
            blas.set_tf32(settings.precision == "tf32")
        self.stepper = step_for(self.model, self.opt, world, graph=not settings.no_graph)
        self.signals = Signals(world, say, settings.log_every, self._stopped_at_once)
        self._last_eval = None

    @property
    def diverged(self):
        """run.json's record of a divergence at the run's learning rate, or None."""
        return self.advice.diverged

    def run(self):
        """Train to the end (or to a signal or a NaN: TrainingStopped), holding the folder's lock (rank 0)."""
        if self.writer is None:
            return self.train()
        with self.folder.lock("train-scratch"):
            return self.train()

    def train(self):
        """run() for a caller that holds the folder's lock already (bin/train-scratch takes it to read the run)."""
        if self.writer:
            self.writer.prepare()
        self.log = LossLog(self.model.xp, self.settings.log_every, self.world)
        self._last_ckpt = self.step
        self._skipped = self.model.scaler.skipped if self.model.scaler is not None else 0
        bar = progress_bar(self.steps, "training", "step", enabled=self.progress and self.writer is not None,
                           initial=self.step)
        # A diverging run overflows on its way to NaN; the NaN check names the first bad step, in one line,
        # instead of NumPy warning about each overflow.
        try:
            with self.signals, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self._loop(bar)
        except PeerLost as e:                                       # another rank ended or hangs
            raise TrainingStopped(f"{e}; stopping at step {self.step} ({self.advice.newest()}). Resume with: "
                                  f"{self.advice.resume_again()}", 4, False) from None
        except MemoryError as e:                                    # (numpy's or CuPy's: it says how much)
            raise self.advice.out_of_memory(e, self.step + 1, self.world.alone) from None
        finally:
            if self.log.bad:                                        # the bar ends where the message says
                bar.n = self.log.bad[0]
            bar.close()
            self.batches.close()
            if self.writer:
                self.writer.close()
        return self.step

    def _loop(self, bar):
        s = self.settings
        while self.step < self.steps:
            self._step()
            bar.update(1)
            due = (self.step % s.log_every == 0 or self.step % s.checkpoint_every == 0 or self.step == self.steps
                   or (self.world.alone and bool(self.signals.heard)))   # (several ranks agree on a signal at a row)
            if due:
                row = self._log_row()
                bar.set_postfix(loss=f"{row['loss']:.1f}", recon=f"{row['recon']:.1f}", kl=f"{row['kl']:.2f}",
                                img_s=f"{row['images_per_s']:.0f}", refresh=False)
            self._checkpoint_or_stop()
            if due:
                self.log.restart_clock()
        if self.step != self._last_ckpt:
            self._save()
        elif self.writer and not self.folder.checkpoints():         # (none written yet: rank 0 writes this step's)
            self._write_checkpoint()

    def _step(self):
        """One optimizer step; its losses go into the log's device-side buffer, nothing is read back."""
        x, size = self.batches.for_step(self.step)
        self.log.add(self.stepper(x, size=size), size)              # loss, backward and Adam (run/step.py)
        self.step += 1

    def _log_row(self):
        """A log row of the steps since the last (with the eval MSE every eval_every steps, at every checkpoint
        and at the end), appended to log.jsonl by rank 0; a step whose losses are not finite stops the run."""
        s = self.settings
        row, self.signals.agreed = self.log.row(self.step, self.signals.heard)
        if row is None:
            raise self._diverged(f"the loss became {self.log.bad[1]}", self.log.bad[0])
        scaler = self.model.scaler
        if scaler is not None:                                      # mixed precision: the scale, and the steps since
            row["loss_scale"] = scaler.scale                        # the last row that it skipped (an overflow)
            row["skipped_steps"], self._skipped = scaler.skipped - self._skipped, scaler.skipped
        if self.writer:
            if (self.step % s.eval_every == 0 or self.step % s.checkpoint_every == 0 or self.step == self.steps
                    or self.signals.stopping):
                row[self.batches.eval_key] = self.eval_mse()
            self.writer.log_row(row)
        return row

    def eval_mse(self):
        """Per-pixel mean squared error of reconstructions (from mu) over up to eval_frames frames of the eval
        split, a batch at a time; logged as heldout_mse, or as train_mse when nothing is held out."""
        total, count = self.batches.squared_error(self.model)
        if not np.isfinite(total):              # (even with finite parameters, as diverged as a NaN loss)
            bad = checkpoint.not_finite(self.model, self.opt)
            on = "held-out MSE" if self.batches.eval_split == "heldout" else "MSE on training frames"
            raise self._diverged(f"{bad} holds NaN or infinite values" if bad else f"the {on} became {total / count}",
                                 self.step, everywhere=self.world.alone)   # (rank 0 alone evaluates)
        self._last_eval = (self.step, total / count)
        return total / count

    def _checkpoint_or_stop(self):
        """A checkpoint when one is due; after a signal, a checkpoint and TrainingStopped."""
        stop = self.signals.stopping
        if (self.step % self.settings.checkpoint_every == 0 or stop) and self.step != self._last_ckpt:
            self._save()
        if stop:
            raise self.advice.stopped_by(signal.Signals(stop).name, stop, self.step,
                                         self.folder.checkpoint_path(self._last_ckpt))

    def _save(self):
        """This step's checkpoint, written by rank 0 once every rank is seen to hold the same parameters (each
        applies the same update to the same sum, so they must; a World of one checks nothing)."""
        if not self.world.same_everywhere(lambda: to_numpy(self.model.flat_params).tobytes(), "the parameters' check"):
            raise TrainingStopped(f"the {self.world.size} processes hold different parameters after step "
                                  f"{self.step}, where the same update of the same sum should leave the same "
                                  f"numbers; stopping without a checkpoint ({self.advice.newest()})", 5)
        if self.writer:
            self._write_checkpoint()
        self._last_ckpt = self.step

    def _write_checkpoint(self):
        """Rank 0: this step's checkpoint, with this step's eval MSE (measured now unless its log row did)."""
        mse = self._last_eval[1] if self._last_eval and self._last_eval[0] == self.step else self.eval_mse()
        try:
            self.writer.checkpoint(self.step, mse)
        except checkpoint.CheckpointError as e:                     # NaN or infinite numbers: not written
            raise self._diverged(str(e), self.step, everywhere=self.world.alone) from None

    def _stopped_at_once(self, name, signum):
        """What a second signal raises, during the next step (the files are written atomically: all are whole)."""
        behind = self.writer.pictures_behind if self.writer else (lambda step: "")
        return self.advice.stopped_at_once(name, signum, self.step + 1, behind, self.world.alone)

    def _diverged(self, what, step, everywhere=True):
        """TrainingStopped for numbers no longer finite (Advice.diverged_at), recorded in run.json by rank 0."""
        stopped = self.advice.diverged_at(what, step, everywhere)
        if self.writer:
            self.writer.record_divergence(self.advice.diverged)
        return stopped
