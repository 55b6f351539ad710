"""The teaching figures of docs/ show what the code computes: docs/figures.py draws them from the package,
and these tests read the numbers back out of the drawn figures and compare them with the loop references."""
import importlib.util
import os
import re

import numpy as np
import pytest

from scratchvae import reference

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
    assert len(fig.axes[0].patches) == h * w + oh * ow + k * k * oh * ow     # cells, window outlines, matrix cells


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


def test_vae_graph_has_every_backward_path():
    fig = figures.vae_graph_figure()
    texts = " | ".join(t.get_text() for t in fig.axes[0].texts)
    for label in ("dμ·W_μᵀ", "dℓ·W_ℓᵀ", "dz · 1", "dz · ε · ½σ", "μ · β/N · mask", "½(e^ℓ − 1) · β/N · mask",
                  "2(y − x)/N"):
        assert label in texts, f"the VAE graph lost the backward label {label!r}"
    arrows = [p for p in fig.axes[0].patches if type(p).__name__ == "FancyArrowPatch"]
    dashed = [a for a in arrows if a.get_linestyle() not in ("-", "solid")]
    assert (len(arrows) - len(dashed), len(dashed)) == (12, 9)              # forward edges, backward edges


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
