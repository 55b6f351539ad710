"""Conv2D and ConvTranspose2D through im2col: each is one matrix product.

Conv2D, x (N, C, H, W), W (C_out, C, kh, kw), b (C_out,):

    col = im2col(x)                          (N, C·kh·kw, oh·ow)
    y   = W₂ · col + b,  W₂ = W.reshape(C_out, C·kh·kw)

    ∂L/∂b   = Σ_{n,p} dy[n, :, p]
    ∂L/∂W₂  = Σ_n dy_n · col_nᵀ              (the saved columns)
    ∂L/∂col = W₂ᵀ · dy,   ∂L/∂x = col2im(∂L/∂col)

ConvTranspose2D is the convolution's input-gradient path run forwards,
x (N, C_in, H, W), W (C_in, C_out, kh, kw):

    col = W₂ᵀ · x,  W₂ = W.reshape(C_in, C_out·kh·kw)     (N, C_out·kh·kw, H·W)
    y   = col2im(col) + b                                 (N, C_out, oh, ow)
    oh  = (H − 1)·sy − 2·ph + kh + output_padding

    ∂L/∂col = im2col(dy)             (col2im's adjoint)
    ∂L/∂W₂  = Σ_n x_n · ∂col_nᵀ      (the convolution's weight gradient, roles swapped)
    ∂L/∂x   = W₂ · ∂col              (an ordinary convolution of dy with W)

With the same W (and zero biases) ConvTranspose2D is the adjoint of Conv2D:
⟨conv(x), y⟩ = ⟨x, convT(y)⟩.
"""
import math

import numpy as np

from ..backend import xp_of
from ..im2col import col2im, im2col, out_size
from .base import Layer


def _pair(v, name):
    p = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(p) != 2 or not all(isinstance(a, (int, np.integer)) for a in p):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return int(p[0]), int(p[1])


def weight_grad(a, col):
    """Σ_n a_n · col_nᵀ for a (N, A, L) and col (N, K, L) → (A, K).

    Conv2D: a = dy, col = im2col(x).  ConvTranspose2D: a = x, col = im2col(dy).
    """
    return xp_of(a).tensordot(a, col, axes=((0, 2), (0, 2)))  # (A, K)


class _ConvBase(Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dtype, rng, device):
        super().__init__(dtype, device)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kh, self.kw = _pair(kernel_size, "kernel_size")
        self.sy, self.sx = _pair(stride, "stride")
        self.ph, self.pw = _pair(padding, "padding")
        if min(self.in_channels, self.out_channels, self.kh, self.kw, self.sy, self.sx) < 1:
            raise ValueError("channels, kernel_size and stride must be at least 1, got "
                             f"channels {in_channels}→{out_channels}, kernel {kernel_size}, stride {stride}")
        if min(self.ph, self.pw) < 0:
            raise ValueError(f"padding must be at least 0, got {padding}")

    def _check_image(self, x, channels):
        self._check(x, 4, f"(N, {channels}, H, W)")
        if x.shape[1] != channels:
            raise ValueError(f"{type(self).__name__} expects {channels} input channels, "
                             f"got {x.shape[1]} (input shape {tuple(x.shape)})")


class Conv2D(_ConvBase):
    """2-d convolution (cross-correlation, as in the common frameworks), NCHW."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dtype=np.float32, rng=None, device="cpu"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dtype, rng, device)
        bound = 1 / math.sqrt(self.in_channels * self.kh * self.kw)
        self._add_param("W", (self.out_channels, self.in_channels, self.kh, self.kw), bound, rng)
        self._add_param("b", (self.out_channels,), bound, rng)

    def output_shape(self, h, w):
        return out_size(h, self.kh, self.sy, self.ph), out_size(w, self.kw, self.sx, self.pw)

    def forward(self, x):
        self._check_image(x, self.in_channels)
        n, c, h, w = x.shape
        if self.kh > h + 2 * self.ph or self.kw > w + 2 * self.pw:
            raise ValueError(f"Conv2D kernel {self.kh}×{self.kw} is larger than the padded input "
                             f"{h + 2 * self.ph}×{w + 2 * self.pw} (input {h}×{w}, padding {self.ph}, {self.pw})")
        W, b = self.params["W"], self.params["b"]                   # (Co, C, kh, kw), (Co,)
        col = im2col(x, self.kh, self.kw, self.sy, self.sx, self.ph, self.pw)  # (N, C, kh, kw, oh, ow)
        oh, ow = col.shape[4:]
        col = col.reshape(n, c * self.kh * self.kw, oh * ow)        # (N, C*kh*kw, oh*ow)
        y = W.reshape(self.out_channels, -1) @ col                  # (N, Co, oh*ow)
        y = y.reshape(n, self.out_channels, oh, ow)                 # (N, Co, oh, ow)
        y += b[:, None, None]                                       # (N, Co, oh, ow)
        self.cache = (x.shape, col)
        return y

    def backward(self, dy):
        (n, c, h, w), col = self._need_cache()                      # col (N, C*kh*kw, oh*ow)
        W = self.params["W"]                                        # (Co, C, kh, kw)
        oh, ow = dy.shape[2:]
        dy = dy.reshape(n, self.out_channels, oh * ow)              # (N, Co, oh*ow)
        self.grads["b"] = dy.sum(axis=(0, 2))                       # (Co,)  db = Σ_{n,p} dy
        self.grads["W"] = weight_grad(dy, col).reshape(W.shape)     # (Co, C, kh, kw)  dW = Σ_n dy_n·col_nᵀ
        dcol = W.reshape(self.out_channels, -1).T @ dy              # (N, C*kh*kw, oh*ow)  dcol = Wᵀ·dy
        dcol = dcol.reshape(n, c, self.kh, self.kw, oh, ow)         # (N, C, kh, kw, oh, ow)
        return col2im(dcol, h, w, self.sy, self.sx, self.ph, self.pw)  # (N, C, H, W)  dx = col2im(dcol)


class ConvTranspose2D(_ConvBase):
    """Transposed convolution ("deconvolution"), NCHW; W is (C_in, C_out, kh, kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 dtype=np.float32, rng=None, device="cpu"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dtype, rng, device)
        self.opy, self.opx = _pair(output_padding, "output_padding")
        if not (0 <= self.opy < self.sy and 0 <= self.opx < self.sx):
            raise ValueError(f"output_padding must be at least 0 and smaller than the stride {self.sy, self.sx}, "
                             f"got {output_padding}")
        bound = 1 / math.sqrt(self.out_channels * self.kh * self.kw)
        self._add_param("W", (self.in_channels, self.out_channels, self.kh, self.kw), bound, rng)
        self._add_param("b", (self.out_channels,), bound, rng)

    def output_shape(self, h, w):
        return ((h - 1) * self.sy - 2 * self.ph + self.kh + self.opy,
                (w - 1) * self.sx - 2 * self.pw + self.kw + self.opx)

    def forward(self, x):
        self._check_image(x, self.in_channels)
        n, ci, h, w = x.shape
        oh, ow = self.output_shape(h, w)
        if oh < 1 or ow < 1:
            raise ValueError(f"ConvTranspose2D input {h}×{w} gives an empty output {oh}×{ow}: "
                             f"padding {self.ph, self.pw} is too large for kernel {self.kh}×{self.kw}")
        W, b = self.params["W"], self.params["b"]                   # (Ci, Co, kh, kw), (Co,)
        x2 = x.reshape(n, ci, h * w)                                # (N, Ci, H*W)
        col = W.reshape(ci, -1).T @ x2                              # (N, Co*kh*kw, H*W)  col = Wᵀ·x
        col = col.reshape(n, self.out_channels, self.kh, self.kw, h, w)  # (N, Co, kh, kw, H, W)
        y = col2im(col, oh, ow, self.sy, self.sx, self.ph, self.pw)  # (N, Co, oh, ow)
        y += b[:, None, None]                                       # (N, Co, oh, ow)
        self.cache = x2
        return y

    def backward(self, dy):
        x2 = self._need_cache()                                     # (N, Ci, H*W)
        W = self.params["W"]                                        # (Ci, Co, kh, kw)
        n = dy.shape[0]
        col = im2col(dy, self.kh, self.kw, self.sy, self.sx, self.ph, self.pw)  # (N, Co, kh, kw, H, W)
        h, w = col.shape[4:]
        col = col.reshape(n, -1, h * w)                             # (N, Co*kh*kw, H*W)  dcol = im2col(dy)
        self.grads["b"] = dy.sum(axis=(0, 2, 3))                    # (Co,)  db = Σ_{n,y,x} dy
        self.grads["W"] = weight_grad(x2, col).reshape(W.shape)     # (Ci, Co, kh, kw)  dW = Σ_n x_n·dcol_nᵀ
        dx = W.reshape(self.in_channels, -1) @ col                  # (N, Ci, H*W)  dx = W·dcol
        return dx.reshape(n, self.in_channels, h, w)                # (N, Ci, H, W)
