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
reparameterization: z = mu + σ·eps, σ = exp(logvar/2):
    ∂z/∂mu = 1,    ∂z/∂logvar = eps·σ/2

The VAE calls the fused forms: mse_from_logits (the Gaussian term and its gradient taken on
through the sigmoid), reparameterize (z and every image's KL) and latent_backward (both
gradients at mu and logvar). On the CPU each is the plain functions above, line for line; on
the GPU each is one or two kernels (scratchvae/ops/cuda.py) that read every number once, in the
order it lies in memory.
"""
import numpy as np

from ..ops.devices import in_memory_order, is_gpu_array, to_numpy, xp_of
from ..ops.elementwise import sigmoid, softplus

RECON_KINDS = ("mse", "bernoulli")
LOSS_KEYS = ("loss", "recon", "kl", "kl_raw")          # the numbers a step reports (loss_terms), in this order


def mse_recon(y, x):
    """Σ over pixels of (y − x)², mean over the batch; and ∂/∂y."""
    n = x.shape[0]
    d = y - x                                                  # (N, C, H, W)
    return (d * d).sum() / n, d * (2.0 / n)                    # ∂recon/∂y = 2(y − x)/N


def bernoulli_recon(logits, x):
    """Cross-entropy of x under Bernoulli(σ(logits)), summed over pixels, mean over the batch; and ∂/∂logits
    (on the GPU written over the logits, which the caller owns)."""
    n = x.shape[0]
    if is_gpu_array(logits):
        fused = recon_gpu("bce", logits, x, 1.0 / n)
        if fused is not None:
            return fused
    value = (softplus(logits) - x * logits).sum() / n          # −log p(x | l) = softplus(l) − x·l
    return value, (sigmoid(logits) - x) * (1.0 / n)            # ∂recon/∂l = (σ(l) − x)/N


def kl_per_image(mu, logvar):
    """KL(N(mu, exp(logvar)) ‖ N(0, 1)) for each image: −½ Σ_d (1 + logvar − mu² − exp(logvar)),
    computed as ½ Σ_d (mu² + exp(logvar) − 1 − logvar), the same sum with the signs inside. (N,)"""
    xp = xp_of(mu)
    return 0.5 * (mu * mu + xp.exp(logvar) - 1 - logvar).sum(axis=1)


def kl_per_dim(mu, logvar):
    """The same KL split by latent dimension and averaged over the images: (1/N) Σ_n ½ (mu² + exp(logvar) − 1 −
    logvar), float64 (D,) on the host. Which dimensions the model uses: those far above 0 (the pictures' traversal,
    bin/explore's sliders)."""
    mu, logvar = np.asarray(to_numpy(mu), np.float64), np.asarray(to_numpy(logvar), np.float64)   # (N, D) each
    return 0.5 * (mu * mu + np.exp(logvar) - 1 - logvar).mean(axis=0)                              # (D,)


def kl_grads(mu, logvar):
    """∂kl_n/∂mu = mu and ∂kl_n/∂logvar = ½(exp(logvar) − 1), per image and dimension."""
    xp = xp_of(mu)
    return mu, 0.5 * (xp.exp(logvar) - 1)


def free_bits(kl, floor):
    """The floored batch KL, (1/N) Σ max(kl_n, floor), and the mask of images above the floor."""
    xp = xp_of(kl)
    active = kl > floor                                        # (N,) only these get a KL gradient
    return xp.maximum(kl, floor).mean(), active


def mse_from_logits(logits, x):
    """mse_recon of y = σ(logits), and its gradient taken on through the sigmoid: ∂recon/∂l = ∂recon/∂y·y(1 − y).
    On the GPU two passes over the numbers as they lie, the gradient written over the logits (the caller's)."""
    if is_gpu_array(logits):
        fused = recon_gpu("mse", logits, x, 2.0 / x.shape[0])
        if fused is not None:
            return fused
    y = sigmoid(logits)                                        # (N, C, H, W)
    value, dy = mse_recon(y, x)
    return value, dy * y * (1 - y)                             # ∂recon/∂l = ∂recon/∂y·σ'(l), σ' = y(1 − y)


def recon_gpu(kind, logits, x, scale):
    """(value, gradient) of the "mse" or "bce" term by the kernels: their sum, then the gradient over the logits;
    None where the logits and the images do not lie alike in memory (a cropped decoder output)."""
    views = in_memory_order(logits, x)
    if views is None:
        return None
    from ..ops.cuda import kernel
    l, xs = views
    rows = l.shape[0] * l.shape[1]                             # a block of the sum's kernel per row
    partial = kernel(f"{kind}_sum")(l.reshape(rows, -1), xs.reshape(rows, -1), axis=1)  # (rows,)
    value = partial.sum() / x.shape[0]                         # Σ over every pixel, / N
    kernel(f"{kind}_grad")(xs, l.dtype.type(scale), l)         # l ← ∂recon/∂l, in place
    return value, logits


def reparameterize(mu, logvar, eps):
    """(z, σ, kl_n): z = mu + σ·eps with σ = exp(logvar/2), and each image's KL (kl_per_image). One kernel on
    the GPU (one thread per image)."""
    if is_gpu_array(mu):
        return reparameterize_gpu(mu, logvar, eps)
    xp = xp_of(mu)
    # docs: reparameterize
    std = xp.exp(0.5 * logvar)                                 # σ = exp(logvar/2)
    z = mu + std * eps                                         # (N, D)  reparameterization
    # end docs: reparameterize
    return z, std, kl_per_image(mu, logvar)


def latent_backward(dz, mu, logvar, eps, std, active, w):
    """(dmu, dlogvar): the gradient dz at z taken back through the reparameterization, plus w times the KL's
    gradient for the images above the free-bits floor (active, (N,) bools; w = β/N). One kernel on the GPU."""
    if is_gpu_array(mu):
        return latent_backward_gpu(dz, mu, logvar, eps, std, active, w)
    scale = active.astype(mu.dtype)                            # (N,)  1 above the floor, 0 at or under it
    # docs: reparameterize-backward
    dmu = dz                                                   # ∂z/∂mu = 1
    dlogvar = dz * eps * (0.5 * std)                           # ∂z/∂logvar = eps·½·exp(logvar/2)
    # end docs: reparameterize-backward
    gmu, glogvar = kl_grads(mu, logvar)                        # mu, ½(exp(logvar) − 1)
    on = w * scale[:, None]                                    # (N, 1)  β/N, zero under the floor
    return dmu + on * gmu, dlogvar + on * glogvar


def reparameterize_gpu(mu, logvar, eps):
    """reparameterize as one kernel, one thread per image (cuda.py's reparam)."""
    from ..ops.cuda import kernel
    xp = xp_of(mu)
    mu, logvar, eps = (xp.ascontiguousarray(a) for a in (mu, logvar, eps))         # (N, D) each
    std, z = xp.empty_like(mu), xp.empty_like(mu)
    kl = xp.empty(mu.shape[0], dtype=mu.dtype)                                      # (N,)
    kernel("reparam")(mu.reshape(-1), logvar.reshape(-1), eps.reshape(-1), mu.shape[1], kl, std.reshape(-1),
                      z.reshape(-1))
    return z, std, kl


def latent_backward_gpu(dz, mu, logvar, eps, std, active, w):
    """latent_backward as one kernel, one thread per (image, dimension) (cuda.py's latent_back)."""
    from ..ops.cuda import kernel
    xp = xp_of(mu)
    dz, mu, logvar, eps, std = (xp.ascontiguousarray(a) for a in (dz, mu, logvar, eps, std))
    dmu, dlogvar = xp.empty_like(mu), xp.empty_like(mu)
    kernel("latent_back")(dz, mu, logvar, eps, std, active, mu.dtype.type(w), mu.shape[1], dmu, dlogvar)
    return dmu, dlogvar


def loss_terms(recon, kl_n, floor, beta):
    """The step's four numbers, {loss = recon + β·kl, recon, kl (free bits applied), kl_raw (the plain mean)},
    each a 0-d array, and the (N,) mask of images above the free-bits floor. One kernel on the GPU."""
    if is_gpu_array(kl_n):
        return loss_terms_gpu(recon, kl_n, floor, beta)
    kl, active = free_bits(kl_n, floor)
    return dict(zip(LOSS_KEYS, (recon + beta * kl, recon, kl, kl_n.mean()))), active


def loss_terms_gpu(recon, kl_n, floor, beta):
    """loss_terms as one kernel, one thread (cuda.py's loss_terms): a dozen launches of a few numbers each
    would cost more than the sums."""
    from ..ops.cuda import kernel
    xp = xp_of(kl_n)
    kl_n = xp.ascontiguousarray(kl_n)
    t = kl_n.dtype.type
    terms, active = xp.empty(4, dtype=kl_n.dtype), xp.empty(kl_n.shape[0], dtype=bool)
    kernel("loss_terms")(xp.asarray(recon, dtype=kl_n.dtype).reshape(1), kl_n, kl_n.shape[0], t(floor), t(beta),
                         terms, active, size=1)
    return {k: terms[i] for i, k in enumerate(LOSS_KEYS)}, active
