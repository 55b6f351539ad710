"""The GPU kernels, as CuPy ElementwiseKernels: one C body each, run once per element.

Their callers sit beside the CPU versions of the same step (im2col.py, parity.py, layers/,
losses.py, optim.py: each ``*_gpu`` next to its ``*_cpu``). Imported only when an array is a
CuPy array; everything else on the GPU is array-generic code that runs under NumPy too.

Every kernel walks its output in the order it lies in memory: images stored (C, H, W, N),
columns (C, kh, kw, oh, ow, N), the batch last, so neighbouring threads (neighbouring n) read
and write neighbouring addresses. Index arithmetic is 32-bit (``int k = i``): a 64-bit division
costs several times a 32-bit one, and these kernels divide on every element; ``check_size``
refuses, with one line, an array the int type cannot index (2³¹ numbers and more). The three
that copy images (im2col, col2im, interleave) do so for vec neighbouring images per thread
(``vec_for``: 4 when the batch and the arrays' alignment allow), decoding the index once for
all of them and moving the four as one 16-byte access (a ``Pack``, in PREAMBLE); their arrays
are passed flat (1-d), so reading one costs one addition.

im2col      one thread per column element (c, j, ii, r, s, n): x[n, c, r·sy − ph + j, s·sx − pw + ii],
            0 where the window hangs over the padding (no padded copy of the input is made). With
            stride 1, a negative padding and the grid's size given, it is also the parity split's
            gather of input windows (parity.py).
col2im      one thread per image pixel (c, Y, X, n): the sum of every column element that landed on it,
            in the CPU's order (j, then ii, ascending), so the two agree bit for bit; plus the layer's
            bias where it has one. No atomics: each pixel is owned by one thread.
interleave  the parity split's last step: each output pixel copied from its phase's product, plus the
            bias; output_padding's rows and columns get the bias alone.
phase_weights  W (C_in, C_out, kh, kw) gathered into the parity split's Wp (sy·sx·C_out, C_in·Ty·Tx).
bias_rows   y[c, ·] += b[c] in place, for a layer's (C, H·W·N) output.
relu_back   dy ← dy·[y > 0] in place, the mask read from the ReLU's own output (y > 0 exactly where
            x > 0): no mask array is kept.
mse_grad    ∂recon/∂logits for the Gaussian loss, in place over the logits: y = σ(l),
            dl = 2(y − x)/N · y(1 − y); its sum, mse_sum, a ReductionKernel.
bce_grad    ∂recon/∂logits for the Bernoulli loss, (σ(l) − x)/N; its sum, bce_sum.
reparam     one thread per image: σ = exp(logvar/2), z = mu + σ·eps for each dimension, and the
            image's KL, ½ Σ_d (mu² + exp(logvar) − 1 − logvar).
latent_back one thread per (image, dimension): dmu = dz + w·mu, dlogvar = dz·eps·σ/2 + w·(exp(logvar) − 1)/2,
            w = β/N for an image above the free-bits floor, 0 under it.
loss_terms  one thread: the batch's KL, floored and not, which images are above the floor, and the
            four numbers a step reports (loss, recon, kl, kl_raw), in place of a dozen tiny launches.
adam        Adam's three lines for every parameter of the model in one launch, over one flat buffer;
            the step's lr, 1 − β₁ᵗ and 1 − β₂ᵗ read from a small device array (so a captured step
            replays with the current ones).

Each kernel is compiled once, the first time it is used, and reused. The kernel bodies are
plain C: tests/test_kernel_source.py compiles the same text for the CPU (one loop iteration
per thread) and runs the GPU callers with it in CuPy's place, where there is no GPU.
"""
import functools

from .devices import address

INT_MAX = 2 ** 31 - 1

IM2COL_PARAMS = ("raw T img, int32 nimg, int32 nch, int32 h, int32 w, int32 oh, int32 ow, int32 kh, int32 kw, "
                 "int32 sy, int32 sx, int32 ph, int32 pw, int32 vec")
# docs: im2col-kernel
IM2COL_BODY = """
int k = i * vec;                // the first of vec neighbouring images this thread copies
int n = k % nimg;  k /= nimg;   // buffer index → (c, j, ii, r, s, n), n fastest
int s = k % ow;    k /= ow;
int r = k % oh;    k /= oh;
int ii = k % kw;   k /= kw;
int j = k % kh;
int c = k / kh;
int iy = r * sy - ph + j;       // the input pixel these elements copy
int ix = s * sx - pw + ii;
Pack<T> a = {};                 // zeros where the window hangs over the padding
if (iy >= 0 && iy < h && ix >= 0 && ix < w)
    a = load_pack(&img[((c * h + iy) * w + ix) * nimg + n], vec);
store_pack(&col[i * vec], a, vec);
"""
# end docs: im2col-kernel

COL2IM_PARAMS = ("raw T col, raw T bias, int32 has_bias, int32 nimg, int32 nch, int32 h, int32 w, int32 oh, "
                 "int32 ow, int32 kh, int32 kw, int32 sy, int32 sx, int32 ph, int32 pw, int32 vec")
# docs: col2im-kernel
COL2IM_BODY = """
int k = i * vec;                // the first of vec neighbouring images this thread sums for
int n = k % nimg;  k /= nimg;   // image pixel → (c, Y, X, n), in padded coordinates
int X = k % w + pw;  k /= w;
int Y = k % h + ph;
int c = k / h;
Pack<T> sum = {};
for (int j = 0; j < kh; ++j) {              // same order as the CPU: j, then ii, ascending
    int py = Y - j;
    if (py < 0) break;
    if (py % sy != 0 || py / sy >= oh) continue;
    int r = py / sy;                        // the output position (r, s) whose window put it here
    for (int ii = 0; ii < kw; ++ii) {
        int px = X - ii;
        if (px < 0) break;
        if (px % sx != 0 || px / sx >= ow) continue;
        int s = px / sx;
        Pack<T> a = load_pack(&col[((((c * kh + j) * kw + ii) * oh + r) * ow + s) * nimg + n], vec);
        for (int v = 0; v < vec; ++v) sum.v[v] += a.v[v];
    }
}
if (has_bias)
    for (int v = 0; v < vec; ++v) sum.v[v] += bias[c];
store_pack(&img[i * vec], sum, vec);
"""
# end docs: col2im-kernel

INTERLEAVE_PARAMS = ("raw T phases, raw T bias, int32 has_bias, int32 nimg, int32 nch, int32 oh, int32 ow, "
                     "int32 paint_h, int32 paint_w, int32 sy, int32 sx, int32 ph, int32 pw, int32 r0, int32 q0, "
                     "int32 gy, int32 gx, int32 vec")
# docs: interleave-kernel
INTERLEAVE_BODY = """
int k = i * vec;                // the first of vec neighbouring images this thread writes
int n = k % nimg;  k /= nimg;   // output pixel → (c, Y, X, n)
int X = k % ow;    k /= ow;
int Y = k % oh;
int c = k / oh;
Pack<T> a = {};                 // output_padding's rows and columns: nothing painted there
if (Y < paint_h && X < paint_w) {
    int py = Y + ph, px = X + pw;           // padded row = grid row·sy + phase
    int phy = py % sy, phx = px % sx;
    int R = py / sy - r0, Q = px / sx - q0;
    a = load_pack(&phases[(((((phy * sx + phx) * nch + c) * gy + R) * gx + Q) * nimg) + n], vec);
}
if (has_bias)
    for (int v = 0; v < vec; ++v) a.v[v] += bias[c];
store_pack(&y[i * vec], a, vec);
"""
# end docs: interleave-kernel

PHASE_WEIGHTS_PARAMS = "raw T W, int32 ci, int32 co, int32 kh, int32 kw, int32 sy, int32 sx, int32 ty, int32 tx"
PHASE_WEIGHTS_BODY = """
int k = i;                      // Wp element → ((phy, phx, o), (c, a, b))
int b = k % tx;   k /= tx;
int a = k % ty;   k /= ty;
int c = k % ci;   k /= ci;
int o = k % co;   k /= co;
int phx = k % sx;
int phy = k / sx;
int j = phy + sy * (ty - 1 - a);            // window column a is tap T − 1 − a
int jj = phx + sx * (tx - 1 - b);
wp = (j < kh && jj < kw) ? W[((c * co + o) * kh + j) * kw + jj] : (T)0;   // taps past the kernel: 0
"""

BIAS_ROWS_PARAMS = "raw T b, int32 row"
BIAS_ROWS_BODY = """
int k = i;
y = y + b[k / row];                         // y[c, ·] += b[c]
"""

RELU_BACK_PARAMS = "T y"
RELU_BACK_BODY = """
dy = y > (T)0 ? dy : (T)0;                  // dx = dy·[y > 0]
"""

SIGMOID = "exp(min(l, (T)0)) / (1 + exp(-fabs(l)))"     # 1/(1 + e^−l), no exponent ever positive
SOFTPLUS = "(max(l, (T)0) + log1p(exp(-fabs(l))))"       # log(1 + e^l)

MSE_GRAD_PARAMS = "T x, T scale"
MSE_GRAD_BODY = f"""
T y = {SIGMOID};
T dy = (y - x) * scale;                     // ∂recon/∂y = 2(y − x)/N   (scale = 2/N)
l = dy * y * (1 - y);                       // ∂recon/∂l = ∂recon/∂y · y(1 − y)
"""

BCE_GRAD_PARAMS = "T x, T scale"
BCE_GRAD_BODY = f"""
T y = {SIGMOID};
l = (y - x) * scale;                        // ∂recon/∂l = (σ(l) − x)/N   (scale = 1/N)
"""

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

LATENT_BACK_PARAMS = "T dz, T mu, T logvar, T eps, T std, raw bool active, T w, int32 dim"
# docs: latent-back-kernel
LATENT_BACK_BODY = """
int k = i;
T on = active[k / dim] ? w : (T)0;          // β/N above the free-bits floor, 0 under it
dmu = dz + on * mu;                         // ∂z/∂mu = 1;  ∂kl/∂mu = mu
dlogvar = dz * eps * ((T)0.5 * std) + on * ((T)0.5 * (exp(logvar) - 1));  // ∂z/∂logvar = eps·σ/2
"""
# end docs: latent-back-kernel

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

ADAM_PARAMS = "T g, raw T hyper, T b1, T b2, T omb1, T omb2, T eps"
# docs: adam-kernel
ADAM_BODY = """
T lr = hyper[0], c1 = hyper[1], c2 = hyper[2];   // this step's lr, 1 − β₁ᵗ, 1 − β₂ᵗ
m = b1 * m + omb1 * g;                      // m ← β₁m + (1 − β₁)g
v = b2 * v + g * g * omb2;                  // v ← β₂v + (1 − β₂)g²
p -= lr * (m / c1) / (sqrt(v / c2) + eps);  // θ ← θ − lr·m̂/(√v̂ + ε)
"""
# end docs: adam-kernel

KERNELS = {                         # name: (input parameters, output parameters, body)
    "im2col": (IM2COL_PARAMS, "raw T col", IM2COL_BODY),      # raw outputs, size given: a thread per vec numbers
    "col2im": (COL2IM_PARAMS, "raw T img", COL2IM_BODY),
    "interleave": (INTERLEAVE_PARAMS, "raw T y", INTERLEAVE_BODY),
    "phase_weights": (PHASE_WEIGHTS_PARAMS, "T wp", PHASE_WEIGHTS_BODY),
    "bias_rows": (BIAS_ROWS_PARAMS, "T y", BIAS_ROWS_BODY),
    "relu_back": (RELU_BACK_PARAMS, "T dy", RELU_BACK_BODY),
    "mse_grad": (MSE_GRAD_PARAMS, "T l", MSE_GRAD_BODY),
    "bce_grad": (BCE_GRAD_PARAMS, "T l", BCE_GRAD_BODY),
    "reparam": (REPARAM_PARAMS, "T kl, raw T std, raw T z", REPARAM_BODY),   # raw outputs: written per image
    "latent_back": (LATENT_BACK_PARAMS, "T dmu, T dlogvar", LATENT_BACK_BODY),
    "loss_terms": (LOSS_TERMS_PARAMS, "raw T terms, raw bool active", LOSS_TERMS_BODY),   # size=1: one thread
    "adam": (ADAM_PARAMS, "T p, T m, T v", ADAM_BODY),
}

# Sums of a term over the columns of (rows, L) matrices: (input parameters, output, the term each element adds).
# Run as CuPy ReductionKernels over axis 1, a block per row (a sum over everything at once would be one block);
# the CPU harness adds the terms in order.
SUMS = {
    "mse_sum": ("T l, T x", "T total", f"(({SIGMOID}) - x) * (({SIGMOID}) - x)"),    # Σ (σ(l) − x)²
    "bce_sum": ("T l, T x", "T total", f"{SOFTPLUS} - x * l"),                      # Σ softplus(l) − x·l
}


VEC_MAX = 4                         # numbers (neighbouring images) per thread in im2col, col2im and interleave


def vec_for(nimg, *arrays):
    """How many neighbouring images one thread handles: the largest of 4, 2, 1 that divides the batch (4 only
    where every array starts at a multiple of 4 numbers' bytes: the four move as one aligned access). Each
    thread then decodes its index once for vec numbers (the divisions cost more than the copying)."""
    aligned = all(address(a) % (VEC_MAX * a.itemsize) == 0 for a in arrays)
    return next(v for v in (VEC_MAX, 2, 1) if nimg % v == 0 and (v < VEC_MAX or aligned))


def check_size(what, *arrays):
    """A kernel indexes with 32-bit ints: refuse, in one line, an array of 2³¹ numbers or more."""
    for a in arrays:
        if a.size > INT_MAX:
            raise ValueError(f"{what}: an array of {a.size:,} numbers {tuple(a.shape)} is past the 2³¹ − 1 the GPU "
                             "kernels index; use a smaller batch")


@functools.lru_cache(maxsize=None)
def kernel(name):
    """The compiled CuPy kernel `name` (one of KERNELS or SUMS), built the first time it is asked for; each
    launch first refuses, with check_size, an array argument the kernel's 32-bit indices cannot reach."""
    import cupy
    if name in SUMS:
        params, output, term = SUMS[name]
        compiled = cupy.ReductionKernel(params, output, term, "a + b", "total = a", "0", f"scratchvae_{name}")
    else:
        params, outputs, body = KERNELS[name]
        compiled = cupy.ElementwiseKernel(params, outputs, body, f"scratchvae_{name}", preamble=PREAMBLE)

    def launch(*args, **kwargs):
        check_size(name, *(a for a in args if hasattr(a, "size")))
        return compiled(*args, **kwargs)
    return launch


PREAMBLE = f"#define VEC_MAX {VEC_MAX}\n" + """
template <typename T> struct alignas(VEC_MAX * sizeof(T)) Pack { T v[VEC_MAX]; };   // VEC_MAX numbers, one access

// vec neighbouring numbers from p; VEC_MAX of them as one aligned access (the caller checked the alignment)
template <typename T> inline __device__ Pack<T> load_pack(const T* p, int vec) {
    Pack<T> a = {};
    if (vec == VEC_MAX) a = *reinterpret_cast<const Pack<T>*>(p);
    else for (int v = 0; v < vec; ++v) a.v[v] = p[v];
    return a;
}

template <typename T> inline __device__ void store_pack(T* p, const Pack<T>& a, int vec) {
    if (vec == VEC_MAX) *reinterpret_cast<Pack<T>*>(p) = a;
    else for (int v = 0; v < vec; ++v) p[v] = a.v[v];
}
"""
