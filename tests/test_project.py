"""The project's own plumbing: the Makefile's targets and what `make test` prints."""
import os
import re
import subprocess
import sys

import pytest

from conftest import GPU_SKIP_REASON

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_phony_target_exists():
    text = open(os.path.join(ROOT, "Makefile")).read()
    phony = re.search(r"^\.PHONY:(.*)$", text, re.M).group(1).split()
    rules = set(re.findall(r"^([A-Za-z][\w.-]*):", text, re.M))
    assert phony and set(phony) <= rules, f".PHONY names {sorted(set(phony) - rules)}, which have no rule"


@pytest.mark.slow
@pytest.mark.skipif(GPU_SKIP_REASON is None, reason="a GPU is here: nothing is skipped for want of one")
def test_the_gpu_skip_reason_is_said_once():
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_im2col.py",
                        "tests/test_layers.py"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("no usable GPU") == 1, r.stdout
    assert re.search(r"^SKIPPED \d+ test\(s\): no usable GPU", r.stdout, re.M)
