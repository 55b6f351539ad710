"""Mixed precision (--precision fp16): float16 products with float32 sums, the loss scaler, a mixed VAE against
its float32 twin, skipped steps, checkpoints and the settings. All under NumPy, whose float16 is IEEE half."""
import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scratchvae import VAE
from scratchvae.model.optim import Adam
from scratchvae.model.scaler import LossScaler
from scratchvae.ops.blas import matmul
from scratchvae.run import checkpoint
from scratchvae.run.runfolder import RunSettings
from scratchvae.run.step import optimizer_step, train_step

SMALL = dict(input_shape=(3, 16, 16), latent_dim=4, dense_size=32,
             encoder=((8, 4, 2), (16, 4, 2)), decoder=((8, 5, 2), (None, 4, 2)))


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 9), k=st.integers(1, 32), n=st.integers(1, 9), seed=st.integers(0, 2 ** 16),
       transposed=st.booleans(), accumulate=st.booleans())
def test_a_half_product_sums_in_float32_and_rounds_once(m, k, n, seed, transposed, accumulate):
    """Small whole numbers: every product and partial sum is exact in float32 (|sum| ≤ 32·16 + 16), so the
    result must be the exact product rounded once to float16, whatever the operands' layout."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-4, 5, (m, k)).astype(np.float16)
    b = rng.integers(-4, 5, (k, n)).astype(np.float16)
    c = rng.integers(-16, 17, (m, n)).astype(np.float16)
    exact = a.astype(np.float64) @ b.astype(np.float64) + (c.astype(np.float64) if accumulate else 0)
    out = np.asfortranarray(c) if transposed else c.copy()
    got = matmul(np.asfortranarray(a) if transposed else a, b, out=out, accumulate=accumulate)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, exact.astype(np.float16))


def test_a_half_product_differs_from_summing_in_half():
    """Why float32 sums: 4096 ones plus a small term. Summed in float16 the running total stops at 2048 (the
    next number, 2049, has no float16); the product's float32 sum gives 4096 exactly."""
    a = np.ones((1, 4096), np.float16)
    b = np.ones((4096, 1), np.float16)
    assert matmul(a, b)[0, 0] == 4096
    total = np.float16(0)
    for v in (a[0] * b[:, 0]):
        total = np.float16(total + v)
    assert total == 2048
    big = np.full((1, 2), 300, np.float16)
    assert np.isinf(matmul(big, big.T)[0, 0])                      # 180,000 > 65,504: float16's inf


def test_the_scaler_halves_on_overflow_and_doubles_after_clean_steps():
    s = LossScaler(scale=2 ** 4, growth_interval=3, min_scale=2, max_scale=2 ** 5)
    assert [s.update(True), s.update(True)] == [True, True] and s.scale == 16
    assert s.update(True) and s.scale == 32 and s.clean == 0          # the third clean step in a row doubles
    assert [s.update(True) for _ in range(3)] == [True] * 3 and s.scale == 32   # no higher than max_scale
    assert not s.update(False) and s.scale == 16 and s.skipped == 1
    assert s.update(True) and s.update(True) and not s.update(False) and s.scale == 8 and s.clean == 0
    for _ in range(5):
        s.update(False)
    assert s.scale == 2 and s.skipped == 7                           # no lower than min_scale
    t = LossScaler()
    t.load_state(json.loads(json.dumps(s.state())))
    assert t.state() == s.state()
    with pytest.raises(ValueError, match="power of two"):
        LossScaler(scale=1000)
    with pytest.raises(ValueError, match="factor > 1"):
        LossScaler(factor=1)


def pair(seed=0, scale=None):
    """A mixed model and its float32 twin (the same weights, exactly: the float16 ones), and a batch."""
    model = VAE(**SMALL, compute_dtype=np.float16, seed=seed)
    if scale is not None:
        model.scaler.scale = scale
    twin = model.full_precision()
    rng = np.random.default_rng(seed + 1)
    x = rng.random((6, 3, 16, 16)).astype(np.float32)
    eps = rng.standard_normal((6, 4)).astype(np.float32)
    return model, twin, x, eps


def test_a_mixed_model_is_its_float32_twin_to_half_precision():
    model, twin, x, eps = pair(scale=2 ** 10)
    assert model.compute_dtype == np.float16 and model.flat_compute.dtype == np.float16
    assert all(p.dtype == np.float32 for p in model.params.values())
    np.testing.assert_array_equal(model.flat_params, model.flat_compute.astype(np.float32))
    got, want = model.loss(x, eps), twin.loss(x, eps)
    for k in want:                                                      # the loss in float32, from float16 logits
        assert got[k].dtype == np.float32
        np.testing.assert_allclose(got[k], want[k], rtol=2e-3)
    model.backward()
    twin.backward()
    for k, g in model.grads.items():
        assert g.dtype == np.float32
        err = np.linalg.norm(g - twin.grads[k]) / np.linalg.norm(twin.grads[k])
        assert err < 0.05, (k, err)        # float16 keeps 11 bits: 4.9e-4 a rounding, summed over the layers
    mu, logvar = model.encode(x)
    assert mu.dtype == logvar.dtype == np.float32
    y = model.decode(mu)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, twin.decode(twin.encode(x)[0]), atol=5e-3)


@pytest.mark.slow
def test_without_a_scale_small_gradients_underflow_to_zero():
    """The World Models VAE at its first step: at scale 1 many gradients that float32 has are exactly 0 in
    float16 (the convolutions' weight gradients, under float16's 6e-8); scaled by 2¹⁰ almost none are (a few
    may differ by a ReLU that float16 rounds to the other side of 0)."""
    flushed = {}
    rng = np.random.default_rng(1)
    x = rng.random((8, 3, 64, 64)).astype(np.float32)
    eps = rng.standard_normal((8, 32)).astype(np.float32)
    for scale in (1, 2 ** 10):
        model = VAE(compute_dtype=np.float16, seed=0)
        model.scaler.scale = scale
        twin = model.full_precision()
        for m in (model, twin):
            m.loss(x, eps)
            m.backward()
        flushed[scale] = sum(int(np.sum((model.grads[k] == 0) & (twin.grads[k] != 0))) for k in model.grads)
    assert flushed[1] > 1000 and flushed[2 ** 10] < flushed[1] / 20, flushed


def test_an_overflow_skips_the_step_and_halves_the_scale():
    model, _, x, eps = pair(scale=2 ** 24)
    opt = Adam(model.params, lr=1e-3)
    before = model.flat_params.copy()
    with np.errstate(over="ignore", invalid="ignore"):                  # (NumPy would say so: inf, then inf − inf)
        train_step(model, opt, x, eps)
    assert not np.isfinite(model.flat_grads).all()                      # 2²⁴ × the gradients: past 65,504
    assert opt.t == 0 and model.scaler.skipped == 1 and model.scaler.scale == 2 ** 23
    np.testing.assert_array_equal(model.flat_params, before)             # nothing moved: not the weights …
    assert not opt.flat_m.any() and not opt.flat_v.any()                 # … nor Adam's moments
    model.scaler.scale = 2 ** 8
    train_step(model, opt, x, eps)
    assert opt.t == 1 and not np.array_equal(model.flat_params, before)
    np.testing.assert_array_equal(model.flat_compute, model.flat_params.astype(np.float16))   # rounded anew


def test_mixed_training_follows_float32_training():
    """Thirty Adam steps on one batch: the mixed model's loss falls as the float32 model's does."""
    model, twin, x, eps = pair(scale=2 ** 10)
    runs = {}
    for name, m in (("mixed", model), ("fp32", twin)):
        opt = Adam(m.params, lr=3e-3)
        runs[name] = [float(train_step(m, opt, x, eps)["loss"]) for _ in range(30)]
    assert runs["mixed"][-1] < 0.9 * runs["mixed"][0]
    assert abs(runs["mixed"][-1] - runs["fp32"][-1]) < 0.02 * runs["fp32"][-1], runs


def test_a_checkpoint_keeps_the_scale_and_gives_back_a_mixed_model(tmp_path):
    model, _, x, eps = pair(scale=2 ** 12)
    opt = Adam(model.params, lr=1e-3)
    for _ in range(3):
        train_step(model, opt, x, eps)
    model.scaler.clean, model.scaler.skipped = 7, 2
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, model, opt, step=3)
    ck = checkpoint.load(path)
    back = ck.model
    assert back.mixed and back.scaler.state() == model.scaler.state()
    np.testing.assert_array_equal(back.flat_params, model.flat_params)
    np.testing.assert_array_equal(back.flat_compute, model.flat_compute)   # the float16 copy made from them
    a, b = train_step(model, opt, x, eps), train_step(back, ck.optimizer, x, eps)
    assert float(a["loss"]) == float(b["loss"])
    np.testing.assert_array_equal(back.flat_params, model.flat_params)    # the resumed step is the same step


def test_the_settings_read_tf32_as_a_precision_and_refuse_fp16_with_float64():
    s = RunSettings("d", "o", steps=1, tf32=True)
    assert s.precision == "tf32" and not s.tf32
    assert "--precision" in s.as_options() and "--tf32" not in s.as_options()
    assert RunSettings("d", "o", steps=1, precision="fp16").model_config(3, 64, 64)["compute_dtype"] == "float16"
    assert "compute_dtype" not in RunSettings("d", "o", steps=1, precision="tf32").model_config(3, 64, 64)
    with pytest.raises(ValueError, match="--precision fp16 keeps float32 weights .* --dtype float64"):
        RunSettings("d", "o", steps=1, precision="fp16", dtype="float64")
    with pytest.raises(ValueError, match="--tf32 is --precision tf32, and --precision fp16 was given too"):
        RunSettings("d", "o", steps=1, precision="fp16", tf32=True)
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, fp16, got 'bf16'"):
        RunSettings("d", "o", steps=1, precision="bf16")
    fp32 = RunSettings("d", os.path.abspath("o"), steps=1)
    resumed, changes = fp32.resumed({"tf32": True})
    assert resumed.precision == "tf32" and changes == {"precision": ("fp32", "tf32")}
    with pytest.raises(ValueError, match="cannot change --precision fp32 to fp16"):
        fp32.resumed({"precision": "fp16"})


def test_a_mixed_model_needs_float32_weights():
    with pytest.raises(ValueError, match="compute_dtype float16 needs dtype float32, got .* float64"):
        VAE(**SMALL, dtype=np.float64, compute_dtype=np.float16)
    assert not VAE(**SMALL).mixed and VAE(**SMALL).scaler is None
    twin = VAE(**SMALL)
    assert twin.full_precision() is twin


@pytest.mark.slow
def test_train_scratch_in_fp16_logs_its_scale_and_resumes_bit_for_bit(tmp_path, data, device):
    from runs import FAST, run_cli
    from scratchvae.cli.train import main as train_main
    from scratchvae.run.runfolder import RunFolder
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    on = ["--device", device, "--precision", "fp16", *FAST]
    assert train_main(["--data", data, "--steps", "8", "--out", one, *on]) == 0
    assert train_main(["--data", data, "--steps", "4", "--out", two, *on]) == 0
    assert train_main(["--data", data, "--steps", "8", "--out", two, "--resume", *on]) == 0
    a, b = (checkpoint.load(RunFolder(r).checkpoints()[-1][1]) for r in (one, two))
    assert a.model.mixed and a.model.scaler.state() == b.model.scaler.state()
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)
    rows = [json.loads(line) for line in open(os.path.join(one, "log.jsonl"))]
    assert all("loss_scale" in r and "skipped_steps" in r for r in rows)
    assert sum(r["skipped_steps"] for r in rows) == a.model.scaler.skipped
    assert rows[-1]["loss_scale"] == a.model.scaler.scale
    assert json.load(open(os.path.join(one, "run.json")))["precision"] == "fp16"
    r = run_cli("--data", data, "--steps", "2", "--out", str(tmp_path / "three"), "--precision", "fp16",
                "--dtype", "float64", "--quiet")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not go with --dtype float64" in r.stderr
    r = run_cli("--data", data, "--steps", "9", "--out", one, "--resume", "--precision", "fp32", "--quiet")
    assert r.returncode == 2 and "cannot change --precision fp16 to fp32" in r.stderr
