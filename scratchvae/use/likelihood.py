"""How well a trained model explains frames, measured as VAE papers measure it: the ELBO, and the
importance-weighted bound on log p(x) of Burda, Grosse & Salakhutdinov (2016), in nats per image and in
bits per dimension. docs/vae.md ("Evaluating a model: log p(x)") derives it; bin/evaluate runs it.

For an image x the encoder gives q(z | x) = N(μ, diag e^ℓ), the prior is p(z) = N(0, I), and p(x | z) is
the model's own likelihood, chosen by the loss it was trained with:

    "gaussian" (recon "mse"):  N(x; y, s²·I), y = σ(logits), with s² = β/2 unless given: the one variance under
        which the training loss, recon + β·kl, is the negative ELBO times a constant (docs/vae.md).
    "bernoulli" (recon "bernoulli"): the continuous Bernoulli CB(x; λ), λ = σ(logits): the cross-entropy the
        model trains on, made a density on [0, 1] by its normaliser C(λ) (Loaiza-Ganem & Cunningham, 2019).

With K draws z_k = μ + σ·ε_k, ε_k ~ N(0, I), each has a log-weight

    log w_k = log p(x | z_k) + log p(z_k) − log q(z_k | x)

and L_K = log (1/K) Σ_k w_k is a lower bound on log p(x) in expectation, for every K. L_1 is the ELBO; the bound
rises with K and reaches log p(x) as K → ∞. On the same draws, L_K ≥ the mean of the log w_k, always (the log of a
mean is at least the mean of the logs). Everything here is float64 on the host; only the decoder runs on the
model's device and dtype.
"""
import math

import numpy as np

from ..files import progress
from ..model.losses import kl_per_image
from ..ops.devices import to_numpy
from ..ops.elementwise import sigmoid, softplus
from ..data.dataset import to_model_input

LOG_2PI = math.log(2 * math.pi)
LIKELIHOODS = {"mse": "gaussian", "bernoulli": "bernoulli"}     # the model's recon kind → its likelihood
LEVELS = 255                                                    # a frame's pixel is one of 256 values v/255


def log_continuous_bernoulli_norm(logits):
    """log C(λ) for λ = σ(logits), C(λ) = 2·atanh(1 − 2λ)/(1 − 2λ) (2 at λ = ½, where the formula is 0/0).
    With u = 1 − 2λ = tanh(−l/2), atanh(u) = −l/2; near u = 0, atanh(u)/u = 1 + u²/3 + u⁴/5 + …"""
    logits = np.asarray(logits, np.float64)
    u = np.tanh(-logits / 2)                                    # 1 − 2λ
    small = np.abs(u) < 1e-3
    ratio = np.where(small, 1.0, -logits / 2 / np.where(small, 1.0, u))    # atanh(u)/u, where u is not small
    return math.log(2) + np.where(small, np.log1p(u * u / 3 + u ** 4 / 5), np.log(ratio))


def log_likelihood(kind, logits, x, variance=None):
    """log p(x | z) of each image, (N,) float64, from the decoder's logits (N, C, H, W) and the images x in [0, 1]."""
    logits, x = np.asarray(logits, np.float64), np.asarray(x, np.float64)
    axes = tuple(range(1, x.ndim))
    if kind == "gaussian":
        y = sigmoid(logits)                                     # (N, C, H, W)
        return -0.5 * (((x - y) ** 2) / variance + math.log(variance) + LOG_2PI).sum(axis=axes)
    if kind == "bernoulli":                                     # log CB(x; λ) = x·l − softplus(l) + log C(λ)
        return (x * logits - softplus(logits) + log_continuous_bernoulli_norm(logits)).sum(axis=axes)
    raise ValueError(f"likelihood must be 'gaussian' or 'bernoulli', got {kind!r}")


def log_normal(z, mean=0.0, logvar=0.0):
    """log N(z; mean, diag e^logvar) of each row, (N,)."""
    return -0.5 * ((z - mean) ** 2 * np.exp(-logvar) + logvar + LOG_2PI).sum(axis=1)


def encoded(model, x):
    """μ and ℓ of the images x (model input on the model's device), float64 (N, D) each on the host."""
    return tuple(np.asarray(to_numpy(a), np.float64) for a in model.encode(x))


def log_weights(model, x, samples, rng, kind, variance=None, on_sample=None, codes=None):
    """(log w, log p(x | z)), each (N, K) float64, for the images x (model input (N, C, H, W) on the model's
    device) and K = samples draws z_k = μ + σ·ε_k: log w_k = log p(x | z_k) + log p(z_k) − log q(z_k | x).
    codes: (μ, ℓ) of x, when the caller has them (encoded)."""
    mu, logvar = encoded(model, x) if codes is None else codes                           # (N, D) each
    images = np.asarray(to_numpy(x), np.float64)                                          # (N, C, H, W)
    std = np.exp(0.5 * logvar)
    logw, loglik = np.empty((len(mu), samples)), np.empty((len(mu), samples))
    for k in range(samples):
        eps = rng.standard_normal(mu.shape)                     # (N, D)
        z = (mu + std * eps).astype(model.dtype)                # what the decoder is given, and
        z64 = z.astype(np.float64)                              # the z every density is taken at
        logits = to_numpy(model.decode_logits(model.xp.asarray(z)))                      # (N, C, H, W)
        loglik[:, k] = log_likelihood(kind, logits, images, variance)
        logw[:, k] = loglik[:, k] + log_normal(z64) - log_normal(z64, mu, logvar)
        if on_sample is not None:
            on_sample()
    return logw, loglik


def bound(logw, k=None):
    """L_k of each image, (N,): log (1/k) Σ_{j ≤ k} w_j over the first k columns of logw (all of them: k=None)."""
    logw = logw[:, :k]
    top = logw.max(axis=1, keepdims=True)
    return top[:, 0] + np.log(np.exp(logw - top).mean(axis=1))


def ks_up_to(samples):
    """1, 2, 4, … up to samples, and samples itself: the K at which the bound is reported."""
    ks = [1 << i for i in range(samples.bit_length()) if 1 << i <= samples]
    return ks + ([samples] if ks[-1] != samples else [])


def bits_per_dim(nats, dims):
    """−log₂ P(x) per dimension for the 8-bit frame, from the density's log p(x) in nats: P(x) ≈ p(x)·(1/255)^dims,
    the density times the volume of the frame's bin (pixels are v/255)."""
    return (-nats + dims * math.log(LEVELS)) / (dims * math.log(2))


def likelihood_of(model, variance=None):
    """(kind, variance) of the model's own likelihood: the Gaussian's variance β/2 unless given; None for the
    continuous Bernoulli."""
    kind = LIKELIHOODS[model.recon_kind]
    if kind == "bernoulli":
        return kind, None
    variance = model.beta / 2 if variance is None else float(variance)
    if not variance > 0 or not math.isfinite(variance):
        raise ValueError(f"the Gaussian's variance must be a number > 0, got {variance} (the model's β is "
                         f"{model.beta}, and β/2 is the default: give one, bin/evaluate's --variance)")
    return kind, variance


def evaluate(model, batches, samples=64, seed=0, variance=None, device="cpu", show_progress=True, total=None):
    """The ELBO and the bounds L_K of frames, for K = 1, 2, 4, …, samples, all K from one set of draws (a
    generator seeded with seed): batches is an iterable of uint8 (n, H, W, 3) arrays, read one at a time, total
    how many frames they hold (for the progress bar).

    Returns a dict: likelihood, variance (None for bernoulli), dims, frames, samples, seed; and per image, float64
    (N,): recon (E_q log p(x|z), the mean over the draws), kl (closed form), elbo = recon − kl, elbo_draws (the
    mean of the K log-weights, which every L_K of the same draws is at least), bounds {K: L_K}."""
    kind, variance = likelihood_of(model, variance)
    rng = np.random.default_rng(seed)
    bar = progress.bar((total or 0) * samples, "evaluate", "decodes", enabled=show_progress and bool(total))
    logw, recon, kl = [], [], []
    try:
        for frames in batches:
            x = to_model_input(frames, device, model.dtype)
            mu, logvar = encoded(model, x)
            w, ll = log_weights(model, x, samples, rng, kind, variance, on_sample=lambda: bar.update(len(frames)),
                                codes=(mu, logvar))
            logw.append(w)
            recon.append(ll.mean(axis=1))
            kl.append(kl_per_image(mu, logvar))                                      # KL(q(z|x) ‖ p(z))
    finally:
        bar.close()
    if not logw:
        raise ValueError("no frames to evaluate")
    logw, recon, kl = np.concatenate(logw), np.concatenate(recon), np.concatenate(kl)
    return dict(likelihood=kind, variance=variance, dims=int(np.prod(model.input_shape)), frames=len(logw),
                samples=samples, seed=seed, recon=recon, kl=kl, elbo=recon - kl, elbo_draws=logw.mean(axis=1),
                bounds={k: bound(logw, k) for k in ks_up_to(samples)})
