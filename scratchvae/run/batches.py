"""Which frames a run trains and evaluates on, step by step.

The batch of a step is a function of (seed, step) alone: the step's slice of its epoch's order (epoch e is
shuffled by a generator seeded with (seed, e): FrameDataset.order), so a resumed run takes the batches one
that never stopped would. With several ranks each loads only its shard of the batch. Because the batch is
known before its step, a thread reads it while the step before runs (data/feed.py)."""
from ..data.dataset import SPLIT_NAMES, to_model_input
from ..data.feed import Feed
from ..data.readers import Readers
from .distributed import shard


class Batches:
    def __init__(self, data, settings, world, dtype, upload=None, feed_depth=2):
        """data: the FrameDataset; settings: the run's (seed, batch_size, device, eval_frames); world: the ranks;
        upload: the GPU's queued copies (ops/uploads.py), or None; feed_depth: how many batches the feed's
        thread reads ahead."""
        self.data, self.settings, self.world, self.dtype, self.upload = data, settings, world, dtype, upload
        self.n_train = data.num_frames("train")
        self.steps_per_epoch = -(-self.n_train // settings.batch_size)
        self.eval_split = data.eval_split                           # "heldout", or "train" when none is held out
        self.eval_key = f"{self.eval_split}_mse"                    # the log's heldout_mse or train_mse
        self.eval_source = SPLIT_NAMES[self.eval_split]             # what the run's pictures show
        self._epoch, self._order = None, None                       # (the feed's thread's: it alone reads them)
        readers = getattr(settings, "readers", 0)
        self.readers = Readers(data, readers) if readers else None  # processes that read a batch together
        self.feed = Feed(self.frames_for_step, (*data.size, 3), depth=feed_depth,
                         empty=self.readers and self.readers.empty)

    def for_step(self, step):
        """(x, size): this rank's images of the step's batch as model input (None for an empty shard: fewer
        images than ranks), and how many images the whole batch has (an epoch's last may have fewer)."""
        frames, size = self.feed.get(step)                          # read while the step before ran
        return (None if frames is None else self._input(frames, self.upload)), size

    def frames_for_step(self, step, take=None):
        """(frames, size): this rank's uint8 (n, H, W, 3) frames of the step's batch, into take(n)'s array when
        given (None for an empty shard), and how many images the whole batch has."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if self._epoch != epoch:
            self._order, self._epoch = self.data.order("train", self.settings.seed, epoch), epoch
        pick = self._order[i * self.settings.batch_size:(i + 1) * self.settings.batch_size]
        lo, hi = shard(len(pick), self.world.rank, self.world.size)
        if hi == lo:
            return None, len(pick)
        ep_idx, frame_idx = self.data.locate(pick[lo:hi], "train")
        if self.readers and take:
            return self.readers.gather(ep_idx, frame_idx, take(hi - lo)), len(pick)
        return self.data.gather(ep_idx, frame_idx, out=take and take(hi - lo)), len(pick)

    def close(self):
        """Stop the feed's thread, and the reader processes (a step asked for after this is read by a thread of
        this process, in buffers of its own)."""
        self.feed.close()
        if self.readers:
            self.readers.close()
            self.readers = None
            self.feed = Feed(self.frames_for_step, self.feed.frame_shape, depth=self.feed.depth)

    def eval_images(self, n):
        """n frames spread evenly over the held-out set (the training set when nothing is held out:
        eval_split says which), as model input."""
        return self._input(self.data.spread(n, self.eval_split))

    def squared_error(self, model):
        """(Σ (reconstruction from μ − x)², how many numbers) over up to eval_frames frames spread over the eval
        split, read a batch at a time (memory holds one batch, whatever eval_frames is)."""
        numbers = self.data.spread_numbers(self.settings.eval_frames, self.eval_split)
        total, count = 0.0, 0
        for i in range(0, len(numbers), self.settings.batch_size):
            x = self._input(self.data.gather(*self.data.locate(numbers[i:i + self.settings.batch_size],
                                                               self.eval_split)))
            d = model.reconstruct(x) - x
            total += float((d * d).sum())
            count += d.size
        return total, count

    def _input(self, frames, upload=None):
        return to_model_input(frames, self.settings.device, self.dtype, upload=upload)
