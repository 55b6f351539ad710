"""What rank 0 writes into the run folder while it trains: the folder made ready at the start, each
checkpoint with best.npz and the pictures, and run.json's record of a divergence. The rules of the folder
itself (one writer, what counts as a run) are run/runfolder.py's."""
import os

from . import checkpoint, pictures
from .board import Board


class RunWriter:
    def __init__(self, start):
        """start: the run's Start (its folder, settings, model, optimizer, batches and run.json)."""
        self.start = start
        self.folder, self.settings, self.run_json = start.folder, start.settings, start.run_json
        self.model, self.opt, self.batches = start.model, start.opt, start.batches
        self.best = None                                    # (step, eval MSE) of best.npz
        self.saved, self.drawn = None, None                 # the steps of the newest checkpoint written here and
                                                            # of the pictures drawn last
        self.board = None                                   # TensorBoard's event files (--tensorboard: board.py)

    def prepare(self):
        """The folder as the run starts: checked unchanged since start read it, a killed writer's temporaries and
        a stopped start's leftovers gone, damaged checkpoints renamed, the settings written, the log cut back to
        the checkpoint."""
        start = self.start
        if self.folder.checkpoints() != start.found:
            raise FileExistsError(f"{self.settings.out} changed since it was read: another process wrote a "
                                  "checkpoint into it")
        self.folder.remove_temporaries()                            # a killed writer's
        if not start.resume:
            self.folder.remove_leftovers()
        for bad, _ in start.unreadable:                             # not picked again as the newest
            os.replace(bad, bad + ".corrupt")
        start.unreadable = []
        self.folder.write_settings(self.run_json)
        rows = [r for r in self.folder.read_log() if r["step"] <= start.step]     # none past the checkpoint
        self.folder.write_log(rows)
        self.folder.drop_best_after(start.step)
        self.best = self.folder.best()
        if self.settings.tensorboard:
            self.board = Board(self.settings.out, start.step, rows, self.run_json)

    def log_row(self, row):
        """A log row, appended to log.jsonl (and written to TensorBoard's curves)."""
        self.folder.append_log(row)
        if self.board:
            self.board.row(row)

    def close(self):
        """The event files flushed and closed (the run's other files are whole as soon as they are written)."""
        if self.board:
            self.board.close()
            self.board = None

    def checkpoint(self, step, mse):
        """Write step's checkpoint (best.npz too, when its eval MSE is the lowest yet) and the pictures. A
        CheckpointError (numbers that are not finite) writes nothing."""
        path = self.folder.checkpoint_path(step)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        meta = {"settings": self.run_json, "eval": {"split": self.batches.eval_split, "mse": mse}}
        checkpoint.save(path, self.model, optimizer=self.opt, step=step, meta=meta)
        self.saved = step
        self.folder.prune(self.settings.keep)
        if self.best is None or mse < self.best[1]:
            self.folder.keep_best(path)
            self.best = (step, mse)
        self.pictures(step)
        return path

    def pictures(self, step):
        """reconstructions.png, samples.png, traversal.png and loss.png, of the model at `step`."""
        pictures.write_all(self.settings.out, self.model, self.batches.eval_images(64), step,
                           self.batches.eval_source, seed=self.settings.seed, rows=self.folder.read_log())
        if self.board:
            self.board.pictures(self.settings.out, step)
        self.drawn = step

    def pictures_behind(self, step):
        """'' when the run's pictures show its newest checkpoint, at `step`; else a clause saying they do not (a
        second signal came between the checkpoint and its pictures)."""
        if self.saved != step or self.drawn == step:
            return ""
        shown = f" but of step {self.drawn}" if self.drawn is not None else ""
        return f" (the run's pictures are not of step {step}{shown}: the resumed run draws them at its next checkpoint)"

    def record_divergence(self, diverged):
        """run.json records the divergence, so that a later message about this run does not print its learning
        rate again (run/advice.py)."""
        self.run_json["diverged"] = diverged
        self.folder.write_settings(self.run_json)
