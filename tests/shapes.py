"""Hypothesis strategies for convolution shapes: every valid combination is reachable."""
from dataclasses import dataclass

from hypothesis import strategies as st


@dataclass
class ConvCase:
    n: int
    cin: int
    cout: int
    h: int
    w: int
    kh: int
    kw: int
    sy: int
    sx: int
    ph: int
    pw: int
    opy: int = 0
    opx: int = 0


@st.composite
def conv_cases(draw, max_extra=6):
    """Conv2D shapes: batch 1–3, channels 1–4, kernel 1–6, stride 1–3, padding 0–2, H ≠ W allowed."""
    kh, kw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + max_extra))
    w = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + max_extra))
    return ConvCase(n=draw(st.integers(1, 3)), cin=draw(st.integers(1, 4)), cout=draw(st.integers(1, 4)),
                    h=h, w=w, kh=kh, kw=kw, sy=draw(st.integers(1, 3)), sx=draw(st.integers(1, 3)), ph=ph, pw=pw)


def _min_in(k, s, p, op):
    """Smallest input size whose transposed-convolution output (n−1)s − 2p + k + op is at least 1."""
    n = 1
    while (n - 1) * s - 2 * p + k + op < 1:
        n += 1
    return n


@st.composite
def conv_transpose_cases(draw, max_extra=4):
    """ConvTranspose2D shapes, output_padding < stride included."""
    kh, kw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    sy, sx = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    opy, opx = draw(st.integers(0, sy - 1)), draw(st.integers(0, sx - 1))
    hmin, wmin = _min_in(kh, sy, ph, opy), _min_in(kw, sx, pw, opx)
    return ConvCase(n=draw(st.integers(1, 3)), cin=draw(st.integers(1, 4)), cout=draw(st.integers(1, 4)),
                    h=draw(st.integers(hmin, hmin + max_extra)), w=draw(st.integers(wmin, wmin + max_extra)),
                    kh=kh, kw=kw, sy=sy, sx=sx, ph=ph, pw=pw, opy=opy, opx=opx)
