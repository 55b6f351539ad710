"""Elementwise functions more than one module needs: the sigmoid (a layer, and the Bernoulli
loss's gradient) and the softplus (the Bernoulli loss), both written so that no exponent is
ever positive, so neither overflows for any input; and the layers' passes over a (C, L) matrix
(a layer's output stored (C, H, W, N) is one): a bias added to each row, the rows' sums (a
bias's gradient), and the ReLU's backward on the GPU. Each of those has its CPU and GPU
versions side by side; the GPU's run over the numbers in the order they lie in memory.

Elementwise operations only: each keeps its input's memory layout (an xp.where would copy the
layers' batch-last images into NCHW order, slowly).
"""
from .devices import in_memory_order, is_gpu_array, xp_of


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
def add_bias_rows(m, b):
    """m[c, ·] += b[c], in place, for m (C, L) C-contiguous: the bias of a layer whose output m is."""
    if is_gpu_array(m):
        return add_bias_rows_gpu(m, b)
    m += b[:, None]                                         # (C, L)
    return m


def add_bias_rows_gpu(m, b):
    """The same as one kernel, a pass over m in memory order."""
    from .cuda import kernel
    kernel("bias_rows")(b, m.shape[1], m)                   # (C, L)
    return m


_ones = {}


def row_sums(m, out):
    """out[c] = Σ_l m[c, l] for m (C, L) C-contiguous, into out (C,): a bias's gradient."""
    if is_gpu_array(m):
        return row_sums_gpu(m, out)
    return m.sum(axis=1, out=out)


def row_sums_gpu(m, out):
    """The same as a product with a vector of ones, which streams m once at the memory's speed (a summing
    kernel over the rows ran at a fifth of it). The ones are made once per length and kept."""
    from . import blas
    xp = xp_of(m)
    key = (m.shape[1], m.dtype.str, xp.__name__)
    if key not in _ones:
        _ones[key] = xp.ones((m.shape[1], 1), dtype=m.dtype)   # (L, 1)
    blas.matmul(m, _ones[key], out=out.reshape(-1, 1))      # (C, 1) = m · 1
    return out


def relu_backward_gpu(dy, y):
    """dy ← dy·[y > 0] in place, y the ReLU's output (y > 0 exactly where its input was): one pass over both in
    memory order where they lie alike; False when they do not (the caller then does it another way)."""
    views = in_memory_order(dy, y)
    if views is None:
        return False
    from .cuda import kernel
    kernel("relu_back")(views[1], views[0])
    return True
