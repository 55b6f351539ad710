"""Dense (fully connected) layer: y = x·W + b, W of shape (in_features, out_features).

    ∂L/∂W = xᵀ · dy,   ∂L/∂b = Σ_n dy[n],   ∂L/∂x = dy · Wᵀ
"""
import math

import numpy as np

from ...ops.blas import matmul
from .base import Layer


class Dense(Layer):
    def __init__(self, in_features, out_features, dtype=np.float32, rng=None, device="cpu"):
        super().__init__(dtype, device)
        self.in_features, self.out_features = int(in_features), int(out_features)
        if min(self.in_features, self.out_features) < 1:
            raise ValueError(f"Dense needs at least one feature in and out, got {in_features}→{out_features}")
        bound = 1 / math.sqrt(self.in_features)
        self._add_param("W", (self.in_features, self.out_features), bound, rng)
        self._add_param("b", (self.out_features,), bound, rng)

    def forward(self, x):
        self._check(x, 2, f"(N, {self.in_features})")
        if x.shape[1] != self.in_features:
            raise ValueError(f"Dense expects {self.in_features} input features, got {x.shape[1]}")
        self.cache = x                                        # (N, in)
        y = matmul(x, self.params["W"])                       # (N, out)
        y += self.params["b"]                                 # y = x·W + b
        return y

    def backward(self, dy):
        self.param_grads(dy)                                  # dW = xᵀ·dy, db = Σ_n dy
        return matmul(dy, self.params["W"].T)                 # (N, in)  dx = dy·Wᵀ

    def param_grads(self, dy):
        """Fill grads from dy (N, out): the part of backward that does not go on to x."""
        x = self._need_cache()                                # (N, in)
        matmul(x.T, dy, out=self.grads["W"])                  # (in, out)  dW = xᵀ·dy
        self.xp.sum(dy, axis=0, out=self.grads["b"])          # (out,)     db = Σ_n dy


class Heads(Layer):
    """Two Dense layers reading the same input, x → (mu(x), logvar(x)): the encoder's two heads.

    x feeds both, so its gradient is the sum of what the two send back (a variable used twice
    gets the sum of its gradients):

        ∂L/∂x = dy₁·W₁ᵀ + dy₂·W₂ᵀ      (each head's dx, summed into one array as it is made)

    No parameters of its own: the two layers keep theirs (params names them mu.W, …, logvar.b).
    """

    def __init__(self, mu, logvar):
        super().__init__(mu.dtype, mu.device, mu=mu, logvar=logvar)
        self.mu, self.logvar = mu, logvar

    def forward(self, x):
        return self.mu.forward(x), self.logvar.forward(x)           # (N, D), (N, D)

    def backward(self, dys):
        dy1, dy2 = dys                                              # (N, D), (N, D)
        self.mu.param_grads(dy1)
        self.logvar.param_grads(dy2)
        dx = self.xp.empty((self.mu.in_features, dy1.shape[0]), dtype=dy1.dtype).T  # (N, F), stored (F, N)
        matmul(dy1, self.mu.params["W"].T, out=dx)                  # dx = dy₁·W₁ᵀ
        return matmul(dy2, self.logvar.params["W"].T, out=dx, accumulate=True)   # (N, F)  + dy₂·W₂ᵀ
