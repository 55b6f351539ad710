"""The checker itself: its error measures, and that a wrong gradient fails it."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scratchvae.gradcheck import check_layer, rel_error, rel_error_each
from scratchvae.layers import Dense


def test_a_wrong_small_entry_cannot_hide():
    a, b = np.array([1.0, -3.0, 1e-3]), np.array([1.0, -3.0, 2e-3])   # the small entry off by half its size
    assert rel_error(a, b) < 2e-4                                      # hidden behind the large ones
    assert rel_error_each(a, b) > 0.3                                  # counted in full
    # entries below floor × the largest are measured against that floor (rounding lives there)
    tiny = rel_error_each(np.array([1.0, 1e-9]), np.array([1.0, 2e-9]))
    assert 1e-6 < tiny < 2e-5


@given(hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e3, 1e3)),
       hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e3, 1e3)))
def test_per_element_error_is_never_below_the_global_one(a, b):
    n = min(len(a), len(b))
    assert rel_error_each(a[:n], b[:n]) >= rel_error(a[:n], b[:n])


class _SmallBiasBug(Dense):
    """A Dense whose bias gradient is wrong in its one small entry only."""

    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["b"][-1] *= 1.5
        return dx


def test_check_layer_catches_a_wrong_small_entry():
    layer = _SmallBiasBug(3, 4, dtype=np.float64, rng=0)
    x = np.random.default_rng(1).normal(size=(5, 3))
    errors = check_layer(layer, x, rng=2)
    # (whatever the draw, the wrong entry is off by a third of its own size)
    assert errors["b"] > 0.1, errors
    assert errors["W"] < 1e-7 and errors["x"] < 1e-7, errors


@given(hnp.arrays(np.float64, 7, elements=st.floats(-1e3, 1e3)), hnp.arrays(np.float64, 7, elements=st.floats(-1e3, 1e3)))
def test_rel_error_is_its_formula(a, b):
    assert rel_error(a, b) == np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a) + np.abs(b)))
