"""Draw the teaching figures of docs/ from the package's own code.

    python docs/figures.py            write docs/img/im2col.png, dilated.png, painting.png, parity.png and
                                      vae_graph.png
    python docs/figures.py --out DIR  write them somewhere else

Every number in a figure is computed by scratchvae (im2col, the loop convolutions, ConvTranspose2D,
phase_weights), not typed in,
and tests/test_docs.py reads the numbers back from the figures and compares them with the
code, so a figure cannot drift from what the code does. Each *_figure function returns a
matplotlib Figure; main() saves them.
"""
import argparse
import os
import sys

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.path import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from scratchvae import ConvTranspose2D  # noqa: E402
from scratchvae.check import reference  # noqa: E402
from scratchvae.ops.im2col import im2col  # noqa: E402
from scratchvae.ops.parity import phase_weights  # noqa: E402
from scratchvae.run.pictures import save  # noqa: E402

COLOURS = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#999999", "#17becf"]


def grid(ax, values, x0, y0, colours=None, label=None):
    """Draw a 2-d array as a grid of numbered cells, its top-left corner at (x0, y0), one unit per cell
    (y grows downwards). colours: a face colour per cell, or None for white."""
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            face = "white" if colours is None or colours[r][c] is None else colours[r][c]
            ax.add_patch(Rectangle((x0 + c, y0 + r), 1, 1, facecolor=face, edgecolor="black", lw=0.8))
            ax.text(x0 + c + 0.5, y0 + r + 0.5, f"{values[r, c]:g}", ha="center", va="center", fontsize=10)
    if label:
        ax.text(x0 + cols / 2, y0 - 0.4, label, ha="center", va="bottom", fontsize=10)


def _canvas(width, height, size):
    fig = Figure(figsize=size)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-0.5, width)
    ax.set_ylim(height, -1.5)                                   # y downwards, like an array
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def im2col_figure(h=4, w=4, k=2, stride=1):
    """An h×w image holding 0…h·w−1 and the matrix im2col makes: one column per window, in the window's
    colour, labelled with its output position (r, s), and above each column a small copy of the image with
    that one window shaded."""
    x = np.arange(h * w, dtype=np.float64).reshape(1, 1, h, w)
    col = im2col(x, k, k, stride, stride, 0, 0)                  # (1, 1, k, k, oh, ow)
    oh, ow = col.shape[4:]
    mat = col.reshape(k * k, oh * ow)                            # row (j, i), column (r, s)
    thumb = 0.9 / max(h, w)                                      # a thumbnail's cell: the whole image in 0.9 units
    top = h * thumb + 1.0                                        # the matrix starts below the thumbnails
    fig, ax = _canvas(w + 3 + oh * ow, top + max(h, k * k) + 0.5, (2.0 + 0.55 * (w + oh * ow), 4.4))
    grid(ax, x[0, 0], 0, top, label=f"x: {h}×{w}, window {k}×{k}, stride {stride}")
    colours = [[COLOURS[c % len(COLOURS)] + "55" for c in range(oh * ow)] for _ in range(k * k)]
    x0 = w + 2
    for p in range(oh * ow):                                     # column p: window (r, s), its thumbnail above
        r, s = divmod(p, ow)
        for a in range(h):
            for b in range(w):
                inside = r * stride <= a < r * stride + k and s * stride <= b < s * stride + k
                ax.add_patch(Rectangle((x0 + p + 0.05 + b * thumb, 0.05 + a * thumb), thumb, thumb, lw=0.3,
                                       facecolor=COLOURS[p % len(COLOURS)] if inside else "white", edgecolor="grey"))
        ax.text(x0 + p + 0.5, top - 0.12, f"({r}, {s})", ha="center", va="bottom", fontsize=7)
    grid(ax, mat, x0, top, colours)
    ax.text(x0 + oh * ow / 2, -0.45, "im2col(x): one column per window; above each, the window it copies",
            ha="center", va="bottom", fontsize=10)
    for j in range(k * k):
        ax.text(x0 - 0.1, top + j + 0.5, f"({j // k}, {j % k})", ha="right", va="center", fontsize=8)
    ax.text(x0 - 0.1, top - 0.12, "(j, i) \\ (r, s)", ha="right", va="bottom", fontsize=8)
    fig.suptitle("im2col copies every window into a column; the convolution is then one matrix product",
                 fontsize=10, y=0.99)
    return fig


def dilated_figure():
    """dx as the correlation of the stride-dilated dy with the flipped kernel, on one channel: a 3×3 kernel at
    stride 2 over a 5×5 input gives a 2×2 dy; spread out and padded by kh − 1, it is read through W flipped,
    and the result is the loop backward's dx. One window and the dx pixel it makes are outlined."""
    W = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)                 # (Co, C, kh, kw)
    dy = np.array([[[[1.0, -1.0], [2.0, 0.5]]]])                 # (N, Co, oh, ow)
    dx = reference.conv2d_backward(np.zeros((1, 1, 5, 5)), W, dy, stride=2)[0][0, 0]   # (5, 5)
    spread = np.zeros((7, 7))                                   # dilated (3×3), padded by 2 on each side
    spread[2:5:2, 2:5:2] = dy[0, 0]
    flipped = W[0, 0, ::-1, ::-1]
    fig, ax = _canvas(20.6, 8, (12.4, 4.6))
    grid(ax, dy[0, 0], 0, 0, label="dy (2×2)")
    marks = [[COLOURS[1] + "55" if (a - 2) % 2 == 0 and (b - 2) % 2 == 0 and 2 <= a <= 4 and 2 <= b <= 4 else None
              for b in range(7)] for a in range(7)]
    grid(ax, spread, 3, 0, marks, label="dilated by the stride, padded by kh − 1")
    grid(ax, flipped, 11, 0, label="W flipped")
    grid(ax, dx, 15, 0, label="dx = correlation")
    p, q = 1, 2                                                  # one output of the correlation
    ax.add_patch(Rectangle((3 + q, p), 3, 3, fill=False, edgecolor=COLOURS[0], lw=2.5))
    ax.add_patch(Rectangle((15 + q, p), 1, 1, fill=False, edgecolor=COLOURS[0], lw=2.5))
    ax.text(9, 7.6, f"dx[{p}, {q}] = Σ (the outlined window × W flipped) = {dx[p, q]:g}", ha="center",
            fontsize=9, color=COLOURS[0])
    fig.suptitle("Conv2D's dx: the stride-dilated dy, correlated with the flipped kernel (3×3 kernel, stride 2, "
                 "5×5 input)", fontsize=10, y=0.99)
    return fig


def parity_figure():
    """The parity split of a 2×2 input, a 3×3 kernel (1…9, so each tap can be told apart) and stride 2: each
    output pixel's phase (its row and column mod 2) picks the kernel taps it meets, and each phase is a
    stride-1 convolution with its own small kernel, Wp's rows. The output is ConvTranspose2D's."""
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    W = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)                 # (Ci, Co, kh, kw)
    y = reference.conv_transpose2d(x, W, [0.0], stride=2)[0, 0]  # (5, 5)
    wp = phase_weights(W, 2, 2, 2, 2).reshape(2, 2, 2, 2)        # [φ, ψ, j, i]: the phase kernels, 0 past the kernel
    phase_colour = {(0, 0): COLOURS[0], (0, 1): COLOURS[1], (1, 0): COLOURS[2], (1, 1): COLOURS[3]}
    fig, ax = _canvas(3 + 1 + 5 + 1 + 4 * 3.2, 10, (12, 5.4))
    grid(ax, W[0, 0], 0, 0, [[phase_colour[j % 2, i % 2] + "66" for i in range(3)] for j in range(3)],
         label="W, taps by phase")
    grid(ax, y, 4, 0, [[phase_colour[a % 2, b % 2] + "66" for b in range(5)] for a in range(5)],
         label="y = convT(x, W): pixels by phase")
    x0 = 10.5
    for (phi, psi), colour in phase_colour.items():
        grid(ax, wp[phi, psi], x0, 0, [[colour + "66"] * 2] * 2, label=f"phase ({phi}, {psi}): Wp")
        sub = y[phi::2, psi::2]
        grid(ax, sub, x0, 4.2, [[colour + "66"] * sub.shape[1]] * sub.shape[0], label="its pixels")
        x0 += 3.2
    ax.text(0, 8.6, "x = [[1, 2], [3, 4]], stride 2. Each phase's pixels are a stride-1 convolution of x "
            "(a zero row and column around it)\nwith that phase's 2×2 kernel: the kernel's taps of that phase, "
            "flipped, zeros where the kernel has none.", fontsize=9, va="top")
    fig.suptitle("The parity split: an output pixel only meets the kernel taps of its own phase", fontsize=10, y=0.99)
    return fig


def painting_figure(stride=2):
    """A 2×2 input, each pixel painting the 3×3 kernel of ones, scaled by its value, onto the output at
    the stride; overlaps add up. The output is ConvTranspose2D's."""
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    layer = ConvTranspose2D(1, 1, 3, stride=stride, dtype=np.float64)
    layer.params["W"][...] = 1
    layer.params["b"][...] = 0
    y = layer.forward(x)[0, 0]                                   # (oh, ow)
    oh, ow = y.shape
    fig, ax = _canvas(2 + 4 * (oh + 1) + oh, oh + 2, (11, 3.4))
    grid(ax, x[0, 0], 0, 0, [[COLOURS[0] + "88", COLOURS[1] + "88"], [COLOURS[2] + "88", COLOURS[3] + "88"]],
         label="x")
    x0 = 3.5
    covered = np.zeros((oh, ow), dtype=int)                     # how many paints land on each output pixel
    for p in range(4):                                          # each input pixel's paint, on its own grid
        r, s = divmod(p, 2)
        paint = np.zeros((oh, ow))
        paint[r * stride:r * stride + 3, s * stride:s * stride + 3] = x[0, 0, r, s]
        covered[r * stride:r * stride + 3, s * stride:s * stride + 3] += 1
        colours = [[COLOURS[p] + "88" if paint[a, b] else None for b in range(ow)] for a in range(oh)]
        grid(ax, paint, x0, 0, colours, label=f"x[{r}, {s}] = {x[0, 0, r, s]:g} paints")
        ax.text(x0 + ow + 0.25, oh / 2, "+" if p < 3 else "=", ha="center", va="center", fontsize=16)
        x0 += ow + 0.5
    overlap = [["#dddddd" if covered[a, b] > 1 else None for b in range(ow)] for a in range(oh)]
    grid(ax, y, x0, 0, overlap, label="y = ConvTranspose2D(x)")
    fig.suptitle(f"The transposed convolution, stride {stride}: every input pixel paints the kernel times its "
                 "value; where paints overlap (grey), they add", fontsize=10, y=0.98)
    return fig


def _box(ax, x, y, text, colour="#f2f2f2", w=2.0, h=0.9):
    box = Rectangle((x - w / 2, y - h / 2), w, h, facecolor=colour, edgecolor="black", lw=1)
    ax.add_patch(box)
    ax.text(x, y, text, ha="center", va="center", fontsize=9)
    return box


def _centre(box):
    return np.array([box.get_x() + box.get_width() / 2, box.get_y() + box.get_height() / 2])


def _edge(a, b, backward_label=None, side=1, at=0.5):
    """A forward arrow a → b (black) and, beside it on `side`, the backward arrow b → a (dashed red)
    carrying backward_label, written at fraction `at` of the way from a to b. Both are clipped at the boxes' edges."""
    ax = a.axes
    pa, pb = _centre(a), _centre(b)
    d = (pb - pa) / np.linalg.norm(pb - pa)
    normal = np.array([-d[1], d[0]]) * side
    ax.add_patch(FancyArrowPatch(pa, pb, patchA=a, patchB=b, arrowstyle="-|>", mutation_scale=12,
                                 color="black", lw=1.2, shrinkA=1, shrinkB=1))
    if backward_label is None:
        return
    off = normal * 0.14
    ax.add_patch(FancyArrowPatch(pb + off, pa + off, patchA=b, patchB=a, arrowstyle="-|>", mutation_scale=12,
                                 color="#c0392b", ls="--", lw=1.3, shrinkA=1, shrinkB=1))
    mid = pa + at * (pb - pa) + normal * 0.42
    _label(ax, mid, backward_label)


def _label(ax, at, text):
    ax.text(at[0], at[1], text, ha="center", va="center", fontsize=8, color="#c0392b",
            bbox=dict(facecolor="white", edgecolor="none", pad=0.5))


def _route(ax, points, backward_label, label_at, inside):
    """A forward arrow along the polyline `points`, a horizontal run then a vertical leg (black), and the
    backward arrow back along it (dashed red), 0.14 inside the corner (inside: the corner's (dx, dy) sign
    towards the inside), labelled at label_at."""
    pts = np.array(points, dtype=float)
    ax.add_patch(FancyArrowPatch(path=Path(pts), arrowstyle="-|>", mutation_scale=12, color="black", lw=1.2))
    back = pts + 0.14 * np.array([[0, inside[1]], inside, [inside[0], 0]])
    ax.add_patch(FancyArrowPatch(path=Path(back[::-1]), arrowstyle="-|>", mutation_scale=12, color="#c0392b",
                                 ls="--", lw=1.3))
    _label(ax, label_at, backward_label)


def vae_graph_figure():
    """The VAE's graph: forward in black, backward in dashed red, each backward arrow labelled with the
    gradient of the loss it carries. h feeds both heads (its gradient is a sum), μ and ℓ = log σ² each feed two
    terms (z and the KL: their gradients add), and the free-bits mask decides which images the KL's gradient
    reaches. Drawn without crossings: the KL sits at the right, its edges from μ and ℓ run above and below."""
    fig = Figure(figsize=(16, 5.0))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-0.3, 23.0)
    ax.set_ylim(-0.1, 6.6)
    ax.axis("off")
    mid, top, bottom = 2.6, 4.5, 0.7
    x = _box(ax, 0.8, mid, "x\n(N, 3, 64, 64)", w=1.6)
    enc = _box(ax, 3.0, mid, "encoder\n4 conv + ReLU", w=1.8)
    h = _box(ax, 5.3, mid, "h\n(N, 1024)", w=1.4)
    mu = _box(ax, 7.9, top, "μ = h·W_μ + b_μ", colour="#dbe9f6", w=2.2)
    lv = _box(ax, 7.9, bottom, "ℓ = h·W_ℓ + b_ℓ", colour="#dbe9f6", w=2.2)
    z = _box(ax, 10.9, mid, "z = μ + e^(ℓ/2)·ε", colour="#e7f5e1", w=2.2)
    dec = _box(ax, 13.8, mid, "decoder\nσ(dense, 4 deconv)", w=1.9)
    rec = _box(ax, 16.9, mid, "recon\n(1/N) Σ_n Σ (y − x)²", colour="#fdebd0", w=2.1)
    loss = _box(ax, 19.5, mid, "loss =\nrecon + β·kl", colour="#fdebd0", w=1.5)
    kl = _box(ax, 21.8, mid, "kl = (1/N) Σ_n\nmax(KL_n, 16)", colour="#fdebd0", w=1.9, h=1.1)
    _edge(x, enc)
    _edge(enc, h, "dh")
    _edge(h, mu, "dμ·W_μᵀ", side=1)
    _edge(h, lv, "dℓ·W_ℓᵀ", side=-1)
    _edge(mu, z, "dz · 1", side=1)
    _edge(lv, z, "dz · ε · ½σ", side=-1)
    _edge(z, dec, "dz", side=1)
    _edge(dec, rec, "2(y − x)/N", side=1)
    _edge(rec, loss, "1", side=1)
    _edge(kl, loss, "β", side=-1)
    right = 21.8
    _route(ax, [(7.9 + 1.1, top), (right, top), (right, mid + 0.55)], "μ · β/N · mask", (15.0, top - 0.4), (-1, -1))
    _route(ax, [(7.9 + 1.1, bottom), (right, bottom), (right, mid - 0.55)], "½(e^ℓ − 1) · β/N · mask",
           (15.0, bottom + 0.4), (-1, 1))
    notes = ["h feeds both heads: dh = dμ·W_μᵀ + dℓ·W_ℓᵀ, the sum of the two.",
             "μ and ℓ each feed z and the KL: each one's gradient is the sum of the two arrows that reach it.",
             "mask: 1 for an image whose KL is above the free-bits floor, 0 below it (no KL gradient).",
             "Forward: black.  Backward: dashed red, labelled with the gradient of the loss it carries."]
    for i, note in enumerate(notes):
        ax.text(0.0, 6.45 - 0.32 * i, note, fontsize=9, va="top")
    return fig


FIGURES = {"im2col.png": im2col_figure, "dilated.png": dilated_figure, "painting.png": painting_figure,
           "parity.png": parity_figure, "vae_graph.png": vae_graph_figure}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "img"))
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    for name, make in FIGURES.items():
        save(make(), os.path.join(a.out, name))
        print(os.path.join(a.out, name))


if __name__ == "__main__":
    main()
