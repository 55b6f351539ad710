"""Layers that only move numbers around: Reshape (and Flatten) and a centred Crop2D."""
import numpy as np

from .base import Layer


class Reshape(Layer):
    """(N, ...) → (N, *shape). Backward reshapes the gradient back."""

    def __init__(self, shape, dtype=np.float32, device="cpu"):
        super().__init__(dtype, device)
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x):
        size = int(np.prod(self.shape))
        if int(np.prod(x.shape[1:])) != size:
            raise ValueError(f"Reshape to {self.shape} needs {size} numbers per item, "
                             f"got shape {tuple(x.shape)}")
        self.cache = x.shape
        return x.reshape((x.shape[0],) + self.shape)

    def backward(self, dy):
        return dy.reshape(self._need_cache())


class Flatten(Layer):
    """(N, C, H, W) → (N, C·H·W). Backward reshapes the gradient back."""

    def forward(self, x):
        self.cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._need_cache())


class Crop2D(Layer):
    """Keep the centred (h, w) window of (N, C, H, W). Backward pads the gradient with zeros."""

    def __init__(self, h, w, dtype=np.float32, device="cpu"):
        super().__init__(dtype, device)
        self.h, self.w = int(h), int(w)

    def forward(self, x):
        self._check(x, 4, f"(N, C, ≥{self.h}, ≥{self.w})")
        H, W = x.shape[2:]
        if H < self.h or W < self.w:
            raise ValueError(f"Crop2D to {self.h}×{self.w} needs an input at least that large, got {H}×{W}")
        top, left = (H - self.h) // 2, (W - self.w) // 2
        self.cache = (x.shape, top, left)
        return x[:, :, top:top + self.h, left:left + self.w]

    def backward(self, dy):
        shape, top, left = self._need_cache()
        dx = self.xp.zeros(shape, dtype=dy.dtype)
        dx[:, :, top:top + self.h, left:left + self.w] = dy   # the cropped-away border gets no gradient
        return dx
