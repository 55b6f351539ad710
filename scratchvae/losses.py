"""The VAE's loss terms, each with its gradient in closed form.

For a batch of N images x (N, C, H, W) and latent statistics mu, logvar (N, D):

reconstruction, Gaussian ("mse"), y = σ(logits):
    recon = (1/N) Σ_n Σ_pixels (y − x)²                  ∂recon/∂y = 2(y − x)/N
reconstruction, Bernoulli, from the logits l (stable for any l):
    recon = (1/N) Σ_n Σ_pixels softplus(l) − x·l          ∂recon/∂l = (σ(l) − x)/N
KL(N(mu, exp(logvar)) ‖ N(0, 1)) per image:
    kl_n = −½ Σ_d (1 + logvar − mu² − exp(logvar))
    ∂kl_n/∂mu = mu,    ∂kl_n/∂logvar = ½(exp(logvar) − 1)
free bits: each image's KL is floored at kl_tolerance·D; the loss uses
    kl = (1/N) Σ_n max(kl_n, floor)
    and an image at or under the floor gets no KL gradient.
"""
from .backend import xp_of
from .elementwise import sigmoid, softplus

RECON_KINDS = ("mse", "bernoulli")


def mse_recon(y, x):
    """Σ over pixels of (y − x)², mean over the batch; and ∂/∂y."""
    n = x.shape[0]
    d = y - x                                                  # (N, C, H, W)
    return (d * d).sum() / n, d * (2.0 / n)                    # ∂recon/∂y = 2(y − x)/N


def bernoulli_recon(logits, x):
    """Cross-entropy of x under Bernoulli(σ(logits)), summed over pixels, mean over the batch; and ∂/∂logits."""
    n = x.shape[0]
    value = (softplus(logits) - x * logits).sum() / n          # −log p(x | l) = softplus(l) − x·l
    return value, (sigmoid(logits) - x) * (1.0 / n)            # ∂recon/∂l = (σ(l) − x)/N


def kl_per_image(mu, logvar):
    """KL(N(mu, exp(logvar)) ‖ N(0, 1)) for each image: −½ Σ_d (1 + logvar − mu² − exp(logvar)),
    computed as ½ Σ_d (mu² + exp(logvar) − 1 − logvar), the same sum with the signs inside. (N,)"""
    xp = xp_of(mu)
    return 0.5 * (mu * mu + xp.exp(logvar) - 1 - logvar).sum(axis=1)


def kl_grads(mu, logvar):
    """∂kl_n/∂mu = mu and ∂kl_n/∂logvar = ½(exp(logvar) − 1), per image and dimension."""
    xp = xp_of(mu)
    return mu, 0.5 * (xp.exp(logvar) - 1)


def free_bits(kl, floor):
    """The floored batch KL, (1/N) Σ max(kl_n, floor), and the mask of images above the floor."""
    xp = xp_of(kl)
    active = kl > floor                                        # (N,) only these get a KL gradient
    return xp.maximum(kl, floor).mean(), active
