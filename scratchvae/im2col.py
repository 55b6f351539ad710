"""im2col and col2im: turn a convolution into one matrix product, and back.

For an input x of shape (N, C, H, W), a kh×kw kernel, strides (sy, sx) and
zero padding (ph, pw), the output has

    oh = (H + 2·ph − kh) // sy + 1,    ow = (W + 2·pw − kw) // sx + 1

positions. ``im2col`` copies, for every output position (y, x), the window of
the padded input it sees into one column:

    col[n, c, j, i, y, x] = x_pad[n, c, y·sy + j, x·sx + i]

so that a whole convolution is one matrix product, W₂ · COL, with W₂ the
weights as a (C_out, C·kh·kw) matrix and COL = ``as_matrix(col)``, the columns of
every image side by side, (C·kh·kw, N·oh·ow). ``col2im`` is its adjoint: every
column entry is added back to the pixel it came from, so overlapping windows
sum. ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.

Layout: col is indexed col[n, c, j, i, y, x], shape (N, C, kh, kw, oh, ow), but
stored (C, kh, kw, N, oh, ow) in memory, so ``as_matrix`` is a free reshape and
one large matrix product serves the whole batch, instead of N small ones.

Memory: the column buffer holds N·C·kh·kw·oh·ow numbers, about kh·kw/(sy·sx)
times the input (4× for the VAE's 4×4 stride-2 convolutions; 36×/4 = 9× for a
6×6 stride-2 transposed convolution's backward).

On the CPU, im2col describes every window at once as a strided view of the padded
input (no copy) and copies it in one call; col2im loops only over the kh·kw kernel
offsets, each time adding one whole strided slice of N·C·oh·ow numbers. On the GPU
each is one CUDA kernel (``scratchvae.cuda``). ``scratchvae.reference`` has the
naive loop versions the tests compare against.
"""
from numpy.lib.stride_tricks import as_strided

from .backend import is_gpu_array, xp_of


def out_size(size, k, s, p):
    """Number of window positions along one axis: (size + 2p − k) // s + 1."""
    return (size + 2 * p - k) // s + 1


def im2col(x, kh, kw, sy, sx, ph, pw):
    """(N, C, H, W) → (N, C, kh, kw, oh, ow): the window each output position sees.

    The column buffer holds N·C·kh·kw·oh·ow numbers, about kh·kw/(sy·sx) times the input
    (4× for a 4×4 stride-2 convolution); a padded copy of x is made first when ph or pw > 0.
    """
    if is_gpu_array(x):
        from . import cuda
        return cuda.im2col(x, kh, kw, sy, sx, ph, pw)
    n, c, h, w = x.shape
    oh, ow = out_size(h, kh, sy, ph), out_size(w, kw, sx, pw)
    img = xp_of(x).pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, H+2ph, W+2pw)
    bn, bc, by, bx = img.strides                            # bytes to the next image, channel, row, column
    # windows[c, j, i, n, y, x] = img[n, c, y·sy + j, x·sx + i]: a view, nothing copied yet
    windows = as_strided(img, (c, kh, kw, n, oh, ow), (bc, by, bx, bn, by * sy, bx * sx), writeable=False)
    buf = windows.copy()                                    # (C, kh, kw, N, oh, ow): the one copy
    return buf.transpose(3, 0, 1, 2, 4, 5)                  # (N, C, kh, kw, oh, ow) view of it


def as_matrix(col):
    """(N, C, kh, kw, oh, ow) → (C·kh·kw, N·oh·ow); free for what im2col returns."""
    n, c, kh, kw, oh, ow = col.shape
    return col.transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, n * oh * ow)


def from_matrix(m, shape):
    """(C·kh·kw, N·oh·ow) → (N, C, kh, kw, oh, ow), a view: as_matrix undone."""
    n, c, kh, kw, oh, ow = shape
    return m.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)


def images_to_matrix(x):
    """(N, C, H, W) → (C, N·H·W): each channel one row, the batch's pixels side by side."""
    n, c, h, w = x.shape
    return xp_of(x).ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(c, n * h * w)


def matrix_to_images(m, n, h, w):
    """(C, N·H·W) → (N, C, H, W), contiguous: images_to_matrix undone."""
    return xp_of(m).ascontiguousarray(m.reshape(-1, n, h, w).transpose(1, 0, 2, 3))


def col2im(col, h, w, sy, sx, ph, pw):
    """(N, C, kh, kw, oh, ow) → (N, C, h, w): add every column entry back to its pixel."""
    if is_gpu_array(col):
        from . import cuda
        return cuda.col2im(col, h, w, sy, sx, ph, pw)
    xp = xp_of(col)
    n, c, kh, kw, oh, ow = col.shape
    img = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)  # (N, C, h+2ph, w+2pw)
    for j in range(kh):
        jlim = j + sy * (oh - 1) + 1
        for i in range(kw):
            ilim = i + sx * (ow - 1) + 1
            img[:, :, j:jlim:sy, i:ilim:sx] += col[:, :, j, i]  # (N, C, oh, ow)
    if ph == 0 and pw == 0:
        return img
    return xp.ascontiguousarray(img[:, :, ph:ph + h, pw:pw + w])  # (N, C, h, w)
