"""docs/exercises/: every answer passes its check, every skeleton is reported as not written yet, and
every check fails a wrong answer (each with the mistake a learner would make)."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "docs", "exercises")


def load(name):
    spec = importlib.util.spec_from_file_location(f"exercises_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks, answers, skeletons = load("checks"), load("answers"), load("skeletons")
whole_loss = checks.whole_loss


@pytest.mark.parametrize("name", list(checks.CHECKS))
def test_the_answer_passes_and_the_skeleton_is_not_written_yet(name):
    error, passed = checks.check(name, getattr(answers, name))
    assert passed and error <= checks.PASS, f"{name}: the answer's error is {error}"
    r = checks.report(name, getattr(skeletons, name))
    if name == "whole_loss_backward":             # the walk's skeleton starts with g["loss"] = 1 and nothing else
        assert not r.passed and r.missing == "recon" and r.error < checks.PASS
    else:
        assert checks.check(name, getattr(skeletons, name)) == (None, False)


def _conv_dx_kernel_not_flipped(x, W, dy, stride, padding):
    dx, dW, db = answers.conv2d_backward(x, W[:, :, ::-1, ::-1], dy, stride, padding)  # dx painted with W turned round
    return dx, answers.conv2d_backward(x, W, dy, stride, padding)[1], db


def _col2im_overwrite(col, h, w, sy, sx, ph, pw):
    n, c, kh, kw, oh, ow = col.shape
    img = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for r in range(oh):
        for s in range(ow):
            img[:, :, r * sy:r * sy + kh, s * sx:s * sx + kw] = col[:, :, :, :, r, s]
    return img[:, :, ph:ph + h, pw:pw + w]


def _convt_db_first_image(x, W, dy, stride, padding, output_padding):
    dx, dW, _ = answers.conv_transpose2d_backward(x, W, dy, stride, padding, output_padding)
    return dx, dW, dy[0].sum(axis=(1, 2))                      # the bias summed over one image of the batch


def _adam_uncorrected(p, g, m, v, lr, b1, b2, eps):
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    return p - lr * m / (np.sqrt(v) + eps), m, v               # no bias correction


def _dilated_dx_undilated(x, W, dy, stride, padding, dilation):
    """dW right, dx sent back to contiguous taps, as if there were no dilation."""
    (sy, sx), (ph, pw) = stride, padding
    n, c, h, w = x.shape
    kh, kw = W.shape[2:]
    dx_pad = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for r in range(dy.shape[2]):
        for s in range(dy.shape[3]):
            dx_pad[:, :, r * sy:r * sy + kh, s * sx:s * sx + kw] += np.einsum("no,ocji->ncji", dy[:, :, r, s], W)
    _, dW, db = answers.conv2d_dilated_backward(x, W, dy, stride, padding, dilation)
    return dx_pad[:, :, ph:ph + h, pw:pw + w], dW, db


def _grouped_every_group_reads_the_first(x, W, dy, stride, padding, groups):
    cg = W.shape[1]
    xs = np.concatenate([x[:, :cg]] * (x.shape[1] // cg), axis=1)   # every group's input taken from group 0's
    return answers.conv2d_grouped_backward(xs, W, dy, stride, padding, groups)


def _reflect_as_zero_padding(x, W, dy, stride, padding):
    return answers.conv2d_backward(x, W, dy, stride, padding)      # the reflected copies' gradient dropped


def _whole_loss_without_the_floor(t):
    g = answers.whole_loss_backward(t)
    g["kl_n"] = g["kl_f"]                                           # every image gets the KL's gradient
    return g


def _whole_loss_logvar_two_paths(t):
    g = answers.whole_loss_backward(t)
    g["logvar"] = g["logvar"] + 0.5 * g["kl_nd"]                    # the KL's own −ℓ forgotten
    return g


WRONG = {
    "conv2d_backward": _conv_dx_kernel_not_flipped,
    "col2im": _col2im_overwrite,
    "conv_transpose2d_backward": _convt_db_first_image,
    "kl_grads": lambda mu, logvar: (mu, np.exp(logvar) - 1),                    # the ½ dropped
    "reparameterize": lambda mu, logvar, eps: mu + np.exp(logvar) * eps,          # σ = e^ℓ
    "reparameterize_backward": lambda dz, mu, logvar, eps: (dz, dz * eps * np.exp(0.5 * logvar)),  # ½ dropped
    "adam": lambda p, g, m, v, t, lr, b1, b2, eps: _adam_uncorrected(p, g, m, v, lr, b1, b2, eps),
    "conv2d_dilated_backward": _dilated_dx_undilated,
    "conv2d_grouped_backward": _grouped_every_group_reads_the_first,
    "avg_pool2d_backward": lambda x, dy, kernel, stride: answers.avg_pool2d_backward(x, dy, kernel, stride)
    * (kernel[0] * kernel[1]),                                                    # the 1/(kh·kw) forgotten
    "elu_backward": lambda x, dy, alpha: dy * np.where(x > 0, 1.0, alpha),        # LeakyReLU's slope, not α·eˣ
    "gaussian_nll_grads": lambda mean, log_var, x: (answers.gaussian_nll_grads(mean, log_var, x)[0],
                                                    2 * answers.gaussian_nll_grads(mean, log_var, x)[1]),  # ½ dropped
    "conv2d_reflect_backward": _reflect_as_zero_padding,
    "whole_loss_backward": _whole_loss_without_the_floor,
}


@pytest.mark.parametrize("name", list(checks.CHECKS))
def test_each_check_fails_a_wrong_answer(name):
    error, passed = checks.check(name, WRONG[name])
    assert not passed and error > 1e-3, f"{name}: the check passed a wrong answer (error {error})"


def test_smaller_mistakes_are_caught_too():
    """Adam without its ε, or with Kingma & Ba's folded step size αₜ = α·√(1 − β₂ᵗ)/(1 − β₁ᵗ) (ε then not
    rescaled): wrong by far less than the mistakes above, still far above the pass mark."""
    def no_eps(p, g, m, v, t, lr, b1, b2, eps):
        return answers.adam(p, g, m, v, t, lr, b1, b2, 0.0)

    def folded(p, g, m, v, t, lr, b1, b2, eps):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        return p - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps), m, v
    for wrong in (no_eps, folded):
        error, passed = checks.check("adam", wrong)
        assert not passed and 1e-6 < error < 1e-3, error


def test_the_walk_names_the_first_wrong_tensor():
    for wrong, first in ((_whole_loss_without_the_floor, "kl_n"), (_whole_loss_logvar_two_paths, "logvar")):
        r = checks.report("whole_loss_backward", wrong)
        assert not r.passed and r.first_wrong()[1] == first
        out = "\n".join(checks.describe(r))
        assert f"first wrong: g['{first}']" in out and out.count("<- wrong") == 1


def test_the_walk_is_the_whole_loss_with_its_hard_parts():
    """About 25 named tensors from x to the loss; β ≠ 1; two of the four images under the free-bits floor, with a
    margin no finite difference crosses; some of every ReLU's inputs on each side of 0; the loss is scratchvae's
    (the same recon, floored KL and total as losses.loss_terms on the same numbers)."""
    from scratchvae.model import losses
    t = whole_loss.forward()
    assert len(whole_loss.STEPS) >= 25 and whole_loss.BETA != 1
    assert set(whole_loss.GRADIENTS) == set(whole_loss.NAMES) | {"x"} | set(whole_loss.PARAMS)
    under = t["kl_n"] < whole_loss.FLOOR
    assert under.sum() == 2 and np.abs(t["kl_n"] - whole_loss.FLOOR).min() > 0.1
    for h in ("h1", "h2", "h3"):
        assert 0 < (t[h] > 0).mean() < 1
    recon, _ = losses.mse_recon(t["y"], t["x"])
    terms, active = losses.loss_terms(recon, t["kl_n"], whole_loss.FLOOR, whole_loss.BETA)
    assert np.isclose(float(terms["loss"]), float(t["loss"]), rtol=1e-14)
    assert (active == ~under).all()


def test_the_walks_convolutions_are_the_reference_loops():
    """whole_loss.py computes its convolutions at once, for speed; they are the package's loop versions' sums."""
    from scratchvae.check import reference
    rng = np.random.default_rng(0)
    for stride in (1, 2, 3):
        x, W, b = rng.normal(size=(2, 3, 9, 7)), rng.normal(size=(4, 3, 3, 2)), rng.normal(size=4)
        assert np.allclose(whole_loss.conv2d(x, W, b, stride), reference.conv2d(x, W, b, stride), atol=1e-12)
        x, W = rng.normal(size=(2, 4, 3, 2)), rng.normal(size=(4, 3, 4, 3))
        assert np.allclose(whole_loss.conv_transpose2d(x, W, b[:3], stride),
                           reference.conv_transpose2d(x, W, b[:3], stride), atol=1e-12)


def test_a_wrong_shape_fails():
    error, passed = checks.check("kl_grads", lambda mu, logvar: (mu.T, logvar))
    assert error == float("inf") and not passed


def test_each_case_and_gradient_is_reported_and_the_worst_named():
    def db_wrong(x, W, dy, stride, padding):
        dx, dW, db = answers.conv2d_backward(x, W, dy, stride, padding)
        return dx, dW, db * (1 if dy.shape[0] == 1 else 2)      # wrong only where the batch has several images
    r = checks.report("conv2d_backward", db_wrong)
    assert len(r.cases) == len(checks.CONV_CASES) and all(set(c.errors) == {"dx", "dW", "db"} for c in r.cases)
    for c, case in zip(r.cases, checks.CONV_CASES):
        assert (c.errors["db"] > 0.1) == (case[0] > 1) and c.errors["dx"] < checks.PASS and c.errors["dW"] < checks.PASS
    label, what = r.worst
    assert what == "db" and "stride" in label and "padding" in label
    out = checks.describe(r)
    assert sum(line.startswith("    case ") for line in out) == len(checks.CONV_CASES)
    assert out[-1].startswith("    worst: case ") and "db" in out[-1]
    r = checks.report("conv_transpose2d_backward", answers.conv_transpose2d_backward)
    assert all("output_padding" in c.label for c in r.cases)


def test_an_exception_fails_its_exercise_and_the_others_still_run(tmp_path, capsys):
    mine = tmp_path / "mine.py"
    mine.write_text("import numpy as np\n"
                    "def kl_grads(mu, logvar):\n"
                    "    return mu, logvar @ mu\n"                 # runs on (1, 1) only
                    "def elu_backward(x, dy, alpha):\n"
                    "    return dy * np.where(x > 0, 1.0, alpha * np.exp(x))\n")
    module = checks.load(str(mine))
    r = checks.report("kl_grads", module.kl_grads)
    assert not r.passed and r.error == float("inf")
    failures = [c.failure for c in r.cases if c.failure]
    assert len(failures) == 2 and all("ValueError" in f and "mine.py, line 3" in f for f in failures)
    assert checks.report("elu_backward", module.elu_backward).passed


@pytest.mark.slow
def test_the_command_line(capsys):
    assert checks.main(["--answers", "--brief"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(checks.CHECKS) and all(" pass " in line for line in out)
    assert checks.main(["kl_grads"]) == 1
    assert capsys.readouterr().out.split() == ["kl_grads", "not", "written", "yet"]
    assert checks.main(["--answers", "kl_grads"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("kl_grads") and sum("case" in line for line in out) == 4    # 3 cases and the worst
    with pytest.raises(SystemExit) as e:
        checks.main(["conv3d"])
    assert e.value.code == 2 and "no exercise named conv3d" in capsys.readouterr().err


BLOCK = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PIL", "gymnasium", "matplotlib", "mpi4py", "cupy", "tqdm", "hypothesis", "pytest",
                                  "onnx", "onnxruntime", "safetensors", "tensorboardX", "torch"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_nan_fails_whatever_the_other_gradients_say():
    """A NaN compares false with everything, so a largest error taken over it could pass: it fails the case."""
    def nan_db(x, W, dy, stride, padding):
        dx, dW, db = answers.conv2d_backward(x, W, dy, stride, padding)
        return dx, dW, db * np.nan
    r = checks.report("conv2d_backward", nan_db)
    assert not r.passed and r.error == float("inf")
    assert all(c.failure.startswith("db holds") and "NaN" in c.failure for c in r.cases)


def test_a_skeleton_file_that_does_not_load_is_one_line(tmp_path, monkeypatch, capsys):
    for text, said in (("def kl_grads(mu, logvar)\n    return mu\n", "SyntaxError"),
                       ("import numpy as np\nnp.nothing_here()\n", "AttributeError")):
        (tmp_path / "skeletons.py").write_text(text)
        monkeypatch.setattr(checks, "HERE", str(tmp_path))
        assert checks.main(["kl_grads"]) == 1
        out = capsys.readouterr().out.strip().splitlines()
        assert len(out) == 1 and out[0].startswith("skeletons.py does not load: " + said), out
        assert "skeletons.py, line" in out[0]


def test_it_runs_as_the_page_says_with_numpy_alone():
    """python docs/exercises/checks.py, with every package but NumPy (and the clone's scratchvae) unimportable."""
    done = subprocess.run([sys.executable, "-c", BLOCK, os.path.join(HERE, "checks.py"), "--answers", "--brief",
                           "adam", "elu_backward", "conv2d_reflect_backward"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("adam"), done.stderr
    assert len(done.stdout.splitlines()) == 3


def test_no_page_shows_the_answers():
    pages = [os.path.join(ROOT, "README.md")] + [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(ROOT, "docs"))
                                                for f in fs if f.endswith(".md")]
    for page in pages:
        text = open(page, encoding="utf-8").read()
        assert "include docs/exercises/answers.py" not in text, page
