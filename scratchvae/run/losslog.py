"""The run's log rows: each step's loss terms go into a small buffer on the device (nothing is read back
inside a step), and every log row reads them once, summed over the ranks, checks them finite, and gives their
mean with the training rate."""
import time

import numpy as np

from ..model.losses import LOSS_KEYS
from ..ops.devices import to_numpy


class LossLog:
    def __init__(self, xp, rows, world):
        """rows: the most steps between two log rows (log_every); world: the ranks whose shares are summed."""
        self.terms = xp.zeros((rows, len(LOSS_KEYS)), dtype=np.float64)   # (rows, 4) on the device
        self.xp, self.world = xp, world
        self.pending, self.images = 0, 0                    # steps and images since the last row
        self.since = time.perf_counter()                    # when the row's training time began
        self.bad = None                                     # (step, loss) of the first step whose losses are not finite

    def add(self, terms, images):
        """One step's loss terms (a dict of 0-d device arrays), for a step of `images` images."""
        self.terms[self.pending] = self.xp.stack([terms[k] for k in LOSS_KEYS])
        self.pending += 1
        self.images += images

    def row(self, step, stop):
        """(row, the stop the ranks agree on): the mean of the buffered steps' terms up to `step`, with the images
        per second since the row's time began; row None (and self.bad said) when a step's losses are not finite.
        stop: this rank's signal (0: none); every rank gets the largest."""
        n, self.pending = self.pending, 0
        self.world.allreduce(self.terms[:n], "the losses' sum")
        self.world.wait_device("the step's sums")
        agreed = self.world.largest(stop)
        values = to_numpy(self.terms[:n])                   # (n, len(LOSS_KEYS)): the one read from the device
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(bad):
            self.bad = (step - n + int(bad[0]) + 1, values[bad[0], 0])
            return None, agreed
        now = time.perf_counter()
        row = {"step": step, "time": round(time.time(), 3),
               **{k: float(v) for k, v in zip(LOSS_KEYS, values.mean(axis=0))},
               "images_per_s": self.images / max(now - self.since, 1e-9),
               **self.world.sum_share(now - self.since)}    # several ranks: their share of the time in the sums
        self.since, self.images = now, 0
        return row, agreed

    def restart_clock(self):
        """The next row's rate counts training alone, not the evaluation or checkpoint after this row."""
        self.since = time.perf_counter()
