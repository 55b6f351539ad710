"""Dense, ReLU, Sigmoid, Reshape/Flatten and Crop2D: finite differences, stability, errors."""
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from scratchvae import Crop2D, Dense, Flatten, ReLU, Reshape, Sigmoid
from scratchvae.ops.devices import get_xp, to_numpy
from scratchvae.check.gradcheck import check_layer, rel_error
from scratchvae.ops.elementwise import sigmoid, softplus

GRAD_TOL = 1e-7
dims = st.integers(1, 6)


@given(st.integers(1, 3), dims, dims, st.integers(0, 2**32 - 1))
def test_dense_gradients(device, n, fin, fout, seed):
    x = get_xp(device).asarray(np.random.default_rng(seed).normal(size=(n, fin)))
    errors = check_layer(Dense(fin, fout, dtype=np.float64, rng=seed, device=device), x, rng=seed)
    assert max(errors.values()) <= GRAD_TOL, errors


@given(st.integers(1, 3), dims, dims, st.integers(0, 2**32 - 1))
def test_relu_gradients(device, n, c, h, seed):
    x = np.random.default_rng(seed).normal(size=(n, c, h))
    x += np.where(x >= 0, 0.01, -0.01)          # keep every point further from the kink than the step h = 1e-3
    errors = check_layer(ReLU(np.float64, device), get_xp(device).asarray(x), rng=seed)
    assert errors["x"] <= GRAD_TOL, errors


@given(st.integers(1, 3), dims, st.integers(0, 2**32 - 1))
def test_sigmoid_gradients(device, n, c, seed):
    x = get_xp(device).asarray(3 * np.random.default_rng(seed).normal(size=(n, c)))
    errors = check_layer(Sigmoid(np.float64, device), x, rng=seed)
    assert errors["x"] <= GRAD_TOL, errors


def test_sigmoid_is_stable_for_large_inputs(device, monkeypatch):
    """No exponent the sigmoid or the softplus takes is ever positive, so nothing overflows on either
    device (np.errstate would only watch NumPy: CuPy overflows to inf in silence). The spy sees the
    arguments of every xp.exp, NumPy's or CuPy's."""
    xp = get_xp(device)
    real_exp, largest = xp.exp, []

    def spy(a, *args, **kwargs):
        largest.append(float(xp.asarray(a).max()))
        return real_exp(a, *args, **kwargs)
    monkeypatch.setattr(xp, "exp", spy)
    for dtype in (np.float32, np.float64):
        x = xp.asarray(np.array([-1e4, -800.0, -50.0, 0.0, 50.0, 800.0, 1e4], dtype=dtype))
        y = to_numpy(sigmoid(x))
        softplus(x)
        assert largest and max(largest) <= 0, largest
        assert np.all(np.isfinite(y)) and y.dtype == dtype
        assert y[0] == 0.0 and y[-1] == 1.0 and y[3] == 0.5
        np.testing.assert_allclose(y[2], np.exp(-50.0) / (1 + np.exp(-50.0)), rtol=1e-6)


@given(st.integers(1, 3), dims, dims, dims, st.integers(0, 2**32 - 1))
@example(n=3, c=4, h=5, w=6, seed=31495389)      # Σ y·g rounded this one's smallest entry to 1.4e-7 (gradcheck.py)
def test_reshape_and_flatten_gradients(device, n, c, h, w, seed):
    x = get_xp(device).asarray(np.random.default_rng(seed).normal(size=(n, c, h, w)))
    assert check_layer(Flatten(np.float64, device), x, rng=seed)["x"] <= GRAD_TOL
    assert check_layer(Reshape((h, c * w), np.float64, device), x, rng=seed)["x"] <= GRAD_TOL


@given(st.integers(1, 2), dims, st.integers(1, 5), st.integers(1, 5), st.integers(0, 3), st.integers(0, 3),
       st.integers(0, 2**32 - 1))
def test_crop_gradients(device, n, c, h, w, extra_h, extra_w, seed):
    x = get_xp(device).asarray(np.random.default_rng(seed).normal(size=(n, c, h + extra_h, w + extra_w)))
    layer = Crop2D(h, w, np.float64, device)
    assert layer.forward(x).shape == (n, c, h, w)
    assert check_layer(layer, x, rng=seed)["x"] <= GRAD_TOL


def test_dense_float32_agrees_with_float64():
    l64, l32 = Dense(7, 5, np.float64, rng=1), Dense(7, 5, np.float32, rng=1)
    x = np.random.default_rng(0).normal(size=(4, 7))
    assert rel_error(l32.forward(x.astype(np.float32)), l64.forward(x)) <= 1e-5


@pytest.mark.parametrize("make, x, match", [
    (lambda: Dense(4, 2), np.zeros((3, 5), np.float32), "expects 4 input features, got 5"),
    (lambda: Dense(4, 2), np.zeros((3, 4, 1), np.float32), r"2-d input of shape \(N, 4\), got shape \(3, 4, 1\)"),
    (lambda: Dense(4, 2), np.zeros((3, 4), np.float16), "expects dtype float32, got float16"),
    (lambda: Reshape((2, 3)), np.zeros((1, 5), np.float32), r"needs 6 numbers per item, got shape \(1, 5\)"),
    (lambda: Crop2D(4, 4), np.zeros((1, 1, 3, 8), np.float32), "at least that large, got 3×8"),
])
def test_bad_inputs_raise_clear_errors(make, x, match):
    with pytest.raises(ValueError, match=match):
        make().forward(x)


def test_relu_in_place_writes_over_its_arrays_and_gives_the_same_numbers(device):
    xp = get_xp(device)
    x = xp.asarray(np.random.default_rng(0).normal(size=(3, 4, 5)))
    plain, inplace = ReLU(np.float64, device), ReLU(np.float64, device, inplace=True)
    y = plain.forward(x)
    x2 = x.copy()
    y2 = inplace.forward(x2)
    assert y2 is x2 and bool((y2 == y).all())
    dy = xp.asarray(np.random.default_rng(1).normal(size=(3, 4, 5)))
    dx = plain.backward(dy)
    dy2 = dy.copy()
    dx2 = inplace.backward(dy2)
    assert dx2 is dy2 and bool((dx2 == dx).all())
    assert bool((x != x2).any())                                   # plain left its input alone
