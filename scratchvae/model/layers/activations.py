"""Elementwise activations. Neither has parameters.

ReLU:     y = max(x, 0),      ∂L/∂x = dy · [x > 0]
Sigmoid:  y = 1 / (1 + e^−x), ∂L/∂x = dy · y · (1 − y)   (sigmoid itself: scratchvae/ops/elementwise.py)
"""
import numpy as np

from ...ops.devices import in_memory_order
from ...ops.elementwise import relu_backward_gpu, sigmoid
from .base import Layer


class ReLU(Layer):
    """In place (inplace=True), on the GPU, it keeps no mask: y > 0 exactly where x > 0, so backward reads
    the sign of its own output, and both passes run over the numbers in the order they lie in memory."""

    def __init__(self, dtype=np.float32, device="cpu", inplace=False):
        super().__init__(dtype, device)
        self.inplace = inplace  # write y over x and dx over dy: for a caller that owns both (the VAE)

    def forward(self, x):
        if self.inplace and self.device == "gpu":
            flat = in_memory_order(x)                         # x as it lies: one streaming pass
            v = flat[0] if flat else x
            self.xp.maximum(v, 0, out=v)                      # y = max(x, 0) over x
            self.cache = x                                    # now y: its sign is the mask
            return x
        self.cache = x > 0                                    # mask, same shape as x
        return self.xp.maximum(x, 0, out=x if self.inplace else None)  # y = max(x, 0); a NaN stays NaN

    def backward(self, dy):
        if self.inplace and self.device == "gpu":
            y = self._need_cache()
            if relu_backward_gpu(dy, y):                      # dy ← dy·[y > 0], in memory order
                return dy
            return self.xp.multiply(dy, y > 0, out=dy)        # dx = dy·[y > 0]
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
