"""Finite-difference checks of hand-written gradients.

Every check turns the thing under test into a scalar function f of one array
and compares the analytic gradient with central differences in float64:

    ∂f/∂θᵢ ≈ (f(θ + h·eᵢ) − f(θ − h·eᵢ)) / 2h                 (per element)
    ⟨∇f, v⟩ ≈ (f(θ + h·v) − f(θ − h·v)) / 2h                   (along a direction v)

Per element, the difference is refined by Richardson extrapolation,
(4·D(h/2) − D(h))/3, which cancels the h² term of D's error: with h = 1e-3 the
truncation error is O(h⁴) and rounding (u·|f|/h, u = 2.2·10⁻¹⁶ float64's machine epsilon) stays
small even where the derivative is tiny next to f (a sigmoid far out, say).

For a layer, f = Σ (y − y₀)·g with a fixed random g and y₀ the output at the
unchanged input, so ∂f/∂y = g is what backward receives. Subtracting the constant y₀
changes no derivative, but makes f a sum of terms of size h instead of size |y·g|: its
rounding, u·|f|/h above, shrinks by as much (Σ y·g on 360 numbers rounded a derivative
by 10⁻¹¹, 1.4·10⁻⁷ of a small entry, against 10⁻¹³ now).

The error reported is ``rel_error_each``: every element's difference over its own
magnitude, max_i |aᵢ − bᵢ| / max(|aᵢ| + |bᵢ|, floor·S), S = max(|a| + |b|), floor = 1e-4.
``rel_error``, the largest difference over the largest magnitude (max|a − b| / S), lets a
wrong small entry hide behind a large one: an entry 10⁻⁴ of S that is off by 100% moves it
by 10⁻⁴ only. Measured against its own size it counts in full, down to 10⁻⁴ of the largest;
below that, an entry is measured against 10⁻⁴·S, where the differences' rounding (u·|f|/h)
would otherwise dominate. The per-element error is never smaller than rel_error.
"""
import contextlib

import numpy as np

from ..ops.devices import to_numpy, xp_of
from ..model.layers import ReLU


def rel_error(a, b):
    """max|a − b| / max(1e-8, max(|a| + |b|)), on the host, in float64: rel_error_each with the floor at
    the largest magnitude, so that every difference is divided by it."""
    return rel_error_each(a, b, floor=1.0)


def rel_error_each(a, b, floor=1e-4):
    """max_i |aᵢ − bᵢ| / max(|aᵢ| + |bᵢ|, floor·S), S = max(|a| + |b|): each element against its own
    size, down to floor times the largest. On the host, in float64; at least rel_error(a, b)."""
    a = to_numpy(a).astype(np.float64)
    b = to_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error needs equal shapes, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    size = np.abs(a) + np.abs(b)
    scale = max(1e-8, float(size.max()))
    return float(np.max(np.abs(a - b) / np.maximum(size, floor * scale)))


def numerical_grad(f, x, h=1e-3):
    """Central differences of a scalar f() with respect to every element of x, changed in place,
    refined by Richardson extrapolation: (4·D(h/2) − D(h))/3 (smooth_central_difference)."""
    def evaluate():
        return float(f()), []                                    # a layer's f: no kinks to watch
    return xp_of(x).asarray(per_element(evaluate, x, h), dtype=x.dtype)


def per_element(evaluate, x, h):
    """∂f/∂xᵢ for every element of x, each by smooth_central_difference (x is moved in place, one element
    at a time, and put back): float64 (x.shape) on the host. evaluate() → (f, masks) at the current x."""
    if not x.flags.c_contiguous:
        raise ValueError("finite differences need a C-contiguous array they can change in place")
    flat = x.reshape(-1)                                         # a view: moving flat moves x
    grad = np.zeros(x.size)
    for i in range(flat.size):
        old = flat[i].copy()

        def move(t):
            flat[i] = old + t
        grad[i] = smooth_central_difference(evaluate, move, h)
    return grad.reshape(x.shape)


def directional_grad(f, x, v, h=1e-6):
    """(f(x + h·v) − f(x − h·v)) / 2h, changing x in place and restoring it."""
    old = x.copy()
    x += h * v
    fp = float(f())
    x[...] = old - h * v
    fm = float(f())
    x[...] = old
    return (fp - fm) / (2 * h)


def check_layer(layer, x, rng=0, h=1e-3):
    """Compare a layer's backward with central differences, for its input and every parameter.

    Returns {name: rel_error_each}, "x" for the input. Needs float64 (a layer built with dtype float64).
    """
    xp = xp_of(x)
    rng = np.random.default_rng(rng)
    x = x.copy()
    y = layer.forward(x)
    y0 = y.copy()                                             # f's constant: only the change is summed
    g = xp.asarray(rng.normal(size=y.shape))                 # ∂f/∂y
    dx = layer.backward(g)
    analytic = {"x": dx, **{k: v.copy() for k, v in layer.grads.items()}}

    def f():
        return xp.sum((layer.forward(x) - y0) * g)

    errors = {"x": rel_error_each(analytic["x"], numerical_grad(f, x, h))}
    for name, p in layer.params.items():
        errors[name] = rel_error_each(analytic[name], numerical_grad(f, p, h))
    return errors


def smooth_central_difference(evaluate, move, h):
    """The derivative along v by central differences, where f is smooth over the whole step.

    evaluate() → (f, masks) at the current point; move(t) puts the point at θ + t·v. The masks
    mark where f has kinks (an image's KL against the free-bits floor): h is halved until every
    mask is the same at θ ± h and θ ± h/2. Then D(h) and D(h/2), each (f(θ + s·v) − f(θ − s·v))/2s,
    are combined as (4·D(h/2) − D(h))/3, which cancels the h² error term.
    """
    for _ in range(40):
        values, masks = {}, []
        for t in (h, -h, h / 2, -h / 2):
            move(t)
            values[t], m = evaluate()
            masks.append(m)
        move(0)
        if all(a.shape == b.shape and bool((a == b).all()) for other in masks[1:] for a, b in zip(masks[0], other)):
            d1 = (values[h] - values[-h]) / (2 * h)
            d2 = (values[h / 2] - values[-h / 2]) / h
            return (4 * d2 - d1) / 3
        h /= 2
    raise RuntimeError("no step small enough to stay on one side of every kink")


class HeldReLU(ReLU):
    """A ReLU whose on/off pattern is fixed: y = x·mask, dx = dy·mask (relu_patterns_held puts it in
    place of each ReLU while it checks, and puts the ReLU back after)."""

    def __init__(self, relu, mask):
        super().__init__(relu.dtype, relu.device, relu.inplace)
        self.mask = mask

    def forward(self, x):
        return self.xp.multiply(x, self.mask, out=x if self.inplace else None)

    def backward(self, dy):
        return self.xp.multiply(dy, self.mask, out=dy if self.inplace else None)


@contextlib.contextmanager
def relu_patterns_held(model, x, eps):
    """Hold every ReLU's on/off pattern at what it is at the current parameters.

    The loss is then smooth in the parameters (ReLUs were its kinks) and has the same gradient
    here, so central differences may take a large step: on a loss of ~10³ the derivative along a unit
    direction in one parameter can be ~10⁻⁵ (10⁻⁸ of the loss: the default model's conv3 weights at
    initialisation), and rounding (u·|f|/h) needs h ≈ 10⁻² to stay far below it, far more than a ReLU allows.
    Each ReLU in the model's encoder and decoder lists is swapped for a HeldReLU with its mask, and back.
    """
    model.loss(x, eps)
    lists = (model.encoder, model.decoder)
    kept = [list(layers) for layers in lists]
    for layers in lists:
        layers[:] = [HeldReLU(r, r.cache > 0) if isinstance(r, ReLU) else r for r in layers]
    try:
        yield
    finally:
        for layers, old in zip(lists, kept):
            layers[:] = old


def _model_evaluator(model, x, eps):
    def evaluate():
        value = float(model.loss(x, eps)["loss"])
        return value, [model.above_floor]              # which images are above the free-bits floor
    return evaluate


def _analytic(model, x, eps):
    model.loss(x, eps)
    model.backward()
    return {k: g.copy() for k, g in model.grads.items()}


def check_model(model, x, eps, h=1e-2, floor=1e-2):
    """Per-element central differences of model.loss(x, eps)["loss"] for every parameter,
    against model.backward(); eps (the reparameterization noise) held fixed.
    Returns {parameter name: rel_error_each(…, floor)}.

    The floor is 1e-2 here, not the layers' 1e-4: the whole loss is a sum over every pixel, ~10²,
    and its differences resolve a derivative to about 10⁻¹¹ (measured: up to 10³·u·|f|/h), while a
    parameter's gradient entries run from ~10⁻² down to 0. Entries at 1% of the largest and above
    count in full; an entry below is still caught when it is off by more than tol·(1% of the
    largest), 100 times finer than rel_error."""
    grads = _analytic(model, x, eps)
    evaluate = _model_evaluator(model, x, eps)
    with relu_patterns_held(model, x, eps):
        return {k: rel_error_each(grads[k], per_element(evaluate, p, h), floor) for k, p in model.params.items()}


def check_model_directions(model, x, eps, directions=3, rng=0, h=1e-2):
    """Directional derivatives of the loss along random unit directions: all parameters at once,
    then each parameter alone. Returns {name: relative difference}, "all/i" for joint directions.
    For the full model, where per-element differences would take hours."""
    xp = model.xp
    rng = np.random.default_rng(rng)
    grads = _analytic(model, x, eps)
    evaluate = _model_evaluator(model, x, eps)

    def along(arrays, vs):
        old = [a.copy() for a in arrays]

        def move(t):
            for a, o, v in zip(arrays, old, vs):
                a[...] = o + t * v
        return smooth_central_difference(evaluate, move, h)

    def unit(shape, scale=1.0):
        v = rng.normal(size=shape)
        return xp.asarray(v * (scale / np.linalg.norm(v))).astype(model.dtype)

    total = sum(p.size for p in model.params.values())
    names = list(model.params)
    errors = {}
    with relu_patterns_held(model, x, eps):
        for i in range(directions):                    # every parameter moved together, |v| = 1
            vs = [unit(model.params[k].shape, np.sqrt(model.params[k].size / total)) for k in names]
            numeric = along([model.params[k] for k in names], vs)
            errors[f"all/{i}"] = rel_error(numeric, sum(float(xp.sum(grads[k] * v)) for k, v in zip(names, vs)))
        for k in names:                                # and each parameter on its own
            v = unit(model.params[k].shape)
            errors[k] = rel_error(along([model.params[k]], [v]), float(xp.sum(grads[k] * v)))
    return errors
