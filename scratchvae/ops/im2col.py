"""im2col and col2im: turn a convolution into one matrix product, and back.

For an input x of shape (N, C, H, W), a kh×kw kernel, strides (sy, sx) and
zero padding (ph, pw), the output has

    oh = (H + 2·ph − kh) // sy + 1,    ow = (W + 2·pw − kw) // sx + 1

positions (scratchvae/ops/sizes.py). ``im2col`` copies, for every output position (r, s), the window of
the padded input it sees into one column:

    col[n, c, j, i, r, s] = x_pad[n, c, r·sy + j, s·sx + i]

so that a whole convolution is one matrix product, W₂ · COL, with W₂ the
weights as a (C_out, C·kh·kw) matrix and COL = ``as_matrix(col)``, one column per
output position of every image, (C·kh·kw, oh·ow·N). ``col2im`` is its adjoint: every
column entry is added back to the pixel it came from, so overlapping windows
sum. ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.

Layout: the arrays keep their logical shapes, images (N, C, H, W) and col
(N, C, kh, kw, oh, ow), but the layers store them channels first and the batch
last: images as (C, H, W, N), col as (C, kh, kw, oh, ow, N). Then

* ``as_matrix`` (col → COL) and ``images_to_matrix`` (images → a (C, H·W·N) matrix,
  one row per channel) are free reshapes, and one large matrix product serves the
  whole batch, instead of N small ones; its (C_out, oh·ow·N) result is already the
  next layer's input (``matrix_to_images``, a view);
* every copy and add below moves N numbers that sit next to each other in memory
  (one pixel of every image) in its innermost loop. With the batch first that loop
  would be one output row (14 numbers for the VAE's conv2, each a stride apart); this
  way the copies run about three times faster on the CPU.

Names in the layers: ``col`` is always the 6-d array, ``col_mat`` its matrix COL, and
``x_mat``, ``dy_mat`` the images' (C, H·W·N) matrices.

Any input layout works (im2col reads x through its strides); the layers' outputs are
NCHW-shaped views of (C, H, W, N) buffers.

Memory: the column buffer holds N·C·kh·kw·oh·ow numbers, about kh·kw/(sy·sx)
times the input (4× for the VAE's 4×4 stride-2 convolutions; 36×/4 = 9× for a
6×6 stride-2 transposed convolution's backward).

Each has a CPU and a GPU version, side by side, with the same arguments; ``im2col`` and
``col2im`` pick one by where the array lives. On the CPU, im2col_cpu describes every window
at once as a strided view of the input (no copy) and copies it in one call; col2im_cpu
loops only over the kh·kw kernel offsets, each time adding one whole strided slice of
C·oh·ow·N numbers. Both share the work between the CPU's cores (scratchvae.ops.threads). On the
GPU each is one CUDA kernel, one thread per number written (the kernels' C source:
``scratchvae.ops.cuda``). ``scratchvae.check.reference`` has the naive loop versions the tests
compare against.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .cuda import Kernel, vec_for
from .devices import Op, xp_of
from .sizes import conv_out_size
from .threads import parallel


def im2col(x, kh, kw, sy, sx, ph, pw, out=None):
    """(N, C, H, W) → (N, C, kh, kw, oh, ow), stored (C, kh, kw, oh, ow, N): the window each output
    position sees. out: a (C, kh, kw, oh, ow, N) array to write it into (a new one when None).

    The column buffer holds N·C·kh·kw·oh·ow numbers, about kh·kw/(sy·sx) times the input
    (4× for a 4×4 stride-2 convolution). im2col_cpu or im2col_gpu, by where x lives.
    """
    n, c, h, w = x.shape
    oh, ow = conv_out_size(h, kh, sy, ph), conv_out_size(w, kw, sx, pw)
    if out is not None and (tuple(out.shape) != (c, kh, kw, oh, ow, n) or out.dtype != x.dtype):
        raise ValueError(f"im2col out must be {x.dtype} {(c, kh, kw, oh, ow, n)}, got {out.dtype} {tuple(out.shape)}")
    if out is None:
        out = xp_of(x).empty((c, kh, kw, oh, ow, n), dtype=x.dtype)  # (C, kh, kw, oh, ow, N)
    im2col_into(x, kh, kw, sy, sx, ph, pw, out)              # im2col_cpu or im2col_gpu
    return out.transpose(5, 0, 1, 2, 3, 4)                  # (N, C, kh, kw, oh, ow) view of it


def im2col_cpu(x, kh, kw, sy, sx, ph, pw, out):
    """im2col into out (C, kh, kw, oh, ow, N): one copy of a strided view of the (padded) input."""
    n, c, h, w = x.shape
    _, _, _, oh, ow, _ = out.shape
    img = x.transpose(1, 2, 3, 0)                           # (C, H, W, N) view
    if ph or pw:
        img = np.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=x.dtype)  # (C, H+2ph, W+2pw, N)
        img[:, ph:ph + h, pw:pw + w] = x.transpose(1, 2, 3, 0)
    bc, by, bx, bn = img.strides                            # bytes to the next channel, row, column, image
    # windows[c, j, i, r, s, n] = img[c, r·sy + j, s·sx + i, n]: a view, nothing copied yet
    windows = as_strided(img, (c, kh, kw, oh, ow, n), (bc, by, bx, by * sy, bx * sx, bn), writeable=False)

    def copy(rows):                                         # output rows `rows` of every window
        np.copyto(out[:, :, :, rows], windows[:, :, :, rows])
    parallel(copy, oh, out.size)                            # the one copy


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
IM2COL = Kernel("im2col", IM2COL_PARAMS, "raw T col", IM2COL_BODY)   # raw output, size given: a thread per vec numbers


def im2col_gpu(x, kh, kw, sy, sx, ph, pw, out):
    """im2col into out (C, kh, kw, oh, ow, N): one thread per column element (the kernel: IM2COL),
    reading 0 where the window hangs over the padding, so no padded copy is made. The output grid
    is out's (oh, ow), so the parity split gathers its windows with this too (stride 1, padding < 0)."""
    n, c, h, w = x.shape
    _, _, _, oh, ow, _ = out.shape
    img = xp_of(x).ascontiguousarray(x.transpose(1, 2, 3, 0))  # (C, H, W, N): free for the layers' outputs
    vec = vec_for(n, img, out)                              # neighbouring images per thread
    IM2COL(img.reshape(-1), n, c, h, w, oh, ow, kh, kw, sy, sx, ph, pw, vec, out.reshape(-1),
           size=out.size // vec)


def as_matrix(col):
    """(N, C, kh, kw, oh, ow) → (C·kh·kw, oh·ow·N); free for what im2col returns."""
    n, c, kh, kw, oh, ow = col.shape
    return col.transpose(1, 2, 3, 4, 5, 0).reshape(c * kh * kw, oh * ow * n)


def from_matrix(m, shape):
    """(C·kh·kw, oh·ow·N) → (N, C, kh, kw, oh, ow), a view: as_matrix undone."""
    n, c, kh, kw, oh, ow = shape
    return m.reshape(c, kh, kw, oh, ow, n).transpose(5, 0, 1, 2, 3, 4)


def images_to_matrix(x):
    """(N, C, H, W) → (C, H·W·N): each channel one row; free when x is stored (C, H, W, N)."""
    n, c, h, w = x.shape
    return xp_of(x).ascontiguousarray(x.transpose(1, 2, 3, 0)).reshape(c, h * w * n)


def batch_last(x):
    """(N, C, H, W) → the same images stored (C, H, W, N), the layers' layout: a copy unless they are."""
    return xp_of(x).ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def matrix_to_images(m, n, h, w):
    """(C, H·W·N) → (N, C, H, W): images_to_matrix undone, as a view (no copy)."""
    return m.reshape(-1, h, w, n).transpose(3, 0, 1, 2)


def col2im(col, h, w, sy, sx, ph, pw, bias=None):
    """(N, C, kh, kw, oh, ow) → (N, C, h, w), stored (C, h, w, N): add every column entry back to its pixel
    (and bias (C,) to every pixel of its channel, when given). col2im_cpu or col2im_gpu, by where col lives."""
    stored = xp_of(col).ascontiguousarray(col.transpose(1, 2, 3, 4, 5, 0))  # (C, kh, kw, oh, ow, N): free from im2col
    img = col2im_stored(stored, h, w, sy, sx, ph, pw, bias)  # (C, h, w, N): col2im_cpu or col2im_gpu
    return img.transpose(3, 0, 1, 2)                        # (N, C, h, w) view


def col2im_cpu(stored, h, w, sy, sx, ph, pw, bias=None):
    """(C, kh, kw, oh, ow, N) → (C, h, w, N): a strided += per kernel offset, into a padded image; then the bias."""
    c, kh, kw, oh, ow, n = stored.shape
    img = np.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=stored.dtype)  # (C, h+2ph, w+2pw, N)

    def add(phases, chans=slice(None)):                     # kernel offsets (j, i) of these phases
        for p in range(phases.start, phases.stop):
            for j in range(p // sx, kh, sy):                # j ≡ p // sx (mod sy): these paint rows ≡ j (mod sy)
                jlim = j + sy * (oh - 1) + 1
                for i in range(p % sx, kw, sx):
                    ilim = i + sx * (ow - 1) + 1
                    img[chans, j:jlim:sy, i:ilim:sx] += stored[chans, j, i]  # (C, oh, ow, N)
    # the kernel offsets of one phase (j mod sy, i mod sx) paint their own rows and columns, so the
    # threads take phases; a stride of 1 has one phase, and they take channels instead
    if sy * sx > 1:
        parallel(add, sy * sx, stored.size)
    else:
        parallel(lambda chans: add(range(1), chans), c, stored.size)
    img = np.ascontiguousarray(img[:, ph:ph + h, pw:pw + w]) if ph or pw else img  # (C, h, w, N)
    if bias is not None:
        img += bias[:, None, None, None]                    # (C, h, w, N)
    return img


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
COL2IM = Kernel("col2im", COL2IM_PARAMS, "raw T img", COL2IM_BODY)


def col2im_gpu(stored, h, w, sy, sx, ph, pw, bias=None):
    """(C, kh, kw, oh, ow, N) → (C, h, w, N): one thread per image pixel, summing the column entries that
    landed on it in col2im_cpu's order (the kernel: COL2IM), so the two agree bit for bit; the bias added
    in the same pass."""
    c, kh, kw, oh, ow, n = stored.shape
    img = xp_of(stored).empty((c, h, w, n), dtype=stored.dtype)  # (C, h, w, N)
    vec = vec_for(n, stored, img)
    flat = img.reshape(-1)
    COL2IM(stored.reshape(-1), flat if bias is None else bias, int(bias is not None), n, c, h, w, oh, ow,
           kh, kw, sy, sx, ph, pw, vec, flat, size=img.size // vec)
    return img


im2col_into = Op("im2col", cpu=im2col_cpu, gpu=im2col_gpu)
col2im_stored = Op("col2im", cpu=col2im_cpu, gpu=col2im_gpu)
