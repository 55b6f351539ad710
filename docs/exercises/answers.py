"""Answers to the exercises of docs/exercises.md, one per function of skeletons.py (col2im and adam are the
package's own loop versions, scratchvae/check/reference.py), then the four "your turn" mistakes, each written the
wrong way on purpose.

    python docs/exercises/checks.py --answers        every answer through its check
"""
import numpy as np

from scratchvae.check.reference import adam, col2im  # noqa: F401 (two answers are the package's own loop versions)


def conv2d_backward(x, W, dy, stride, padding):
    (sy, sx), (ph, pw) = stride, padding
    n, c, h, w = x.shape
    co, _, kh, kw = W.shape
    _, _, oh, ow = dy.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))           # (N, C, H + 2ph, W + 2pw)
    dx_pad = np.zeros_like(x_pad)
    dW = np.zeros_like(W)
    for r in range(oh):
        for s in range(ow):
            window = x_pad[:, :, r * sy:r * sy + kh, s * sx:s * sx + kw]  # (N, C, kh, kw): what output (r, s) read
            d = dy[:, :, r, s]                                          # (N, Co)
            dW += np.einsum("no,ncji->ocji", d, window)                  # dW[o] += Σ_n dy·window
            dx_pad[:, :, r * sy:r * sy + kh, s * sx:s * sx + kw] += np.einsum("no,ocji->ncji", d, W)  # dx += dy·W
    db = dy.sum(axis=(0, 2, 3))                                         # b touches every output of its channel
    return dx_pad[:, :, ph:ph + h, pw:pw + w], dW, db


def conv_transpose2d_backward(x, W, dy, stride, padding, output_padding):
    (sy, sx), (ph, pw) = stride, padding      # output_padding's rows are in dy already: dy_pad's size covers them
    n, ci, h, w = x.shape
    _, co, kh, kw = W.shape
    _, _, oh, ow = dy.shape
    dy_pad = np.zeros((n, co, oh + 2 * ph, ow + 2 * pw))               # undo the crop: pad dy with zeros
    dy_pad[:, :, ph:ph + oh, pw:pw + ow] = dy
    dx, dW = np.zeros_like(x), np.zeros_like(W)
    for r in range(h):
        for s in range(w):
            patch = dy_pad[:, :, r * sy:r * sy + kh, s * sx:s * sx + kw]   # (N, Co, kh, kw): where x[r, s] painted
            dx[:, :, r, s] = np.einsum("noji,coji->nc", patch, W)         # dx = Σ dy·W over the paint
            dW += np.einsum("nc,noji->coji", x[:, :, r, s], patch)        # dW = Σ x·dy
    return dx, dW, dy.sum(axis=(0, 2, 3))


def kl_grads(mu, logvar):
    return mu, 0.5 * (np.exp(logvar) - 1)                               # ∂/∂μ = μ, ∂/∂ℓ = ½(e^ℓ − 1)


def reparameterize(mu, logvar, eps):
    return mu + np.exp(0.5 * logvar) * eps                              # σ = e^(ℓ/2)


def reparameterize_backward(dz, mu, logvar, eps):
    return dz, dz * eps * 0.5 * np.exp(0.5 * logvar)                    # ∂z/∂μ = 1, ∂z/∂ℓ = ½σε


# "Your turn": each mistake of docs/exercises.md, written out, with the function it breaks.

def relu_backward_ge(x, dy):
    """ReLU's backward with the mask x >= 0: wrong only where x is exactly 0 (the slope there is taken as 0)."""
    return dy * (x >= 0)


def dense_dW_transposed(x, dy):
    """dW = dyᵀ·x, (O, I), where xᵀ·dy, (I, O), belongs: it runs, with the wrong shape, only when I = O."""
    return dy.T @ x


def sigmoid_backward_from_output(y, dy):
    """σ' taken as σ(y)(1 − σ(y)), on the output y: the slope of the sigmoid at the wrong point."""
    s = 1 / (1 + np.exp(-y))
    return dy * s * (1 - s)


def free_bits_mask_from_batch_mean(kl_n, floor):
    """The free-bits mask from the batch's mean KL, where each image's own KL belongs."""
    return np.full(kl_n.shape, kl_n.mean() > floor)
