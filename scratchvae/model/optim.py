"""Adam (Kingma & Ba, 2015), updating the parameters in place.

With g the gradient at step t (t = 1, 2, …):
    m ← β₁·m + (1 − β₁)·g            v ← β₂·v + (1 − β₂)·g²
    m̂ = m / (1 − β₁ᵗ)                v̂ = v / (1 − β₂ᵗ)          (bias correction)
    θ ← θ − lr · m̂ / (√v̂ + eps)
"""
import numpy as np

from ..ops.devices import is_gpu_array, named_views, tiling, xp_of
from ..ops.adam import adam
from ..ops.uploads import Uploader


class Adam:
    """Adam over a dict of parameters, updated in place.

    When the parameters tile one flat buffer (a VAE's do: VAE.flatten) the moments are kept the same way,
    and a step whose gradients tile one buffer too (the VAE's) is one pass over the whole model: one
    kernel on the GPU. Otherwise each parameter is updated on its own; the arithmetic is the same.

    A step is prepare() (the step count and this step's scalars, lr and the bias corrections, on the host;
    on the GPU written to a small device array, step_scalars) and then update(grads) (device work only): a
    recorded step (scratchvae/run/step.py) replays update with the scalars prepare wrote."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        if not lr > 0:
            raise ValueError(f"Adam needs a learning rate above 0, got {lr}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam needs betas in [0, 1), got {betas}")
        self.params = params
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.flat = tiling(params.values())                         # (P,) or None
        if self.flat is not None:
            xp = xp_of(self.flat)
            self.flat_m, self.flat_v = xp.zeros_like(self.flat), xp.zeros_like(self.flat)
            shapes = {k: p.shape for k, p in params.items()}
            self.m, self.v = named_views(self.flat_m, shapes), named_views(self.flat_v, shapes)
        else:
            self.m = {k: xp_of(p).zeros_like(p) for k, p in params.items()}
            self.v = {k: xp_of(p).zeros_like(p) for k, p in params.items()}
        first = next(iter(params.values()), None)
        # this step's (lr, 1 − β₁ᵗ, 1 − β₂ᵗ): floats on the CPU, a device array the kernel reads on the GPU
        self.step_scalars, self._upload = None, None
        if first is not None and is_gpu_array(first):
            self.step_scalars = xp_of(first).zeros(3, dtype=first.dtype)
            self._upload = Uploader()
        self._flat_grads = (None, None)                             # (ids of the last grads, the buffer they tile)
        self.t = 0

    def step(self, grads):
        self.prepare()
        self.update(grads)

    def prepare(self):
        """The next step's count, and its scalars: lr and the bias corrections 1 − βᵗ (on the GPU written to
        step_scalars, the copy queued, not awaited: ops/uploads.py)."""
        self.t += 1
        b1, b2 = self.betas
        scalars = (self.lr, 1 - b1 ** self.t, 1 - b2 ** self.t)     # lr and the bias corrections 1 − βᵗ
        if self._upload is None:
            self.step_scalars = scalars
        else:
            self._upload(np.array(scalars, dtype=self.step_scalars.dtype), out=self.step_scalars)

    def update(self, grads):
        """θ ← θ − lr·m̂/(√v̂ + eps) for every parameter, with the corrections prepare() made."""
        if grads.keys() != self.params.keys():
            raise ValueError(f"Adam.step needs a gradient for each parameter: missing "
                             f"{sorted(self.params.keys() - grads.keys())}, unexpected {sorted(grads.keys() - self.params.keys())}")
        if self.flat is not None:
            key = tuple(id(grads[k]) for k in self.params)
            if self._flat_grads[0] != key:
                self._flat_grads = (key, tiling(grads[k] for k in self.params))
            flat_g = self._flat_grads[1]
            if flat_g is not None:                                  # the whole model in one pass
                self._update(self.flat, flat_g, self.flat_m, self.flat_v)
                return
        for k, p in self.params.items():
            self._update(p, grads[k], self.m[k], self.v[k])

    def _update(self, p, g, m, v):
        adam(p, g, m, v, self.step_scalars, *self.betas, self.eps)  # ops/adam.py: adam_cpu or adam_gpu

    def state(self):
        """The settings and the step count (JSON-able), and the moment arrays."""
        settings = {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "t": self.t}
        arrays = {**{f"m/{k}": a for k, a in self.m.items()}, **{f"v/{k}": a for k, a in self.v.items()}}
        return settings, arrays

    def load_state(self, settings, arrays):
        """Restore what state() gave; every moment must be there with its parameter's shape and dtype. The
        moments are written into the arrays the optimizer has (a captured step keeps reading those)."""
        for k, p in self.params.items():
            for which in "mv":
                a = arrays.get(f"{which}/{k}")
                if a is None or a.shape != p.shape or a.dtype != p.dtype:
                    got = "nothing" if a is None else f"{a.dtype} {tuple(a.shape)}"
                    raise ValueError(f"optimizer state {which}/{k}: expected {p.dtype} {tuple(p.shape)}, got {got}")
        for k, p in self.params.items():
            self.m[k][...] = xp_of(p).asarray(arrays[f"m/{k}"])
            self.v[k][...] = xp_of(p).asarray(arrays[f"v/{k}"])
        self.lr, self.eps, self.t = float(settings["lr"]), float(settings["eps"]), int(settings["t"])
        self.betas = tuple(float(b) for b in settings["betas"])
