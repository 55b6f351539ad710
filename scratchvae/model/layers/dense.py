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

    def backward(self, dy, out=None, accumulate=False):
        """dx (N, in), into out when given (added to it with accumulate)."""
        x = self._need_cache()                                # (N, in)
        matmul(x.T, dy, out=self.grads["W"])                  # (in, out)  dW = xᵀ·dy
        self.xp.sum(dy, axis=0, out=self.grads["b"])          # (out,)     db = Σ_n dy
        return matmul(dy, self.params["W"].T, out=out, accumulate=accumulate)  # (N, in)  dx = dy·Wᵀ


class Heads:
    """Two layers reading the same input, x → (first(x), second(x)): the encoder's mu and logvar heads.

    x feeds both, so its gradient is the sum of what the two send back (a variable used twice
    gets the sum of its gradients):

        ∂L/∂x = first.backward(dy₁) + second.backward(dy₂)      (dense heads: dy₁·W₁ᵀ + dy₂·W₂ᵀ)

    No parameters of its own: the two layers keep theirs.
    """

    def __init__(self, first, second):
        self.first, self.second = first, second

    def forward(self, x):
        return self.first.forward(x), self.second.forward(x)       # (N, D), (N, D)

    def backward(self, dys):
        dy1, dy2 = dys                                              # (N, D), (N, D)
        xp, n = self.first.xp, dy1.shape[0]
        dx = xp.empty((self.first.in_features, n), dtype=dy1.dtype).T  # (N, F), stored (F, N) as images are
        self.first.backward(dy1, out=dx)                            # dx = dy₁·W₁ᵀ
        return self.second.backward(dy2, out=dx, accumulate=True)   # (N, F)  x feeds both: + dy₂·W₂ᵀ
