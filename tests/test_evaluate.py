"""The model's log p(x): the importance-weighted bound is at least the ELBO of the same draws, rises with K, and
reaches the exact log p(x) of a model small enough to integrate on a grid; the likelihoods are densities; and
bin/evaluate reports it as a user runs it."""
import json
import math
import os

import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.cli import run
from scratchvae.cli.evaluate import main as evaluate_main
from scratchvae.model.vae import forward
from scratchvae.use import likelihood

from runs import one_line, trained_run

SMALL = dict(encoder=((3, 3, 2), (4, 3, 2)), decoder=((3, 3, 2), (None, 4, 2)), dense_size=5)


def tiny(latent_dim=1, seed=3, scale=3.0, **kw):
    """A VAE of 8×8 one-channel images, its weights scaled up so that the decoder's output moves with z."""
    m = VAE(input_shape=(1, 8, 8), latent_dim=latent_dim, dtype=np.float64, seed=seed, **SMALL, **kw)
    for p in m.params.values():
        p *= scale
    return m


def exact_log_px(model, x, kind, variance, lo=-12.0, hi=12.0, points=48001):
    """log ∫ p(x | z) N(z; 0, 1) dz for a one-number latent, by the rectangle rule on a grid (the integrand is
    smooth and negligible past ±12)."""
    grid = np.linspace(lo, hi, points)[:, None]
    logits = forward(model.decoder, grid.copy())                             # (points, C, H, W)
    out = []
    for image in x:
        terms = likelihood.log_likelihood(kind, logits, np.broadcast_to(image, logits.shape), variance)
        terms = terms + likelihood.log_normal(grid)
        top = terms.max()
        out.append(top + math.log(np.exp(terms - top).sum() * (grid[1, 0] - grid[0, 0])))
    return np.array(out)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gaussian", "bernoulli"])
def test_the_bound_reaches_the_exact_log_px(kind):
    """On a 1-number latent, log p(x) integrated on a grid; q moved off the prior (its mean 0.5, its variance
    e^−0.3), so the draws must be weighted. L_20000 is within four of its standard errors of it (each under
    0.05 nats); the ELBO of the same draws is below it."""
    model = tiny(recon="mse" if kind == "gaussian" else "bernoulli")
    for name in ("encoder.mu.W", "encoder.logvar.W"):
        model.params[name][...] = 0
    model.params["encoder.mu.b"][...] = 0.5
    model.params["encoder.logvar.b"][...] = -0.3
    x = np.random.default_rng(0).random((3, 1, 8, 8))
    variance = 0.5 if kind == "gaussian" else None
    exact = exact_log_px(model, x, kind, variance)
    logw, _ = likelihood.log_weights(model, x, 20000, np.random.default_rng(1), kind, variance)
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    se = w.std(axis=1) / w.mean(axis=1) / math.sqrt(logw.shape[1])          # of log(mean w), by the delta method
    assert se.max() < 0.05                                                  # a test that can tell 0.2 nats apart
    assert (np.abs(likelihood.bound(logw) - exact) < 4 * se + 1e-3).all(), (likelihood.bound(logw), exact, se)
    assert (logw.mean(axis=1) < exact).all()                                 # the ELBO of these draws
    assert np.abs(logw.mean(axis=1) - exact).min() > 0.03                    # … a bound with a gap


def test_each_bound_is_at_least_the_elbo_of_its_draws_and_rises_with_k():
    """Per image and for every K, L_K ≥ the mean of the same K log-weights (the log of a mean is at least the mean
    of the logs); averaged over 40 images on a fixed seed, L_1 < L_4 < L_16 < L_64."""
    model = tiny(latent_dim=2, seed=5)
    x = np.random.default_rng(2).random((40, 1, 8, 8))
    logw, _ = likelihood.log_weights(model, x, 64, np.random.default_rng(7), "gaussian", 0.5)
    for k in (1, 2, 4, 16, 64):
        assert (likelihood.bound(logw, k) >= logw[:, :k].mean(axis=1) - 1e-12).all()
    means = [likelihood.bound(logw, k).mean() for k in (1, 4, 16, 64)]
    assert all(a < b for a, b in zip(means, means[1:])), means


def test_the_likelihoods_are_densities():
    """Each integrates to 1 over x in [0, 1] (the Gaussian over the real line), λ at ½ and far from it."""
    xs = np.linspace(0, 1, 200001)[:, None]
    for logit in (-9.0, -1.0, -1e-6, 0.0, 4e-4, 2.5, 14.0):
        density = np.exp(likelihood.log_likelihood("bernoulli", np.full(xs.shape, logit), xs))
        assert abs(np.trapezoid(density, xs[:, 0]) - 1) < 1e-8, logit
    reals = np.linspace(-12, 13, 400001)[:, None]
    density = np.exp(likelihood.log_likelihood("gaussian", np.full(reals.shape, 0.7), reals, 0.5))
    assert abs(np.trapezoid(density, reals[:, 0]) - 1) < 1e-8


def test_the_gaussian_is_the_training_loss_at_variance_beta_over_two():
    """−log p(x | z) with s² = β/2 is (squared error)/β plus a constant: the training loss recon + β·kl over β."""
    beta = 3.0
    rng = np.random.default_rng(0)
    logits, x = rng.normal(size=(2, 3, 4, 4)), rng.random((2, 3, 4, 4))
    y = 1 / (1 + np.exp(-logits))
    nll = -likelihood.log_likelihood("gaussian", logits, x, beta / 2)
    constant = 0.5 * 48 * math.log(2 * math.pi * beta / 2)
    assert np.allclose(nll, ((y - x) ** 2).sum(axis=(1, 2, 3)) / beta + constant, rtol=1e-13)


def test_the_likelihood_a_model_implies():
    """β/2 for the squared error, unless given; none for the continuous Bernoulli; a model trained with β = 0 has no
    default and says to give one."""
    assert likelihood.likelihood_of(tiny(beta=3.0)) == ("gaussian", 1.5)
    assert likelihood.likelihood_of(tiny(beta=3.0), 0.01) == ("gaussian", 0.01)
    assert likelihood.likelihood_of(tiny(recon="bernoulli")) == ("bernoulli", None)
    with pytest.raises(ValueError, match=r"variance must be a number > 0, got 0.0 .*--variance"):
        likelihood.likelihood_of(tiny(beta=0.0))


def test_bits_per_dimension():
    """A density of 1 on [0, 1]^D (log p = 0) is the uniform 8-bit frame's log₂ 255 bits a pixel."""
    assert likelihood.bits_per_dim(0.0, 12288) == pytest.approx(math.log2(255))
    assert likelihood.ks_up_to(64) == [1, 2, 4, 8, 16, 32, 64] and likelihood.ks_up_to(100)[-2:] == [64, 100]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data):
    return trained_run(tmp_path_factory, data, steps=3)



@pytest.mark.slow
def test_evaluate_a_run(run_dir, tmp_path, capsys):
    """The run's held-out frames by default; a table of the ELBO and L_1 … L_K; the JSON says the same."""
    out = tmp_path / "numbers" / "eval.json"
    assert run("evaluate", evaluate_main, ["--checkpoint", run_dir, "--frames", "6", "--samples", "8", "--quiet",
                                           "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "held-out frames of" in text and "s² = 0.5 (β/2" in text
    for row in ("E_q log p(x | z)", "KL(q(z | x) ‖ p(z))", "ELBO", "L_1", "L_2", "L_4", "L_8"):
        assert row in text, row
    saved = json.loads(out.read_text())
    assert saved["frames"] == 6 and saved["samples"] == 8 and saved["likelihood"] == "gaussian"
    assert saved["mean_nats"]["L_8"] >= saved["mean_nats"]["L_1"] - 5.0
    assert len(saved["per_frame"]["L_8"]) == 6 and saved["variance"] == 0.5
    elbo_line = next(line for line in text.splitlines() if line.startswith("ELBO"))
    assert f"{saved['mean_nats']['elbo']:.2f}" in elbo_line
    assert not [f for f in os.listdir(out.parent) if f.endswith(".tmp")]


@pytest.mark.slow
def test_evaluate_another_folder_and_the_seed(run_dir, data, capsys):
    args = ["--checkpoint", run_dir, "--data", data, "--frames", "4", "--samples", "4", "--quiet"]
    assert run("evaluate", evaluate_main, args) == 0
    first = capsys.readouterr().out
    assert f"frames of {data}" in first
    assert run("evaluate", evaluate_main, args) == 0
    assert capsys.readouterr().out == first                                  # the same seed, the same numbers
    assert run("evaluate", evaluate_main, args + ["--seed", "1"]) == 0
    assert capsys.readouterr().out != first


@pytest.mark.slow
@pytest.mark.parametrize("args, said", [
    (["--samples", "6000"], "5,000"),
    (["--frames", "10000", "--samples", "5000"], "2,000,000 decodes"),
    (["--variance", "-1"], "above 0"),
])
def test_evaluate_limits(run_dir, tmp_path, capsys, args, said):
    out = tmp_path / "new" / "eval.json"
    with pytest.raises(SystemExit) as e:
        evaluate_main(["--checkpoint", run_dir, "--out", str(out), *args])
    assert e.value.code == 2 and said in capsys.readouterr().err
    assert not out.parent.exists()


@pytest.mark.slow
def test_evaluate_bad_input_is_one_line(run_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "made" / "eval.json"
    assert run("evaluate", evaluate_main, ["--checkpoint", run_dir, "--data", str(empty), "--out", str(out)]) == 2
    line = one_line(capsys)
    assert line.startswith("evaluate: error: ") and str(empty) in line
    assert not out.parent.exists()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really")
    assert run("evaluate", evaluate_main, ["--checkpoint", str(bad)]) == 2
    assert one_line(capsys).startswith("evaluate: error: ")
    folder = tmp_path / "afolder"
    folder.mkdir()
    assert run("evaluate", evaluate_main, ["--checkpoint", run_dir, "--out", str(folder)]) == 2
    assert "is a folder" in one_line(capsys)
