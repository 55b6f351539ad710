"""Finite-difference checks of hand-written gradients.

Every check turns the thing under test into a scalar function f of one array
and compares the analytic gradient with central differences in float64:

    ∂f/∂θᵢ ≈ (f(θ + h·eᵢ) − f(θ − h·eᵢ)) / 2h                 (per element)
    ⟨∇f, v⟩ ≈ (f(θ + h·v) − f(θ − h·v)) / 2h                   (along a direction v)

For a layer, f = Σ y·g with a fixed random g, so ∂f/∂y = g is what backward
receives. The error reported is ``rel_error``: the largest difference over the
largest magnitude, max|a − b| / max(1e-8, max(|a| + |b|)).
"""
import numpy as np

from .backend import to_numpy, xp_of


def rel_error(a, b):
    """max|a − b| / max(1e-8, max(|a| + |b|)), on the host, in float64."""
    a = to_numpy(a).astype(np.float64)
    b = to_numpy(b).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error needs equal shapes, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(1e-8, float(np.max(np.abs(a) + np.abs(b)))))


def numerical_grad(f, x, h=1e-6):
    """Central differences of a scalar f() with respect to every element of x, changed in place."""
    xp = xp_of(x)
    grad = xp.zeros_like(x)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_grad needs a C-contiguous array it can change in place")
    flat, gflat = x.reshape(-1), grad.reshape(-1)                # views of x and grad
    for i in range(flat.size):
        old = flat[i].copy()
        flat[i] = old + h
        fp = float(f())
        flat[i] = old - h
        fm = float(f())
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def directional_grad(f, x, v, h=1e-6):
    """(f(x + h·v) − f(x − h·v)) / 2h, changing x in place and restoring it."""
    old = x.copy()
    x += h * v
    fp = float(f())
    x[...] = old - h * v
    fm = float(f())
    x[...] = old
    return (fp - fm) / (2 * h)


def check_layer(layer, x, rng=0, h=1e-6):
    """Compare a layer's backward with central differences, for its input and every parameter.

    Returns {name: rel_error}, "x" for the input. Needs float64 (a layer built with dtype float64).
    """
    xp = xp_of(x)
    rng = np.random.default_rng(rng)
    x = x.copy()
    y = layer.forward(x)
    g = xp.asarray(rng.normal(size=y.shape))                 # ∂f/∂y
    dx = layer.backward(g)
    analytic = {"x": dx, **{k: v.copy() for k, v in layer.grads.items()}}

    def f():
        return xp.sum(layer.forward(x) * g)

    errors = {"x": rel_error(analytic["x"], numerical_grad(f, x, h))}
    for name, p in layer.params.items():
        errors[name] = rel_error(analytic[name], numerical_grad(f, p, h))
    return errors
