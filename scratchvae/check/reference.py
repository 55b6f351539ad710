"""Naive, obviously-correct loop versions, written straight from the definitions.

NumPy only, float64, slow on purpose: the fast layers are tested against these,
and the docs use them to teach. Each loops over output (or input) positions and
does the textbook sum there, nothing clever.
"""
import numpy as np


def _pad(x, ph, pw):
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=np.float64)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def conv2d(x, W, b, stride=1, padding=0):
    """y[n, o, r, s] = b[o] + Σ_{c, j, i} W[o, c, j, i] · x_pad[n, c, r·sy + j, s·sx + i].

    x (N, C, H, W); W (C_out, C, kh, kw); b (C_out,). stride and padding: int or (y, x).
    """
    sy, sx = _pair(stride)
    ph, pw = _pair(padding)
    x, W, b = (np.asarray(a, dtype=np.float64) for a in (x, W, b))
    n, c, h, w = x.shape
    co, _, kh, kw = W.shape
    xp = _pad(x, ph, pw)
    oh, ow = (h + 2 * ph - kh) // sy + 1, (w + 2 * pw - kw) // sx + 1
    y = np.zeros((n, co, oh, ow))
    for k in range(n):
        for o in range(co):
            for r in range(oh):
                for s in range(ow):
                    window = xp[k, :, r * sy:r * sy + kh, s * sx:s * sx + kw]
                    y[k, o, r, s] = b[o] + np.sum(window * W[o])
    return y


def conv2d_backward(x, W, dy, stride=1, padding=0):
    """conv2d's gradients, (dx, dW, db), by walking its loops again and sending dy back along each product.

    Output (n, o, r, s) read x_pad[n, c, r·sy + j, s·sx + i] through W[o, c, j, i], so
        dW[o, c, j, i]             += dy[n, o, r, s] · x_pad[n, c, r·sy + j, s·sx + i]
        dx_pad[n, c, r·sy + j, s·sx + i] += dy[n, o, r, s] · W[o, c, j, i]
        db[o]                      += dy[n, o, r, s]
    and dx is dx_pad with the padding cut off.
    """
    sy, sx = _pair(stride)
    ph, pw = _pair(padding)
    x, W, dy = (np.asarray(a, dtype=np.float64) for a in (x, W, dy))
    n, c, h, w = x.shape
    co, _, kh, kw = W.shape
    _, _, oh, ow = dy.shape
    xp = _pad(x, ph, pw)
    dxp, dW, db = np.zeros_like(xp), np.zeros_like(W), np.zeros(co)
    for k in range(n):
        for o in range(co):
            for r in range(oh):
                for s in range(ow):
                    window = (k, slice(None), slice(r * sy, r * sy + kh), slice(s * sx, s * sx + kw))
                    dW[o] += dy[k, o, r, s] * xp[window]
                    dxp[window] += dy[k, o, r, s] * W[o]
                    db[o] += dy[k, o, r, s]
    return dxp[:, :, ph:ph + h, pw:pw + w], dW, db


def conv_transpose2d(x, W, b, stride=1, padding=0, output_padding=0):
    """Every input pixel paints a copy of the kernel, scaled by its value, onto the output.

    y_pad[n, o, r·sy + j, s·sx + i] += x[n, c, r, s] · W[c, o, j, i], then the
    padding is cut from each side: y = y_pad[:, :, ph:ph + oh, pw:pw + ow] + b, with
    oh = (H − 1)·sy − 2·ph + kh + output_padding.

    x (N, C_in, H, W); W (C_in, C_out, kh, kw); b (C_out,).
    """
    x, W, b, (sy, sx), (ph, pw), (oh, ow) = _transposed(x, W, b, stride, padding, output_padding)
    n, ci, h, w = x.shape
    _, co, kh, kw = W.shape
    yp = np.zeros((n, co, oh + 2 * ph, ow + 2 * pw))
    for k in range(n):
        for c in range(ci):
            for r in range(h):
                for s in range(w):
                    yp[k, :, r * sy:r * sy + kh, s * sx:s * sx + kw] += x[k, c, r, s] * W[c]
    return yp[:, :, ph:ph + oh, pw:pw + ow] + b[None, :, None, None]


def conv_transpose2d_by_parity(x, W, b, stride=1, padding=0, output_padding=0):
    """The same transposed convolution, one output pixel at a time: the gather form of the parity split.

    Output pixel (p, q) sits at padded position (p + ph, q + pw) = (R·sy + φ, Q·sx + ψ): grid position
    (R, Q), phase (φ, ψ). The input pixels that painted it are x[R − t, Q − u], through kernel taps
    (φ + sy·t, ψ + sx·u):

        y[n, o, p, q] = b[o] + Σ_{c, t, u} x[n, c, R − t, Q − u] · W[c, o, φ + sy·t, ψ + sx·u]

    over the taps inside the kernel and the input pixels inside the image
    (scratchvae/ops/parity.py computes the same sums as one matrix product).
    """
    x, W, b, (sy, sx), (ph, pw), (oh, ow) = _transposed(x, W, b, stride, padding, output_padding)
    n, ci, h, w = x.shape
    _, co, kh, kw = W.shape
    y = np.zeros((n, co, oh, ow))
    for k in range(n):
        for o in range(co):
            for p in range(oh):
                R, phi = divmod(p + ph, sy)
                for q in range(ow):
                    Q, psi = divmod(q + pw, sx)
                    total = b[o]
                    for t in range(0, (kh - phi + sy - 1) // sy):       # taps φ + sy·t < kh
                        for u in range(0, (kw - psi + sx - 1) // sx):
                            if 0 <= R - t < h and 0 <= Q - u < w:
                                total += np.dot(x[k, :, R - t, Q - u], W[:, o, phi + sy * t, psi + sx * u])
                    y[k, o, p, q] = total
    return y


def im2col(x, kh, kw, sy, sx, ph, pw):
    """Loop over output positions and copy the window each one sees."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    xp = _pad(x, ph, pw).astype(x.dtype)
    oh, ow = (h + 2 * ph - kh) // sy + 1, (w + 2 * pw - kw) // sx + 1
    col = np.zeros((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for r in range(oh):
        for s in range(ow):
            col[:, :, :, :, r, s] = xp[:, :, r * sy:r * sy + kh, s * sx:s * sx + kw]
    return col


def col2im(col, h, w, sy, sx, ph, pw):
    """Loop over output positions and add each window back where it came from."""
    col = np.asarray(col)
    n, c, kh, kw, oh, ow = col.shape
    img = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype)
    for r in range(oh):
        for s in range(ow):
            img[:, :, r * sy:r * sy + kh, s * sx:s * sx + kw] += col[:, :, :, :, r, s]
    return img[:, :, ph:ph + h, pw:pw + w]


def adam(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Adam's step t (1, 2, …) on arrays p, with gradient g and moments m, v: the textbook lines, new arrays.

        m ← β₁·m + (1 − β₁)·g        v ← β₂·v + (1 − β₂)·g²
        m̂ = m / (1 − β₁ᵗ)            v̂ = v / (1 − β₂ᵗ)
        p ← p − lr·m̂ / (√v̂ + eps)

    Returns (p, m, v).
    """
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def _transposed(x, W, b, stride, padding, output_padding):
    """A transposed convolution's arguments in float64, its strides, paddings and output size:
    oh = (H − 1)·sy − 2·ph + kh + output_padding."""
    sy, sx = _pair(stride)
    ph, pw = _pair(padding)
    opy, opx = _pair(output_padding)
    x, W, b = (np.asarray(a, dtype=np.float64) for a in (x, W, b))
    (h, w), (kh, kw) = x.shape[2:], W.shape[2:]
    return x, W, b, (sy, sx), (ph, pw), ((h - 1) * sy - 2 * ph + kh + opy, (w - 1) * sx - 2 * pw + kw + opx)


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)
