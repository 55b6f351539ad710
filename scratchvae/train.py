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
import time

import numpy as np

from . import checkpoint, pictures
from .checkpoint import checkpoint_path, checkpoints_in
from .atomic import atomic_write
from .backend import to_numpy
from .data.dataset import FrameDataset, to_model_input
from .optim import Adam
from .vae import VAE

LOSS_KEYS = ("loss", "recon", "kl", "kl_raw")


class TrainingStopped(Exception):
    """The run stopped early (a signal, or a loss that was not finite); the message says why."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def epoch_order(seed, epoch, n):
    """The shuffled order of the n training frames in a given epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class Trainer:
    def __init__(self, data, out, steps=None, batch_size=100, lr=1e-3, latent=32, kl_tolerance=0.5, beta=1.0,
                 seed=0, device="cpu", dtype=np.float32, resume=False, heldout=0.1, log_every=10,
                 eval_every=100, checkpoint_every=250, keep=3, eval_frames=500, progress=True, epochs=None):
        """Train until `steps` steps in all, or `epochs` passes over the training frames."""
        if (steps is None) == (epochs is None):
            raise ValueError("give the length of the run as steps or as epochs (one of them)")
        self.data_dir, self.out, self.batch_size = data, out, int(batch_size)
        self.seed, self.device, self.log_every, self.eval_every = seed, device, log_every, eval_every
        self.checkpoint_every, self.keep, self.progress = checkpoint_every, keep, progress
        # Everything is checked before anything is written into the run folder.
        self.data = FrameDataset(data, heldout=heldout, seed=seed)
        h, w = self.data.size
        existing = checkpoints_in(out)
        config = dict(input_shape=[3, h, w], latent_dim=latent, kl_tolerance=float(kl_tolerance),
                      beta=float(beta), dtype=np.dtype(dtype).name)
        if resume:
            if not existing:
                raise FileNotFoundError(f"--resume: no checkpoint in {out}/checkpoints to continue from")
            ck = checkpoint.load(existing[-1][1], device=device, expect_config=config)
            self.model, self.opt, self.step = ck.model, ck.optimizer, ck.step
            if self.opt is None:
                raise checkpoint.CheckpointError(f"{existing[-1][1]}: holds no optimizer state to resume with")
        else:
            if existing or os.path.exists(os.path.join(out, "log.jsonl")):
                raise FileExistsError(f"{out} already holds a run; continue it with --resume, or choose another --out")
            self.model = VAE(input_shape=(3, h, w), latent_dim=latent, kl_tolerance=kl_tolerance, beta=beta,
                             dtype=dtype, seed=seed, device=device)
            self.opt = Adam(self.model.params, lr=lr)
            self.step = 0
        self.n_train = self.data.num_frames("train")
        if self.n_train == 0:
            raise ValueError(f"{data}: no training frames")
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.steps = int(steps) if steps is not None else int(epochs) * self.steps_per_epoch
        if self.step > self.steps:
            raise ValueError(f"the newest checkpoint is at step {self.step}, past the {self.steps} steps asked for")
        self.eval_frames = eval_frames
        self.settings = dict(data=os.path.abspath(data), steps=self.steps, epochs=epochs,
                             batch_size=self.batch_size, lr=self.opt.lr, latent=latent,
                             kl_tolerance=kl_tolerance, beta=beta, seed=seed, device=device,
                             dtype=np.dtype(dtype).name, heldout=heldout, train_frames=self.n_train,
                             heldout_frames=self.data.num_frames("heldout"))
        self._stop = None
        self._order_epoch, self._order_cache = None, None

    # ---- data ---------------------------------------------------------------------------------------
    def batch_for(self, step):
        """The training batch of a given step: a function of (seed, step) alone."""
        epoch, i = divmod(step, self.steps_per_epoch)
        order = self._order(epoch)
        pick = order[i * self.batch_size:(i + 1) * self.batch_size]
        eps, frames = self._train_eps[pick], self._train_frames[pick]
        return to_model_input(self.data.gather(eps, frames), self.device, self.model.dtype)

    def _order(self, epoch):
        if self._order_epoch != epoch:
            self._order_cache, self._order_epoch = epoch_order(self.seed, epoch, self.n_train), epoch
        return self._order_cache

    def heldout_images(self, n):
        """n held-out frames spread evenly over the held-out set (the training set, when nothing is
        held out), as model input."""
        split = "heldout" if self.data.num_frames("heldout") else "train"
        eps, frames = self.data.frames_of(self.data.episodes(split))
        pick = np.linspace(0, len(eps) - 1, min(n, len(eps))).astype(int)
        return to_model_input(self.data.gather(eps[pick], frames[pick]), self.device, self.model.dtype)

    def heldout_mse(self):
        """Per-pixel mean squared error of reconstructions (from mu) over up to eval_frames held-out frames."""
        x_all = self.heldout_images(self.eval_frames)
        total, count = 0.0, 0
        for i in range(0, len(x_all), self.batch_size):
            x = x_all[i:i + self.batch_size]
            d = self.model.reconstruct(x) - x
            total += float((d * d).sum())
            count += d.size
        return total / count

    # ---- files --------------------------------------------------------------------------------------
    def _log_path(self):
        return os.path.join(self.out, "log.jsonl")

    def read_log(self):
        """The log's rows. A last line cut short (the process killed mid-append) is left out."""
        if not os.path.exists(self._log_path()):
            return []
        with open(self._log_path()) as f:
            lines = [line for line in f if line.strip()]
        rows = []
        for i, line in enumerate(lines):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if i != len(lines) - 1:
                    raise ValueError(f"{self._log_path()}: line {i + 1} is not JSON") from None
        return rows

    def _write_log(self, rows):
        with atomic_write(self._log_path(), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    def save_checkpoint(self):
        path = checkpoint_path(self.out, self.step)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        checkpoint.save(path, self.model, optimizer=self.opt, step=self.step, meta={"settings": self.settings})
        for _, old in checkpoints_in(self.out)[:-self.keep]:
            os.unlink(old)
        self.write_pictures()
        return path

    def write_pictures(self):
        x = self.heldout_images(64)
        pictures.reconstructions(self.model, x, os.path.join(self.out, "reconstructions.png"))
        pictures.prior_samples(self.model, os.path.join(self.out, "samples.png"), seed=self.seed)
        pictures.latent_traversal(self.model, x, os.path.join(self.out, "traversal.png"))
        rows = self.read_log()
        if rows:
            pictures.loss_curves(rows, os.path.join(self.out, "loss.png"))

    # ---- the loop -----------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self._stop = signum

    def run(self):
        os.makedirs(self.out, exist_ok=True)
        with atomic_write(os.path.join(self.out, "run.json"), "w") as f:
            json.dump(self.settings, f, indent=2)
        self._train_eps, self._train_frames = self.data.frames_of(self.data.train_episodes)
        rows = [r for r in self.read_log() if r["step"] <= self.step]   # drop rows past the checkpoint
        self._write_log(rows)
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._loop(rows)
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
        return self.step

    def _loop(self, rows):
        from tqdm import tqdm
        xp, model = self.model.xp, self.model
        hist = xp.zeros((self.log_every, len(LOSS_KEYS)), dtype=np.float64)   # device-side loss buffer
        bar = tqdm(total=self.steps, initial=self.step, unit="step", disable=not self.progress, desc="training",
                   dynamic_ncols=True)
        t_log, start_step = time.perf_counter(), self.step
        last_ckpt = self.step
        k = 0                                                       # steps in hist since the last row
        try:
            while self.step < self.steps:
                x = self.batch_for(self.step)
                out = model.loss(x)
                model.backward()
                self.opt.step(model.grads)
                hist[k] = xp.stack([out[key] for key in LOSS_KEYS])
                k += 1
                self.step += 1
                bar.update(1)
                due_log = self.step % self.log_every == 0 or self.step == self.steps or self._stop
                if due_log:
                    n, k = k, 0
                    values = to_numpy(hist[:n])                     # the one read from the device
                    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
                    if len(bad):
                        first = self.step - n + int(bad[0]) + 1
                        good = checkpoints_in(self.out)
                        keep = good[-1][1] if good else "none written yet"
                        raise TrainingStopped(
                            f"the loss became {values[bad[0], 0]} at step {first}; stopping. "
                            f"Last good checkpoint: {keep}. Try a lower --lr.", 3)
                    now = time.perf_counter()
                    row = {"step": self.step, "time": round(time.time(), 3),
                           **{k: float(v) for k, v in zip(LOSS_KEYS, values.mean(axis=0))},
                           "images_per_s": n * self.batch_size / max(now - t_log, 1e-9)}
                    t_log = now
                    if self.step % self.eval_every == 0 or self.step == self.steps:
                        row["heldout_mse"] = self.heldout_mse()
                    rows.append(row)
                    with open(self._log_path(), "a") as f:
                        f.write(json.dumps(row) + "\n")
                    bar.set_postfix(loss=f"{row['loss']:.1f}", recon=f"{row['recon']:.1f}", kl=f"{row['kl']:.2f}",
                                    img_s=f"{row['images_per_s']:.0f}", refresh=False)
                if self.step % self.checkpoint_every == 0 and self.step != last_ckpt:
                    self.save_checkpoint()
                    last_ckpt = self.step
                if self._stop:
                    path = self.save_checkpoint() if self.step != last_ckpt else checkpoints_in(self.out)[-1][1]
                    name = signal.Signals(self._stop).name
                    raise TrainingStopped(f"stopped by {name} after step {self.step}; checkpoint {path}. "
                                          f"Resume with: bin/train-scratch --resume --out {self.out} "
                                          f"--data {self.data_dir} --steps {self.steps}", 130)
            if self.step != last_ckpt or not checkpoints_in(self.out):
                self.save_checkpoint()
        finally:
            bar.close()
        done = self.step - start_step
        return done
