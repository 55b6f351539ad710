"""Elementwise activations. Neither has parameters.

ReLU:     y = max(x, 0),      ∂L/∂x = dy · [x > 0]
Sigmoid:  y = 1 / (1 + e^−x), ∂L/∂x = dy · y · (1 − y)   (sigmoid itself: scratchvae/ops/elementwise.py)
"""
import numpy as np

from ...ops.elementwise import relu_backward_inplace, relu_inplace, sigmoid
from .base import Layer


class ReLU(Layer):
    """In place (inplace=True), on the GPU, it keeps no mask: y > 0 exactly where x > 0, so backward reads
    the sign of its own output, and both passes run over the numbers in the order they lie in memory."""

    def __init__(self, dtype=np.float32, device="cpu", inplace=False):
        super().__init__(dtype, device)
        self.inplace = inplace  # write y over x and dx over dy: for a caller that owns both (the VAE)

    def forward(self, x):
        if self.inplace:
            y, self.cache = relu_inplace(x)                   # over x; kept: the mask, or on the GPU y itself
            return y
        self.cache = x > 0                                    # mask, same shape as x
        return self.xp.maximum(x, 0)                          # y = max(x, 0); a NaN stays NaN

    def backward(self, dy):
        if self.inplace:
            return relu_backward_inplace(dy, self._need_cache())  # dx = dy·[x > 0], over dy
        return self.xp.multiply(dy, self._need_cache())       # dx = dy·[x > 0]


class Sigmoid(Layer):
    def forward(self, x):
        y = sigmoid(x)
        self.cache = y
        return y

    def backward(self, dy):
        y = self._need_cache()
        return dy * y * (1 - y)                               # dx = dy·y·(1 − y)
