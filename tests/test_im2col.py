"""im2col and col2im against explicit loops, and col2im as im2col's adjoint."""
import numpy as np
from hypothesis import given

from scratchvae.check import reference
from scratchvae.ops.devices import get_xp, to_numpy
from scratchvae.ops.im2col import col2im, im2col
from shapes import conv_cases


def _args(c):
    return c.kh, c.kw, c.sy, c.sx, c.ph, c.pw


@given(conv_cases())
def test_im2col_matches_loops(device, c):
    xp = get_xp(device)
    x = np.random.default_rng(1).normal(size=(c.n, c.cin, c.h, c.w))
    fast = to_numpy(im2col(xp.asarray(x), *_args(c)))
    np.testing.assert_array_equal(fast, reference.im2col(x, *_args(c)))


@given(conv_cases())
def test_col2im_matches_loops(device, c):
    xp = get_xp(device)
    oh, ow = (c.h + 2 * c.ph - c.kh) // c.sy + 1, (c.w + 2 * c.pw - c.kw) // c.sx + 1
    col = np.random.default_rng(2).normal(size=(c.n, c.cin, c.kh, c.kw, oh, ow))
    fast = to_numpy(col2im(xp.asarray(col), c.h, c.w, c.sy, c.sx, c.ph, c.pw))
    np.testing.assert_allclose(fast, reference.col2im(col, c.h, c.w, c.sy, c.sx, c.ph, c.pw), rtol=1e-13, atol=1e-13)


@given(conv_cases())
def test_col2im_is_adjoint_of_im2col(device, c):
    """⟨im2col(x), col⟩ = ⟨x, col2im(col)⟩."""
    xp = get_xp(device)
    rng = np.random.default_rng(3)
    x = xp.asarray(rng.normal(size=(c.n, c.cin, c.h, c.w)))
    cx = im2col(x, *_args(c))
    col = xp.asarray(rng.normal(size=cx.shape))
    lhs = float(xp.sum(cx * col))
    rhs = float(xp.sum(x * col2im(col, c.h, c.w, c.sy, c.sx, c.ph, c.pw)))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
