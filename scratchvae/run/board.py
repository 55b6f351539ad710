"""The run's curves and pictures for TensorBoard (train-scratch --tensorboard), written by tensorboardX's
SummaryWriter (the tensorboard extra) as event files in the run folder itself: `tensorboard --logdir runs` shows
every run under runs/ by its folder's name, side by side.

    scalars  each log row's numbers at its step, with its wall time: loss/loss, loss/recon, loss/kl, loss/kl_raw;
             eval/heldout_mse (or eval/train_mse, when nothing is held out); speed/images_per_s (and
             speed/allreduce_share, several ranks)
    images   at each checkpoint, the pictures the run folder holds, as drawn: pictures/reconstructions,
             pictures/samples, pictures/traversal
    text     run/settings: run.json as a table, at the step each process starts from (a resume may change some)

A resume goes on with the same curves. Its writer opens with purge_step = the checkpoint's step + 1: TensorBoard
drops whatever the stopped process wrote past the checkpoint (steps the resumed run trains again), so no step
shows twice. A run that had no event files yet (--tensorboard given first at a resume) gets the log's rows so
far first. The event files are appended to as the run goes (TensorBoard reads a file whose last record is cut
short up to that record), flushed every FLUSH_SECONDS and at the end.
"""
import json
import os
import time

import numpy as np

from ..files.extras import require
from ..model.losses import LOSS_KEYS
from .runfolder import RunFolder

FLUSH_SECONDS = 10
PICTURES = ("reconstructions", "samples", "traversal")


def require_writer():
    """tensorboardX, or MissingPackage naming the tensorboard extra."""
    return require("tensorboardX", "tensorboard", "--tensorboard (TensorBoard's event files)")


def tag(key):
    """A log row's key → its TensorBoard tag."""
    if key in LOSS_KEYS:
        return f"loss/{key}"
    return f"eval/{key}" if key.endswith("_mse") else f"speed/{key}"


class Board:
    def __init__(self, folder, step, rows=(), settings=None):
        """Event files in `folder` for a run at `step` (0: a new run); rows: the log's rows up to `step`,
        written first when the folder has no event files yet; settings: run.json's record, shown as text."""
        new = not RunFolder(folder).event_files()
        # TensorBoard reads a folder's event files in the order of their names, events.out.tfevents.SECONDS.HOST:
        # two writers in one second would share a name (the second one emptying the first's file), so each name
        # ends in its nanoseconds, which sort as they were made
        self.writer = require_writer().SummaryWriter(folder, purge_step=None if new else step + 1,
                                                     flush_secs=FLUSH_SECONDS, filename_suffix=f".{time.time_ns()}")
        if new:
            for row in rows:
                self.row(row)
        if settings:
            table = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in settings.items())
            self.writer.add_text("run/settings", f"| setting | value |\n|---|---|\n{table}", step)

    def row(self, row):
        """Every number of a log row but its step and time, at its step."""
        for key, value in row.items():
            if key not in ("step", "time") and isinstance(value, (int, float)):
                self.writer.add_scalar(tag(key), value, row["step"], walltime=row.get("time"))

    def pictures(self, folder, step):
        """The run folder's pictures (NAME.png of PICTURES, those there are) as images at `step`."""
        from PIL import Image
        for name in PICTURES:
            path = os.path.join(folder, f"{name}.png")
            if os.path.exists(path):
                with Image.open(path) as im:
                    image = np.asarray(im.convert("RGB"))                   # (H, W, 3) uint8
                self.writer.add_image(f"pictures/{name}", image, step, walltime=time.time(), dataformats="HWC")

    def close(self):
        self.writer.close()
