"""The forward passes of the transfer exercises (docs/exercises.md, Part 1), as plain loops.

No page of the docs codes these layers, and the package does not use them: they are here so that
checks.py can differentiate them numerically. Each is written straight from its definition, one
output number (or one window) at a time, in float64, slow on purpose, as scratchvae/check/reference.py
is for the package's layers. Read them: the forward is the question, and your backward must be its
exact derivative.
"""
import numpy as np


def conv2d_dilated(x, W, b, stride, padding, dilation):
    """y[n, o, r, s] = b[o] + Σ_{c, j, i} W[o, c, j, i]·x_pad[n, c, r·sy + j·ey, s·sx + i·ex].

    x (N, C, H, W); W (C_out, C, kh, kw); b (C_out,); stride (sy, sx), padding (ph, pw), dilation (ey, ex):
    the kernel's taps are ey rows and ex columns apart, so a window spans (kh − 1)·ey + 1 rows.
    """
    (sy, sx), (ph, pw), (ey, ex) = stride, padding, dilation
    n, _, h, w = x.shape
    co, _, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - (kh - 1) * ey - 1) // sy + 1
    ow = (w + 2 * pw - (kw - 1) * ex - 1) // sx + 1
    y = np.zeros((n, co, oh, ow))
    for o in range(co):
        for r in range(oh):
            for s in range(ow):                                     # every image at once
                rows = slice(r * sy, r * sy + (kh - 1) * ey + 1, ey)    # kh rows, ey apart
                cols = slice(s * sx, s * sx + (kw - 1) * ex + 1, ex)    # kw columns, ex apart
                y[:, o, r, s] = b[o] + np.sum(xp[:, :, rows, cols] * W[o], axis=(1, 2, 3))
    return y


def conv2d_grouped(x, W, b, stride, padding, groups):
    """A convolution whose channels are split into G groups: output channel o sees only the input channels of
    its own group, g = o // (C_out/G), which are channels g·C/G … (g + 1)·C/G − 1.

    x (N, C, H, W); W (C_out, C/G, kh, kw), each output channel's kernel as deep as its group; b (C_out,).
    G = 1 is the ordinary convolution; G = C (and C_out a multiple of C) the depthwise one.
    """
    (sy, sx), (ph, pw) = stride, padding
    n, c, h, w = x.shape
    co, cg, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - kh) // sy + 1, (w + 2 * pw - kw) // sx + 1
    y = np.zeros((n, co, oh, ow))
    for o in range(co):
        first = (o // (co // groups)) * cg                     # the group's first input channel
        for r in range(oh):
            for s in range(ow):                                 # every image at once
                window = xp[:, first:first + cg, r * sy:r * sy + kh, s * sx:s * sx + kw]   # (N, C/G, kh, kw)
                y[:, o, r, s] = b[o] + np.sum(window * W[o], axis=(1, 2, 3))
    return y


def avg_pool2d(x, kernel, stride):
    """y[n, c, r, s] = the mean of x[n, c, r·sy : r·sy + kh, s·sx : s·sx + kw]; no padding, so every window
    holds kh·kw pixels. x (N, C, H, W)."""
    (kh, kw), (sy, sx) = kernel, stride
    n, c, h, w = x.shape
    oh, ow = (h - kh) // sy + 1, (w - kw) // sx + 1
    y = np.zeros((n, c, oh, ow))
    for r in range(oh):
        for s in range(ow):
            y[:, :, r, s] = x[:, :, r * sy:r * sy + kh, s * sx:s * sx + kw].mean(axis=(2, 3))
    return y


def elu(x, alpha):
    """y = x where x > 0, α·(eˣ − 1) elsewhere, element by element."""
    y = np.empty_like(x, dtype=np.float64)
    for k, v in np.ndenumerate(x):
        y[k] = v if v > 0 else alpha * (np.exp(v) - 1)
    return y


def gaussian_nll(mean, log_var, x):
    """A Gaussian decoder that learns its variance: −log N(x; mean, e^log_var), pixel by pixel, summed over
    each image's pixels and averaged over the batch (the mean of N images, as the VAE's reconstruction term):

        (1/N) Σ_{n, pixels} ½·[(x − mean)²·e^(−log_var) + log_var + log 2π]

    mean, log_var and x (N, C, H, W). A scalar."""
    n = x.shape[0]
    total = 0.0
    for m, v, t in zip(mean.ravel(), log_var.ravel(), x.ravel()):
        total += 0.5 * ((t - m) ** 2 * np.exp(-v) + v + np.log(2 * np.pi))
    return total / n


def pad_reflect(x, ph, pw):
    """x padded by reflection, the edge pixel not repeated: padded row ph − k is row k, padded row ph + H − 1 + k
    is row H − 1 − k (k = 1 … ph), and the same for columns. Needs ph < H and pw < W."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for p in range(h + 2 * ph):
        for q in range(w + 2 * pw):
            row, col = abs(p - ph), abs(q - pw)                  # the top and left edges reflect…
            row = row if row < h else 2 * (h - 1) - row          # …and so do the bottom and right ones
            col = col if col < w else 2 * (w - 1) - col
            out[:, :, p, q] = x[:, :, row, col]
    return out


def conv2d_reflect(x, W, b, stride, padding):
    """A convolution whose input is padded by reflection (PyTorch's padding_mode="reflect"), not with zeros:
    conv2d(pad_reflect(x, ph, pw), W, b) at padding 0. x (N, C, H, W); W (C_out, C, kh, kw)."""
    (sy, sx), (ph, pw) = stride, padding
    xp = pad_reflect(x, ph, pw)
    return conv2d_dilated(xp, W, b, (sy, sx), (0, 0), (1, 1))
