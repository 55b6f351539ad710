"""The GPU kernels: im2col, col2im and a fused Adam update, as CuPy ElementwiseKernels.

Their callers sit beside the CPU versions: im2col_gpu and col2im_gpu in im2col.py, adam_gpu
in optim.py. Imported only when an array is a CuPy array; everything else on the GPU is the
same array-generic code that runs under NumPy.

Both kernels keep the CPU's layout (see im2col.py): images stored (C, H, W, N) and columns
(C, kh, kw, oh, ow, N), the batch last, so neighbouring threads (neighbouring n) read and
write neighbouring addresses.

im2col: one thread per column element (c, j, i, r, s, n) of the (C, kh, kw, oh, ow, N)
    buffer, (r, s) the output position. It reads x[n, c, r·sy − ph + j, s·sx − pw + i], or 0
    where the window hangs over the padding: no padded copy of the input is made.

col2im: one thread per image pixel (c, Y, X, n) of the (C, H, W, N) image. It sums every
    column element that landed on it: the kernel offsets (j, i) with
    (Y + ph − j) and (X + pw − i) divisible by the strides and inside the output grid.
    No atomics: each pixel is owned by one thread, and it adds in the same order as the
    CPU code (j, then i, ascending), so results are deterministic and equal the CPU's bit
    for bit.

Each kernel is compiled once, the first time it is used, and reused. The kernel bodies
are plain C: tests/test_kernel_source.py compiles the same text for the CPU (one loop
iteration per thread) and checks it against NumPy where there is no GPU.
"""
import functools

IM2COL_PARAMS = ("raw T img, int32 nimg, int32 nch, int32 h, int32 w, int32 oh, int32 ow, int32 kh, int32 kw, "
                 "int32 sy, int32 sx, int32 ph, int32 pw")
# docs: im2col-kernel
IM2COL_BODY = """
int n = i % nimg;               // buffer index i → (c, j, ii, r, s, n), n fastest
int t = i / nimg;
int s = t % ow;   t /= ow;
int r = t % oh;   t /= oh;
int ii = t % kw;  t /= kw;
int j = t % kh;
int c = t / kh;
int iy = r * sy - ph + j;       // the input pixel this element copies
int ix = s * sx - pw + ii;
col = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? img[((c * h + iy) * w + ix) * nimg + n] : (T)0;
"""
# end docs: im2col-kernel

COL2IM_PARAMS = ("raw T col, int32 nimg, int32 nch, int32 h, int32 w, int32 oh, int32 ow, int32 kh, int32 kw, "
                 "int32 sy, int32 sx, int32 ph, int32 pw")
# docs: col2im-kernel
COL2IM_BODY = """
int n = i % nimg;               // image pixel i → (c, Y, X, n), in padded coordinates
int X = i / nimg % w + pw;
int Y = i / (nimg * w) % h + ph;
int c = i / (nimg * w * h);
T val = 0;
for (int j = 0; j < kh; ++j) {              // same order as the CPU: j, then i, ascending
    int py = Y - j;
    if (py < 0) break;
    if (py % sy != 0 || py / sy >= oh) continue;
    int r = py / sy;                        // the output position (r, s) whose window put it here
    for (int ii = 0; ii < kw; ++ii) {
        int px = X - ii;
        if (px < 0) break;
        if (px % sx != 0 || px / sx >= ow) continue;
        int s = px / sx;
        val += col[((((c * kh + j) * kw + ii) * oh + r) * ow + s) * nimg + n];
    }
}
img = val;
"""
# end docs: col2im-kernel

ADAM_BODY = """
m = b1 * m + (1 - b1) * g;                  // m ← β₁m + (1 − β₁)g
v = b2 * v + (1 - b2) * g * g;              // v ← β₂v + (1 − β₂)g²
p -= lr * (m / c1) / (sqrt(v / c2) + eps);  // θ ← θ − lr·m̂/(√v̂ + ε)
"""


ADAM_PARAMS = "T g, T lr, T b1, T b2, T c1, T c2, T eps"

KERNELS = {                         # name: (input parameters, output parameters, body)
    "im2col": (IM2COL_PARAMS, "T col", IM2COL_BODY),
    "col2im": (COL2IM_PARAMS, "T img", COL2IM_BODY),
    "adam": (ADAM_PARAMS, "T p, T m, T v", ADAM_BODY),
}


@functools.lru_cache(maxsize=None)
def kernel(name):
    """The compiled CuPy ElementwiseKernel `name` (one of KERNELS), built the first time it is asked for."""
    import cupy
    params, outputs, body = KERNELS[name]
    return cupy.ElementwiseKernel(params, outputs, body, f"scratchvae_{name}")
