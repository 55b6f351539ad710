"""Elementwise functions more than one module needs: the sigmoid (a layer, and the Bernoulli
loss's gradient) and the softplus (the Bernoulli loss), both written so that no exponent is
ever positive, so neither overflows for any input; and the layers' passes over a (C, L) matrix
(a layer's output stored (C, H, W, N) is one): a bias added to each row, the rows' sums (a
bias's gradient), and the ReLU's backward on the GPU. Each of those has its CPU and GPU
versions side by side; the GPU's run over the numbers in the order they lie in memory.

Elementwise operations only: each keeps its input's memory layout (an xp.where would copy the
layers' batch-last images into NCHW order, slowly).
"""
import numpy as np

from . import blas
from .cuda import Kernel
from .devices import Op, in_memory_order, xp_of


def sigmoid(x):
    """1 / (1 + e^−x) without overflow, as e^min(x, 0) / (1 + e^−|x|): that is 1/(1 + e^−x) for x ≥ 0
    and e^x/(1 + e^x) below, and no exponent is ever positive."""
    xp = xp_of(x)
    return xp.exp(xp.minimum(x, 0)) / (1 + xp.exp(-xp.abs(x)))


def softplus(x):
    """log(1 + eˣ) without overflow: max(x, 0) + log1p(e^−|x|)."""
    xp = xp_of(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


# ---- the layers' passes over a (C, L) matrix: a layer's output stored (C, H, W, N) is one, C rows of H·W·N ----
def add_bias_rows_cpu(m, b):
    """m[c, ·] += b[c], in place, for m (C, L) C-contiguous: the bias of a layer whose output m is."""
    m += b[:, None]                                         # (C, L)
    return m


BIAS_ROWS_PARAMS = "raw T b, int32 row"
BIAS_ROWS_BODY = """
int k = i;
y = y + b[k / row];                         // y[c, ·] += b[c]
"""
BIAS_ROWS = Kernel("bias_rows", BIAS_ROWS_PARAMS, "T y", BIAS_ROWS_BODY)


def add_bias_rows_gpu(m, b):
    """The same as one kernel, a pass over m in memory order."""
    BIAS_ROWS(b, m.shape[1], m)                             # (C, L)
    return m


add_bias_rows = Op("add_bias_rows", cpu=add_bias_rows_cpu, gpu=add_bias_rows_gpu)


_ones = {}


def row_sums_cpu(m, out):
    """out[c] = Σ_l m[c, l] for m (C, L) C-contiguous, into out (C,): a bias's gradient."""
    return m.sum(axis=1, out=out)


def row_sums_gpu(m, out):
    """The same as a product with a vector of ones, which streams m once at the memory's speed (a summing
    kernel over the rows ran at a fifth of it). The ones are made once per length and kept."""
    xp = xp_of(m)
    key = (m.shape[1], m.dtype.str, xp.__name__)
    if key not in _ones:
        _ones[key] = xp.ones((m.shape[1], 1), dtype=m.dtype)   # (L, 1)
    blas.matmul(m, _ones[key], out=out.reshape(-1, 1))      # (C, 1) = m · 1
    return out


row_sums = Op("row_sums", cpu=row_sums_cpu, gpu=row_sums_gpu)


RELU_BACK_PARAMS = "T y"
RELU_BACK_BODY = """
dy = y > (T)0 ? dy : (T)0;                  // dx = dy·[y > 0]
"""
RELU_BACK = Kernel("relu_back", RELU_BACK_PARAMS, "T dy", RELU_BACK_BODY)


def relu_backward_gpu(dy, y):
    """dy ← dy·[y > 0] in place, y the ReLU's output (y > 0 exactly where its input was): one pass over both in
    memory order where they lie alike; False when they do not (the caller then does it another way)."""
    views = in_memory_order(dy, y)
    if views is None:
        return False
    RELU_BACK(views[1], views[0])
    return True


# ---- a ReLU in place: y written over x, dx over dy (for a caller that owns both: the VAE's ReLUs) ----
def relu_inplace_cpu(x):
    """(y, kept): y = max(x, 0) written over x, and what the backward needs, the mask [x > 0]."""
    mask = x > 0                                            # kept for the backward
    return np.maximum(x, 0, out=x), mask                    # y = max(x, 0); a NaN stays NaN


def relu_inplace_gpu(x):
    """The same in one pass over x as it lies, keeping no mask: y > 0 exactly where x > 0, so kept is y."""
    views = in_memory_order(x)
    v = views[0] if views else x
    xp_of(x).maximum(v, 0, out=v)                           # y = max(x, 0) over x
    return x, x


def relu_backward_inplace_cpu(dy, mask):
    return np.multiply(dy, mask, out=dy)                    # dx = dy·[x > 0]


def relu_backward_inplace_gpu(dy, y):
    if relu_backward_gpu(dy, y):                            # dy ← dy·[y > 0], in memory order
        return dy
    return xp_of(dy).multiply(dy, y > 0, out=dy)            # dx = dy·[y > 0]


relu_inplace = Op("relu_inplace", cpu=relu_inplace_cpu, gpu=relu_inplace_gpu)
relu_backward_inplace = Op("relu_backward_inplace", cpu=relu_backward_inplace_cpu, gpu=relu_backward_inplace_gpu)
