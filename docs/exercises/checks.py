"""The checks that judge the exercises of docs/exercises.md.

    python docs/exercises/checks.py                       check every function of skeletons.py
    python docs/exercises/checks.py kl_grads adam         check these only
    python docs/exercises/checks.py --answers             check answers.py instead

Each check runs a function on fixed random cases (odd, non-square, strided and padded ones among
them) and returns its largest error, measured as the test suite measures its own layers:
rel_error_each against finite differences of scratchvae's loop code (scratchvae.check.reference) in
float64, or against the package's own Adam. A correct answer gives 1e-12 to 1e-9 here; a wrong one
1e-3 or more. The pass mark is PASS. Exit status 0 when every checked function passes, 1 otherwise.
"""
import argparse
import importlib.util
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from scratchvae.model import losses  # noqa: E402
from scratchvae.check import reference  # noqa: E402
from scratchvae.check.gradcheck import numerical_grad, rel_error_each  # noqa: E402
from scratchvae.model.optim import Adam  # noqa: E402

PASS = 1e-7

# (N, C, H, W, C_out, kh, kw, sy, sx, ph, pw): square and not, strides 1–3, padding 0–2, a kernel the
# stride does not divide, windows that overlap and windows that do not, rows the last window never reads
CONV_CASES = [(2, 2, 7, 6, 3, 3, 2, 2, 1, 1, 0), (1, 3, 5, 5, 2, 3, 3, 1, 1, 1, 1), (2, 1, 8, 5, 2, 4, 2, 3, 2, 0, 2),
              (3, 2, 4, 4, 1, 2, 2, 2, 2, 0, 0), (1, 2, 6, 9, 2, 1, 3, 1, 3, 0, 1)]
# (N, C_in, H, W, C_out, kh, kw, sy, sx, ph, pw, opy, opx)
CONV_T_CASES = [(2, 2, 3, 2, 3, 3, 2, 2, 1, 1, 0, 1, 0), (1, 3, 2, 2, 2, 3, 3, 2, 2, 0, 0, 0, 0),
                (2, 1, 3, 4, 2, 4, 2, 3, 2, 1, 1, 2, 1), (1, 2, 1, 1, 2, 5, 5, 2, 2, 0, 0, 1, 1)]


class NotWritten(Exception):
    pass


def _call(fn, *args):
    try:
        return fn(*args)
    except NotImplementedError:
        raise NotWritten(f"{fn.__name__} is not written yet") from None


def _three_grads(fn, forward, rng, x, W, b, *args):
    """fn(x, W, dy, *args) → (dx, dW, db), against central differences of Σ (y − y₀)·dy for y = forward(x, W, b,
    *args), so that ∂/∂y = dy: the largest error of the three."""
    y0 = forward(x, W, b, *args)
    dy = rng.normal(size=y0.shape)

    def f():
        return float(((forward(x, W, b, *args) - y0) * dy).sum())
    got = _call(fn, x.copy(), W.copy(), dy.copy(), *args)
    return max(_compare(g, numerical_grad(f, wrt)) for g, wrt in zip(got, (x, W, b)))


def check_conv2d_backward(fn):
    worst = 0.0
    for k, (n, c, h, w, co, kh, kw, sy, sx, ph, pw) in enumerate(CONV_CASES):
        rng = np.random.default_rng(k)
        x, W, b = rng.normal(size=(n, c, h, w)), rng.normal(size=(co, c, kh, kw)), rng.normal(size=co)
        worst = max(worst, _three_grads(fn, reference.conv2d, rng, x, W, b, (sy, sx), (ph, pw)))
    return worst


def check_col2im(fn):
    """col2im is im2col's transpose: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ for every x and c, and its result is the
    gradient of f(x) = ⟨im2col(x), c⟩."""
    worst = 0.0
    for k, (n, c, h, w, _, kh, kw, sy, sx, ph, pw) in enumerate(CONV_CASES):
        rng = np.random.default_rng(10 + k)
        x = rng.normal(size=(n, c, h, w))
        g = rng.normal(size=reference.im2col(x, kh, kw, sy, sx, ph, pw).shape)
        got = _call(fn, g.copy(), h, w, sy, sx, ph, pw)
        worst = max(worst, _compare(got, numerical_grad(lambda: float((reference.im2col(x, kh, kw, sy, sx, ph, pw)
                                                                        * g).sum()), x)))
    return worst


def check_conv_transpose2d_backward(fn):
    worst = 0.0
    for k, (n, ci, h, w, co, kh, kw, sy, sx, ph, pw, opy, opx) in enumerate(CONV_T_CASES):
        rng = np.random.default_rng(20 + k)
        x, W, b = rng.normal(size=(n, ci, h, w)), rng.normal(size=(ci, co, kh, kw)), rng.normal(size=co)
        worst = max(worst, _three_grads(fn, reference.conv_transpose2d, rng, x, W, b, (sy, sx), (ph, pw), (opy, opx)))
    return worst


def _kl(mu, logvar):
    return float(losses.kl_per_image(mu, logvar).sum())


def check_kl_grads(fn):
    worst = 0.0
    for k, (n, d) in enumerate(((1, 1), (3, 5), (4, 32))):
        rng = np.random.default_rng(30 + k)
        mu, logvar = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 2
        dmu, dlogvar = _call(fn, mu.copy(), logvar.copy())
        worst = max(worst, _compare(dmu, numerical_grad(lambda: _kl(mu, logvar), mu)),
                    _compare(dlogvar, numerical_grad(lambda: _kl(mu, logvar), logvar)))
    return worst


def check_reparameterize(fn):
    """z = μ + e^(ℓ/2)·ε exactly, and its mean and spread over many ε are μ and e^(ℓ/2)."""
    rng = np.random.default_rng(40)
    mu, logvar, eps = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    worst = _compare(_call(fn, mu, logvar, eps), mu + np.exp(0.5 * logvar) * eps)
    many = _call(fn, np.full((200000, 1), 0.5), np.full((200000, 1), np.log(4.0)), rng.normal(size=(200000, 1)))
    if abs(many.mean() - 0.5) > 0.02 or abs(many.std() - 2.0) > 0.02:      # 200,000 draws: about 0.005 each
        worst = max(worst, 1.0)                                            # the draws are not N(0.5, 4)
    return worst


def check_reparameterize_backward(fn):
    worst = 0.0
    for k, (n, d) in enumerate(((1, 1), (3, 5), (4, 32))):
        rng = np.random.default_rng(50 + k)
        mu, logvar, eps, dz = (rng.normal(size=(n, d)) for _ in range(4))

        def f():                                            # Σ z·dz: ∂f/∂z = dz
            return float(((mu + np.exp(0.5 * logvar) * eps) * dz).sum())
        dmu, dlogvar = _call(fn, dz.copy(), mu.copy(), logvar.copy(), eps.copy())
        worst = max(worst, _compare(dmu, numerical_grad(f, mu)), _compare(dlogvar, numerical_grad(f, logvar)))
    return worst


def check_adam(fn):
    """Ten steps against scratchvae.model.optim.Adam on the same gradients, with the default betas and with others."""
    worst = 0.0
    for k, (lr, b1, b2, eps) in enumerate(((1e-3, 0.9, 0.999, 1e-8), (0.05, 0.5, 0.9, 1e-6))):
        rng = np.random.default_rng(60 + k)
        theta = rng.normal(size=(3, 4))
        p, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
        opt = Adam({"w": theta}, lr=lr, betas=(b1, b2), eps=eps)
        for t in range(1, 11):
            g = rng.normal(size=theta.shape) * 10.0 ** rng.integers(-3, 3)
            opt.step({"w": g})
            p, m, v = _call(fn, p, g, m, v, t, lr, b1, b2, eps)
            worst = max(worst, _compare(p, theta), _compare(m, opt.m["w"]), _compare(v, opt.v["w"]))
    return worst


def _compare(got, want):
    got = np.asarray(got, dtype=np.float64)
    if got.shape != np.shape(want):
        return float("inf")                                 # a wrong shape is as wrong as can be
    return rel_error_each(got, want)


CHECKS = {"conv2d_backward": check_conv2d_backward, "col2im": check_col2im,
          "conv_transpose2d_backward": check_conv_transpose2d_backward, "kl_grads": check_kl_grads,
          "reparameterize": check_reparameterize, "reparameterize_backward": check_reparameterize_backward,
          "adam": check_adam}


def check(name, fn):
    """(error, passed) for one function; error None when it is not written yet."""
    try:
        error = CHECKS[name](fn)
    except NotWritten:
        return None, False
    return error, error <= PASS


def load(path):
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"the functions to check (default: all): {', '.join(CHECKS)}")
    p.add_argument("--answers", action="store_true", help="check answers.py instead of skeletons.py")
    a = p.parse_args(argv)
    unknown = [n for n in a.names if n not in CHECKS]
    if unknown:
        p.error(f"no exercise named {', '.join(unknown)}; expected one of {', '.join(CHECKS)}")
    module = load(os.path.join(HERE, "answers.py" if a.answers else "skeletons.py"))
    ok = True
    for name in a.names or CHECKS:
        error, passed = check(name, getattr(module, name))
        ok &= passed
        if error is None:
            print(f"{name:27s} not written yet")
        else:
            print(f"{name:27s} error {error:.1e}  {'pass' if passed else 'FAIL'} (pass mark {PASS:.0e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
