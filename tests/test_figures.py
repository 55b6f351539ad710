"""The teaching figures of docs/ show what the code computes: docs/figures.py draws them from the package,
and these tests read the numbers back out of the drawn figures and compare them with the loop references."""
import importlib.util
import os
import re

import numpy as np
import pytest

from scratchvae import Conv2D, ConvTranspose2D

from scratchvae.check import reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("docfigures", os.path.join(ROOT, "docs", "figures.py"))
figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(figures)


def cell_numbers(fig):
    """Every number written in a cell of the figure, in drawing order."""
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    return [float(s) for s in texts if re.fullmatch(r"-?\d+(\.\d+)?", s)]


@pytest.mark.parametrize("h, w, k, stride", [(4, 4, 2, 1), (5, 4, 3, 2), (3, 6, 2, 2)])
def test_im2col_figure_shows_what_im2col_computes(h, w, k, stride):
    fig = figures.im2col_figure(h, w, k, stride)
    x = np.arange(h * w, dtype=np.float64).reshape(1, 1, h, w)
    expected = reference.im2col(x, k, k, stride, stride, 0, 0)[0, 0]        # (k, k, oh, ow), the loop version
    numbers = cell_numbers(fig)
    assert numbers[:h * w] == list(range(h * w))                            # the image, row by row
    assert numbers[h * w:] == expected.reshape(k * k, -1).ravel().tolist()  # then the matrix, row by row
    oh, ow = expected.shape[2:]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert [t for t in texts if re.fullmatch(r"\(\d+, \d+\)", t)][:oh * ow] == \
        [f"({r}, {s})" for r in range(oh) for s in range(ow)]               # each column names its window (r, s)
    patches = fig.axes[0].patches
    assert len(patches) == h * w + oh * ow * h * w + k * k * oh * ow       # image, one thumbnail per column, matrix
    for p in range(oh * ow):                                                # thumbnail p shades window p's pixels
        r, s = divmod(p, ow)
        cells = patches[h * w + p * h * w:h * w + (p + 1) * h * w]
        shaded = {(a, b) for a in range(h) for b in range(w) if cells[a * w + b].get_facecolor()[:3] != (1, 1, 1)}
        assert shaded == {(r * stride + j, s * stride + i) for j in range(k) for i in range(k)}


def test_dilated_figure_is_the_convolutions_input_gradient():
    """The dilated, padded dy correlated with the flipped kernel, recomputed here by loops, is what the
    Conv2D layer's own backward gives."""
    fig = figures.dilated_figure()
    numbers = cell_numbers(fig)
    dy = np.array(numbers[:4]).reshape(2, 2)
    spread = np.array(numbers[4:53]).reshape(7, 7)
    flipped = np.array(numbers[53:62]).reshape(3, 3)
    dx = np.array(numbers[62:]).reshape(5, 5)
    expected_spread = np.zeros((7, 7))
    expected_spread[2:5:2, 2:5:2] = dy                                      # sy − 1 zeros between, kh − 1 around
    assert np.array_equal(spread, expected_spread)
    corr = np.array([[np.sum(spread[p:p + 3, q:q + 3] * flipped) for q in range(5)] for p in range(5)])
    assert np.array_equal(corr, dx)
    conv = Conv2D(1, 1, 3, stride=2, dtype=np.float64)
    conv.params["W"][...] = flipped[::-1, ::-1]
    conv.forward(np.zeros((1, 1, 5, 5)))
    assert np.array_equal(conv.backward(dy[None, None])[0, 0], dx)


def test_parity_figure_shows_each_phase_as_a_small_convolution():
    fig = figures.parity_figure()
    numbers = cell_numbers(fig)
    W = np.array(numbers[:9]).reshape(3, 3)
    y = np.array(numbers[9:34]).reshape(5, 5)
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    layer = ConvTranspose2D(1, 1, 3, stride=2, dtype=np.float64)
    layer.params["W"][...] = W
    layer.params["b"][...] = 0
    assert np.array_equal(layer.forward(x)[0, 0], y)
    x_ext = np.pad(x[0, 0], 1)                                              # F = −1: a zero row and column around x
    rest = numbers[34:]
    for phi in range(2):
        for psi in range(2):
            wp, rest = np.array(rest[:4]).reshape(2, 2), rest[4:]
            sub = y[phi::2, psi::2]
            shown, rest = np.array(rest[:sub.size]).reshape(sub.shape), rest[sub.size:]
            assert np.array_equal(shown, sub)
            corr = np.array([[np.sum(x_ext[g:g + 2, e:e + 2] * wp) for e in range(3)] for g in range(3)])
            assert np.array_equal(corr[:sub.shape[0], :sub.shape[1]], sub)  # a stride-1 correlation with Wp
    assert rest == []


def test_painting_figure_shows_the_transposed_convolution():
    fig = figures.painting_figure(stride=2)
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = reference.conv_transpose2d(x, np.ones((1, 1, 3, 3)), [0.0], stride=2)[0, 0]   # the painting loops
    numbers = cell_numbers(fig)
    oh, ow = y.shape
    assert numbers[:4] == [1, 2, 3, 4]
    paints = np.array(numbers[4:4 + 4 * oh * ow]).reshape(4, oh, ow)        # one grid per input pixel
    assert np.array_equal(paints.sum(axis=0), y)                            # the paints add up to y
    assert np.array_equal(np.array(numbers[4 + 4 * oh * ow:]).reshape(oh, ow), y)
    grey = [p for p in fig.axes[0].patches if p.get_facecolor()[:3] == pytest.approx((0xdd / 255,) * 3)]
    overlaps = int(((paints != 0).sum(axis=0) > 1).sum())                   # pixels more than one paint reaches
    assert len(grey) == overlaps == 9                                       # row 2 and column 2 of a 5×5


def _segments(arrow):
    """The straight pieces of a drawn arrow, centre to centre (posA → posB) or along its path."""
    if getattr(arrow, "_posA_posB", None) is not None:
        return [tuple(map(tuple, arrow._posA_posB))]
    v = arrow._path_original.vertices
    return [(tuple(a), tuple(b)) for a, b in zip(v, v[1:])]


def _cross(s, t):
    """Whether two segments cross at a point inside both (touching at an end does not count)."""
    (a, b), (c, d) = np.array(s), np.array(t)

    def side(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))
    return side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0


def test_vae_graph_has_every_backward_path_and_no_crossings():
    fig = figures.vae_graph_figure()
    texts = " | ".join(t.get_text() for t in fig.axes[0].texts)
    for label in ("dμ·W_μᵀ", "dℓ·W_ℓᵀ", "dz · 1", "dz · ε · ½σ", "μ · β/N · mask", "½(e^ℓ − 1) · β/N · mask",
                  "2(y − x)/N", "(1/N) Σ_n Σ (y − x)²"):
        assert label in texts, f"the VAE graph lost the label {label!r}"
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "1" in labels and "β" in labels                                  # what leaves the loss box
    arrows = [p for p in fig.axes[0].patches if type(p).__name__ == "FancyArrowPatch"]
    forward = [a for a in arrows if a.get_linestyle() in ("-", "solid")]
    assert (len(forward), len(arrows) - len(forward)) == (12, 11)           # forward edges, backward edges
    pieces = [(i, seg) for i, a in enumerate(forward) for seg in _segments(a)]
    crossings = [(i, j) for i, s in pieces for j, t in pieces if i < j and _cross(s, t)]
    assert not crossings, f"forward edges cross: {crossings}"
    assert _cross(((0, 0), (2, 2)), ((0, 2), (2, 0))) and not _cross(((0, 0), (1, 1)), ((1, 1), (2, 0)))


def test_the_script_writes_every_figure_and_the_docs_show_them(tmp_path, capsys):
    figures.main(["--out", str(tmp_path)])
    docs = "".join(open(os.path.join(ROOT, "docs", p), encoding="utf-8").read()
                   for p in os.listdir(os.path.join(ROOT, "docs")) if p.endswith(".md"))
    for name in figures.FIGURES:
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        committed = os.path.join(ROOT, "docs", "img", name)
        assert os.path.isfile(committed), f"docs/img/{name} is missing: run python docs/figures.py"
        assert f"](img/{name})" in docs, f"no page shows img/{name}"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
