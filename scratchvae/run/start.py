"""Everything a run checks before it writes anything: the folder (a new run, or one to resume), the data,
the batch size against the frames and the ranks, and the model and optimizer it starts from (new, or the
newest readable checkpoint's), with run.json's record of what is trained."""
import os
import warnings
from dataclasses import asdict

from ..data.dataset import FrameDataset
from ..data.episodes import DataError
from ..model.optim import Adam
from ..model.vae import VAE
from ..ops.uploads import Uploader
from . import checkpoint
from .advice import Advice
from .batches import Batches
from .board import require_writer
from .runfolder import RunFolder


class Start:
    """What a run starts from. settings: a RunSettings; resume: go on from the newest readable checkpoint in
    settings.out; world: the ranks; command(options): the shell line a message prints. Raises, in one line,
    for anything that would stop the run, and writes nothing."""

    def __init__(self, settings, resume, world, command):
        s = self.settings = settings
        self.resume = resume
        self.folder = RunFolder(s.out)
        self.folder.check_place()
        if s.tensorboard:
            require_writer()                                        # the extra, before any work
        self.advice = Advice(s, self.folder, command, self.folder.diverged_at(s.lr) if resume else None)
        if resume and not self.folder.holds_run():
            raise self.advice.nothing_to_resume()
        if not resume and self.folder.holds_run():
            raise FileExistsError(f"{s.out} already holds a run (newest checkpoint: step "
                                  f"{self.folder.checkpoints()[-1][0]}); continue it with: "
                                  f"{command(['--resume', '--out', s.out])}, or choose another --out")
        if resume and not os.path.isdir(s.data):
            raise DataError(f"data folder {s.data} does not exist; if the run's data moved, give its new place with "
                            "--data (a folder that holds the same episodes resumes the run)")
        self.data = FrameDataset(s.data, heldout=s.heldout, seed=s.seed)
        self._check_batch(world)
        self.model, self.opt, self.step, self.unreadable = self._resumed() if resume else self._new()
        self.replaces = [] if resume else self.folder.leftovers()   # what a run without a checkpoint left
        self.found = self.folder.checkpoints()                      # the run checks nobody wrote since
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

    def _check_batch(self, world):
        s, n_train = self.settings, self.data.num_frames("train")
        if n_train == 0:
            raise ValueError(f"{s.data}: no training frames")
        if s.batch_size > n_train:
            raise ValueError(f"batch size {s.batch_size} is more than the {n_train} training frames in "
                             f"{s.data}; give --batch-size {n_train} or less")
        if s.batch_size < world.size:
            raise ValueError(f"batch size {s.batch_size} is less than the {world.size} processes, which need at "
                             f"least an image each; give --batch-size {world.size} or more")

    def _new(self):
        """(model, optimizer, step 0, no damaged checkpoints): a new model, drawn from the seed."""
        s = self.settings
        model = VAE(**s.model_config(*self.data.frame_shape), seed=s.seed, device=s.device)
        return model, Adam(model.params, lr=s.lr), 0, []

    def _resumed(self):
        """(model, optimizer, step, damaged newer checkpoints passed over) of the newest readable checkpoint,
        which must be of this run's model and data."""
        s = self.settings
        ck, unreadable = self.folder.newest_readable(device=s.device)
        for bad, why in unreadable:
            warnings.warn(f"{why}; resuming from {ck.path} (step {ck.step}) instead, and keeping the damaged "
                          f"file as {os.path.basename(bad)}.corrupt", stacklevel=4)
        self.data.check_same(ck.meta.get("settings", {}))
        checkpoint.check_config(ck.path, ck.model.config, s.model_config(*self.data.frame_shape))
        if ck.optimizer is None:
            raise checkpoint.CheckpointError(f"{ck.path}: holds no optimizer state to resume with")
        ck.optimizer.lr = float(s.lr)                               # the run's, or an override of it
        return ck.model, ck.optimizer, ck.step, unreadable
