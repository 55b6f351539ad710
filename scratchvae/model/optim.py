"""Adam (Kingma & Ba, 2015), updating the parameters in place.

With g the gradient at step t (t = 1, 2, …):
    m ← β₁·m + (1 − β₁)·g            v ← β₂·v + (1 − β₂)·g²
    m̂ = m / (1 − β₁ᵗ)                v̂ = v / (1 − β₂ᵗ)          (bias correction)
    θ ← θ − lr · m̂ / (√v̂ + ε)
"""
import numpy as np

from ..ops.devices import is_gpu_array, tiling, xp_of
from ..ops.threads import parallel
from ..ops.uploads import Uploader

PIECE = 1 << 18     # numbers per piece: a piece of p, g, m, v and two scratch rows (6 MB) stay in the cache


class Adam:
    """Adam over a dict of parameters, updated in place.

    When the parameters tile one flat buffer (a VAE's do: VAE.flatten) the moments are kept the same way,
    and a step whose gradients tile one buffer too (the VAE's) is one pass over the whole model: one
    kernel on the GPU. Otherwise each parameter is updated on its own; the arithmetic is the same.

    A step is prepare() (the step count and this step's bias corrections, on the host; on the GPU
    written to a small device array, hyper) and then update(grads) (device work only): a captured
    step (scratchvae/run/step.py) replays update with the corrections prepare wrote."""

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
            self.m, self.v = self._views(self.flat_m), self._views(self.flat_v)
        else:
            self.m = {k: xp_of(p).zeros_like(p) for k, p in params.items()}
            self.v = {k: xp_of(p).zeros_like(p) for k, p in params.items()}
        first = next(iter(params.values()), None)
        self.hyper = None                                           # GPU: [lr, 1 − β₁ᵗ, 1 − β₂ᵗ] for the kernel
        if first is not None and is_gpu_array(first):
            self.hyper = xp_of(first).zeros(3, dtype=first.dtype)
            self._upload = Uploader()
        self._flat_grads = (None, None)                             # (ids of the last grads, the buffer they tile)
        self.t = 0

    def _views(self, flat):
        out, off = {}, 0
        for k, p in self.params.items():
            out[k] = flat[off:off + p.size].reshape(p.shape)
            off += p.size
        return out

    def step(self, grads):
        self.prepare()
        self.update(grads)

    def prepare(self):
        """The next step's count and bias corrections 1 − βᵗ (on the GPU, written to hyper: queued, not awaited)."""
        self.t += 1
        b1, b2 = self.betas
        self.c1, self.c2 = 1 - b1 ** self.t, 1 - b2 ** self.t        # bias corrections 1 − βᵗ
        if self.hyper is not None:                                  # its copy queued, not awaited (uploads.py)
            self._upload(np.array([self.lr, self.c1, self.c2], dtype=self.hyper.dtype), out=self.hyper)

    def update(self, grads):
        """θ ← θ − lr·m̂/(√v̂ + ε) for every parameter, with the corrections prepare() made."""
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
        b1, b2 = self.betas
        if self.hyper is not None:
            adam_gpu(p, g, m, v, self.hyper, b1, b2, self.eps)
        else:
            adam_cpu(p, g, m, v, self.lr, b1, b2, self.c1, self.c2, self.eps)

    def state(self):
        """Hyper-parameters and the step count (JSON-able) and the moment arrays."""
        hyper = {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "t": self.t}
        arrays = {**{f"m/{k}": a for k, a in self.m.items()}, **{f"v/{k}": a for k, a in self.v.items()}}
        return hyper, arrays

    def load_state(self, hyper, arrays):
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
        self.lr, self.eps, self.t = float(hyper["lr"]), float(hyper["eps"]), int(hyper["t"])
        self.betas = tuple(float(b) for b in hyper["betas"])


def adam_cpu(p, g, m, v, lr, b1, b2, c1, c2, eps):
    """Adam's three lines on NumPy arrays, in place, a cache-sized piece at a time, pieces spread over the cores.

    Written whole (m *= b1; m += (1 − b1)·g; …) every line would stream all 4.3 M numbers of the VAE
    through memory and back, and make full-size temporaries; per piece they stay in the cache. The
    arithmetic is the same, operation for operation."""
    if not (p.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
        raise ValueError("Adam updates parameters in place and needs them C-contiguous")
    p, g, m, v = (a.reshape(-1) for a in (p, g, m, v))          # flat views of p, m, v (g may be a copy)

    def run(pieces):
        t, u = np.empty(PIECE, p.dtype), np.empty(PIECE, p.dtype)   # scratch rows of this thread
        for i in range(pieces.start, pieces.stop):
            s = slice(i * PIECE, (i + 1) * PIECE)
            pc, gc, mc, vc = p[s], g[s], m[s], v[s]
            tc, uc = t[:pc.size], u[:pc.size]
            mc *= b1
            np.multiply(gc, 1 - b1, out=tc)
            mc += tc                                                # m ← β₁m + (1 − β₁)g
            vc *= b2
            np.multiply(gc, gc, out=tc)
            tc *= 1 - b2
            vc += tc                                                # v ← β₂v + (1 − β₂)g²
            np.divide(mc, c1, out=uc)
            uc *= lr                                                # lr·m̂
            np.divide(vc, c2, out=tc)
            np.sqrt(tc, out=tc)
            tc += eps                                               # √v̂ + ε
            uc /= tc
            pc -= uc                                                # θ ← θ − lr·m̂/(√v̂ + ε)
    parallel(run, -(-p.size // PIECE), 4 * p.size)


def adam_gpu(p, g, m, v, hyper, b1, b2, eps):
    """Adam's three lines on CuPy arrays, fused in one kernel (cuda.py's ADAM_BODY): each number of p, m and
    v read and written once. hyper: a device array [lr, 1 − β₁ᵗ, 1 − β₂ᵗ] in p's dtype. The other scalars are
    passed in p's dtype too, 1 − β₁ and 1 − β₂ rounded from double as adam_cpu's NumPy arithmetic rounds them."""
    from ..ops.cuda import kernel
    t = p.dtype.type
    kernel("adam")(g, hyper, t(b1), t(b2), t(1 - b1), t(1 - b2), t(eps), p, m, v)
