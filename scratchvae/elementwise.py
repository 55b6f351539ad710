"""Elementwise functions more than one module needs: the sigmoid (a layer, and the Bernoulli
loss's gradient) and the softplus (the Bernoulli loss). Both are written so that no exponent
is ever positive, so neither overflows for any input.

Elementwise operations only: each keeps its input's memory layout (an xp.where would copy the
layers' batch-last images into NCHW order, slowly).
"""
from .backend import xp_of


def sigmoid(x):
    """1 / (1 + e^−x) without overflow, as e^min(x, 0) / (1 + e^−|x|): that is 1/(1 + e^−x) for x ≥ 0
    and e^x/(1 + e^x) below, and no exponent is ever positive."""
    xp = xp_of(x)
    return xp.exp(xp.minimum(x, 0)) / (1 + xp.exp(-xp.abs(x)))


def softplus(x):
    """log(1 + eˣ) without overflow: max(x, 0) + log1p(e^−|x|)."""
    xp = xp_of(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))
