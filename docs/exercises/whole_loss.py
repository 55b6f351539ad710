"""The whole VAE loss, one named tensor at a time: the forward of docs/exercises.md, Part 2.

A VAE as the World Models one is built (two strided convolutions with ReLUs, two dense heads, the
reparameterization, a dense layer, two transposed convolutions, a sigmoid), made small: a batch of N = 4
images of 2 channels, 8×8 pixels, a latent of D = 3 numbers. Its loss is the one scratchvae trains,
written out: the squared error summed over each image's pixels and averaged over the batch, plus β times
the free-bits KL, here with β = 2.5 and a floor that two of the four images' KLs fall under.

Every line of STEPS makes one tensor from those before it. Your backward (whole_loss_backward in skeletons.py)
fills g[name] = ∂loss/∂t[name] for each of them, from loss back to x, and for every parameter; the check
(python docs/exercises/checks.py whole_loss_backward) compares each with finite differences of this forward
taken from that tensor on, and names the first that is wrong.

    t = whole_loss.forward()            # {name: tensor}: the inputs, the parameters and every line of STEPS
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

N, C, S, D = 4, 2, 8, 3            # images, channels, pixels a side, latent numbers
BETA = 2.5                         # the KL's weight
FLOOR = 2.2                        # free bits: each image's KL is floored at this many nats

# the parameters' shapes: conv 2→3 (4×4, stride 2) → 3×3; conv 3→4 (2×2) → 2×2; heads 16→3;
# dense 3→16, seen as 4×2×2; transposed conv 4→3 (2×2) → 3×3; transposed conv 3→2 (4×4, stride 2) → 8×8
SHAPES = {"W1": (3, C, 4, 4), "b1": (3,), "W2": (4, 3, 2, 2), "b2": (4,),
          "Wmu": (16, D), "bmu": (D,), "Wlv": (16, D), "blv": (D,),
          "Wd": (D, 16), "bd": (16,), "W3": (4, 3, 2, 2), "b3": (3,), "W4": (3, C, 4, 4), "b4": (C,)}
PARAMS = tuple(SHAPES)
LEAVES = ("x", "eps") + PARAMS     # what the forward starts from


def conv2d(x, W, b, stride=1):
    """y[n, o, r, s] = b[o] + Σ_{c, j, i} W[o, c, j, i]·x[n, c, r·stride + j, s·stride + i], no padding: every
    window at once (a view of x, (N, C, oh, ow, kh, kw)), then one sum. scratchvae.check.reference.conv2d is the
    same sum one output at a time (tests/test_exercises.py compares them); this one is fast enough to be run
    a few thousand times by the check."""
    kh, kw = W.shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]   # (N, C, oh, ow, kh, kw)
    return np.einsum("ncrsji,ocji->nors", windows, W) + b[None, :, None, None]


def conv_transpose2d(x, W, b, stride=1):
    """Each input pixel paints the kernel, scaled by its value: y[n, o, r·stride + j, s·stride + i] +=
    x[n, c, r, s]·W[c, o, j, i], no padding, one tap (j, i) at a time over every pixel."""
    n, _, h, w = x.shape
    _, co, kh, kw = W.shape
    y = np.zeros((n, co, (h - 1) * stride + kh, (w - 1) * stride + kw))
    for j in range(kh):
        for i in range(kw):
            y[:, :, j:j + (h - 1) * stride + 1:stride, i:i + (w - 1) * stride + 1:stride] += np.einsum(
                "ncrs,co->nors", x, W[:, :, j, i])
    return y + b[None, :, None, None]


def relu(a):
    return np.maximum(a, 0)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


# docs: steps
STEPS = [                                                                       # shape, for N = 4
    ("h1", lambda t: conv2d(t["x"], t["W1"], t["b1"], stride=2)),              # (4, 3, 3, 3)
    ("a1", lambda t: relu(t["h1"])),
    ("h2", lambda t: conv2d(t["a1"], t["W2"], t["b2"])),                       # (4, 4, 2, 2)
    ("a2", lambda t: relu(t["h2"])),
    ("f", lambda t: t["a2"].reshape(N, 16)),                                   # (4, 16) the features
    ("mu", lambda t: t["f"] @ t["Wmu"] + t["bmu"]),                            # (4, 3)
    ("logvar", lambda t: t["f"] @ t["Wlv"] + t["blv"]),                        # (4, 3) ℓ = log σ²
    ("std", lambda t: np.exp(0.5 * t["logvar"])),                              # (4, 3) σ = e^(ℓ/2)
    ("z", lambda t: t["mu"] + t["std"] * t["eps"]),                            # (4, 3)
    ("d", lambda t: t["z"] @ t["Wd"] + t["bd"]),                               # (4, 16)
    ("d4", lambda t: t["d"].reshape(N, 4, 2, 2)),                              # (4, 4, 2, 2)
    ("h3", lambda t: conv_transpose2d(t["d4"], t["W3"], t["b3"])),             # (4, 3, 3, 3)
    ("a3", lambda t: relu(t["h3"])),
    ("logits", lambda t: conv_transpose2d(t["a3"], t["W4"], t["b4"], stride=2)),  # (4, 2, 8, 8)
    ("y", lambda t: sigmoid(t["logits"])),                                     # (4, 2, 8, 8) the pictures
    ("diff", lambda t: t["y"] - t["x"]),
    ("sq", lambda t: t["diff"] ** 2),
    ("recon_n", lambda t: t["sq"].sum(axis=(1, 2, 3))),                        # (4,) each image's squared error
    ("recon", lambda t: t["recon_n"].mean()),                                  # () the reconstruction term
    ("var", lambda t: np.exp(t["logvar"])),                                    # (4, 3) σ² = e^ℓ
    ("kl_nd", lambda t: 0.5 * (t["mu"] ** 2 + t["var"] - 1 - t["logvar"])),    # (4, 3) KL per image and number
    ("kl_n", lambda t: t["kl_nd"].sum(axis=1)),                                # (4,) each image's KL
    ("kl_f", lambda t: np.maximum(t["kl_n"], FLOOR)),                          # (4,) floored: free bits
    ("kl", lambda t: t["kl_f"].mean()),                                        # ()
    ("loss", lambda t: t["recon"] + BETA * t["kl"]),                           # ()
]
# end docs: steps
NAMES = tuple(name for name, _ in STEPS)


def inputs(seed=4):
    """The leaves: a batch x in [0, 1], the noise eps, and parameters at the scale of a trained model's."""
    rng = np.random.default_rng(seed)
    t = {"x": rng.random((N, C, S, S)), "eps": rng.normal(size=(N, D))}
    for name, shape in SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if name.startswith("W") and len(shape) == 4 else shape[0]
        scale = 1 / np.sqrt(fan_in) if name.startswith("W") else 1.0 if name in ("bmu", "blv") else 0.3
        t[name] = rng.normal(size=shape) * scale
    return t


def forward(t=None, start=0):
    """Run STEPS from step `start` on, filling t (the leaves and any tensor made before `start` are kept):
    the dict of every tensor. forward() starts from inputs()."""
    t = dict(inputs() if t is None else t)
    for name, step in STEPS[start:]:
        t[name] = step(t)
    return t


def kinks(t):
    """Where the loss is not smooth: each ReLU's on/off pattern and which images are above the floor. A finite
    difference that changed one of these would measure a slope that exists on neither side."""
    return [t["h1"] > 0, t["h2"] > 0, t["h3"] > 0, t["kl_n"] > FLOOR]


# the order a backward fills the gradients in, as whole_loss_backward in skeletons.py lists them: from the
# loss back to x, each parameter beside the tensor its layer makes
GRADIENTS = ("loss", "recon", "kl", "kl_f", "kl_n", "kl_nd", "var", "recon_n", "sq", "diff", "y", "logits",
             "a3", "W4", "b4", "h3", "d4", "W3", "b3", "d", "Wd", "bd", "z", "std", "mu", "logvar",
             "Wmu", "bmu", "Wlv", "blv", "f", "a2", "h2", "a1", "W2", "b2", "h1", "W1", "b1", "x")
