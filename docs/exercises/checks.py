"""The checks that judge the exercises of docs/exercises.md.

    python docs/exercises/checks.py                       check every function of skeletons.py
    python docs/exercises/checks.py kl_grads adam         check these only
    python docs/exercises/checks.py --answers             check answers.py instead
    python docs/exercises/checks.py --brief               one line per exercise

Each check runs a function on fixed random cases (odd, non-square, strided and padded ones among them) and
prints, for every case, the error of every gradient the function returns (dx, dW, db, …), then the largest,
with the case and the gradient it came from. The error is measured as the test suite measures its own layers:
rel_error_each (each entry against its own size) against central differences, in float64, of plain forward code:
scratchvae's (scratchvae/check/reference.py) for the warm-ups, transfer.py's for Part 1, whole_loss.py's for
Part 2; Adam is compared with the package's own. On this machine the answers give from 1e-16 (Adam, where
no differences are taken) to 3e-8 (the KL, whose terms reach e^6); the pass mark is PASS, 1e-7. The wrong
answers the tests try give from 4e-5 (Adam without its eps) to 1.

A function that raises fails that case, with the exception and the line it came from, and the other cases
and exercises still run. Needs NumPy alone. Exit status 0 when every checked function passes, 1 otherwise.
"""
import argparse
import importlib.util
import math
import os
import sys
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(os.path.dirname(HERE))]       # transfer.py, whole_loss.py; the package
import transfer  # noqa: E402
import whole_loss  # noqa: E402
from scratchvae.model import losses  # noqa: E402
from scratchvae.check import reference  # noqa: E402
from scratchvae.check.gradcheck import numerical_grad, per_element, rel_error_each  # noqa: E402
from scratchvae.model.optim import Adam  # noqa: E402

PASS = 1e-7


class NotWritten(Exception):
    pass


class WrongShape(ValueError):
    """A returned gradient that is no gradient at all: not the shape of what it is the gradient of, or not finite."""


class Case:
    """One case of a check: its label, and the error of each gradient ({name: error}, None for one not written
    yet), or the one line saying why it failed outright (an exception, a wrong shape)."""

    def __init__(self, label, errors=None, failure=None):
        self.label, self.errors, self.failure = label, errors or {}, failure

    @property
    def error(self):
        if self.failure is not None:
            return math.inf
        return max((e for e in self.errors.values() if e is not None), default=0.0)


class Report:
    """Every case of one exercise. error: the largest of them (inf when one failed outright); worst: where."""

    def __init__(self, name, cases, not_written=False):
        self.name, self.cases, self.not_written = name, cases, not_written

    @property
    def error(self):
        return None if self.not_written else max((c.error for c in self.cases), default=0.0)

    @property
    def passed(self):
        return not self.not_written and self.error <= PASS and not self.missing

    @property
    def missing(self):
        """The gradients returned as None (written up to there): the first of them, or None."""
        return next((k for c in self.cases for k, e in c.errors.items() if e is None), None)

    @property
    def worst(self):
        """(case label, gradient name or the failure) of the largest error."""
        case = max(self.cases, key=lambda c: c.error)
        if case.failure is not None:
            return case.label, case.failure
        return case.label, max((k for k, e in case.errors.items() if e is not None), key=case.errors.get)

    def first_wrong(self):
        """The first gradient, in the order the case lists them, whose error is above the pass mark."""
        for c in self.cases:
            for k, e in c.errors.items():
                if e is not None and e > PASS:
                    return c.label, k, e
        return None


def _call(fn, *args):
    try:
        return fn(*args)
    except NotImplementedError:
        raise NotWritten(f"{fn.__name__} is not written yet") from None


def _compare(name, got, want):
    if got is None:
        return None
    got = np.asarray(got, dtype=np.float64)
    if got.shape != np.shape(want):
        raise WrongShape(f"{name} has shape {got.shape}, where {np.shape(want)} belongs")
    if not np.isfinite(got).all():
        raise WrongShape(f"{name} holds {int((~np.isfinite(got)).sum())} NaN or infinite entries")
    return rel_error_each(got, want)


def _vjp(forward, inputs, names, rng, call):
    """{name: error} of call(dy) → the gradients of inputs (in order), against central differences of
    f = Σ (y − y₀)·dy for y = forward(*inputs), so that ∂f/∂y = dy."""
    y0 = forward(*inputs)
    dy = rng.normal(size=y0.shape)

    def f():
        return float(((forward(*inputs) - y0) * dy).sum())
    got = call(dy.copy())
    got = tuple(got) if isinstance(got, (tuple, list)) else (got,)
    if len(got) != len(names):
        raise WrongShape(f"returned {len(got)} arrays, where {len(names)} ({', '.join(names)}) belong")
    return {name: _compare(name, g, numerical_grad(f, a)) for name, g, a in zip(names, got, inputs)}


def _conv_label(n, c, h, w, co, kh, kw, sy, sx, ph, pw, extra=""):
    return f"x ({n}, {c}, {h}, {w}), kernel {kh}×{kw}, stride ({sy}, {sx}), padding ({ph}, {pw}){extra}"


# Warm-ups -------------------------------------------------------------------------------------------------------

# (N, C, H, W, C_out, kh, kw, sy, sx, ph, pw): square and not, strides 1–3, padding 0–2, a kernel the
# stride does not divide, windows that overlap and windows that do not, rows the last window never reads
CONV_CASES = [(2, 2, 7, 6, 3, 3, 2, 2, 1, 1, 0), (1, 3, 5, 5, 2, 3, 3, 1, 1, 1, 1), (2, 1, 8, 5, 2, 4, 2, 3, 2, 0, 2),
              (3, 2, 4, 4, 1, 2, 2, 2, 2, 0, 0), (1, 2, 6, 9, 2, 1, 3, 1, 3, 0, 1)]
# (N, C_in, H, W, C_out, kh, kw, sy, sx, ph, pw, opy, opx)
CONV_T_CASES = [(2, 2, 3, 2, 3, 3, 2, 2, 1, 1, 0, 1, 0), (1, 3, 2, 2, 2, 3, 3, 2, 2, 0, 0, 0, 0),
                (2, 1, 3, 4, 2, 4, 2, 3, 2, 1, 1, 2, 1), (1, 2, 1, 1, 2, 5, 5, 2, 2, 0, 0, 1, 1)]


def cases_conv2d_backward():
    for k, (n, c, h, w, co, kh, kw, sy, sx, ph, pw) in enumerate(CONV_CASES):
        def run(fn, k=k, n=n, c=c, h=h, w=w, co=co, kh=kh, kw=kw, st=(sy, sx), pd=(ph, pw)):
            rng = np.random.default_rng(k)
            x, W, b = rng.normal(size=(n, c, h, w)), rng.normal(size=(co, c, kh, kw)), rng.normal(size=co)
            return _vjp(lambda x, W, b: reference.conv2d(x, W, b, st, pd), (x, W, b), ("dx", "dW", "db"), rng,
                        lambda dy: _call(fn, x.copy(), W.copy(), dy, st, pd))
        yield _conv_label(n, c, h, w, co, kh, kw, sy, sx, ph, pw), run


def cases_col2im():
    """col2im is im2col's transpose: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ for every x and c, and its result is the
    gradient of f(x) = ⟨im2col(x), c⟩."""
    for k, (n, c, h, w, _, kh, kw, sy, sx, ph, pw) in enumerate(CONV_CASES):
        def run(fn, k=k, n=n, c=c, h=h, w=w, kh=kh, kw=kw, sy=sy, sx=sx, ph=ph, pw=pw):
            rng = np.random.default_rng(10 + k)
            x = rng.normal(size=(n, c, h, w))
            g = rng.normal(size=reference.im2col(x, kh, kw, sy, sx, ph, pw).shape)
            got = _call(fn, g.copy(), h, w, sy, sx, ph, pw)
            numeric = numerical_grad(lambda: float((reference.im2col(x, kh, kw, sy, sx, ph, pw) * g).sum()), x)
            return {"dx": _compare("the image", got, numeric)}
        yield _conv_label(n, c, h, w, None, kh, kw, sy, sx, ph, pw), run


def cases_conv_transpose2d_backward():
    for k, (n, ci, h, w, co, kh, kw, sy, sx, ph, pw, opy, opx) in enumerate(CONV_T_CASES):
        def run(fn, k=k, n=n, ci=ci, h=h, w=w, co=co, kh=kh, kw=kw, st=(sy, sx), pd=(ph, pw), op=(opy, opx)):
            rng = np.random.default_rng(20 + k)
            x, W, b = rng.normal(size=(n, ci, h, w)), rng.normal(size=(ci, co, kh, kw)), rng.normal(size=co)
            return _vjp(lambda x, W, b: reference.conv_transpose2d(x, W, b, st, pd, op), (x, W, b),
                        ("dx", "dW", "db"), rng, lambda dy: _call(fn, x.copy(), W.copy(), dy, st, pd, op))
        yield _conv_label(n, ci, h, w, co, kh, kw, sy, sx, ph, pw, f", output_padding ({opy}, {opx})"), run


def _kl(mu, logvar):
    return float(losses.kl_per_image(mu, logvar).sum())


def cases_kl_grads():
    for k, (n, d) in enumerate(((1, 1), (3, 5), (4, 32))):
        def run(fn, k=k, n=n, d=d):
            rng = np.random.default_rng(30 + k)
            mu, logvar = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 2
            dmu, dlogvar = _call(fn, mu.copy(), logvar.copy())
            return {"dmu": _compare("dmu", dmu, numerical_grad(lambda: _kl(mu, logvar), mu)),
                    "dlogvar": _compare("dlogvar", dlogvar, numerical_grad(lambda: _kl(mu, logvar), logvar))}
        yield f"mu, logvar ({n}, {d}), logvar up to about ±6", run


def cases_reparameterize():
    """z = μ + e^(ℓ/2)·ε exactly, and its mean and spread over many ε are μ and e^(ℓ/2)."""
    def exact(fn):
        rng = np.random.default_rng(40)
        mu, logvar, eps = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
        return {"z": _compare("z", _call(fn, mu, logvar, eps), mu + np.exp(0.5 * logvar) * eps)}

    def draws(fn):
        rng = np.random.default_rng(41)
        many = np.asarray(_call(fn, np.full((200000, 1), 0.5), np.full((200000, 1), np.log(4.0)),
                                rng.normal(size=(200000, 1))))
        off = abs(many.mean() - 0.5) > 0.02 or abs(many.std() - 2.0) > 0.02     # 200,000 draws: about 0.005 each
        return {"mean and spread": 1.0 if off else 0.0}
    yield "mu, logvar, eps (3, 4): z exactly", exact
    yield "200,000 draws, μ = 0.5, ℓ = log 4: mean 0.5 and spread 2 (to 0.02), else 1", draws


def cases_reparameterize_backward():
    for k, (n, d) in enumerate(((1, 1), (3, 5), (4, 32))):
        def run(fn, k=k, n=n, d=d):
            rng = np.random.default_rng(50 + k)
            mu, logvar, eps, dz = (rng.normal(size=(n, d)) for _ in range(4))

            def f():                                            # Σ z·dz: ∂f/∂z = dz
                return float(((mu + np.exp(0.5 * logvar) * eps) * dz).sum())
            dmu, dlogvar = _call(fn, dz.copy(), mu.copy(), logvar.copy(), eps.copy())
            return {"dmu": _compare("dmu", dmu, numerical_grad(f, mu)),
                    "dlogvar": _compare("dlogvar", dlogvar, numerical_grad(f, logvar))}
        yield f"mu, logvar, eps, dz ({n}, {d})", run


def cases_adam():
    """Ten steps against scratchvae.model.optim.Adam on the same gradients, with the default betas and others."""
    for k, (lr, b1, b2, eps) in enumerate(((1e-3, 0.9, 0.999, 1e-8), (0.05, 0.5, 0.9, 1e-6))):
        def run(fn, k=k, lr=lr, b1=b1, b2=b2, eps=eps):
            rng = np.random.default_rng(60 + k)
            theta = rng.normal(size=(3, 4))
            p, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
            opt = Adam({"w": theta}, lr=lr, betas=(b1, b2), eps=eps)
            errors = {"p": 0.0, "m": 0.0, "v": 0.0}
            for t in range(1, 11):
                g = rng.normal(size=theta.shape) * 10.0 ** rng.integers(-3, 3)
                opt.step({"w": g})
                p, m, v = _call(fn, p, g, m, v, t, lr, b1, b2, eps)
                for name, got, want in (("p", p, theta), ("m", m, opt.m["w"]), ("v", v, opt.v["w"])):
                    errors[name] = max(errors[name], _compare(name, got, want))
            return errors
        yield f"lr {lr:g}, betas ({b1:g}, {b2:g}), eps {eps:g}: ten steps, gradients 1e-3 to 1e2", run


# Part 1: transfer ------------------------------------------------------------------------------------------------

# (N, C, H, W, C_out, kh, kw, sy, sx, ph, pw, ey, ex)
DILATED_CASES = [(2, 2, 7, 6, 3, 3, 2, 1, 1, 1, 0, 2, 1), (1, 3, 9, 8, 2, 3, 3, 2, 1, 2, 1, 2, 3),
                 (2, 1, 8, 7, 2, 2, 2, 3, 2, 0, 1, 3, 2), (1, 2, 5, 6, 2, 1, 2, 1, 1, 0, 0, 2, 2)]
# (N, C, H, W, C_out, kh, kw, sy, sx, ph, pw, G)
GROUPED_CASES = [(2, 4, 6, 5, 6, 3, 2, 1, 1, 1, 0, 2), (1, 3, 5, 6, 3, 3, 3, 2, 2, 1, 1, 3),
                 (2, 3, 5, 5, 6, 2, 2, 1, 2, 0, 1, 3), (1, 2, 4, 4, 4, 3, 3, 1, 1, 1, 1, 1)]
# (N, C, H, W, kh, kw, sy, sx)
POOL_CASES = [(2, 2, 6, 6, 2, 2, 2, 2), (1, 3, 7, 6, 3, 3, 2, 2), (2, 1, 5, 7, 3, 2, 1, 2), (1, 2, 4, 5, 1, 3, 1, 1)]
# (N, C, H, W, C_out, kh, kw, sy, sx, ph, pw)
REFLECT_CASES = [(2, 2, 5, 6, 3, 3, 3, 1, 1, 1, 1), (1, 3, 6, 5, 2, 3, 2, 2, 1, 2, 1), (2, 1, 4, 7, 2, 4, 3, 2, 2, 2, 2),
                 (1, 2, 3, 3, 2, 2, 2, 1, 1, 2, 1)]


def cases_conv2d_dilated_backward():
    for k, (n, c, h, w, co, kh, kw, sy, sx, ph, pw, ey, ex) in enumerate(DILATED_CASES):
        def run(fn, k=k, n=n, c=c, h=h, w=w, co=co, kh=kh, kw=kw, st=(sy, sx), pd=(ph, pw), dl=(ey, ex)):
            rng = np.random.default_rng(70 + k)
            x, W, b = rng.normal(size=(n, c, h, w)), rng.normal(size=(co, c, kh, kw)), rng.normal(size=co)
            return _vjp(lambda x, W, b: transfer.conv2d_dilated(x, W, b, st, pd, dl), (x, W, b), ("dx", "dW", "db"),
                        rng, lambda dy: _call(fn, x.copy(), W.copy(), dy, st, pd, dl))
        yield _conv_label(n, c, h, w, co, kh, kw, sy, sx, ph, pw, f", dilation ({ey}, {ex})"), run


def cases_conv2d_grouped_backward():
    for k, (n, c, h, w, co, kh, kw, sy, sx, ph, pw, groups) in enumerate(GROUPED_CASES):
        def run(fn, k=k, n=n, c=c, h=h, w=w, co=co, kh=kh, kw=kw, st=(sy, sx), pd=(ph, pw), g=groups):
            rng = np.random.default_rng(80 + k)
            x, W, b = rng.normal(size=(n, c, h, w)), rng.normal(size=(co, c // g, kh, kw)), rng.normal(size=co)
            return _vjp(lambda x, W, b: transfer.conv2d_grouped(x, W, b, st, pd, g), (x, W, b), ("dx", "dW", "db"),
                        rng, lambda dy: _call(fn, x.copy(), W.copy(), dy, st, pd, g))
        kind = " (depthwise)" if groups == c else ""
        yield _conv_label(n, c, h, w, co, kh, kw, sy, sx, ph, pw, f", {groups} groups{kind}, {co} out"), run


def cases_avg_pool2d_backward():
    for k, (n, c, h, w, kh, kw, sy, sx) in enumerate(POOL_CASES):
        def run(fn, k=k, n=n, c=c, h=h, w=w, kn=(kh, kw), st=(sy, sx)):
            rng = np.random.default_rng(90 + k)
            x = rng.normal(size=(n, c, h, w))
            return _vjp(lambda x: transfer.avg_pool2d(x, kn, st), (x,), ("dx",), rng,
                        lambda dy: _call(fn, x.copy(), dy, kn, st))
        yield f"x ({n}, {c}, {h}, {w}), window {kh}×{kw}, stride ({sy}, {sx})", run


def cases_elu_backward():
    for k, (shape, alpha) in enumerate((((3, 4), 1.0), ((2, 3, 5), 0.3))):
        def run(fn, k=k, shape=shape, alpha=alpha):
            rng = np.random.default_rng(100 + k)
            x = rng.normal(size=shape) * 2
            x = np.where(np.abs(x) < 0.05, np.sign(x) * 0.05 + x, x)     # no entry at the kink, 0
            return _vjp(lambda x: transfer.elu(x, alpha), (x,), ("dx",), rng, lambda dy: _call(fn, x.copy(), dy, alpha))
        yield f"x {shape}, α = {alpha}", run


def cases_gaussian_nll_grads():
    for k, shape in enumerate(((1, 1, 2, 3), (3, 2, 4, 4))):
        def run(fn, k=k, shape=shape):
            rng = np.random.default_rng(110 + k)
            mean, log_var, x = rng.random(shape), rng.normal(size=shape) * 1.5, rng.random(shape)
            got = _call(fn, mean.copy(), log_var.copy(), x.copy())
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise WrongShape("returned something other than a pair (dmean, dlog_var)")

            def f():
                return transfer.gaussian_nll(mean, log_var, x)
            return {"dmean": _compare("dmean", got[0], numerical_grad(f, mean)),
                    "dlog_var": _compare("dlog_var", got[1], numerical_grad(f, log_var))}
        yield f"mean, log_var, x {shape}, log_var from about −4 to 4", run


def cases_conv2d_reflect_backward():
    for k, (n, c, h, w, co, kh, kw, sy, sx, ph, pw) in enumerate(REFLECT_CASES):
        def run(fn, k=k, n=n, c=c, h=h, w=w, co=co, kh=kh, kw=kw, st=(sy, sx), pd=(ph, pw)):
            rng = np.random.default_rng(120 + k)
            x, W, b = rng.normal(size=(n, c, h, w)), rng.normal(size=(co, c, kh, kw)), rng.normal(size=co)
            return _vjp(lambda x, W, b: transfer.conv2d_reflect(x, W, b, st, pd), (x, W, b), ("dx", "dW", "db"),
                        rng, lambda dy: _call(fn, x.copy(), W.copy(), dy, st, pd))
        yield _conv_label(n, c, h, w, co, kh, kw, sy, sx, ph, pw, ", reflected"), run


# Part 2: the whole loss ------------------------------------------------------------------------------------------

_TRUE = {}


def true_gradients():
    """{name: ∂loss/∂t[name]} for whole_loss's every tensor, by central differences of its forward taken from that
    tensor on (the steps after it run again; those before it are held), each step kept on one side of every kink
    (whole_loss.kinks). The step is 1e-2, not the layers' 1e-3: every value of a loss of about 17 is rounded by
    about 4e-15, which a step of 1e-3 turns into errors up to 7e-8 on the smallest entries, and 1e-2 into 1e-8,
    while its truncation (h⁴ after Richardson's step) stays below that. Computed once, then kept."""
    if not _TRUE:
        t0 = whole_loss.forward()
        for name in whole_loss.GRADIENTS:
            start = whole_loss.NAMES.index(name) + 1 if name in whole_loss.NAMES else 0
            t = dict(t0)
            t[name] = np.array(t0[name], dtype=np.float64)                  # a copy to move, entry by entry

            def evaluate():
                after = whole_loss.forward(t, start)
                return float(after["loss"]), whole_loss.kinks(after)
            _TRUE[name] = per_element(evaluate, t[name], 1e-2)
    return _TRUE


def cases_whole_loss_backward():
    def run(fn):
        t = whole_loss.forward()
        g = _call(fn, {k: np.array(v) for k, v in t.items()})
        true = true_gradients()
        return {name: _compare(name, g.get(name), true[name]) for name in whole_loss.GRADIENTS}
    yield (f"{whole_loss.N} images of {whole_loss.C}×{whole_loss.S}×{whole_loss.S}, D = {whole_loss.D}, "
           f"β = {whole_loss.BETA}, floor {whole_loss.FLOOR}: two images under it"), run


CASES = {"conv2d_backward": cases_conv2d_backward, "col2im": cases_col2im,
         "conv_transpose2d_backward": cases_conv_transpose2d_backward, "kl_grads": cases_kl_grads,
         "reparameterize": cases_reparameterize, "reparameterize_backward": cases_reparameterize_backward,
         "adam": cases_adam,
         "conv2d_dilated_backward": cases_conv2d_dilated_backward,
         "conv2d_grouped_backward": cases_conv2d_grouped_backward,
         "avg_pool2d_backward": cases_avg_pool2d_backward, "elu_backward": cases_elu_backward,
         "gaussian_nll_grads": cases_gaussian_nll_grads, "conv2d_reflect_backward": cases_conv2d_reflect_backward,
         "whole_loss_backward": cases_whole_loss_backward}
CHECKS = CASES                                      # the exercises' names, in the page's order


def _where(exc, fn, filename=None):
    """The exception in one line, with the line of fn's file (or of filename) it came from, else the last line it
    passed; a wrong shape is what fn returned, and says so alone."""
    if isinstance(exc, WrongShape):
        return str(exc)
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({os.path.basename(exc.filename or '?')}, line {exc.lineno})"
    filename = filename or getattr(getattr(fn, "__code__", None), "co_filename", None)
    frames = traceback.extract_tb(exc.__traceback__)
    frame = ([f for f in frames if f.filename == filename] or frames)[-1]
    return f"{type(exc).__name__}: {exc} ({os.path.basename(frame.filename)}, line {frame.lineno})"


def report(name, fn):
    """Run every case of exercise `name` on fn: a Report. Never raises for what fn does."""
    cases = []
    for label, run in CASES[name]():
        try:
            cases.append(Case(label, run(fn)))
        except NotWritten:
            if not cases:
                return Report(name, [], not_written=True)
            cases.append(Case(label, failure="raised NotImplementedError"))
        except Exception as exc:                       # the learner's code failed: this case fails, the rest run
            cases.append(Case(label, failure=_where(exc, fn)))
    return Report(name, cases)


def check(name, fn):
    """(error, passed) for one function; error None when it is not written yet."""
    r = report(name, fn)
    return r.error, r.passed


def describe(r, brief=False):
    """The lines the command prints for one Report."""
    if r.not_written:
        return [f"{r.name:27s} not written yet"]
    verdict = "pass" if r.passed else "FAIL"
    lines = [f"{r.name:27s} error {r.error:.1e}  {verdict} (pass mark {PASS:.0e})"]
    if r.missing and r.error <= PASS:
        lines[0] = f"{r.name:27s} right so far; not written yet from g[{r.missing!r}] on"
    if brief:
        return lines
    wrong = r.first_wrong()
    if len(r.cases) == 1 and len(r.cases[0].errors) > 4:           # the walk: one row per tensor, in order
        c = r.cases[0]
        lines.append(f"    {c.label}")
        if c.failure:
            lines.append(f"    failed: {c.failure}")
        rows = list(c.errors.items())
        for i, (k, e) in enumerate(rows):
            if e is None and i and rows[i - 1][1] is None:
                continue                                            # a run of lines not written: said once
            if e is None:
                last = next((j for j in range(i, len(rows)) if rows[j][1] is not None), len(rows)) - 1
                span = f"g[{k!r}]" + (f" … g[{rows[last][0]!r}]" if last > i else "")
                lines.append(f"    {span}  not written ({last - i + 1})")
                continue
            mark = "" if e <= PASS else "   <- wrong" if wrong and k == wrong[1] else "   wrong"
            lines.append(f"    g[{k!r}]".ljust(18) + f"{e:.1e}" + mark)
        if wrong:
            lines.append(f"    first wrong: g[{wrong[1]!r}] (error {wrong[2]:.1e}); every line after it uses it")
        return lines
    for i, c in enumerate(r.cases, 1):
        detail = c.failure if c.failure else "  ".join(
            f"{k} {'not written' if e is None else f'{e:.1e}'}" for k, e in c.errors.items())
        lines.append(f"    case {i}: {c.label}: {detail}")
    if r.cases and r.error > 0:
        label, what = r.worst
        lines.append(f"    worst: case {[c.label for c in r.cases].index(label) + 1}, "
                     + (what if r.error == math.inf else f"{what} ({r.error:.1e})"))
    return lines


def load(path):
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", metavar="NAME", help=f"the functions to check (default: all): {', '.join(CHECKS)}")
    p.add_argument("--answers", action="store_true", help="check answers.py instead of skeletons.py")
    p.add_argument("--brief", action="store_true", help="one line per exercise, not one per case")
    a = p.parse_args(argv)
    unknown = [n for n in a.names if n not in CHECKS]
    if unknown:
        p.error(f"no exercise named {', '.join(unknown)}; expected one of {', '.join(CHECKS)}")
    path = os.path.join(HERE, "answers.py" if a.answers else "skeletons.py")
    try:
        module = load(path)
    except Exception as exc:                            # a syntax error, or a line that fails as the file loads
        print(f"{os.path.basename(path)} does not load: {_where(exc, None, path)}")
        return 1
    ok = True
    for name in a.names or CHECKS:
        fn = getattr(module, name, None)
        if fn is None:
            print(f"{name:27s} missing: no function {name} in {os.path.basename(module.__file__)}")
            ok = False
            continue
        r = report(name, fn)
        ok &= r.passed
        print("\n".join(describe(r, a.brief)), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
