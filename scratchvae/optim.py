"""Adam (Kingma & Ba, 2015), updating the parameters in place.

With g the gradient at step t (t = 1, 2, …):
    m ← β₁·m + (1 − β₁)·g            v ← β₂·v + (1 − β₂)·g²
    m̂ = m / (1 − β₁ᵗ)                v̂ = v / (1 − β₂ᵗ)          (bias correction)
    θ ← θ − lr · m̂ / (√v̂ + ε)
"""
import numpy as np

from .backend import is_gpu_array, xp_of
from .threads import parallel

PIECE = 1 << 18     # numbers per piece: a piece of p, g, m, v and two scratch rows (6 MB) stay in the cache


class Adam:
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        if not lr > 0:
            raise ValueError(f"Adam needs a learning rate above 0, got {lr}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam needs betas in [0, 1), got {betas}")
        self.params = params
        self.lr, self.betas, self.eps = float(lr), (float(betas[0]), float(betas[1])), float(eps)
        self.m = {k: xp_of(p).zeros_like(p) for k, p in params.items()}
        self.v = {k: xp_of(p).zeros_like(p) for k, p in params.items()}
        self.t = 0

    def step(self, grads):
        if grads.keys() != self.params.keys():
            raise ValueError(f"Adam.step needs a gradient for each parameter: missing "
                             f"{sorted(self.params.keys() - grads.keys())}, unexpected {sorted(grads.keys() - self.params.keys())}")
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t                 # bias corrections 1 − βᵗ
        for k, p in self.params.items():
            update = adam_gpu if is_gpu_array(p) else adam_cpu
            update(p, grads[k], self.m[k], self.v[k], self.lr, b1, b2, c1, c2, self.eps)

    def state(self):
        """Hyper-parameters and the step count (JSON-able) and the moment arrays."""
        hyper = {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "t": self.t}
        arrays = {**{f"m/{k}": a for k, a in self.m.items()}, **{f"v/{k}": a for k, a in self.v.items()}}
        return hyper, arrays

    def load_state(self, hyper, arrays):
        """Restore what state() gave; every moment must be there with its parameter's shape and dtype."""
        for k, p in self.params.items():
            for which in "mv":
                a = arrays.get(f"{which}/{k}")
                if a is None or a.shape != p.shape or a.dtype != p.dtype:
                    got = "nothing" if a is None else f"{a.dtype} {tuple(a.shape)}"
                    raise ValueError(f"optimizer state {which}/{k}: expected {p.dtype} {tuple(p.shape)}, got {got}")
        for k, p in self.params.items():
            self.m[k] = xp_of(p).asarray(arrays[f"m/{k}"])
            self.v[k] = xp_of(p).asarray(arrays[f"v/{k}"])
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


def adam_gpu(p, g, m, v, lr, b1, b2, c1, c2, eps):
    """Adam's three lines on CuPy arrays, fused in one kernel (cuda.py's ADAM_BODY): each number of p, m and
    v read and written once. The scalars are passed in p's dtype."""
    from .cuda import kernel
    t = p.dtype.type
    kernel("adam")(g, t(lr), t(b1), t(b2), t(c1), t(c2), t(eps), p, m, v)
