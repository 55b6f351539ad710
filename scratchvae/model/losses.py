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
the GPU each is one or two kernels (their C bodies are below, each beside its caller) that read
every number once, in the order it lies in memory. Each is an Op (ops/devices.py): one name for
its CPU and GPU functions.
"""
import numpy as np

from ..ops.cuda import Kernel, Sum
from ..ops.devices import Op, in_memory_order, to_numpy, xp_of
from ..ops.elementwise import sigmoid, softplus

LOSS_KEYS = ("loss", "recon", "kl", "kl_raw")          # the numbers a step reports (loss_terms), in this order


def mse_recon(y, x):
    """Σ over pixels of (y − x)², mean over the batch; and ∂/∂y."""
    n = x.shape[0]
    d = y - x                                                  # (N, C, H, W)
    return (d * d).sum() / n, d * (2.0 / n)                    # ∂recon/∂y = 2(y − x)/N


def bernoulli_recon_cpu(logits, x):
    """Cross-entropy of x under Bernoulli(σ(logits)), summed over pixels, mean over the batch; and ∂/∂logits."""
    n = x.shape[0]
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


def mse_from_logits_cpu(logits, x):
    """mse_recon of y = σ(logits), and its gradient taken on through the sigmoid: ∂recon/∂l = ∂recon/∂y·y(1 − y).
    On the GPU (mse_from_logits_gpu) two passes over the numbers as they lie, the gradient written over the
    logits (the caller's)."""
    y = sigmoid(logits)                                        # (N, C, H, W)
    value, dy = mse_recon(y, x)
    return value, dy * y * (1 - y)                             # ∂recon/∂l = ∂recon/∂y·σ'(l), σ' = y(1 − y)


SIGMOID = "exp(min(l, (T)0)) / (1 + exp(-fabs(l)))"     # 1/(1 + e^−l), no exponent ever positive
SOFTPLUS = "(max(l, (T)0) + log1p(exp(-fabs(l))))"       # log(1 + e^l)

MSE_GRAD_PARAMS = "T x, T scale"
MSE_GRAD_BODY = f"""
T y = {SIGMOID};
T dy = (y - x) * scale;                     // ∂recon/∂y = 2(y − x)/N   (scale = 2/N)
l = dy * y * (1 - y);                       // ∂recon/∂l = ∂recon/∂y · y(1 − y)
"""

BERNOULLI_GRAD_PARAMS = "T x, T scale"
BERNOULLI_GRAD_BODY = f"""
T y = {SIGMOID};
l = (y - x) * scale;                        // ∂recon/∂l = (σ(l) − x)/N   (scale = 1/N)
"""
# (value, gradient) kernels of each reconstruction kind: Σ of its term over the columns of (rows, L) matrices
# (run over axis 1, a block per row), and ∂recon/∂logits written over the logits
RECON_KERNELS = {
    "mse": (Sum("mse_sum", "T l, T x", "T total", f"(({SIGMOID}) - x) * (({SIGMOID}) - x)"),   # Σ (σ(l) − x)²
            Kernel("mse_grad", MSE_GRAD_PARAMS, "T l", MSE_GRAD_BODY)),
    "bernoulli": (Sum("bernoulli_sum", "T l, T x", "T total", f"{SOFTPLUS} - x * l"),         # Σ softplus(l) − x·l
                  Kernel("bernoulli_grad", BERNOULLI_GRAD_PARAMS, "T l", BERNOULLI_GRAD_BODY)),
}


def recon_gpu(kind, logits, x, scale):
    """(value, gradient) of the "mse" or "bernoulli" term by the kernels: their sum, then the gradient over the
    logits; None where the logits and the images do not lie alike in memory (a cropped decoder output)."""
    views = in_memory_order(logits, x)
    if views is None:
        return None
    total, grad = RECON_KERNELS[kind]
    l, xs = views
    rows = l.shape[0] * l.shape[1]                             # a block of the sum's kernel per row
    partial = total(l.reshape(rows, -1), xs.reshape(rows, -1), axis=1)  # (rows,)
    value = partial.sum() / x.shape[0]                         # Σ over every pixel, / N
    grad(xs, l.dtype.type(scale), l)                           # l ← ∂recon/∂l, in place
    return value, logits


def mse_from_logits_gpu(logits, x):
    """mse_from_logits by the kernels (recon_gpu), or as on the CPU where the arrays do not lie alike."""
    fused = recon_gpu("mse", logits, x, 2.0 / x.shape[0])
    return fused if fused is not None else mse_from_logits_cpu(logits, x)


def bernoulli_recon_gpu(logits, x):
    """bernoulli_recon by the kernels (recon_gpu), the gradient written over the logits (the caller's), or as
    on the CPU where the arrays do not lie alike."""
    fused = recon_gpu("bernoulli", logits, x, 1.0 / x.shape[0])
    return fused if fused is not None else bernoulli_recon_cpu(logits, x)


mse_from_logits = Op("mse_from_logits", cpu=mse_from_logits_cpu, gpu=mse_from_logits_gpu)
bernoulli_recon = Op("bernoulli_recon", cpu=bernoulli_recon_cpu, gpu=bernoulli_recon_gpu)
RECON = {"mse": mse_from_logits, "bernoulli": bernoulli_recon}     # kind → (value, ∂recon/∂logits) of the logits
RECON_KINDS = tuple(RECON)


def reparameterize_cpu(mu, logvar, eps):
    """(z, σ, kl_n): z = mu + σ·eps with σ = exp(logvar/2), and each image's KL (kl_per_image). One kernel on
    the GPU (reparameterize_gpu: one thread per image)."""
    xp = xp_of(mu)
    # docs: reparameterize
    std = xp.exp(0.5 * logvar)                                 # σ = exp(logvar/2)
    z = mu + std * eps                                         # (N, D)  reparameterization
    # end docs: reparameterize
    return z, std, kl_per_image(mu, logvar)


def latent_backward_cpu(dz, mu, logvar, eps, std, active, w):
    """(dmu, dlogvar): the gradient dz at z taken back through the reparameterization, plus w times the KL's
    gradient for the images above the free-bits floor (active, (N,) bools; w = β/N). One kernel on the GPU."""
    scale = active.astype(mu.dtype)                            # (N,)  1 above the floor, 0 at or under it
    # docs: reparameterize-backward
    dmu = dz                                                   # ∂z/∂mu = 1
    dlogvar = dz * eps * (0.5 * std)                           # ∂z/∂logvar = eps·½·exp(logvar/2)
    # end docs: reparameterize-backward
    gmu, glogvar = kl_grads(mu, logvar)                        # mu, ½(exp(logvar) − 1)
    on = w * scale[:, None]                                    # (N, 1)  β/N, zero under the floor
    return dmu + on * gmu, dlogvar + on * glogvar


REPARAM_PARAMS = "raw T mu, raw T logvar, raw T eps, int32 dim"
# docs: reparam-kernel
REPARAM_BODY = """
int n = i;                                  // one image: its dim numbers sit side by side
T sum = 0;
for (int d = n * dim; d < (n + 1) * dim; ++d) {
    T s = exp((T)0.5 * logvar[d]);          // σ = exp(logvar/2)
    std[d] = s;
    z[d] = mu[d] + s * eps[d];              // z = mu + σ·eps
    sum += mu[d] * mu[d] + exp(logvar[d]) - 1 - logvar[d];
}
kl = (T)0.5 * sum;                          // KL(q(z|x) ‖ N(0, I)) of this image
"""
# end docs: reparam-kernel
REPARAM = Kernel("reparam", REPARAM_PARAMS, "T kl, raw T std, raw T z", REPARAM_BODY)   # raw outputs: per image


def reparameterize_gpu(mu, logvar, eps):
    """reparameterize as one kernel, one thread per image (REPARAM)."""
    xp = xp_of(mu)
    mu, logvar, eps = (xp.ascontiguousarray(a) for a in (mu, logvar, eps))         # (N, D) each
    std, z = xp.empty_like(mu), xp.empty_like(mu)
    kl = xp.empty(mu.shape[0], dtype=mu.dtype)                                      # (N,)
    REPARAM(mu.reshape(-1), logvar.reshape(-1), eps.reshape(-1), mu.shape[1], kl, std.reshape(-1),
                      z.reshape(-1))
    return z, std, kl


LATENT_BACK_PARAMS = "T dz, T mu, T logvar, T eps, T std, raw bool active, T w, int32 dim"
# docs: latent-back-kernel
LATENT_BACK_BODY = """
int k = i;
T on = active[k / dim] ? w : (T)0;          // β/N above the free-bits floor, 0 under it
dmu = dz + on * mu;                         // ∂z/∂mu = 1;  ∂kl/∂mu = mu
dlogvar = dz * eps * ((T)0.5 * std) + on * ((T)0.5 * (exp(logvar) - 1));  // ∂z/∂logvar = eps·σ/2
"""
# end docs: latent-back-kernel
LATENT_BACK = Kernel("latent_back", LATENT_BACK_PARAMS, "T dmu, T dlogvar", LATENT_BACK_BODY)


def latent_backward_gpu(dz, mu, logvar, eps, std, active, w):
    """latent_backward as one kernel, one thread per (image, dimension) (LATENT_BACK)."""
    xp = xp_of(mu)
    dz, mu, logvar, eps, std = (xp.ascontiguousarray(a) for a in (dz, mu, logvar, eps, std))
    dmu, dlogvar = xp.empty_like(mu), xp.empty_like(mu)
    LATENT_BACK(dz, mu, logvar, eps, std, active, mu.dtype.type(w), mu.shape[1], dmu, dlogvar)
    return dmu, dlogvar


def loss_terms_cpu(recon, kl_n, floor, beta):
    """The step's four numbers, {loss = recon + β·kl, recon, kl (free bits applied), kl_raw (the plain mean)},
    each a 0-d array, and the (N,) mask of images above the free-bits floor. One kernel on the GPU."""
    kl, active = free_bits(kl_n, floor)
    return dict(zip(LOSS_KEYS, (recon + beta * kl, recon, kl, kl_n.mean()))), active


LOSS_TERMS_PARAMS = "raw T recon, raw T kl, int32 n, T floor, T beta"
# docs: loss-terms-kernel
LOSS_TERMS_BODY = """
T total = 0, floored = 0;                   // one thread: the batch's sums, in order
for (int k = 0; k < n; ++k) {
    T v = kl[k];
    total += v;
    floored += (v > floor || v != v) ? v : floor;   // free bits: max(kl_n, floor), a NaN kept
    active[k] = v > floor;                  // only these get a KL gradient
}
T klf = floored / n;
terms[0] = recon[0] + beta * klf;           // loss = recon + β·kl
terms[1] = recon[0];
terms[2] = klf;                             // kl: the floored mean
terms[3] = total / n;                       // kl_raw: the unfloored mean
"""
# end docs: loss-terms-kernel
LOSS_TERMS = Kernel("loss_terms", LOSS_TERMS_PARAMS, "raw T terms, raw bool active", LOSS_TERMS_BODY)   # size=1


def loss_terms_gpu(recon, kl_n, floor, beta):
    """loss_terms as one kernel, one thread (LOSS_TERMS): a dozen launches of a few numbers each would cost
    more than the sums."""
    xp = xp_of(kl_n)
    kl_n = xp.ascontiguousarray(kl_n)
    t = kl_n.dtype.type
    terms, active = xp.empty(4, dtype=kl_n.dtype), xp.empty(kl_n.shape[0], dtype=bool)
    LOSS_TERMS(xp.asarray(recon, dtype=kl_n.dtype).reshape(1), kl_n, kl_n.shape[0], t(floor), t(beta),
                         terms, active, size=1)
    return {k: terms[i] for i, k in enumerate(LOSS_KEYS)}, active


reparameterize = Op("reparameterize", cpu=reparameterize_cpu, gpu=reparameterize_gpu)
latent_backward = Op("latent_backward", cpu=latent_backward_cpu, gpu=latent_backward_gpu)
loss_terms = Op("loss_terms", cpu=loss_terms_cpu, gpu=loss_terms_gpu)
