"""The fast convolutions the VAE runs on: Conv2D and ConvTranspose2D with their transposed
direction done the fastest way the shapes allow, and a dense layer joined to the transposed
convolution it feeds (DenseThenDeconv).

Each convolution layer has one direction that im2col turns into a single matrix product
(Conv2D's forward, ConvTranspose2D's backward to x) and one that paints and adds up
overlaps (col2im: Conv2D's backward to x, ConvTranspose2D's forward). The second is the
transposed convolution of its input with the layer's W:

    Conv2D:           dx = conv_transpose(dy, W)        W (C_out, C_in, kh, kw) read as (C_in', C_out', …)
    ConvTranspose2D:   y = conv_transpose(x, W) + b

These layers compute that transposed convolution the fastest way the shapes allow, and
everything else exactly as the layers they extend:

    dense    a 1×1 input without padding: y = x · W₂, one matrix product, nothing to paint
    parity   split by output parity (scratchvae/ops/parity.py): one im2col of the input, one
             matrix product, every output pixel written once; used when it does at most
             PARITY_MAX_PRODUCTS× the multiplications of col2im (the grid's border costs some)
             and its column buffer is no larger than col2im's
    col2im   otherwise, as in layers/conv.py

Same parameters, same gradients, same results up to the order of the sums (the tests check
all three methods against the im2col layers, the loops and finite differences). The
derivations are in docs/speed.md, "The fast path".
"""
from typing import NamedTuple

from ...ops.devices import xp_of
from ...ops.blas import matmul
from ...ops.elementwise import add_bias_rows, row_sums
from ...ops.im2col import images_to_matrix
from ...ops.parity import PARITY_MAX_PRODUCTS, conv_transpose_parity, new_buffer_each_time, parity_costs
from ...ops.sizes import conv_transpose_out_size, skipped_rows
from .base import Layer
from .conv import Conv2D, ConvTranspose2D, paint




def transpose_method(ci, co, h, w, kh, kw, sy, sx, ph, pw, opy, opx):
    """"dense", "parity" or "col2im": how to compute a C_in → C_out transposed convolution of an h×w input."""
    if h == w == 1 and ph == pw == 0:
        return "dense"
    products, buffer = parity_costs(ci, co, h, w, kh, kw, sy, sx, ph, pw, opy, opx)
    if products <= PARITY_MAX_PRODUCTS and buffer <= 1:
        return "parity"
    return "col2im"


def by_dense(x, W, sy, sx, ph, pw, opy, opx, buffer, bias):
    """A 1×1 input without padding: each image paints one kernel, y = x·W₂, one matrix product."""
    n, ci, h, w = x.shape
    _, co, kh, kw = W.shape
    if (h, w, ph, pw) != (1, 1, 0, 0):
        raise ValueError(f"the dense method needs a 1×1 input and no padding, got {h}×{w}, padding {ph, pw}")
    oh, ow = conv_transpose_out_size(h, kh, sy, ph, opy), conv_transpose_out_size(w, kw, sx, pw, opx)
    y = xp_of(x).zeros((co, oh, ow, n), dtype=x.dtype)              # (Co, oh, ow, N); output_padding rows stay 0
    y[:, :kh, :kw] = matmul(W.reshape(ci, -1).T, images_to_matrix(x)).reshape(co, kh, kw, n)  # Y = W₂ᵀ·X
    if bias is not None:
        add_bias_rows(y.reshape(co, -1), bias)                      # (Co, oh*ow*N)
    return y.transpose(3, 0, 1, 2)                                  # (N, Co, oh, ow) view


def by_col2im(x, W, sy, sx, ph, pw, opy, opx, buffer, bias):
    """As ConvTranspose2D paints (conv.paint), its columns in the buffer "kernels"."""
    n, ci, h, w = x.shape
    _, co, kh, kw = W.shape
    oh, ow = conv_transpose_out_size(h, kh, sy, ph, opy), conv_transpose_out_size(w, kw, sx, pw, opx)
    return paint(images_to_matrix(x), W, (n, h, w), (oh, ow), sy, sx, ph, pw, bias,
                 col_mat=buffer("kernels", (co * kh * kw, h * w * n)))   # (N, Co, oh, ow)


BY_METHOD = {"dense": by_dense, "parity": conv_transpose_parity, "col2im": by_col2im}
METHODS = ("auto", *BY_METHOD)


def conv_transpose(x, W, sy, sx, ph, pw, opy, opx, method="auto", buffer=None, bias=None):
    """The transposed convolution of x (N, Ci, H, W) with W (Ci, Co, kh, kw), plus bias (Co,) when given:
    (N, Co, oh, ow), stored (Co, oh, ow, N), by `method` (one of BY_METHOD, or "auto": transpose_method's
    choice). buffer(name, shape): where temporaries go (see Layer._buffer); its names, "kernels", "windows",
    "wp" and "phases", are not the im2col layers' own "col" and "dcol"."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        (n, ci, h, w), (_, co, kh, kw) = x.shape, W.shape
        method = transpose_method(ci, co, h, w, kh, kw, sy, sx, ph, pw, opy, opx)
    return BY_METHOD[method](x, W, sy, sx, ph, pw, opy, opx, buffer or new_buffer_each_time(x), bias)


class Transposed(NamedTuple):
    """The transposed convolution inside a fast layer, for one input size: channels in and out, its input's
    size, and the output_padding that gives the size wanted."""
    ci: int
    co: int
    h: int
    w: int
    opy: int
    opx: int


class _Method:
    """The fast layers' extra argument, method: "auto", or one forced (the tests try each); and what
    their transposed convolution is for a given input size."""

    def __init__(self, *args, method="auto", **kwargs):
        super().__init__(*args, **kwargs)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method

    def method_for(self, h, w):
        """"dense", "parity" or "col2im": how the transposed convolution runs for an h×w input to the layer."""
        if self.method != "auto":
            return self.method
        t = self.transposed(h, w)
        return transpose_method(t.ci, t.co, t.h, t.w, self.kh, self.kw, self.sy, self.sx, self.ph, self.pw,
                                t.opy, t.opx)


class FastConv2D(_Method, Conv2D):
    """Conv2D with its input gradient, a transposed convolution of dy, done the fastest way."""

    def transposed(self, h, w):
        """The Transposed convolution that gives dx for an h×w input: its channels in and out, its input
        size (the output's, oh×ow) and the output_padding that gives back h×w."""
        oh, ow = self.output_shape(h, w)
        opy, opx = skipped_rows(h, self.kh, self.sy, self.ph), skipped_rows(w, self.kw, self.sx, self.pw)
        return Transposed(self.out_channels, self.in_channels, oh, ow, opy, opx)

    def input_gradient(self, dy, h, w):
        """dx = convT(dy, W) (N, C, h, w), by the method method_for picks."""
        t = self.transposed(h, w)
        return conv_transpose(dy, self.params["W"], self.sy, self.sx, self.ph, self.pw, t.opy, t.opx,
                              self.method_for(h, w), self._buffer)  # (N, C, h, w)


class FastConvTranspose2D(_Method, ConvTranspose2D):
    """ConvTranspose2D with its forward, a transposed convolution, done the fastest way."""

    def transposed(self, h, w):
        """The layer's own forward for an h×w input, as a Transposed."""
        return Transposed(self.in_channels, self.out_channels, h, w, self.opy, self.opx)

    def forward(self, x):
        self._check_image(x, self.in_channels)
        h, w = x.shape[2:]
        oh, ow = self.output_shape(h, w)
        if oh < 1 or ow < 1:
            return super().forward(x)                               # which says what is wrong
        W, b = self.params["W"], self.params["b"]                   # (Ci, Co, kh, kw), (Co,)
        y = conv_transpose(x, W, self.sy, self.sx, self.ph, self.pw, self.opy, self.opx, self.method_for(h, w),
                           self._buffer, bias=b)                    # (N, Co, oh, ow)  y = convT(x, W) + b
        self.cache = (x.shape, images_to_matrix(x))                 # X (Ci, H*W*N)
        return y


class DenseThenDeconv(Layer):
    """A Dense layer feeding, as a 1×1 image, a transposed convolution without padding (the VAE's
    decoder.dense and deconv1): two linear maps in a row, so one linear map, and computed as one.

    With W₁ = deconv W as an (F, C_out·kh·kw) matrix and h = z·W_d + b_d the dense layer's output,
    deconv1 without its bias is Y = h·W₁ (the dense method: one kernel painted per image), so

        Y = z·(W_d·W₁) + b_d·W₁          (N, C_out·kh·kw)

    W_d·W₁ costs D·F·C_out·kh·kw multiplications whatever the batch; h·W₁ costs N·F·C_out·kh·kw
    (32 against 100 for the VAE at batch 100, against 1000 at batch 1000). The backward, from dY:

        ∂L/∂W₁  = hᵀ·dY                   ∂L/∂b₁  = Σ over every output pixel of dy
        ∂L/∂W_d = zᵀ·(dY·W₁ᵀ) = (zᵀ·dY)·W₁ᵀ    (the small product zᵀ·dY first)
        ∂L/∂b_d = (Σ_n dY)·W₁ᵀ            ∂L/∂z   = dY·(W_d·W₁)ᵀ

    Both layers' grads are filled, with what they would get one after the other (the tests check).
    """

    def __init__(self, dense, deconv):
        if deconv.ph or deconv.pw or dense.out_features != deconv.in_channels:
            raise ValueError(f"DenseThenDeconv needs a transposed convolution without padding reading the "
                             f"dense layer's {dense.out_features} outputs as channels, got padding "
                             f"{deconv.ph, deconv.pw} and {deconv.in_channels} input channels")
        super().__init__(dense.dtype, dense.device, dense=dense, deconv=deconv)   # params: dense.W, …, deconv.b
        self.dense, self.deconv = dense, deconv

    def forward(self, z):
        dense, dc = self.dense, self.deconv
        dense._check(z, 2, f"(N, {dense.in_features})")
        n = z.shape[0]
        co, kh, kw = dc.out_channels, dc.kh, dc.kw
        oh, ow = dc.output_shape(1, 1)
        Wd, bd = dense.params["W"], dense.params["b"]               # (D, F), (F,)
        W1 = dc.params["W"].reshape(dense.out_features, -1)         # (F, Co*kh*kw)
        h = matmul(z, Wd)                                           # (N, F)  kept for ∂W₁
        h += bd                                                     # h = z·W_d + b_d
        weff = matmul(Wd, W1)                                       # (D, Co*kh*kw)  W_d·W₁
        yt = matmul(weff.T, z.T)                                    # (K, N)  Yᵀ = (W_d·W₁)ᵀzᵀ
        add_bias_rows(yt, matmul(bd[None, :], W1).reshape(-1))      # (K, N)  + (b_d·W₁)ᵀ
        if (oh, ow) == (kh, kw):                                    # no output_padding: Yᵀ is y, stored
            y = yt.reshape(co, oh, ow, n)                           # (Co, oh, ow, N)
        else:
            y = dc.xp.zeros((co, oh, ow, n), dtype=z.dtype)         # (Co, oh, ow, N); output_padding rows: bias only
            y[:, :kh, :kw] = yt.reshape(co, kh, kw, n)
        add_bias_rows(y.reshape(co, -1), dc.params["b"])            # (Co, oh*ow*N)  + b₁
        self.cache = (z, h, W1, weff)
        return y.transpose(3, 0, 1, 2)                              # (N, Co, oh, ow) view

    def backward(self, dy):
        z, h, W1, weff = self._need_cache()                         # (N, D), (N, F), (F, K), (D, K)
        dc, dense = self.deconv, self.dense
        dyt = images_to_matrix(dy[:, :, :dc.kh, :dc.kw]).reshape(-1, z.shape[0])  # (K, N)  dYᵀ, painted pixels
        row_sums(images_to_matrix(dy), out=dc.grads["b"])           # (Co,)  db₁ = Σ_{n,p,q} dy
        matmul(h.T, dyt.T, out=dc.grads["W"].reshape(W1.shape))    # (F, K)  ∂W₁ = hᵀ·dY
        zdy = matmul(dyt, z)                                        # (K, D)  (zᵀ·dY)ᵀ, the small product first
        matmul(zdy.T, W1.T, out=dense.grads["W"])                   # (D, F)  ∂W_d = (zᵀ·dY)·W₁ᵀ
        sum_dy = row_sums(dyt, out=dc.xp.empty(dyt.shape[0], dtype=dyt.dtype))  # (K,)  Σ_n dY
        matmul(W1, sum_dy[:, None], out=dense.grads["b"][:, None])  # (F,)    ∂b_d = (Σ_n dY)·W₁ᵀ
        return matmul(dyt.T, weff.T)                                # (N, D)  ∂z = dY·(W_d·W₁)ᵀ
