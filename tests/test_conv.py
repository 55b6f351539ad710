"""Conv2D and ConvTranspose2D: against the reference loops, adjointness, finite differences, dtypes, errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae import Conv2D, ConvTranspose2D

from scratchvae.check import reference
from scratchvae.ops.devices import get_xp, to_numpy
from scratchvae.check.gradcheck import check_layer, directional_grad, rel_error
from scratchvae.model.layers import weight_grad
from shapes import conv_cases, conv_transpose_cases

GRAD_TOL = 1e-7


def conv_of(c, dtype=np.float64, device="cpu", rng=0):
    return Conv2D(c.cin, c.cout, (c.kh, c.kw), (c.sy, c.sx), (c.ph, c.pw), dtype=dtype, rng=rng, device=device)


def convt_of(c, dtype=np.float64, device="cpu", rng=0):
    return ConvTranspose2D(c.cin, c.cout, (c.kh, c.kw), (c.sy, c.sx), (c.ph, c.pw), (c.opy, c.opx),
                           dtype=dtype, rng=rng, device=device)


def _input(c, device, seed=0, dtype=np.float64, channels=None):
    x = np.random.default_rng(seed).normal(size=(c.n, channels or c.cin, c.h, c.w)).astype(dtype)
    return get_xp(device).asarray(x)


@given(conv_cases())
def test_conv_forward_matches_reference(device, c):
    layer = conv_of(c, device=device)
    x = _input(c, device)
    want = reference.conv2d(to_numpy(x), to_numpy(layer.params["W"]), to_numpy(layer.params["b"]),
                            (c.sy, c.sx), (c.ph, c.pw))
    assert rel_error(layer.forward(x), want) <= 1e-12


@given(conv_transpose_cases())
def test_conv_transpose_forward_matches_reference(device, c):
    layer = convt_of(c, device=device)
    x = _input(c, device)
    want = reference.conv_transpose2d(to_numpy(x), to_numpy(layer.params["W"]), to_numpy(layer.params["b"]),
                                      (c.sy, c.sx), (c.ph, c.pw), (c.opy, c.opx))
    y = layer.forward(x)
    assert y.shape == want.shape
    assert rel_error(y, want) <= 1e-12


@given(conv_cases())
def test_conv_transpose_is_adjoint_of_conv(device, c):
    """With the same W and zero biases, ⟨conv(x), y⟩ = ⟨x, convT(y)⟩."""
    xp = get_xp(device)
    conv = conv_of(c, device=device)
    oh, ow = conv.output_shape(c.h, c.w)
    # convT must give back exactly H×W: the rows the strides skip come from output_padding
    opy, opx = (c.h + 2 * c.ph - c.kh) % c.sy, (c.w + 2 * c.pw - c.kw) % c.sx
    convt = ConvTranspose2D(c.cout, c.cin, (c.kh, c.kw), (c.sy, c.sx), (c.ph, c.pw), (opy, opx),
                            dtype=np.float64, device=device)
    convt.params["W"][...] = conv.params["W"]                  # (Co, Ci, kh, kw) read as (C_in', C_out', ...)
    conv.params["b"][...] = 0
    convt.params["b"][...] = 0
    rng = np.random.default_rng(4)
    x = xp.asarray(rng.normal(size=(c.n, c.cin, c.h, c.w)))
    y = xp.asarray(rng.normal(size=(c.n, c.cout, oh, ow)))
    lhs = float(xp.sum(conv.forward(x) * y))
    rhs = float(xp.sum(x * convt.forward(y)))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@given(conv_cases(max_extra=4), st.integers(0, 2**32 - 1))
def test_conv_gradients_finite_differences(device, c, seed):
    errors = check_layer(conv_of(c, device=device, rng=seed), _input(c, device, seed), rng=seed)
    assert max(errors.values()) <= GRAD_TOL, errors


@given(conv_transpose_cases(max_extra=3), st.integers(0, 2**32 - 1))
def test_conv_transpose_gradients_finite_differences(device, c, seed):
    errors = check_layer(convt_of(c, device=device, rng=seed), _input(c, device, seed), rng=seed)
    assert max(errors.values()) <= GRAD_TOL, errors


@pytest.mark.parametrize("kind", ["conv", "convT"])
def test_random_direction_on_larger_shapes(device, kind):
    """Directional derivatives on VAE-sized layers, where per-element checks would be too slow."""
    xp = get_xp(device)
    rng = np.random.default_rng(5)
    if kind == "conv":
        layer = Conv2D(8, 16, 4, stride=2, dtype=np.float64, rng=1, device=device)
        x = xp.asarray(rng.normal(size=(3, 8, 30, 22)))
    else:
        layer = ConvTranspose2D(16, 8, 6, stride=2, padding=1, output_padding=1, dtype=np.float64, rng=1,
                                device=device)
        x = xp.asarray(rng.normal(size=(3, 16, 9, 7)))
    y = layer.forward(x)
    g = xp.asarray(rng.normal(size=y.shape))
    dx = layer.backward(g)
    grads = {"x": dx, **{k: v.copy() for k, v in layer.grads.items()}}

    def f():
        return xp.sum(layer.forward(x) * g)

    for name, arr in [("x", x), *layer.params.items()]:
        v = xp.asarray(rng.normal(size=arr.shape))
        numeric = directional_grad(f, arr, v)
        analytic = float(xp.sum(grads[name] * v))
        assert abs(numeric - analytic) <= 1e-7 * (abs(numeric) + abs(analytic)), name


def _float32_agrees_with_float64(make, c, device):
    l64, l32 = make(c, np.float64, device), make(c, np.float32, device)
    l32.params["W"][...] = l64.params["W"]
    l32.params["b"][...] = l64.params["b"]
    x = _input(c, device)
    assert rel_error(l32.forward(x.astype(np.float32)), l64.forward(x)) <= 1e-5


@given(conv_cases())
def test_conv_float32_agrees_with_float64(device, c):
    _float32_agrees_with_float64(conv_of, c, device)


@given(conv_transpose_cases())
def test_conv_transpose_float32_agrees_with_float64(device, c):
    _float32_agrees_with_float64(convt_of, c, device)


def test_weight_layouts():
    assert Conv2D(3, 5, (4, 2)).params["W"].shape == (5, 3, 4, 2)
    assert ConvTranspose2D(3, 5, (4, 2)).params["W"].shape == (3, 5, 4, 2)
    assert Conv2D(3, 5, 4).params["b"].shape == ConvTranspose2D(3, 5, 4).params["b"].shape == (5,)


def test_same_seed_same_weights():
    a, b = Conv2D(3, 5, 4, rng=7), Conv2D(3, 5, 4, rng=7)
    np.testing.assert_array_equal(a.params["W"], b.params["W"])
    assert not np.array_equal(a.params["W"], Conv2D(3, 5, 4, rng=8).params["W"])


@pytest.mark.parametrize("make, x, match", [
    (lambda: Conv2D(3, 4, 3), np.zeros((3, 8, 8), np.float32), r"4-d input of shape \(N, 3, H, W\), got shape \(3, 8, 8\)"),
    (lambda: Conv2D(3, 4, 3), np.zeros((1, 2, 8, 8), np.float32), "expects 3 input channels, got 2"),
    (lambda: Conv2D(3, 4, 3), np.zeros((1, 3, 8, 8), np.float64), "expects dtype float32, got float64"),
    (lambda: Conv2D(3, 4, 5, padding=1), np.zeros((1, 3, 2, 8), np.float32), r"kernel 5×5 is larger than the padded input 4×10"),
    (lambda: ConvTranspose2D(3, 4, 3), np.zeros((1, 4, 2, 2), np.float32), "expects 3 input channels, got 4"),
    (lambda: ConvTranspose2D(3, 4, 1, padding=2), np.zeros((1, 3, 2, 2), np.float32), "empty output"),
    (lambda: Conv2D(3, 4, 3), [[1.0]], "expects an array"),
])
def test_bad_inputs_raise_clear_errors(make, x, match):
    with pytest.raises(ValueError, match=match):
        make().forward(x)


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="output_padding must be .* smaller than the stride"):
        ConvTranspose2D(1, 1, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="dtype must be float16, float32 or float64, got int32"):
        Conv2D(1, 1, 3, dtype=np.int32)
    with pytest.raises(ValueError, match="at least 1"):
        Conv2D(1, 1, 0)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        Conv2D(1, 1, 1).backward(np.zeros((1, 1, 1, 1), np.float32))


@pytest.mark.parametrize("make", [lambda: Conv2D(3, 4, 3, stride=2, dtype=np.float64, rng=1),
                                  lambda: ConvTranspose2D(3, 4, 3, stride=2, dtype=np.float64, rng=1)])
def test_without_input_grad_the_parameter_grads_are_the_same(make):
    a, b = make(), make()
    b.input_grad = False
    x = np.random.default_rng(0).normal(size=(2, 3, 7, 6))
    dy = np.random.default_rng(1).normal(size=a.forward(x).shape)
    b.forward(x)
    assert a.backward(dy) is not None and b.backward(dy) is None
    for k in a.grads:
        np.testing.assert_array_equal(a.grads[k], b.grads[k])


@pytest.mark.parametrize("a_shape, k", [((3, 200), 4), ((3, 20), 4)])   # long sum: (cols·aᵀ)ᵀ; short: a·colsᵀ
def test_weight_grad_fills_its_output_either_way(a_shape, k):
    rng = np.random.default_rng(0)
    a, cols = rng.normal(size=a_shape), rng.normal(size=(k, a_shape[1]))
    out = np.full((a_shape[0], k), np.nan)
    assert weight_grad(a, cols, out) is out
    np.testing.assert_allclose(out, a @ cols.T, rtol=1e-13)


@given(conv_cases())
def test_conv_backward_matches_the_reference_loops(c):
    """Conv2D.backward (im2col, products, col2im) against reference.conv2d_backward, which walks the forward's
    loops and sends dy back along each product."""
    layer = conv_of(c)
    x = _input(c, "cpu")
    dy = np.random.default_rng(1).normal(size=layer.forward(x).shape)
    dx = layer.backward(dy)
    want_dx, want_dW, want_db = reference.conv2d_backward(x, layer.params["W"], dy, (c.sy, c.sx), (c.ph, c.pw))
    assert rel_error(dx, want_dx) <= 1e-12
    assert rel_error(layer.grads["W"], want_dW) <= 1e-12
    assert rel_error(layer.grads["b"], want_db) <= 1e-12
