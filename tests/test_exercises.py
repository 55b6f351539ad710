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


@pytest.mark.parametrize("name", sorted(checks.CHECKS))
def test_the_answer_passes_and_the_skeleton_is_not_written_yet(name):
    error, passed = checks.check(name, getattr(answers, name))
    assert passed and error <= checks.PASS, f"{name}: the answer's error is {error}"
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


WRONG = {
    "conv2d_backward": _conv_dx_kernel_not_flipped,
    "col2im": _col2im_overwrite,
    "conv_transpose2d_backward": _convt_db_first_image,
    "kl_grads": lambda mu, logvar: (mu, np.exp(logvar) - 1),                    # the ½ dropped
    "reparameterize": lambda mu, logvar, eps: mu + np.exp(logvar) * eps,          # σ = e^ℓ
    "reparameterize_backward": lambda dz, mu, logvar, eps: (dz, dz * eps * np.exp(0.5 * logvar)),  # ½ dropped
    "adam": lambda p, g, m, v, t, lr, b1, b2, eps: _adam_uncorrected(p, g, m, v, lr, b1, b2, eps),
}


def _adam_uncorrected(p, g, m, v, lr, b1, b2, eps):
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    return p - lr * m / (np.sqrt(v) + eps), m, v               # no bias correction


@pytest.mark.parametrize("name", sorted(checks.CHECKS))
def test_each_check_fails_a_wrong_answer(name):
    error, passed = checks.check(name, WRONG[name])
    assert not passed and error > 1e-3, f"{name}: the check passed a wrong answer (error {error})"


def test_a_wrong_shape_fails():
    error, passed = checks.check("kl_grads", lambda mu, logvar: (mu.T, logvar))
    assert error == float("inf") and not passed


def test_the_command_line(capsys):
    assert checks.main(["--answers"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(checks.CHECKS) and all(" pass " in line for line in out)
    assert checks.main(["kl_grads"]) == 1
    assert capsys.readouterr().out.split() == ["kl_grads", "not", "written", "yet"]
    with pytest.raises(SystemExit) as e:
        checks.main(["conv3d"])
    assert e.value.code == 2 and "no exercise named conv3d" in capsys.readouterr().err


def test_it_runs_as_the_page_says():
    done = subprocess.run([sys.executable, os.path.join(HERE, "checks.py"), "--answers", "adam"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("adam"), done.stderr
