"""The exercises of docs/exercises.md: fill in each function, then judge it with

    python docs/exercises/checks.py                  every function in this file
    python docs/exercises/checks.py conv2d_backward  one of them

Each function says what it computes and where the page derives it. Write it with NumPy alone:
the checks compare it with finite differences of scratchvae's loop code, and with the package's
Adam. The letters are those of docs/backward.md. The answers are in answers.py beside this
file: try first.
"""
import numpy as np  # noqa: F401 (you will need it)


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
    gives back rows at the bottom): docs/backward.md, "ConvTranspose2D".
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
