"""One training step, three ways: each a Step object that takes this process's images of a batch and
returns the step's loss terms ({loss, recon, kl, kl_raw}, 0-d arrays on the model's device).

    PlainStep(model, opt)            loss, backward and Adam, launched one by one (the CPU; the GPU with --no-graph)
    CapturedStep(model, opt)         the same recorded as one CUDA graph and replayed (the GPU)
    ShardedStep(model, opt, world)   this rank's shard of the batch, then one sum of the gradients over the
                                     ranks, then Adam (several processes: scratchvae/run/distributed.py)
    CapturedShardedStep(…)           the same on GPUs as two recorded graphs, one each side of the sum

    step = step_for(model, opt, world, graph=True)
    terms = step(x, size=n)          # x: this process's images of a batch of n (all n of them, alone)

The rest of this page is the recorded step: a whole training step on the GPU as one CUDA graph,
recorded once, then replayed by one launch.

A step of the default VAE is about a hundred kernels and products. At batch 100 the GPU runs
them in a millisecond or two, while Python takes longer than that to launch them one by one:
the GPU waits on the host. CUDA can record the launches a stream receives (stream capture)
into a graph and replay the whole graph with one call, its kernels back to back.

    step = CapturedStep(model, opt)
    out = step(x)          # = model.loss(x); model.backward(); opt.step(model.grads): the same numbers

The first call for a batch shape runs the step as usual (it makes every buffer the layers keep,
compiles the kernels and creates the cuBLAS handle) and then records it, without running it: all
the setup, device memory allocations included (which can make the host wait for the GPU), happens
in that first step. From then on a call is: upload this step's noise and bias corrections, copy x
into the graph's input, launch. The numbers are the same as without the graph (the same kernels in
the same order; tests/test_gpu.py compares them bit for bit).

What a recording needs, and how it is met:
* every product through scratchvae/ops/blas.py (CuPy's own refuses to run while a stream records);
* no host work in the step that a replay would skip: the noise is drawn on the host before the
  launch (from the model's generator, as model.loss would draw it) and copied into the graph's
  eps; Adam's step count and corrections are written to its device array by opt.prepare();
* memory at the same addresses on every replay: the temporaries come from a memory pool of the
  graph's own, which nothing else allocates from, and the buffers the layers keep are held by
  this object (a layer that makes new ones for another batch size cannot free the graph's);
* the model's parameters and Adam's moments never move (load_state and checkpoints write into them).
The step's losses come back as a copy, so a later replay does not overwrite what was returned.
"""
import warnings

import numpy as np

from ..model.losses import LOSS_KEYS
from .distributed import shard


def train_step(model, opt, x, eps=None):
    """One training step launched kernel by kernel: the loss (eps drawn from the model's generator when
    None), its backward, and the optimizer's update. Returns the loss terms, as model.loss does."""
    out = model.loss(x, eps)
    model.backward()
    optimizer_step(model, opt)
    return out


def optimizer_step(model, opt):
    """The optimizer's update from model.grads. A mixed-precision model's only when its gradients are all
    finite: else the step is skipped (weights and moments as they were) and its scaler halves the scale
    (model/scaler.py); after the update, the float16 weights the layers use are rounded anew."""
    if not model.mixed:
        opt.step(model.grads)
        return
    finite = bool(model.xp.isfinite(model.flat_grads).all())      # (on the GPU: one number read back)
    if model.scaler.update(finite):
        opt.step(model.grads)
        model.sync_compute()


def step_for(model, opt, world, graph=True):
    """The Step a run takes: sharded over the ranks of a job of several, plain on one process; on a GPU
    recorded (unless graph is False, or the model is mixed precision): one CUDA graph for one process, two
    around the sum for several."""
    recorded = model.device == "gpu" and graph and not model.mixed   # (mixed: a step reads back whether to update)
    if world.size > 1:
        return CapturedShardedStep(model, opt, world) if recorded else ShardedStep(model, opt, world)
    if recorded:
        return CapturedStep(model, opt)
    return PlainStep(model, opt)


class PlainStep:
    """loss, backward and Adam, launched one by one."""

    def __init__(self, model, opt):
        self.model, self.opt = model, opt

    def __call__(self, x, eps=None, size=None):
        """One step on the images x, the whole batch (size, when given, is len(x)). Returns the loss terms."""
        return train_step(self.model, self.opt, x, eps)


class ShardedStep:
    """One step of a job of several ranks: the loss and backward of this rank's shard x of the batch, its
    gradient weighted by its share n_r/B, the sum over the ranks (then the whole batch's gradient, on every
    rank), and Adam. Each rank draws the whole batch's noise, as one process would, and takes its rows."""

    def __init__(self, model, opt, world):
        self.model, self.opt, self.world = model, opt, world

    def __call__(self, x, eps=None, size=None):
        """x: this rank's shard of a batch of `size` images (None for an empty one); eps: the whole batch's noise
        (drawn from the model's generator when None). Returns the shard's loss terms weighted by its share (the
        log sums them over the ranks)."""
        model, n = self.model, size
        if eps is None:
            eps = model.sample_eps(n)                               # (B, D): the whole batch's
        lo, hi = shard(n, self.world.rank, self.world.size)
        terms = weighted_part(model, x, eps[lo:hi], (hi - lo) / n)  # share n_r / B
        self.world.allreduce(model.flat_grads)                      # Σ_r: ∂L/∂θ of the whole batch
        optimizer_step(model, self.opt)                             # (mixed: every rank sees the same sum's infs)
        return terms


def weighted_part(model, x, eps, share):
    """This rank's part of the sum: the loss and backward of its shard x (eps: its rows of the noise), the
    gradient and the loss terms weighted by its share n_r/B. An empty shard (x None) adds nothing."""
    if x is None:
        model.zero_grads()
        return {k: model.xp.zeros((), np.float64) for k in LOSS_KEYS}
    out = model.loss(x, eps)
    model.backward()
    model.flat_grads *= share                                       # (1/B) Σ_{i in shard} ∂ℓ_i/∂θ
    return {k: out[k] * share for k in LOSS_KEYS}


class CapturedShardedStep:
    """ShardedStep recorded on the GPU: the sum sits between the backward and Adam, so one graph cannot hold
    the step (a host-side sum must wait for the gradients; NCCL's, queued on the stream, could be recorded,
    but not where the sum goes through the host). So two graphs, one each side of the sum:

        before   this rank's loss and backward, its gradient and loss terms weighted by its share n_r/B
                 (an empty shard: the gradients set to 0)
        the sum  world.allreduce, on the graphs' stream (NCCL queues it there; through the host it is done
                 on return)
        after    Adam's update, with the scalars opt.prepare() wrote

    One pair per (this rank's shard shape, batch size); the first step of each runs as ShardedStep does and
    then records. A recording that fails warns once, and every step then runs as ShardedStep."""

    def __init__(self, model, opt, world):
        if model.device != "gpu":
            raise ValueError("CapturedShardedStep records a GPU step; the model is on the CPU")
        self.model, self.opt, self.world = model, opt, world
        self.plain = ShardedStep(model, opt, world)
        self.graphs = {}            # (shard shape or None, batch size) → its ShardedRecording
        self.failed = None

    def __call__(self, x, eps=None, size=None):
        """As ShardedStep: x this rank's shard of a batch of `size` (None when empty), eps the whole batch's noise."""
        model, n = self.model, size
        if eps is None:
            eps = model.sample_eps(n)                               # (B, D): the whole batch's, as ShardedStep draws
        key = (None if x is None else tuple(x.shape), n)
        lo, hi = shard(n, self.world.rank, self.world.size)
        if self.failed is None and key in self.graphs:
            return self.graphs[key].replay(x, eps[lo:hi], self.opt, self.world)
        out = self.plain(x, eps, n)
        if self.failed is None:
            record(self, key, lambda: ShardedRecording(model, self.opt, x, eps[lo:hi], (hi - lo) / n),
                   "CUDA graphs")
        return out


def record(step, key, make, what):
    """step.graphs[key] = make(), the recording of a new shape; when recording fails (a CuPy or driver that cannot
    record this), step.failed says why, once, in a warning, and every step after runs launch by launch."""
    try:
        step.graphs[key] = make()
    except Exception as e:
        step.failed = f"{type(e).__name__}: {e}"
        step.graphs.clear()
        warnings.warn(f"the training step could not be recorded as {what} ({step.failed}); running it launch by "
                      "launch", stacklevel=3)


class ShardedRecording:
    """The two graphs of one (shard shape, batch size), their stream and memory pool, and the layers' buffers."""

    def __init__(self, model, opt, x, eps, share):
        import cupy
        self.stream = cupy.cuda.Stream()
        self.pool = cupy.cuda.MemoryPool()
        self.x = self.eps = None
        if x is not None:
            n, c, h, w = x.shape
            self.x = cupy.empty((c, h, w, n), dtype=x.dtype).transpose(3, 0, 1, 2)   # as Recording's
            self.eps = cupy.empty(eps.shape, dtype=eps.dtype)

        def before():
            terms = weighted_part(model, self.x, self.eps, share)
            return cupy.stack([terms[k] for k in LOSS_KEYS])        # (4,)

        with self.stream, cupy.cuda.using_allocator(self.pool.malloc):
            self.before, self.losses = _capture(self.stream, before)
            self.after, _ = _capture(self.stream, lambda: opt.update(model.grads))
        self.kept = [dict(layer.buffers) for layer in model.walk()]
        self.grads = model.flat_grads                               # what the sum between the graphs adds up
        with self.stream:                   # the replay's own copies once here (see Recording)
            if self.x is not None:
                self.x[...] = x
                self.eps[...] = eps
            self.losses.copy()

    def replay(self, x, eps, opt, world):
        with self.stream:
            if self.x is not None:
                self.x[...] = x
                self.eps[...] = eps
            self.before.launch(self.stream)
            world.allreduce(self.grads)                             # Σ_r: the whole batch's gradient
            opt.prepare()
            self.after.launch(self.stream)
            losses = self.losses.copy()
        return {k: losses[i] for i, k in enumerate(LOSS_KEYS)}


def _capture(stream, body):
    """(graph, what body returned): body's launches on `stream`, recorded and not run."""
    import cupy
    mode = getattr(cupy.cuda.runtime, "streamCaptureModeRelaxed", 2)
    stream.begin_capture(mode=mode)
    try:
        out = body()
    finally:
        graph = stream.end_capture()
    return graph, out


class CapturedStep:
    def __init__(self, model, opt):
        if model.device != "gpu":
            raise ValueError("CapturedStep records a GPU step; the model is on the CPU")
        self.model, self.opt = model, opt
        self.graphs = {}            # batch shape → its Recording (an epoch's smaller last batch gets its own)
        self.failed = None          # why recording failed, when it did: then every step runs unrecorded

    @property
    def graph(self):
        """The CUDA graph recorded last (None before the first)."""
        return next(reversed(self.graphs.values())).graph if self.graphs else None

    def __call__(self, x, eps=None, size=None):
        """One training step on x (N, C, H, W), the whole batch, with noise eps (drawn from the model's generator
        when None). Returns {loss, recon, kl, kl_raw} as 0-d arrays on the GPU, as model.loss does."""
        model, opt = self.model, self.opt
        if eps is None:
            eps = model.sample_eps(x.shape[0])                      # the same draws as model.loss would make
        shape = tuple(x.shape)
        if self.failed is None and shape in self.graphs:
            return self.graphs[shape].replay(x, eps, opt)
        out = train_step(model, opt, x, eps)                        # a new shape: run it, then record it
        if self.failed is None:
            record(self, shape, lambda: Recording(model, opt, x, eps), "a CUDA graph")
        return out



class Recording:
    """One recorded step for one batch shape: the graph, its stream, its memory pool and input buffers, and
    the layers' buffers it reads and writes (held here so they stay allocated)."""

    def __init__(self, model, opt, x, eps):
        import cupy
        self.stream = cupy.cuda.Stream()                            # blocking: ordered with the default stream
        self.pool = cupy.cuda.MemoryPool()                          # the graph's temporaries, and nothing else
        n, c, h, w = x.shape
        self.x = cupy.empty((c, h, w, n), dtype=x.dtype).transpose(3, 0, 1, 2)  # the graph's inputs, at fixed
        self.eps = cupy.empty(eps.shape, dtype=eps.dtype)              # addresses; x stored as the layers keep it
        def whole():
            out = model.loss(self.x, self.eps)
            model.backward()
            opt.update(model.grads)
            return cupy.stack([out[k] for k in LOSS_KEYS])          # (4,)

        with self.stream, cupy.cuda.using_allocator(self.pool.malloc):
            graph, self.losses = _capture(self.stream, whole)
        self.kept = [dict(layer.buffers) for layer in model.walk()]   # the buffers it uses stay allocated
        self.graph = graph
        with self.stream:                   # replay's own copies, once here: a kernel's first launch loads its
            self.x[...] = x                 # code onto the GPU, which waits for everything queued there, and
            self.eps[...] = eps             # that belongs in this first step, not in the first replay
            self.losses.copy()

    def replay(self, x, eps, opt):
        with self.stream:
            self.x[...] = x
            self.eps[...] = eps
            opt.prepare()                                           # t + 1, and its scalars into opt.step_scalars
            self.graph.launch(self.stream)
            losses = self.losses.copy()                             # the next replay overwrites self.losses
        return {k: losses[i] for i, k in enumerate(LOSS_KEYS)}
