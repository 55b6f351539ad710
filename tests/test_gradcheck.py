"""The checker itself: its error measures, and that a wrong gradient fails it."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from scratchvae import VAE
from scratchvae.check.gradcheck import (HeldReLU, check_layer, check_model, numerical_grad, rel_error, rel_error_each,
                                  relu_patterns_held)
from scratchvae.model.layers import Dense, Heads, ReLU


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


def test_held_relu_patterns_wrap_the_model_and_leave_it_as_it_was():
    model = VAE(input_shape=(1, 12, 12), latent_dim=2, encoder=((3, 4, 2),), decoder=((3, 4, 2), (None, 4, 1)),
                dense_size=4, dtype=np.float64, seed=1)
    rng = np.random.default_rng(0)
    x, eps = rng.random((2, 1, 12, 12)), rng.normal(size=(2, 2))
    before = (list(model.encoder), list(model.decoder))
    relus = [layer for layer in before[0] + before[1] if isinstance(layer, ReLU)]
    assert len(relus) == 2                                       # after conv1 and after deconv1
    with relu_patterns_held(model, x, eps):
        held = [layer for layer in model.encoder + model.decoder if isinstance(layer, HeldReLU)]
        assert len(held) == 2 and not any(layer in relus for layer in model.encoder + model.decoder)
        w = model.params["encoder.conv1.W"]
        w += 0.5                                                 # far enough to turn some ReLUs on or off
        held_loss = float(model.loss(x, eps)["loss"])
        w -= 0.5
    assert (model.encoder, model.decoder) == before              # the very same layers back, in order
    w += 0.5
    free_loss = float(model.loss(x, eps)["loss"])                # ReLUs follow the input again
    assert held_loss != free_loss


class _OutputAsMask(ReLU):
    """The ReLU as the GPU runs it in place, written with NumPy: y over x, and y itself kept as the mask (y > 0
    exactly where x > 0), so the array the ReLU keeps is the one the layer before writes its next output into."""

    def forward(self, x):
        self.cache = np.maximum(x, 0, out=x)
        return x

    def backward(self, dy):
        return np.multiply(dy, self.cache > 0, out=dy)


def test_a_held_pattern_is_the_ones_at_the_start_even_where_the_relu_keeps_its_output():
    """relu_patterns_held copies each pattern out (ReLU.cache > 0): a HeldReLU holding the kept array itself
    would multiply the next input by the last output (or, where that array is a reused buffer, by itself)."""
    model = VAE(input_shape=(1, 12, 12), latent_dim=2, encoder=((3, 4, 2),), decoder=((3, 4, 2), (None, 4, 1)),
                dense_size=4, dtype=np.float64, seed=1)
    for layers in (model.encoder, model.decoder):
        layers[:] = [_OutputAsMask(inplace=True) if isinstance(r, ReLU) else r for r in layers]
    rng = np.random.default_rng(0)
    x, eps = rng.random((2, 1, 12, 12)), rng.normal(size=(2, 2))
    errors = check_model(model, x, eps)
    assert max(errors.values()) < 1e-6, errors


def test_heads_send_back_the_sum_of_both_gradients():
    rng = np.random.default_rng(3)
    heads = Heads(Dense(5, 2, dtype=np.float64, rng=1), Dense(5, 2, dtype=np.float64, rng=2))
    x, g1, g2 = rng.normal(size=(4, 5)), rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    heads.forward(x)
    dx = heads.backward((g1, g2))

    def f():
        mu, logvar = heads.forward(x)
        return float((mu * g1).sum() + (logvar * g2).sum())
    assert rel_error_each(dx, numerical_grad(f, x)) < 1e-9


def test_a_layer_built_of_others_answers_like_one_layer():
    """Heads and DenseThenDeconv are Layers: their params and grads are their sublayers', named "sub.name",
    the same arrays, and walk() finds the sublayers; a layer check covers them whole."""
    from scratchvae import ConvTranspose2D
    from scratchvae.model.layers import DenseThenDeconv
    mu, logvar = Dense(5, 2, dtype=np.float64, rng=1), Dense(5, 2, dtype=np.float64, rng=2)
    heads = Heads(mu, logvar)
    assert list(heads.params) == ["mu.W", "mu.b", "logvar.W", "logvar.b"]
    assert heads.params["logvar.W"] is logvar.params["W"] and heads.grads["mu.b"] is mu.grads["b"]
    assert list(heads.walk()) == [heads, mu, logvar] and mu.params.keys() == {"W", "b"}
    joined = DenseThenDeconv(Dense(3, 4, dtype=np.float64, rng=3), ConvTranspose2D(4, 2, 3, 2, dtype=np.float64, rng=4))
    errors = check_layer(joined, np.random.default_rng(5).normal(size=(2, 3)))
    assert set(errors) == {"x", "dense.W", "dense.b", "deconv.W", "deconv.b"} and max(errors.values()) < 1e-7, errors
