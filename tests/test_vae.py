"""The whole VAE: shapes, finite differences of every parameter, free bits, determinism, learning."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchvae import VAE

from scratchvae.check import reference

from scratchvae.model import vae
from scratchvae.ops.devices import get_xp, to_numpy
from scratchvae.check.gradcheck import check_model, check_model_directions
from scratchvae.ops.im2col import batch_last
from scratchvae.model.optim import Adam

SMALL = dict(encoder=((3, 3, 2), (4, 3, 2)), decoder=((3, 3, 2), (None, 4, 2)), dense_size=5, latent_dim=3)


def small_model(h=12, w=10, c=2, device="cpu", dtype=np.float64, seed=0, **kw):
    return VAE(input_shape=(c, h, w), **{**SMALL, **kw}, dtype=dtype, seed=seed, device=device)


def images(n, c, h, w, device="cpu", dtype=np.float64, seed=0):
    return get_xp(device).asarray(np.random.default_rng(seed).random((n, c, h, w)).astype(dtype))


def test_default_architecture():
    m = VAE()
    assert m.num_params() == 4_348_547
    shapes = {k: tuple(v.shape) for k, v in m.params.items()}
    assert shapes["encoder.conv1.W"] == (32, 3, 4, 4) and shapes["encoder.conv4.b"] == (256,)
    assert shapes["encoder.mu.W"] == shapes["encoder.logvar.W"] == (1024, 32)
    assert shapes["decoder.dense.W"] == (32, 1024)
    assert shapes["decoder.deconv1.W"] == (1024, 128, 5, 5) and shapes["decoder.deconv4.W"] == (32, 3, 6, 6)
    assert list(m.params) == [f"encoder.conv{i}.{p}" for i in range(1, 5) for p in "Wb"] + [
        "encoder.mu.W", "encoder.mu.b", "encoder.logvar.W", "encoder.logvar.b", "decoder.dense.W",
        "decoder.dense.b"] + [f"decoder.deconv{i}.{p}" for i in range(1, 5) for p in "Wb"]
    m.loss(images(2, 3, 64, 64, dtype=np.float32))
    m.backward()
    for k, p in m.params.items():                   # every parameter gets a gradient of its own, and it moved
        g = m.grads[k]
        assert g.shape == p.shape and g.dtype == p.dtype and not np.shares_memory(g, p), k
        assert np.isfinite(g).all() and np.any(g != 0), k


def test_the_model_is_two_lists_of_layers():
    """The forward pass is the encoder list in order, reparameterization, the decoder list in order; the
    backward the same lists in reverse. Checked by running the lists by hand."""
    def kinds(layers):
        return [type(layer).__name__ for layer in layers]
    m = VAE(input_shape=(3, 60, 80), latent_dim=4, seed=2)
    assert kinds(m.encoder) == ["FastConv2D", "ReLU"] * 4 + ["Flatten", "Heads"]
    assert kinds(m.decoder) == ["Dense", "Reshape"] + ["FastConvTranspose2D", "ReLU"] * 3 + \
        ["FastConvTranspose2D", "Crop2D"]                           # 60×80: a 1024×1×2 seed, cropped at the end
    assert kinds(VAE(latent_dim=4).decoder) == ["DenseThenDeconv", "ReLU", "FastConvTranspose2D", "ReLU",
                                                "FastConvTranspose2D", "ReLU", "FastConvTranspose2D"]
    assert kinds(VAE(latent_dim=4, fast=False).decoder)[:3] == ["Dense", "Reshape", "ConvTranspose2D"]
    assert kinds(VAE(latent_dim=4, dense_relu=True).decoder)[:4] == ["Dense", "ReLU", "Reshape", "FastConvTranspose2D"]
    x = images(3, 3, 60, 80, dtype=np.float32)
    mu, logvar = m.encode(x)
    h = batch_last(x)
    for layer in m.encoder:
        h = layer.forward(h)
    np.testing.assert_array_equal(h[0], mu)
    np.testing.assert_array_equal(h[1], logvar)
    y = m.sigmoid.forward(vae.forward(m.decoder, mu))
    np.testing.assert_array_equal(y, m.decode(mu))
    assert vae.backward(m.encoder, (np.ones_like(mu), np.ones_like(logvar))) is None   # conv1: no dx of the images
    assert m.layers["encoder.mu"].grads["b"].tolist() == [3.0] * 4                    # Σ_n of the ones sent back


@pytest.mark.parametrize("h, w", [(64, 64), (60, 80), (47, 51)])
def test_decoder_gives_back_the_input_size(h, w):
    m = VAE(input_shape=(3, h, w), seed=1)
    x = images(2, 3, h, w, dtype=np.float32)
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (2, 32)
    assert m.decode(mu).shape == m.reconstruct(x).shape == (2, 3, h, w)
    out = m.loss(x)
    assert all(v.shape == () for v in out.values())
    m.backward()
    assert all(m.grads[k].shape == p.shape for k, p in m.params.items())


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r"input 3×40×64 is too small for the encoder: .* at least 46"):
        VAE(input_shape=(3, 40, 64))


@pytest.mark.parametrize("x, match", [
    (np.zeros((2, 3, 64, 60), np.float32), r"expects images of shape \(N, 3, 64, 64\), got \(2, 3, 64, 60\)"),
    (np.zeros((2, 3, 64, 64), np.float64), "expects dtype float32, got float64"),
    (np.full((2, 3, 64, 64), np.nan, np.float32), "NaN"),
    (np.zeros((0, 3, 64, 64), np.float32), r"at least one image, got an empty batch of shape \(0, 3, 64, 64\)"),
    (np.zeros((2, 3, 64, 64), np.uint8), r"expects float32 images in \[0, 1\], got uint8: convert them, e\.g\. "
                                          r"x\.astype\(np\.float32\) / 255"),
    (np.full((2, 3, 64, 64), 255, np.float32), r"images in \[0, 1\], got values from 255 to 255: divide by 255"),
    (np.full((2, 3, 64, 64), -0.5, np.float32), r"images in \[0, 1\], got values from -0.5 to -0.5$"),
])
def test_bad_images(x, match):
    for use in (VAE().loss, VAE().encode, VAE().reconstruct):
        with pytest.raises(ValueError, match=match):
            use(x)


@pytest.mark.parametrize("z, match", [
    (np.zeros((2, 32), np.float64), r"expects float32 latents on cpu \(the model's\), got float64 on cpu"),
    (np.zeros((2, 8), np.float32), r"latents of shape \(N ≥ 1, 32\), got \(2, 8\)"),
    (np.zeros((0, 32), np.float32), r"latents of shape \(N ≥ 1, 32\), got \(0, 32\)"),
    ([[0.0] * 32], r"latents of shape \(N ≥ 1, 32\), got list"),
])
def test_bad_latents(z, match):
    with pytest.raises(ValueError, match=match):
        VAE().decode(z)


def test_misused_steps_say_what_to_do():
    from scratchvae.model.optim import Adam
    m = small_model()
    opt = Adam(m.params)
    with pytest.raises(RuntimeError, match=r"no backward\(\) has run yet"):
        opt.step(m.grads)                                   # the optimizer before any backward
    with pytest.raises(RuntimeError, match=r"before any loss\(\)"):
        m.backward()
    m.loss(images(3, 2, 12, 10))
    m.backward()
    with pytest.raises(RuntimeError, match=r"already used by a backward\(\); call loss\(\) again"):
        m.backward()
    opt.step(m.grads)                                       # after a backward it goes


def test_bad_eps():
    with pytest.raises(ValueError, match=r"eps must be an array of shape \(2, 32\) on cpu, got \(2, 16\)"):
        VAE().loss(np.zeros((2, 3, 64, 64), np.float32), eps=np.zeros((2, 16), np.float32))


@pytest.mark.slow
@settings(max_examples=6)
@given(st.integers(1, 3), st.integers(9, 14), st.integers(9, 14), st.sampled_from(["mse", "bernoulli"]),
       st.sampled_from([0.0, 0.5, 50.0]), st.booleans(), st.integers(0, 2**32 - 1))
def test_whole_model_finite_differences(device, n, h, w, recon, tol, dense_relu, seed):
    """Every parameter of a small VAE, eps fixed; KL tolerance 0 (all above the floor), 0.5, and 50 (all under);
    with and without a ReLU after the decoder's dense layer."""
    m = small_model(h, w, device=device, recon=recon, kl_tolerance=tol, dense_relu=dense_relu, seed=seed)
    x = images(n, 2, h, w, device, seed=seed)
    eps = get_xp(device).asarray(np.random.default_rng(seed).normal(size=(n, 3)))
    errors = check_model(m, x, eps)
    assert max(errors.values()) <= 1e-6, {k: v for k, v in errors.items() if v > 1e-6}


@pytest.mark.slow
def test_default_architecture_random_directions(device):
    m = VAE(dtype=np.float64, seed=3, kl_tolerance=0.0, device=device)
    x = images(2, 3, 64, 64, device, seed=3)
    eps = get_xp(device).asarray(np.random.default_rng(3).normal(size=(2, 32)))
    errors = check_model_directions(m, x, eps, directions=2)
    assert max(errors.values()) <= 1e-6, {k: v for k, v in errors.items() if v > 1e-6}


def _grads(m, x, eps):
    m.loss(x, eps)
    m.backward()
    return {k: to_numpy(g).copy() for k, g in m.grads.items()}


def test_free_bits_floor_gates_the_kl_gradient():
    x = images(4, 2, 12, 10, seed=5)
    eps = np.random.default_rng(5).normal(size=(4, 3))
    base = _grads(small_model(beta=0.0), x, eps)               # reconstruction alone
    under = _grads(small_model(kl_tolerance=1e6), x, eps)       # every image under the floor
    for k in base:
        np.testing.assert_array_equal(under[k], base[k])        # exactly no KL gradient

    for tol_kind in ("all", "some"):
        m = small_model(kl_tolerance=0.0)
        mu, logvar = (to_numpy(a) for a in m.encode(x))
        kl_n = -0.5 * (1 + logvar - mu ** 2 - np.exp(logvar)).sum(axis=1)
        if tol_kind == "some":                                   # floor between the images' KLs
            floor = np.sort(kl_n)[1:3].mean()
            m = small_model(kl_tolerance=floor / 3)
        active = kl_n > (0 if tol_kind == "all" else floor)
        g = _grads(m, x, eps)
        n = len(x)
        # the heads' bias gradients differ from reconstruction-only by the closed form, summed over active images
        np.testing.assert_allclose(g["encoder.mu.b"] - base["encoder.mu.b"], (mu[active]).sum(0) / n,
                                   rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(g["encoder.logvar.b"] - base["encoder.logvar.b"],
                                   (0.5 * (np.exp(logvar[active]) - 1)).sum(0) / n, rtol=1e-10, atol=1e-13)


def _loss_by_the_loops(P, x, eps, recon, floor, beta, dense_relu=False):
    """The small model's loss from its parameters P alone: the reference loops for the convolutions,
    NumPy for the rest, the textbook formulas; no line of the model's own code."""
    n = len(x)
    h = x
    for i in (1, 2):                                            # two 3×3 stride-2 convolutions, ReLU
        h = np.maximum(reference.conv2d(h, P[f"encoder.conv{i}.W"], P[f"encoder.conv{i}.b"], stride=2), 0)
    f = h.reshape(n, -1)                                        # (N, 4·2·2)
    mu = f @ P["encoder.mu.W"] + P["encoder.mu.b"]
    logvar = f @ P["encoder.logvar.W"] + P["encoder.logvar.b"]
    z = mu + np.sqrt(np.exp(logvar)) * eps                      # σ = √variance
    # 12×10 images: a 2×2 seed decodes to (2·2 + 1)·2 + 2 = 12 in both directions; crop 12×12 → 12×10
    d = (z @ P["decoder.dense.W"] + P["decoder.dense.b"]).reshape(n, 5, 2, 2)
    d = np.maximum(d, 0) if dense_relu else d
    d = np.maximum(reference.conv_transpose2d(d, P["decoder.deconv1.W"], P["decoder.deconv1.b"], stride=2), 0)
    logits = reference.conv_transpose2d(d, P["decoder.deconv2.W"], P["decoder.deconv2.b"], stride=2)[:, :, :, 1:11]
    y = 1 / (1 + np.exp(-logits))
    if recon == "mse":
        rec = ((y - x) ** 2).sum() / n
    else:
        rec = -(x * np.log(y) + (1 - x) * np.log(1 - y)).sum() / n
    kl_n = -0.5 * (1 + logvar - mu ** 2 - np.exp(logvar)).sum(axis=1)
    kl = np.maximum(kl_n, floor).mean()
    return dict(loss=rec + beta * kl, recon=rec, kl=kl, kl_raw=kl_n.mean())


@pytest.mark.parametrize("recon, beta, dense_relu", [("mse", 1.0, False), ("bernoulli", 2.5, False),
                                                     ("mse", 1.0, True)])
def test_loss_values_match_the_loops_and_the_formulas(recon, beta, dense_relu):
    m = small_model(kl_tolerance=0.1, recon=recon, beta=beta, dense_relu=dense_relu)
    x = images(3, 2, 12, 10, seed=6)
    eps = np.random.default_rng(6).normal(size=(3, 3))
    out = m.loss(x, eps)
    want = _loss_by_the_loops({k: to_numpy(v) for k, v in m.params.items()}, x, eps, recon, 0.1 * 3, beta,
                              dense_relu)
    for k in want:
        np.testing.assert_allclose(float(out[k]), want[k], rtol=1e-12, err_msg=k)


def _train(steps, seed=0):
    m = small_model(dtype=np.float32, seed=seed)
    opt = Adam(m.params, lr=1e-3)
    x = images(8, 2, 12, 10, dtype=np.float32, seed=7)
    for _ in range(steps):
        m.loss(x)
        m.backward()
        opt.step(m.grads)
    return m


def test_same_seed_same_parameters_bit_for_bit():
    a, b = _train(5), _train(5)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    c = _train(5, seed=1)
    assert any(not np.array_equal(a.params[k], c.params[k]) for k in a.params)


def _blobs(n, h=16, w=16, seed=0):
    """Synthetic images: one coloured square on a dark background."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 3, h, w), 0.1, np.float32)
    for i in range(n):
        s = rng.integers(3, 7)
        r, c = rng.integers(0, h - s), rng.integers(0, w - s)
        x[i, :, r:r + s, c:c + s] = rng.uniform(0.3, 1.0, size=(3, 1, 1))
    return x


def test_learning_on_synthetic_images(device):
    """On 256 small images the reconstruction error falls clearly within a short run."""
    xp = get_xp(device)
    data = xp.asarray(_blobs(256))
    m = VAE(input_shape=(3, 16, 16), encoder=((16, 3, 2), (32, 3, 2)), decoder=((16, 4, 2), (None, 4, 2)),
            dense_size=64, latent_dim=8, dtype=np.float32, seed=0, device=device)
    opt = Adam(m.params, lr=3e-3)
    order = np.random.default_rng(0)
    first = float(m.loss(data)["recon"])
    for epoch in range(12):
        perm = order.permutation(256)
        for i in range(0, 256, 32):
            m.loss(data[xp.asarray(perm[i:i + 32])])
            m.backward()
            opt.step(m.grads)
    last = float(m.loss(data)["recon"])
    assert last < 0.4 * first, (first, last)
