"""Answers to the exercises of docs/exercises.md. No page shows this file: try each exercise first.

    python docs/exercises/checks.py --answers        every answer through its check

In the order of the page: the warm-ups (the routines docs/backward.md derives and prints; col2im and adam are
the package's own loop versions, scratchvae/check/reference.py), the transfer exercises of Part 1 (layers
no page codes), the walk through the whole loss of Part 2, then Part 3's "your turn" mistakes, each written
the wrong way on purpose.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))         # whole_loss.py lies beside this file
from scratchvae.check.reference import adam, col2im  # noqa: F401,E402 (two answers are the package's own loop versions)
import whole_loss  # noqa: E402

# Warm-ups: what docs/backward.md derives.

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


# Part 1: transfer. Each is a warm-up's method carried to a layer the pages do not code.

def conv2d_dilated_backward(x, W, dy, stride, padding, dilation):
    (sy, sx), (ph, pw), (ey, ex) = stride, padding, dilation
    n, c, h, w = x.shape
    co, _, kh, kw = W.shape
    _, _, oh, ow = dy.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))            # (N, C, H + 2ph, W + 2pw)
    dx_pad, dW = np.zeros_like(x_pad), np.zeros_like(W)
    for r in range(oh):
        for s in range(ow):
            rows = slice(r * sy, r * sy + (kh - 1) * ey + 1, ey)        # the taps output (r, s) read, ey rows apart
            cols = slice(s * sx, s * sx + (kw - 1) * ex + 1, ex)
            d = dy[:, :, r, s]                                          # (N, Co)
            dW += np.einsum("no,ncji->ocji", d, x_pad[:, :, rows, cols])   # dW[o] += Σ_n dy·(the taps read)
            dx_pad[:, :, rows, cols] += np.einsum("no,ocji->ncji", d, W)   # dx += dy·W, back to the same taps
    return dx_pad[:, :, ph:ph + h, pw:pw + w], dW, dy.sum(axis=(0, 2, 3))


def conv2d_grouped_backward(x, W, dy, stride, padding, groups):
    co, cg = W.shape[:2]
    per = co // groups                                                  # output channels per group
    dx, dW = np.zeros_like(x), np.zeros_like(W)
    for g in range(groups):                                             # each group is a convolution of its own
        ins, outs = slice(g * cg, (g + 1) * cg), slice(g * per, (g + 1) * per)
        dx[:, ins], dW[outs], _ = conv2d_backward(x[:, ins], W[outs], dy[:, outs], stride, padding)
    return dx, dW, dy.sum(axis=(0, 2, 3))


def avg_pool2d_backward(x, dy, kernel, stride):
    (kh, kw), (sy, sx) = kernel, stride
    dx = np.zeros_like(x)
    for r in range(dy.shape[2]):
        for s in range(dy.shape[3]):                                    # each window's pixels share its dy equally
            dx[:, :, r * sy:r * sy + kh, s * sx:s * sx + kw] += dy[:, :, r, s, None, None] / (kh * kw)
    return dx


def elu_backward(x, dy, alpha):
    return dy * np.where(x > 0, 1.0, alpha * np.exp(x))                 # d/dx α(eˣ − 1) = α·eˣ (= y + α)


def gaussian_nll_grads(mean, log_var, x):
    n = x.shape[0]
    inv_var = np.exp(-log_var)                                          # 1/σ²
    dmean = (mean - x) * inv_var / n                                    # ∂/∂mean ½(x − m)²/σ² = (m − x)/σ²
    dlog_var = 0.5 * (1 - (x - mean) ** 2 * inv_var) / n                # ∂/∂v ½[(x − m)²e^(−v) + v] = ½(1 − (x − m)²e^(−v))
    return dmean, dlog_var


def conv2d_reflect_backward(x, W, dy, stride, padding):
    ph, pw = padding
    n, c, h, w = x.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="reflect")
    dx_pad, dW, db = conv2d_backward(x_pad, W, dy, stride, (0, 0))     # the convolution of the padded input
    for k in range(1, ph + 1):                                          # the padding's transpose: each copied row
        dx_pad[:, :, ph + k] += dx_pad[:, :, ph - k]                    # gives its gradient back to the row it
        dx_pad[:, :, ph + h - 1 - k] += dx_pad[:, :, ph + h - 1 + k]    # copied (rows first, over the whole width,
    rows = dx_pad[:, :, ph:ph + h]                                      # so the corners travel twice)
    for k in range(1, pw + 1):
        rows[:, :, :, pw + k] += rows[:, :, :, pw - k]
        rows[:, :, :, pw + w - 1 - k] += rows[:, :, :, pw + w - 1 + k]
    return rows[:, :, :, pw:pw + w], dW, db


# Part 2: the whole loss, one tensor at a time (the forward is whole_loss.STEPS). Read from the bottom of the forward up.

def whole_loss_backward(t):
    B, N = whole_loss.BETA, whole_loss.N
    g = {"loss": 1.0}
    g["recon"] = g["loss"]                                              # loss = recon + β·kl
    g["kl"] = B * g["loss"]
    g["kl_f"] = np.full(N, g["kl"] / N)                                 # kl = mean(kl_f)
    g["kl_n"] = g["kl_f"] * (t["kl_n"] > whole_loss.FLOOR)                   # max(kl_n, floor): flat under the floor
    g["kl_nd"] = np.repeat(g["kl_n"][:, None], whole_loss.D, axis=1)         # kl_n = Σ_d kl_nd
    g["var"] = 0.5 * g["kl_nd"]                                         # kl_nd = ½(μ² + var − 1 − ℓ)
    g["recon_n"] = np.full(N, g["recon"] / N)                           # recon = mean(recon_n)
    g["sq"] = np.broadcast_to(g["recon_n"][:, None, None, None], t["sq"].shape).copy()   # recon_n = Σ sq
    g["diff"] = 2 * t["diff"] * g["sq"]                                 # sq = diff²
    g["y"] = g["diff"]                                                  # diff = y − x
    g["logits"] = g["y"] * t["y"] * (1 - t["y"])                        # y = σ(logits): σ' = y(1 − y)
    g["a3"], g["W4"], g["b4"] = conv_transpose2d_backward(t["a3"], t["W4"], g["logits"], (2, 2), (0, 0), (0, 0))
    g["h3"] = g["a3"] * (t["h3"] > 0)                                   # ReLU
    g["d4"], g["W3"], g["b3"] = conv_transpose2d_backward(t["d4"], t["W3"], g["h3"], (1, 1), (0, 0), (0, 0))
    g["d"] = g["d4"].reshape(N, 16)                                     # a reshape's backward is the reshape back
    g["Wd"] = t["z"].T @ g["d"]                                         # d = z·Wd + bd
    g["bd"] = g["d"].sum(axis=0)
    g["z"] = g["d"] @ t["Wd"].T
    g["std"] = g["z"] * t["eps"]                                        # z = μ + σ·ε
    g["mu"] = g["z"] + g["kl_nd"] * t["mu"]                             # μ feeds z and the KL: the two added
    g["logvar"] = (g["std"] * 0.5 * t["std"]                            # ℓ feeds σ = e^(ℓ/2), var = e^ℓ and
                   + g["var"] * t["var"] - 0.5 * g["kl_nd"])            # the KL's −ℓ: three paths, added
    g["Wmu"], g["bmu"] = t["f"].T @ g["mu"], g["mu"].sum(axis=0)        # μ = f·Wmu + bmu
    g["Wlv"], g["blv"] = t["f"].T @ g["logvar"], g["logvar"].sum(axis=0)
    g["f"] = g["mu"] @ t["Wmu"].T + g["logvar"] @ t["Wlv"].T           # f feeds both heads
    g["a2"] = g["f"].reshape(t["a2"].shape)
    g["h2"] = g["a2"] * (t["h2"] > 0)
    g["a1"], g["W2"], g["b2"] = conv2d_backward(t["a1"], t["W2"], g["h2"], (1, 1), (0, 0))
    g["h1"] = g["a1"] * (t["h1"] > 0)
    dx, g["W1"], g["b1"] = conv2d_backward(t["x"], t["W1"], g["h1"], (2, 2), (0, 0))
    g["x"] = dx - g["diff"]                                             # x feeds h1 and diff = y − x
    return g


# Part 3, "your turn": each mistake of docs/exercises.md, written out, with the function it breaks.

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
