"""Elementwise activations. Neither has parameters.

ReLU:     y = max(x, 0),      ∂L/∂x = dy · [x > 0]
Sigmoid:  y = 1 / (1 + e^−x), ∂L/∂x = dy · y · (1 − y)   (sigmoid itself: scratchvae/elementwise.py)
"""
import numpy as np

from ..elementwise import sigmoid
from .base import Layer


class ReLU(Layer):
    def __init__(self, dtype=np.float32, device="cpu", inplace=False):
        super().__init__(dtype, device)
        self.inplace = inplace  # write y over x and dx over dy: for a caller that owns both (the VAE)

    def forward(self, x):
        self.cache = x > 0                                    # mask, same shape as x
        return self.xp.maximum(x, 0, out=x if self.inplace else None)  # y = max(x, 0); a NaN stays NaN

    def backward(self, dy):
        return self.xp.multiply(dy, self._need_cache(), out=dy if self.inplace else None)  # dx = dy·[x > 0]


class Sigmoid(Layer):
    def __init__(self, dtype=np.float32, device="cpu"):
        super().__init__(dtype, device)

    def forward(self, x):
        y = sigmoid(x)
        self.cache = y
        return y

    def backward(self, dy):
        y = self._need_cache()
        return dy * y * (1 - y)                               # dx = dy·y·(1 − y)
