"""The exercises of docs/exercises.md: fill in each function, then judge it with

    python docs/exercises/checks.py                  every function in this file
    python docs/exercises/checks.py conv2d_backward  one of them

Each function says what it computes and where the pages define it. Write it with NumPy alone: the checks
compare it with finite differences of plain forward code (scratchvae/check/reference.py for the warm-ups,
transfer.py beside this file for Part 1, whole_loss.py for Part 2) and, for Adam, with the package's own.
The letters are those of docs/backward.md. The answers are in answers.py beside this file; no page shows
them. Try first.
"""
import os
import sys

import numpy as np  # noqa: F401 (you will need it)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))         # whole_loss.py lies beside this file
import whole_loss  # noqa: E402


# Warm-ups: docs/backward.md derives each of these; each of its sections says when to try one.


def conv2d_backward(x, W, dy, stride, padding):
    """The gradients (dx, dW, db) of y = conv2d(x, W, b) (scratchvae.check.reference.conv2d), given dy = ∂L/∂y.

    x (N, C, H, W); W (Co, C, kh, kw); dy (N, Co, oh, ow); stride (sy, sx); padding (ph, pw).
    From y[n, o, r, s] = b[o] + Σ_{c, j, i} W[o, c, j, i]·x_pad[n, c, r·sy + j, s·sx + i]
    (docs/backward.md, "Convolution, index by index"): find every output each number touched.
    """
    (sy, sx), (ph, pw) = stride, padding  # noqa: F841
    # your code: dx (N, C, H, W), dW (Co, C, kh, kw), db (Co,)
    raise NotImplementedError


def col2im(col, h, w, sy, sx, ph, pw):
    """im2col's transpose: col (N, C, kh, kw, oh, ow) → (N, C, h, w), each column entry added back to the
    pixel of x_pad it was copied from, col[n, c, j, i, r, s] → x_pad[n, c, r·sy + j, s·sx + i], and the
    padding cut off (docs/backward.md, "col2im")."""
    # your code
    raise NotImplementedError


def conv_transpose2d_backward(x, W, dy, stride, padding, output_padding):
    """The gradients (dx, dW, db) of y = conv_transpose2d(x, W, b) (scratchvae.check.reference.conv_transpose2d).

    x (N, Ci, H, W); W (Ci, Co, kh, kw); dy (N, Co, oh, ow). The forward paints
    y_pad[n, o, r·sy + j, s·sx + i] += x[n, c, r, s]·W[c, o, j, i], crops ph, pw (and output_padding
    gives back rows at the bottom): docs/backward.md, "ConvTranspose2D". output_padding only sets the output's
    size: dy arrives with those rows in it, and nothing else in the backward depends on it.
    """
    (sy, sx), (ph, pw), (opy, opx) = stride, padding, output_padding  # noqa: F841
    # your code: dx (N, Ci, H, W), dW (Ci, Co, kh, kw), db (Co,)
    raise NotImplementedError


def kl_grads(mu, logvar):
    """(∂KL/∂mu, ∂KL/∂logvar) for each image's KL(N(mu, e^logvar) ‖ N(0, 1)) = −½ Σ_d (1 + ℓ − μ² − e^ℓ);
    mu and logvar (N, D). docs/vae.md, "The KL term in closed form"."""
    # your code
    raise NotImplementedError


def reparameterize(mu, logvar, eps):
    """z = μ + σ·ε with σ = e^(ℓ/2), for mu, logvar, eps (N, D)."""
    # your code
    raise NotImplementedError


def reparameterize_backward(dz, mu, logvar, eps):
    """(∂L/∂mu, ∂L/∂logvar) through z = μ + e^(ℓ/2)·ε, given dz = ∂L/∂z (the KL's own gradients not added).
    docs/backward.md, "The reparameterization"."""
    # your code
    raise NotImplementedError


def adam(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Adam's step t (1, 2, …): the new (p, m, v), as new arrays, for parameters p, gradient g and the
    moments m, v from step t − 1 (zeros before step 1). docs/backward.md, "Adam"."""
    # your code
    raise NotImplementedError


# Part 1: transfer. No page codes these layers: derive each backward from its forward in transfer.py, with the
# method the warm-ups taught (write the forward as a sum, find every output each number touched).

def conv2d_dilated_backward(x, W, dy, stride, padding, dilation):
    """(dx, dW, db) of the dilated convolution transfer.conv2d_dilated: the kernel's taps dilation = (ey, ex)
    apart, y[n, o, r, s] = b[o] + Σ_{c, j, i} W[o, c, j, i]·x_pad[n, c, r·sy + j·ey, s·sx + i·ex].
    x (N, C, H, W); W (Co, C, kh, kw); dy (N, Co, oh, ow)."""
    # your code
    raise NotImplementedError


def conv2d_grouped_backward(x, W, dy, stride, padding, groups):
    """(dx, dW, db) of the grouped convolution transfer.conv2d_grouped: output channel o reads only the input
    channels of its group. x (N, C, H, W); W (Co, C/G, kh, kw); dy (N, Co, oh, ow); groups G divides C and Co.
    groups = C is the depthwise convolution."""
    # your code
    raise NotImplementedError


def avg_pool2d_backward(x, dy, kernel, stride):
    """dx of average pooling, transfer.avg_pool2d: y[n, c, r, s] is the mean of its kh × kw window.
    x (N, C, H, W) (its values are not needed, its shape is); dy (N, C, oh, ow); kernel (kh, kw); stride (sy, sx)."""
    # your code
    raise NotImplementedError


def elu_backward(x, dy, alpha):
    """dx of the ELU, transfer.elu: y = x where x > 0, α·(eˣ − 1) elsewhere. x and dy of any one shape."""
    # your code
    raise NotImplementedError


def gaussian_nll_grads(mean, log_var, x):
    """(∂L/∂mean, ∂L/∂log_var) of the Gaussian decoder with a learned variance, transfer.gaussian_nll:
    L = (1/N) Σ ½·[(x − mean)²·e^(−log_var) + log_var + log 2π]. All three (N, C, H, W)."""
    # your code
    raise NotImplementedError


def conv2d_reflect_backward(x, W, dy, stride, padding):
    """(dx, dW, db) of the convolution with reflection padding, transfer.conv2d_reflect: the input padded by
    reflection (transfer.pad_reflect: padded row ph − k is a copy of row k), then convolved at padding 0.
    x (N, C, H, W); W (Co, C, kh, kw); dy (N, Co, oh, ow); padding (ph, pw), ph < H and pw < W."""
    # your code
    raise NotImplementedError


# Part 2: the whole loss, one tensor at a time. whole_loss.STEPS is the forward; t = whole_loss.forward() holds
# every tensor it made. Fill in g[name] = ∂loss/∂t[name], each of the shape of t[name], from the loss back to x.
# Each line needs only lines above it (and the forward's tensors). The check names the first line that is wrong,
# so write them in order and run the check as you go. For the four convolutions, call your warm-ups above
# (conv2d_backward, conv_transpose2d_backward): every stride is given in STEPS, padding and output_padding are 0.

def whole_loss_backward(t):
    """{name: ∂loss/∂t[name]} for every tensor of whole_loss.STEPS, and for x and every parameter."""
    B, N, D, FLOOR = whole_loss.BETA, whole_loss.N, whole_loss.D, whole_loss.FLOOR  # noqa: F841
    g = {"loss": 1.0}
    g["recon"] = None           # loss = recon + β·kl
    g["kl"] = None
    g["kl_f"] = None            # kl = mean of kl_f
    g["kl_n"] = None            # kl_f = max(kl_n, FLOOR)
    g["kl_nd"] = None           # kl_n = Σ_d kl_nd
    g["var"] = None             # kl_nd = ½(μ² + var − 1 − ℓ)
    g["recon_n"] = None         # recon = mean of recon_n
    g["sq"] = None              # recon_n = Σ over each image's pixels of sq
    g["diff"] = None            # sq = diff²
    g["y"] = None               # diff = y − x
    g["logits"] = None          # y = sigmoid(logits)
    g["a3"] = g["W4"] = g["b4"] = None      # logits = conv_transpose2d(a3, W4, b4, stride 2)
    g["h3"] = None              # a3 = relu(h3)
    g["d4"] = g["W3"] = g["b3"] = None      # h3 = conv_transpose2d(d4, W3, b3)
    g["d"] = None               # d4 = d reshaped
    g["Wd"] = g["bd"] = None    # d = z·Wd + bd
    g["z"] = None
    g["std"] = None             # z = μ + σ·ε
    g["mu"] = None              # μ feeds z and kl_nd
    g["logvar"] = None          # ℓ feeds std, var and kl_nd
    g["Wmu"] = g["bmu"] = None  # μ = f·Wmu + bmu
    g["Wlv"] = g["blv"] = None  # ℓ = f·Wlv + blv
    g["f"] = None               # f feeds both heads
    g["a2"] = None              # f = a2 reshaped
    g["h2"] = None              # a2 = relu(h2)
    g["a1"] = g["W2"] = g["b2"] = None      # h2 = conv2d(a1, W2, b2)
    g["h1"] = None              # a1 = relu(h1)
    g["W1"] = g["b1"] = None    # h1 = conv2d(x, W1, b1, stride 2)
    g["x"] = None               # x feeds h1 and diff
    return g
