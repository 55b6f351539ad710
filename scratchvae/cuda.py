"""The GPU kernels: im2col, col2im and a fused Adam update, as CuPy ElementwiseKernels.

Imported only when an array is a CuPy array; everything else on the GPU is the same
array-generic code that runs under NumPy.

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


@functools.lru_cache(maxsize=None)
def _kernels():
    import cupy
    return (cupy.ElementwiseKernel(IM2COL_PARAMS, "T col", IM2COL_BODY, "scratchvae_im2col"),
            cupy.ElementwiseKernel(COL2IM_PARAMS, "T img", COL2IM_BODY, "scratchvae_col2im"),
            cupy.ElementwiseKernel("T g, T lr, T b1, T b2, T c1, T c2, T eps", "T p, T m, T v", ADAM_BODY,
                                   "scratchvae_adam"))


def im2col(x, kh, kw, sy, sx, ph, pw, oh, ow, out=None):
    """(N, C, H, W) → (N, C, kh, kw, oh, ow) stored (C, kh, kw, oh, ow, N), one thread per column element;
    (oh, ow) the output size the caller computed (scratchvae/sizes.py)."""
    import cupy
    n, c, h, w = x.shape
    img = cupy.ascontiguousarray(x.transpose(1, 2, 3, 0))       # (C, H, W, N): free for the layers' outputs
    buf = cupy.empty((c, kh, kw, oh, ow, n), dtype=x.dtype) if out is None else out  # (C, kh, kw, oh, ow, N)
    _kernels()[0](img, n, c, h, w, oh, ow, kh, kw, sy, sx, ph, pw, buf)
    return buf.transpose(5, 0, 1, 2, 3, 4)                       # (N, C, kh, kw, oh, ow) view


def col2im(col, h, w, sy, sx, ph, pw):
    """(N, C, kh, kw, oh, ow) → (N, C, h, w) stored (C, h, w, N), one thread per image pixel."""
    import cupy
    n, c, kh, kw, oh, ow = col.shape
    buf = cupy.ascontiguousarray(col.transpose(1, 2, 3, 4, 5, 0))  # (C, kh, kw, oh, ow, N): free from im2col
    img = cupy.empty((c, h, w, n), dtype=col.dtype)              # (C, h, w, N)
    _kernels()[1](buf, n, c, h, w, oh, ow, kh, kw, sy, sx, ph, pw, img)
    return img.transpose(3, 0, 1, 2)                             # (N, C, h, w) view


def adam_update(p, g, m, v, lr, b1, b2, c1, c2, eps):
    """One fused Adam update of p, m and v in place."""
    t = p.dtype.type
    _kernels()[2](g, t(lr), t(b1), t(b2), t(c1), t(c2), t(eps), p, m, v)
