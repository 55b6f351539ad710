"""Draw the teaching figures of docs/ from the package's own code.

    python docs/figures.py            write docs/img/im2col.png, painting.png and vae_graph.png
    python docs/figures.py --out DIR  write them somewhere else

Every number in a figure is computed by scratchvae (im2col, ConvTranspose2D), not typed in,
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from scratchvae import ConvTranspose2D  # noqa: E402
from scratchvae.im2col import im2col  # noqa: E402
from scratchvae.pictures import save  # noqa: E402

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
    """An h×w image holding 0…h·w−1, its k×k windows outlined in colour, and the matrix im2col makes:
    one column per window, in the window's colour."""
    x = np.arange(h * w, dtype=np.float64).reshape(1, 1, h, w)
    col = im2col(x, k, k, stride, stride, 0, 0)                  # (1, 1, k, k, oh, ow)
    oh, ow = col.shape[4:]
    mat = col.reshape(k * k, oh * ow)                            # row (j, i), column (r, s)
    fig, ax = _canvas(w + 3 + oh * ow, max(h, k * k) + 1.5, (2.0 + 0.55 * (w + oh * ow), 3.6))
    grid(ax, x[0, 0], 0, 0, label=f"x: {h}×{w}, window {k}×{k}, stride {stride}")
    for p in range(oh * ow):                                     # outline window p, inset so overlaps show
        r, s = divmod(p, ow)
        inset = 0.06 + 0.05 * (p % 3)
        ax.add_patch(Rectangle((s * stride + inset, r * stride + inset), k - 2 * inset, k - 2 * inset,
                               fill=False, edgecolor=COLOURS[p % len(COLOURS)], lw=2))
    colours = [[COLOURS[c % len(COLOURS)] + "55" for c in range(oh * ow)] for _ in range(k * k)]
    grid(ax, mat, w + 2, 0, colours, label="im2col(x): one column per window")
    for j in range(k * k):
        ax.text(w + 1.9, j + 0.5, f"({j // k}, {j % k})", ha="right", va="center", fontsize=8)
    ax.text(w + 1.9, -0.05, "(j, i)", ha="right", va="bottom", fontsize=8)
    fig.suptitle("im2col copies every window into a column; the convolution is then one matrix product",
                 fontsize=10, y=0.98)
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
    ax.text(mid[0], mid[1], backward_label, ha="center", va="center", fontsize=8, color="#c0392b",
            bbox=dict(facecolor="white", edgecolor="none", pad=0.5))


def vae_graph_figure():
    """The VAE's graph: forward in black, backward in dashed red. h feeds both heads (its gradient is a
    sum), μ and ℓ = log σ² each feed two terms (z and the KL: their gradients add), and the free-bits
    mask decides which images the KL's gradient reaches."""
    fig = Figure(figsize=(14, 5.0))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-0.3, 18.1)
    ax.set_ylim(0.1, 6.0)
    ax.axis("off")
    x = _box(ax, 0.8, 2.6, "x\n(N, 3, 64, 64)", w=1.6)
    enc = _box(ax, 3.0, 2.6, "encoder\n4 conv + ReLU", w=1.8)
    h = _box(ax, 5.3, 2.6, "h\n(N, 1024)", w=1.4)
    mu = _box(ax, 7.9, 4.3, "μ = h·W_μ + b_μ", colour="#dbe9f6", w=2.2)
    lv = _box(ax, 7.9, 0.9, "ℓ = h·W_ℓ + b_ℓ", colour="#dbe9f6", w=2.2)
    z = _box(ax, 11.4, 4.3, "z = μ + e^(ℓ/2)·ε", colour="#e7f5e1", w=2.2)
    kl = _box(ax, 11.4, 0.9, "KL_n, floored:\nmax(KL_n, 16)", colour="#fdebd0", w=2.2)
    dec = _box(ax, 14.3, 4.3, "decoder\nσ(dense, 4 deconv)", w=1.8)
    rec = _box(ax, 17.0, 4.3, "recon\nΣ (y − x)²", colour="#fdebd0", w=1.5)
    loss = _box(ax, 17.0, 0.9, "loss =\nrecon + β·kl", colour="#fdebd0", w=1.5)
    _edge(x, enc)
    _edge(enc, h, "dh")
    _edge(h, mu, "dμ·W_μᵀ", side=1)
    _edge(h, lv, "dℓ·W_ℓᵀ", side=-1)
    _edge(mu, z, "dz · 1", side=1)
    _edge(lv, z, "dz · ε · ½σ", side=-1, at=0.72)
    _edge(mu, kl, "μ · β/N · mask", side=1, at=0.72)
    _edge(lv, kl, "½(e^ℓ − 1) · β/N · mask", side=-1)
    _edge(z, dec, "dz", side=1)
    _edge(dec, rec, "2(y − x)/N", side=1)
    _edge(rec, loss)
    _edge(kl, loss)
    notes = ["h feeds both heads: dh = dμ·W_μᵀ + dℓ·W_ℓᵀ, the sum of the two.",
             "μ and ℓ each feed z and the KL: each one's gradient is the sum of the two arrows that reach it.",
             "mask: 1 for an image whose KL is above the free-bits floor, 0 below it (no KL gradient).",
             "Forward: black.  Backward: dashed red, labelled with the gradient it carries."]
    for i, note in enumerate(notes):
        ax.text(0.0, 5.85 - 0.32 * i, note, fontsize=9, va="top")
    return fig


FIGURES = {"im2col.png": im2col_figure, "painting.png": painting_figure, "vae_graph.png": vae_graph_figure}


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
