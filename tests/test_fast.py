"""The fast path: the parity split against the loops, the fast layers against the im2col layers
(every method, forced), finite differences, the method choice, layouts, threads and buffers."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import scratchvae.ops.threads as threads
from scratchvae import VAE, Conv2D, ConvTranspose2D
from scratchvae.check import reference
from scratchvae.ops.devices import get_xp, to_numpy
from scratchvae.check.gradcheck import check_layer, rel_error
from scratchvae.ops.im2col import batch_last, col2im, im2col
from scratchvae.model.layers import FastConv2D, FastConvTranspose2D, conv_transpose
from scratchvae.ops.parity import conv_transpose_parity, parity_costs
from scratchvae.ops.sizes import conv_transpose_out_size
from shapes import conv_cases, conv_transpose_cases

GRAD_TOL = 1e-7
methods = st.sampled_from(["parity", "col2im"])


def _convt(c):
    return (c.sy, c.sx), (c.ph, c.pw), (c.opy, c.opx)


def _args(c):
    return c.sy, c.sx, c.ph, c.pw, c.opy, c.opx


@given(conv_transpose_cases())
def test_parity_loops_match_the_painting_loops(c):
    rng = np.random.default_rng(0)
    x, W = rng.normal(size=(c.n, c.cin, c.h, c.w)), rng.normal(size=(c.cin, c.cout, c.kh, c.kw))
    b = rng.normal(size=c.cout)
    got = reference.conv_transpose2d_by_parity(x, W, b, *_convt(c))
    assert rel_error(got, reference.conv_transpose2d(x, W, b, *_convt(c))) <= 1e-13


@given(conv_transpose_cases(max_extra=6), st.sampled_from(["parity", "col2im", "auto", "dense"]))
def test_every_method_matches_the_loops(device, c, method):
    xp = get_xp(device)
    rng = np.random.default_rng(1)
    x, W = rng.normal(size=(c.n, c.cin, c.h, c.w)), rng.normal(size=(c.cin, c.cout, c.kh, c.kw))
    want = reference.conv_transpose2d_by_parity(x, W, np.zeros(c.cout), *_convt(c))
    if method == "dense" and (c.h, c.w, c.ph, c.pw) != (1, 1, 0, 0):          # refused, saying why
        with pytest.raises(ValueError, match="the dense method needs a 1×1 input and no padding"):
            conv_transpose(xp.asarray(x), xp.asarray(W), *_args(c), method=method)
    else:
        got = conv_transpose(xp.asarray(x), xp.asarray(W), *_args(c), method=method)
        assert got.shape == want.shape
        assert rel_error(got, want) <= 1e-13


def test_dense_method_on_a_one_pixel_input(device):
    """A 1×1 input paints one kernel per image: y[n, o] = Σ_c x[n, c]·W[c, o] (output_padding rows stay 0)."""
    xp = get_xp(device)
    rng = np.random.default_rng(2)
    x, W = rng.normal(size=(3, 4, 1, 1)), rng.normal(size=(4, 2, 5, 3))
    y = to_numpy(conv_transpose(xp.asarray(x), xp.asarray(W), 2, 2, 0, 0, 1, 1, method="dense"))
    assert y.shape == (3, 2, 6, 4)
    np.testing.assert_allclose(y[:, :, :5, :3], np.einsum("nc,cokl->nokl", x[:, :, 0, 0], W), rtol=1e-13)
    assert not y[:, :, 5:].any() and not y[:, :, :, 3:].any()


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match=r"method must be one of \('auto', 'dense', 'parity', 'col2im'\), got 'fft'"):
        FastConv2D(1, 1, 2, method="fft")
    with pytest.raises(ValueError, match="got 'fft'"):
        conv_transpose(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), 1, 1, 0, 0, 0, 0, method="fft")


def _pair_of(cls_plain, cls_fast, c, method, device):
    if cls_plain is Conv2D:
        args = (c.cin, c.cout, (c.kh, c.kw), (c.sy, c.sx), (c.ph, c.pw))
    else:
        args = (c.cin, c.cout, (c.kh, c.kw), (c.sy, c.sx), (c.ph, c.pw), (c.opy, c.opx))
    kw = dict(dtype=np.float64, rng=7, device=device)
    return cls_plain(*args, **kw), cls_fast(*args, method=method, **kw)


def _same_everything(plain, fast, x, rng):
    y, yf = plain.forward(x), fast.forward(x)
    assert rel_error(yf, y) <= 1e-13
    g = get_xp(plain.device).asarray(rng.normal(size=y.shape))
    dx, dxf = plain.backward(g), fast.backward(g)
    assert rel_error(dxf, dx) <= 1e-13
    for k in plain.grads:
        assert rel_error(fast.grads[k], plain.grads[k]) <= 1e-13, k


@given(conv_cases(max_extra=6), methods)
def test_fast_conv_agrees_with_the_im2col_layer(device, c, method):
    plain, fast = _pair_of(Conv2D, FastConv2D, c, method, device)
    rng = np.random.default_rng(3)
    _same_everything(plain, fast, get_xp(device).asarray(rng.normal(size=(c.n, c.cin, c.h, c.w))), rng)


@given(conv_transpose_cases(max_extra=6), st.sampled_from(["parity", "col2im", "auto"]))
def test_fast_conv_transpose_agrees_with_the_im2col_layer(device, c, method):
    plain, fast = _pair_of(ConvTranspose2D, FastConvTranspose2D, c, method, device)
    rng = np.random.default_rng(4)
    _same_everything(plain, fast, get_xp(device).asarray(rng.normal(size=(c.n, c.cin, c.h, c.w))), rng)


@given(conv_cases(max_extra=4), methods, st.integers(0, 2**32 - 1))
def test_fast_conv_gradients_finite_differences(device, c, method, seed):
    layer = FastConv2D(c.cin, c.cout, (c.kh, c.kw), (c.sy, c.sx), (c.ph, c.pw), dtype=np.float64, rng=seed,
                       device=device, method=method)
    x = get_xp(device).asarray(np.random.default_rng(seed).normal(size=(c.n, c.cin, c.h, c.w)))
    errors = check_layer(layer, x, rng=seed)
    assert max(errors.values()) <= GRAD_TOL, errors


@given(conv_transpose_cases(max_extra=3), st.sampled_from(["parity", "col2im", "auto"]), st.integers(0, 2**32 - 1))
def test_fast_conv_transpose_gradients_finite_differences(device, c, method, seed):
    layer = FastConvTranspose2D(c.cin, c.cout, (c.kh, c.kw), (c.sy, c.sx), (c.ph, c.pw), (c.opy, c.opx),
                                dtype=np.float64, rng=seed, device=device, method=method)
    x = get_xp(device).asarray(np.random.default_rng(seed).normal(size=(c.n, c.cin, c.h, c.w)))
    errors = check_layer(layer, x, rng=seed)
    assert max(errors.values()) <= GRAD_TOL, errors


def test_the_rows_a_convolution_never_reads_get_exactly_zero_gradient(device):
    """conv2 of the VAE: 4×4 stride 2 on 31×31 reads rows and columns 0–29 only."""
    xp = get_xp(device)
    layer = FastConv2D(2, 3, 4, 2, dtype=np.float64, rng=0, device=device, method="parity")
    x = xp.asarray(np.random.default_rng(5).normal(size=(2, 2, 31, 31)))
    dx = to_numpy(layer.backward(xp.ones(layer.forward(x).shape)))
    assert not dx[:, :, 30].any() and not dx[:, :, :, 30].any()
    assert np.all(dx[:, :, :30, :30] != 0)


def test_parity_costs_by_hand():
    # deconv3 of the VAE, 64 → 32 channels, 13×13 → 30×30, kernel 6, stride 2: four 15×15 phase grids of
    # 3×3 taps against 13×13 inputs of 6×6 taps; columns of 64·3·3 rows against 32·6·6
    products, buffer = parity_costs(64, 32, 13, 13, 6, 6, 2, 2, 0, 0, 0, 0)
    assert products == pytest.approx(4 * 9 * 15 * 15 / (36 * 13 * 13))
    assert buffer == pytest.approx(64 * 9 * 15 * 15 / (32 * 36 * 13 * 13))
    # conv2's input gradient, 64 → 32, 14×14 → 31×31 (output_padding 1): row 30 is never painted,
    # so the grid is 15×15 (30 rows), not 16×16
    products, _ = parity_costs(64, 32, 14, 14, 4, 4, 2, 2, 0, 0, 1, 1)
    assert products == pytest.approx(4 * 4 * 15 * 15 / (16 * 14 * 14))


def test_the_method_for_each_layer_of_the_default_vae():
    model = VAE()
    got, (h, w) = {}, model.input_shape[1:]
    for name in ("encoder.conv1", "encoder.conv2", "encoder.conv3", "encoder.conv4"):
        conv = model.layers[name]
        ci, co, oh, ow, opy, opx = conv.transposed(h, w)            # dx: convT of the oh×ow dy back to h×w
        assert (ci, co, conv_transpose_out_size(oh, conv.kh, 2, 0, opy)) == (conv.out_channels, conv.in_channels, h)
        got[name] = conv.method_for(h, w)
        h, w = oh, ow
    h, w = 1, 1
    for name in ("decoder.deconv1", "decoder.deconv2", "decoder.deconv3", "decoder.deconv4"):
        d = model.layers[name]
        got[name] = d.method_for(h, w)
        h, w = d.output_shape(h, w)
    assert got == {"encoder.conv1": "col2im",      # 3 channels out (but conv1 computes no input gradient)
                   "encoder.conv2": "parity", "encoder.conv3": "parity",
                   "encoder.conv4": "col2im",      # 2×2 input: the grid border doubles the products
                   "decoder.deconv1": "dense",     # 1×1 input
                   "decoder.deconv2": "col2im",    # 5×5 input: 2.8× the products
                   "decoder.deconv3": "parity",
                   "decoder.deconv4": "col2im"}    # 3 output channels: the input's windows are the larger buffer
    assert not model.layers["encoder.conv1"].input_grad  # (conv1 computes no input gradient at all)


def _layouts(x):
    """x in four memory orders: NCHW, the layers' (C, H, W, N), a transposed copy and a strided slice."""
    xp = get_xp("gpu") if type(x).__module__.startswith("cupy") else np
    wide = xp.zeros(x.shape[:3] + (2 * x.shape[3],), dtype=x.dtype)
    wide[..., ::2] = x
    return [x, batch_last(x), xp.ascontiguousarray(x.transpose(2, 0, 3, 1)).transpose(1, 3, 0, 2), wide[..., ::2]]


@given(conv_transpose_cases(max_extra=4))
def test_any_input_layout(device, c):
    xp = get_xp(device)
    rng = np.random.default_rng(6)
    x = xp.asarray(rng.normal(size=(c.n, c.cin, c.h, c.w)))
    W = xp.asarray(rng.normal(size=(c.cin, c.cout, c.kh, c.kw)))
    want = to_numpy(conv_transpose_parity(x, W, *_args(c)))
    for v in _layouts(x):
        np.testing.assert_array_equal(to_numpy(conv_transpose_parity(v, W, *_args(c))), want)
        if c.h + 2 * c.ph >= c.kh and c.w + 2 * c.pw >= c.kw:
            np.testing.assert_array_equal(to_numpy(im2col(v, c.kh, c.kw, c.sy, c.sx, c.ph, c.pw)),
                                          reference.im2col(to_numpy(x), c.kh, c.kw, c.sy, c.sx, c.ph, c.pw))


def test_outputs_are_stored_batch_last(device):
    """Each layer's output is an NCHW view of a (C, H, W, N) buffer: the next layer reads it without a copy."""
    xp = get_xp(device)
    x = batch_last(xp.asarray(np.random.default_rng(7).normal(size=(3, 2, 9, 8))))
    for layer in (Conv2D(2, 4, 3, 2, dtype=np.float64, device=device),
                  FastConv2D(2, 4, 3, 2, dtype=np.float64, device=device),
                  ConvTranspose2D(2, 4, 3, 2, dtype=np.float64, device=device),
                  FastConvTranspose2D(2, 4, 3, 2, dtype=np.float64, device=device, method="parity"),
                  FastConvTranspose2D(2, 4, 5, 2, dtype=np.float64, device=device, method="col2im")):
        y = layer.forward(x)
        assert y.transpose(1, 2, 3, 0).flags.c_contiguous, type(layer).__name__
        dx = layer.backward(xp.ones_like(y))
        assert dx.transpose(1, 2, 3, 0).flags.c_contiguous, type(layer).__name__


def test_buffers_are_reused_and_follow_the_shape():
    layer = FastConvTranspose2D(3, 2, 6, 2, dtype=np.float64, rng=0, method="parity")
    rng = np.random.default_rng(8)
    x1, x2 = rng.normal(size=(4, 3, 5, 5)), rng.normal(size=(2, 3, 7, 5))
    y1 = layer.forward(x1)
    col = layer.buffers["windows"]
    assert layer.forward(x1) is not y1                                   # outputs are new arrays,
    assert layer.buffers["windows"] is col                               # temporaries are not
    y2 = layer.forward(x2)                                               # another shape: new buffers
    assert layer.buffers["windows"].shape != col.shape
    assert rel_error(y2, reference.conv_transpose2d(x2, layer.params["W"], layer.params["b"], 2)) <= 1e-13
    np.testing.assert_array_equal(y1, layer.forward(x1))


def test_im2col_out_must_fit():
    x = np.zeros((2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"im2col out must be float64 \(3, 2, 2, 3, 3, 2\), got float64 \(1, 2\)"):
        im2col(x, 2, 2, 2, 2, 0, 0, out=np.zeros((1, 2)))


# ---- threads ------------------------------------------------------------------------------------
def test_parallel_covers_the_range_once_and_raises_what_a_part_raised(monkeypatch):
    monkeypatch.setattr(threads, "WORKERS", 3)
    seen = []
    threads.parallel(lambda part: seen.extend(range(part.start, part.stop)), 10, 1 << 20)
    assert sorted(seen) == list(range(10))
    calls = []
    threads.parallel(calls.append, 10, 100)                              # a small job: one call
    assert calls == [slice(0, 10)]

    def fail(part):
        if part.start == 0:
            raise ArithmeticError("part 0 failed")
    with pytest.raises(ArithmeticError, match="part 0 failed"):
        threads.parallel(fail, 10, 1 << 20)


@given(conv_cases(max_extra=4), conv_transpose_cases(max_extra=4))
def test_threaded_copies_give_the_same_bits(c, t):
    """Split over channels or rows, every number is computed the same way: identical results."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(c.n, c.cin, c.h, c.w))
    xt, Wt = rng.normal(size=(t.n, t.cin, t.h, t.w)), rng.normal(size=(t.cin, t.cout, t.kh, t.kw))
    oh, ow = (c.h + 2 * c.ph - c.kh) // c.sy + 1, (c.w + 2 * c.pw - c.kw) // c.sx + 1
    col = rng.normal(size=(c.n, c.cin, c.kh, c.kw, oh, ow))

    def run():
        return (im2col(x, c.kh, c.kw, c.sy, c.sx, c.ph, c.pw), col2im(col, c.h, c.w, c.sy, c.sx, c.ph, c.pw),
                conv_transpose_parity(xt, Wt, *_args(t)))
    one = run()
    old = threads.MIN_SIZE, threads.WORKERS
    threads.MIN_SIZE, threads.WORKERS = 0, 3
    try:
        many = run()
    finally:
        threads.MIN_SIZE, threads.WORKERS = old
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_threads():
    code = ("import os, sys, scratchvae.ops.threads as t\n"
            "t.set_workers(2)\n"
            "t.parallel(lambda p: None, 4, 1 << 20)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    out = []\n"
            "    t.parallel(lambda p: out.append(p), 4, 1 << 20)\n"
            "    os._exit(0 if len(out) == 2 else 3)\n"
            "_, status = os.waitpid(pid, 0)\n"
            "sys.exit(os.waitstatus_to_exitcode(status))\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# ---- the whole model ----------------------------------------------------------------------------
def test_fast_and_plain_vae_agree(device):
    """Every method in one model: deconv1 dense, parity and col2im both ways; float64, same eps."""
    kw = dict(input_shape=(2, 30, 26), latent_dim=3, encoder=((4, 4, 2), (5, 4, 2), (6, 3, 2)),
              decoder=((5, 5, 2), (4, 6, 2), (None, 6, 2)), dense_size=7, dtype=np.float64, seed=3, device=device)
    fast, plain = VAE(**kw), VAE(fast=False, **kw)
    xp = get_xp(device)
    x = xp.asarray(np.random.default_rng(10).random((3, 2, 30, 26)))
    eps = fast.sample_eps(3)
    a, b = fast.loss(x, eps), plain.loss(x, eps)
    for k in a:
        assert abs(float(a[k]) - float(b[k])) <= 1e-12 * max(1.0, abs(float(b[k]))), k
    fast.backward()
    plain.backward()
    for k, g in plain.grads.items():
        assert rel_error(fast.grads[k], g) <= 1e-12, k


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(1, 4), st.integers(1, 4),
       st.integers(1, 3), st.integers(0, 2), st.integers(0, 2**32 - 1))
def test_dense_then_deconv_is_the_two_layers_one_after_the_other(device, n, d, f, co, k, s, op, seed):
    from scratchvae import Dense, Reshape
    from scratchvae.model.layers.fast import DenseThenDeconv
    op = min(op, s - 1)
    xp = get_xp(device)
    kw = dict(dtype=np.float64, device=device)
    dense, deconv = Dense(d, f, rng=seed, **kw), FastConvTranspose2D(f, co, k, s, 0, op, rng=seed + 1, **kw)
    joined = DenseThenDeconv(dense, deconv)
    rng = np.random.default_rng(seed)
    z = xp.asarray(rng.normal(size=(n, d)))
    y = deconv.forward(Reshape((f, 1, 1), **kw).forward(dense.forward(z)))
    yj = joined.forward(z)
    assert yj.shape == y.shape and rel_error(yj, y) <= 1e-13
    dy = xp.asarray(rng.normal(size=y.shape))
    dz = dense.backward(deconv.backward(dy).reshape(n, f))
    want = {f"dense.{p}": g.copy() for p, g in dense.grads.items()}
    want.update({f"deconv.{p}": g.copy() for p, g in deconv.grads.items()})
    assert rel_error(joined.backward(dy), dz) <= 1e-13
    for p, g in dense.grads.items():
        assert rel_error(g, want[f"dense.{p}"]) <= 1e-13, p
    for p, g in deconv.grads.items():
        assert rel_error(g, want[f"deconv.{p}"]) <= 1e-13, p


def test_dense_then_deconv_needs_what_it_joins():
    from scratchvae import Dense
    from scratchvae.model.layers.fast import DenseThenDeconv
    with pytest.raises(ValueError, match="without padding reading the dense layer's 8 outputs as channels, "
                                         r"got padding \(1, 1\) and 8 input channels"):
        DenseThenDeconv(Dense(3, 8), FastConvTranspose2D(8, 2, 3, 2, 1))
    joined = DenseThenDeconv(Dense(3, 8), FastConvTranspose2D(8, 2, 3, 2))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        joined.backward(np.ones((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"expects an array of shape \(N, 3\)|expects a 2-d input of shape \(N, 3\)"):
        joined.forward(np.ones((2, 3, 1), np.float32))


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.integers(1, 4),
       st.integers(1, 3), st.integers(0, 2), st.integers(0, 2**32 - 1))
def test_dense_then_deconv_gradients_finite_differences(device, n, d, f, co, k, s, op, seed):
    from scratchvae import Dense
    from scratchvae.model.layers.fast import DenseThenDeconv
    kw = dict(dtype=np.float64, device=device)
    joined = DenseThenDeconv(Dense(d, f, rng=seed, **kw),
                             FastConvTranspose2D(f, co, k, s, 0, min(op, s - 1), rng=seed + 1, **kw))
    z = get_xp(device).asarray(np.random.default_rng(seed).normal(size=(n, d)))
    errors = check_layer(joined, z, rng=seed)
    assert set(errors) == {"x", "dense.W", "dense.b", "deconv.W", "deconv.b"}
    assert max(errors.values()) <= GRAD_TOL, errors


@pytest.mark.parametrize("method", ["parity", "col2im"])
def test_a_step_keeps_the_forward_columns_buffer(method):
    """The input gradient's temporaries have names of their own: a step leaves the forward's column
    buffer in place for the next step instead of trading it for one of another shape."""
    layer = FastConv2D(3, 4, 4, 2, dtype=np.float64, rng=0, method=method)
    x = np.random.default_rng(11).normal(size=(2, 3, 9, 9))
    layer.forward(x)
    cols = layer.buffers["col"]
    layer.backward(np.ones((2, 4, 3, 3)))
    assert layer.buffers["col"] is cols
    layer.forward(x)
    assert layer.buffers["col"] is cols
