"""Elementwise activations. Neither has parameters.

ReLU:     y = max(x, 0),      ∂L/∂x = dy · [x > 0]
Sigmoid:  y = 1 / (1 + e^−x), ∂L/∂x = dy · y · (1 − y)
"""
import numpy as np

from ..backend import xp_of
from .base import Layer


def sigmoid(x):
    """1 / (1 + e^−x) without overflow, as e^min(x, 0) / (1 + e^−|x|): that is 1/(1 + e^−x) for x ≥ 0
    and e^x/(1 + e^x) below, and no exponent is ever positive. (Elementwise functions only, which keep
    x's memory layout; an xp.where would copy the layers' batch-last images into NCHW order, slowly.)"""
    xp = xp_of(x)
    return xp.exp(xp.minimum(x, 0)) / (1 + xp.exp(-xp.abs(x)))


class ReLU(Layer):
    def __init__(self, dtype=np.float32, device="cpu", inplace=False):
        super().__init__(dtype, device)
        self.frozen = None     # a mask to use instead of x > 0 (gradient checks hold the pattern fixed)
        self.inplace = inplace  # write y over x and dx over dy: for a caller that owns both (the VAE)

    def forward(self, x):
        out = x if self.inplace else None
        if self.frozen is not None:                           # the on/off pattern held fixed
            self.cache = self.frozen
            return self.xp.multiply(x, self.frozen, out=out)
        self.cache = x > 0                                    # mask, same shape as x
        return self.xp.maximum(x, 0, out=out)                 # y = max(x, 0); a NaN stays NaN

    def backward(self, dy):
        out = dy if self.inplace else None
        return self.xp.multiply(dy, self._need_cache(), out=out)  # dx = dy·[x > 0]


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
