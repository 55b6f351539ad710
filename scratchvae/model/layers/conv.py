"""Conv2D and ConvTranspose2D through im2col: each is one matrix product.

The whole batch goes through one matrix product: COL = as_matrix(im2col(x)) holds a
column for every output position of every image, (C·kh·kw, oh·ow·N), and Y (C_out, oh·ow·N)
every output pixel (images_to_matrix / matrix_to_images; the images are stored (C, H, W, N),
see im2col.py, so these are free reshapes). The column buffers are big (4 to 9 times the
images) and kept from step to step (Layer._buffer).

Conv2D, x (N, C, H, W), W (C_out, C, kh, kw), b (C_out,):

    COL = as_matrix(im2col(x))             (C·kh·kw, oh·ow·N)
    Y   = W₂ · COL + b,  W₂ = W.reshape(C_out, C·kh·kw)

    ∂L/∂b   = Σ over columns of dY
    ∂L/∂W₂  = dY · COLᵀ                    (the saved columns)
    ∂L/∂COL = W₂ᵀ · dY,   ∂L/∂x = col2im(∂L/∂COL)

ConvTranspose2D is the convolution's input-gradient path run forwards,
x (N, C_in, H, W), W (C_in, C_out, kh, kw):

    COL = W₂ᵀ · X,  W₂ = W.reshape(C_in, C_out·kh·kw),  X = images_to_matrix(x)   (C_out·kh·kw, H·W·N)
    y   = col2im(COL) + b                                 (N, C_out, oh, ow)
    oh  = (H − 1)·sy − 2·ph + kh + output_padding

    ∂L/∂COL = as_matrix(im2col(dy))   (col2im's adjoint)
    ∂L/∂W₂  = X · ∂COLᵀ               (the convolution's weight gradient, roles swapped)
    ∂L/∂X   = W₂ · ∂COL               (an ordinary convolution of dy with W)

With the same W (and zero biases) ConvTranspose2D is the adjoint of Conv2D:
⟨conv(x), y⟩ = ⟨x, convT(y)⟩.
"""
import math

import numpy as np

from ...ops.devices import Op
from ...ops.blas import matmul
from ...ops.elementwise import add_bias_rows, row_sums
from ...ops.im2col import as_matrix, col2im, from_matrix, im2col, images_to_matrix, matrix_to_images
from ...ops.sizes import conv_out_size, conv_transpose_out_size
from .base import Layer


def _pair(v, name):
    p = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(p) != 2 or not all(isinstance(a, (int, np.integer)) for a in p):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return int(p[0]), int(p[1])


def weight_grad_cpu(a, col_mat, out):
    """out = a · COLᵀ for a (A, N·L) and COL (K, N·L), out (A, K): a sum over every image and position.

    Conv2D: a = dY, COL = the columns of x.  ConvTranspose2D: a = X, COL = the columns of dy.
    When the sum is long (N·L well above A and K), OpenBLAS runs the same product about 10% faster
    as (COL·aᵀ)ᵀ; the copy into out is small then.
    """
    if a.shape[1] >= 8 * max(a.shape[0], col_mat.shape[0]):
        out[...] = matmul(col_mat, a.T).T                           # (A, K)
        return out
    return matmul(a, col_mat.T, out=out)                            # (A, K)


def weight_grad_gpu(a, col_mat, out):
    """The same by cuBLAS, which reads COLᵀ as it lies."""
    return matmul(a, col_mat.T, out=out)                            # (A, K)


weight_grad = Op("weight_grad", cpu=weight_grad_cpu, gpu=weight_grad_gpu)


def paint(x_mat, W, nhw, out_hw, sy, sx, ph, pw, bias=None, col_mat=None):
    """A transposed convolution through col2im: every input pixel's kernel painted onto the output, overlaps
    added. x_mat (Ci, H·W·N) the input's matrix, W (Ci, Co, kh, kw), nhw = (N, H, W), out_hw = (oh, ow);
    col_mat: a (Co·kh·kw, H·W·N) buffer for the columns (a new one when None). Returns (N, Co, oh, ow)."""
    (n, h, w), (ci, co, kh, kw) = nhw, W.shape
    # docs: transposed-forward
    col_mat = matmul(W.reshape(ci, -1).T, x_mat, out=col_mat)   # (Co*kh*kw, H*W*N)  COL = Wᵀ·X
    col = from_matrix(col_mat, (n, co, kh, kw, h, w))           # (N, Co, kh, kw, H, W)
    return col2im(col, *out_hw, sy, sx, ph, pw, bias=bias)      # (N, Co, oh, ow)  y = col2im(COL) + b
    # end docs: transposed-forward


class _ConvBase(Layer):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dtype, device):
        super().__init__(dtype, device)
        self.input_grad = True   # False: backward fills grads but skips ∂L/∂x (a first layer needs none)
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
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dtype, device)
        bound = 1 / math.sqrt(self.in_channels * self.kh * self.kw)
        self._add_param("W", (self.out_channels, self.in_channels, self.kh, self.kw), bound, rng)
        self._add_param("b", (self.out_channels,), bound, rng)

    def output_shape(self, h, w):
        return conv_out_size(h, self.kh, self.sy, self.ph), conv_out_size(w, self.kw, self.sx, self.pw)

    def forward(self, x):
        self._check_image(x, self.in_channels)
        n, c, h, w = x.shape
        if self.kh > h + 2 * self.ph or self.kw > w + 2 * self.pw:
            raise ValueError(f"Conv2D kernel {self.kh}×{self.kw} is larger than the padded input "
                             f"{h + 2 * self.ph}×{w + 2 * self.pw} (input {h}×{w}, padding {self.ph}, {self.pw})")
        W, b = self.params["W"], self.params["b"]                   # (Co, C, kh, kw), (Co,)
        oh, ow = self.output_shape(h, w)
        buf = self._buffer("col", (c, self.kh, self.kw, oh, ow, n))  # kept from step to step
        col = im2col(x, self.kh, self.kw, self.sy, self.sx, self.ph, self.pw, out=buf)  # (N, C, kh, kw, oh, ow)
        col_mat = as_matrix(col)                                    # (C*kh*kw, oh*ow*N)
        y_mat = matmul(W.reshape(self.out_channels, -1), col_mat)  # (Co, oh*ow*N)  Y = W·COL
        add_bias_rows(y_mat, b)                                     # (Co, oh*ow*N)  Y += b
        self.cache = (x.shape, col_mat)
        return matrix_to_images(y_mat, n, oh, ow)                   # (N, Co, oh, ow)

    def backward(self, dy):
        (n, c, h, w), col_mat = self._need_cache()                  # col_mat (C*kh*kw, oh*ow*N)
        dy_mat = images_to_matrix(dy)                               # (Co, oh*ow*N)  (a copy unless stored batch-last)
        row_sums(dy_mat, out=self.grads["b"])                       # (Co,)  db = Σ_{n,r,s} dy
        weight_grad(dy_mat, col_mat, out=self.grads["W"].reshape(self.out_channels, -1))  # (Co, C*kh*kw)  dW = dY·COLᵀ
        if not self.input_grad:
            return None
        dy = matrix_to_images(dy_mat, n, *dy.shape[2:])            # (N, Co, oh, ow) view, stored batch-last
        return self.input_gradient(dy, h, w)                        # (N, C, H, W)

    def input_gradient(self, dy, h, w):
        """dx (N, C, h, w) from dy (N, Co, oh, ow): the columns' gradient painted back onto the image. (The
        one step FastConv2D does another way: it is the transposed convolution of dy with W.)"""
        W = self.params["W"]                                        # (Co, C, kh, kw)
        n, _, oh, ow = dy.shape
        # docs: conv-input-gradient
        dcol_mat = matmul(W.reshape(self.out_channels, -1).T, images_to_matrix(dy))  # (C*kh*kw, oh*ow*N)  dCOL = Wᵀ·dY
        dcol = from_matrix(dcol_mat, (n, self.in_channels, self.kh, self.kw, oh, ow))  # (N, C, kh, kw, oh, ow)
        return col2im(dcol, h, w, self.sy, self.sx, self.ph, self.pw)  # (N, C, H, W)  dx = col2im(dcol)
        # end docs: conv-input-gradient


class ConvTranspose2D(_ConvBase):
    """Transposed convolution ("deconvolution"), NCHW; W is (C_in, C_out, kh, kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 dtype=np.float32, rng=None, device="cpu"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dtype, device)
        self.opy, self.opx = _pair(output_padding, "output_padding")
        if not (0 <= self.opy < self.sy and 0 <= self.opx < self.sx):
            raise ValueError(f"output_padding must be at least 0 and smaller than the stride {self.sy, self.sx}, "
                             f"got {output_padding}")
        bound = 1 / math.sqrt(self.out_channels * self.kh * self.kw)
        self._add_param("W", (self.in_channels, self.out_channels, self.kh, self.kw), bound, rng)
        self._add_param("b", (self.out_channels,), bound, rng)

    def output_shape(self, h, w):
        return (conv_transpose_out_size(h, self.kh, self.sy, self.ph, self.opy),
                conv_transpose_out_size(w, self.kw, self.sx, self.pw, self.opx))

    def forward(self, x):
        self._check_image(x, self.in_channels)
        n, ci, h, w = x.shape
        oh, ow = self.output_shape(h, w)
        if oh < 1 or ow < 1:
            raise ValueError(f"ConvTranspose2D input {h}×{w} gives an empty output {oh}×{ow}: "
                             f"padding {self.ph, self.pw} is too large for kernel {self.kh}×{self.kw}")
        x_mat = images_to_matrix(x)                                 # (Ci, H*W*N)
        y = paint(x_mat, self.params["W"], (n, h, w), (oh, ow), self.sy, self.sx, self.ph, self.pw,
                  self.params["b"])                                 # (N, Co, oh, ow)
        self.cache = (x.shape, x_mat)
        return y

    def backward(self, dy):
        (n, ci, h, w), x_mat = self._need_cache()                   # x_mat (Ci, H*W*N)
        W = self.params["W"]                                        # (Ci, Co, kh, kw)
        buf = self._buffer("dcol", (self.out_channels, self.kh, self.kw, h, w, n))  # kept from step to step
        dcol = im2col(dy, self.kh, self.kw, self.sy, self.sx, self.ph, self.pw, out=buf)  # (N, Co, kh, kw, H, W)
        dcol_mat = as_matrix(dcol)                                  # (Co*kh*kw, H*W*N)  dCOL = im2col(dy)
        row_sums(images_to_matrix(dy), out=self.grads["b"])         # (Co,)  db = Σ_{n,p,q} dy
        weight_grad(x_mat, dcol_mat, out=self.grads["W"].reshape(ci, -1))  # (Ci, Co*kh*kw)  dW = X·dCOLᵀ
        if not self.input_grad:
            return None
        dx_mat = matmul(W.reshape(ci, -1), dcol_mat)                # (Ci, H*W*N)  dX = W·dCOL
        return matrix_to_images(dx_mat, n, h, w)                    # (N, Ci, H, W)
