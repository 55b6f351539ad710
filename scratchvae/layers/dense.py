"""Dense (fully connected) layer: y = x·W + b, W of shape (in_features, out_features).

    ∂L/∂W = xᵀ · dy,   ∂L/∂b = Σ_n dy[n],   ∂L/∂x = dy · Wᵀ
"""
import math

import numpy as np

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
        return x @ self.params["W"] + self.params["b"]        # (N, out)

    def backward(self, dy):
        x = self._need_cache()                                # (N, in)
        self.grads["W"] = x.T @ dy                            # (in, out)  dW = xᵀ·dy
        self.grads["b"] = dy.sum(axis=0)                      # (out,)     db = Σ_n dy
        return dy @ self.params["W"].T                        # (N, in)    dx = dy·Wᵀ
