"""Adam against steps computed by hand."""
import numpy as np
import pytest

import scratchvae.ops.adam as adam
import scratchvae.ops.threads as threads
from scratchvae.model.optim import Adam


def test_first_two_steps_by_hand():
    p = {"w": np.array([1.0, -2.0, 3.0])}
    g1, g2 = np.array([0.5, -1.0, 0.0]), np.array([0.1, 0.2, -0.3])
    opt = Adam(p, lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    opt.step({"w": g1})
    # step 1: m = 0.1·g, v = 0.001·g², m̂ = g, v̂ = g², so θ moves by lr·g/(|g| + ε)
    np.testing.assert_allclose(p["w"], [1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 * 1.0 / (1.0 + 1e-8), 3.0],
                               rtol=1e-15)
    opt.step({"w": g2})
    m = 0.9 * (0.1 * g1) + 0.1 * g2
    v = 0.999 * (0.001 * g1 ** 2) + 0.001 * g2 ** 2
    mhat, vhat = m / (1 - 0.9 ** 2), v / (1 - 0.999 ** 2)
    after1 = np.array([1.0 - 0.1 * 0.5 / (0.5 + 1e-8), -2.0 + 0.1 / (1.0 + 1e-8), 3.0])
    np.testing.assert_allclose(p["w"], after1 - 0.1 * mhat / (np.sqrt(vhat) + 1e-8), rtol=1e-14)
    assert opt.t == 2


def test_updates_in_place_and_keeps_dtype():
    w = np.ones((2, 3), np.float32)
    opt = Adam({"w": w}, lr=1e-3)
    opt.step({"w": np.ones((2, 3), np.float32)})
    assert w.dtype == np.float32 and np.all(w < 1)


def test_state_round_trip():
    p = {"w": np.ones(4)}
    opt = Adam(p, lr=0.01)
    opt.step({"w": np.arange(4.0)})
    hyper, arrays = opt.state()
    other = Adam({"w": np.ones(4)})
    other.load_state(hyper, arrays)
    assert other.t == 1 and other.lr == 0.01
    np.testing.assert_array_equal(other.m["w"], opt.m["w"])
    with pytest.raises(ValueError, match=r"optimizer state v/w: expected float64 \(4,\), got nothing"):
        Adam({"w": np.ones(4)}).load_state(hyper, {"m/w": arrays["m/w"]})


def test_bad_use():
    with pytest.raises(ValueError, match="missing \\['b'\\]"):
        Adam({"w": np.ones(2), "b": np.ones(1)}).step({"w": np.ones(2)})
    with pytest.raises(ValueError, match="learning rate above 0, got 0"):
        Adam({"w": np.ones(2)}, lr=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pieces_on_threads_are_the_same_arithmetic_as_whole_arrays(monkeypatch, dtype):
    """Adam updates a cache-sized piece at a time, the pieces spread over threads: bit for bit the
    three lines written on whole arrays."""
    monkeypatch.setattr(adam, "PIECE", 7)
    monkeypatch.setattr(threads, "MIN_SIZE", 0)
    monkeypatch.setattr(threads, "WORKERS", 3)
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=(5, 9)).astype(dtype)
    params = {"w": p0.copy()}
    opt = Adam(params, lr=1e-2)
    lr, (b1, b2), eps = opt.lr, opt.betas, opt.eps
    w, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t in range(1, 4):
        g = rng.normal(size=(5, 9)).astype(dtype)
        opt.step({"w": g})
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * (g * g)
        w -= lr * (m / c1) / (np.sqrt(v / c2) + eps)
        np.testing.assert_array_equal(params["w"], w)
        np.testing.assert_array_equal(opt.m["w"], m)
        np.testing.assert_array_equal(opt.v["w"], v)


def test_a_parameter_it_cannot_update_in_place():
    with pytest.raises(ValueError, match="needs them C-contiguous"):
        Adam({"w": np.ones((4, 3)).T}).step({"w": np.ones((3, 4))})


def test_one_pass_over_a_flat_buffer_equals_one_per_parameter():
    """Parameters that tile one buffer (as a VAE's do) are updated in one pass, to the same numbers."""
    from scratchvae.ops.devices import tiling
    rng = np.random.default_rng(3)
    shapes = {"a": (3, 4), "b": (5,), "c": (2, 2, 2)}
    flat, gflat = rng.normal(size=25), np.zeros(25)
    views, gviews, off = {}, {}, 0
    for k, s in shapes.items():
        size = int(np.prod(s))
        views[k], gviews[k] = flat[off:off + size].reshape(s), gflat[off:off + size].reshape(s)
        off += size
    separate = {k: v.copy() for k, v in views.items()}
    assert tiling(views.values()) is flat and tiling(separate.values()) is None
    one, each = Adam(views, lr=0.05), Adam(separate, lr=0.05)
    assert one.flat is flat and each.flat is None
    for _ in range(4):
        gflat[...] = rng.normal(size=25)
        one.step(gviews)
        each.step({k: g.copy() for k, g in gviews.items()})
    for k in shapes:
        np.testing.assert_array_equal(views[k], separate[k])
        np.testing.assert_array_equal(one.m[k], each.m[k])
        np.testing.assert_array_equal(one.v[k], each.v[k])


def test_a_vaes_parameters_and_gradients_tile_two_buffers():
    from scratchvae import VAE
    from scratchvae.ops.devices import tiling
    m = VAE(input_shape=(3, 16, 16), latent_dim=4, encoder=((4, 4, 2), (4, 4, 2)),
            decoder=((4, 5, 2), (None, 4, 2)), dense_size=8, dtype=np.float64)
    assert tiling(m.params.values()) is m.flat_params
    m.loss(np.random.default_rng(0).random((2, 3, 16, 16)))
    m.backward()
    assert tiling(m.grads.values()) is m.flat_grads         # the layers wrote their gradients in place


def test_the_reference_lines_and_the_optimizer_take_the_same_steps():
    """reference.adam (the textbook lines, new arrays) against Adam (in place, in pieces), over five steps."""
    from scratchvae.check import reference
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4))
    p, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    opt = Adam({"w": w}, lr=0.01, betas=(0.8, 0.99), eps=1e-6)
    for t in range(1, 6):
        g = rng.normal(size=w.shape)
        opt.step({"w": g})
        p, m, v = reference.adam(p, g, m, v, t, lr=0.01, b1=0.8, b2=0.99, eps=1e-6)
        np.testing.assert_allclose(w, p, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(opt.m["w"], m, rtol=1e-14)
    np.testing.assert_allclose(opt.v["w"], v, rtol=1e-14)
