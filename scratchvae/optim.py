"""Adam (Kingma & Ba, 2015), updating the parameters in place.

With g the gradient at step t (t = 1, 2, …):
    m ← β₁·m + (1 − β₁)·g            v ← β₂·v + (1 − β₂)·g²
    m̂ = m / (1 − β₁ᵗ)                v̂ = v / (1 − β₂ᵗ)          (bias correction)
    θ ← θ − lr · m̂ / (√v̂ + ε)
"""
from .backend import is_gpu_array, xp_of


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
            g, m, v = grads[k], self.m[k], self.v[k]
            if is_gpu_array(p):                                      # the same three lines, fused in one kernel
                from .cuda import adam_update
                adam_update(p, g, m, v, self.lr, b1, b2, c1, c2, self.eps)
                continue
            xp = xp_of(p)
            m *= b1
            m += (1 - b1) * g                                        # m ← β₁m + (1 − β₁)g
            v *= b2
            v += (1 - b2) * (g * g)                                  # v ← β₂v + (1 − β₂)g²
            p -= self.lr * (m / c1) / (xp.sqrt(v / c2) + self.eps)   # θ ← θ − lr·m̂/(√v̂ + ε)

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
