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


@pytest.mark.slow
def test_the_gpu_check_runs_here_as_far_as_a_machine_without_a_gpu_can(tmp_path):
    """bench/gpu_check.sh with TRY_HERE=1: every part's command with its options, the pytest parts run (their GPU
    tests skip), the rest parsed, each part exits 0; and docs/gpu.md's table lists the script's parts, in order.
    (Its pytest parts once passed --timeout, which needs a plugin no extra installs: they stopped at argument
    parsing, a lent GPU's minutes spent.)"""
    env = {**os.environ, "TRY_HERE": "1", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    r = subprocess.run(["bash", "bench/gpu_check.sh", str(tmp_path / "data")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "gpu_check: 0 part(s) failed" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    script = open(os.path.join(ROOT, "bench", "gpu_check.sh")).read()
    parts = re.search(r'^PARTS=\$\{PARTS:-([^}]*)\}', script, re.M).group(1).split()
    for name in parts:
        assert re.search(rf"^{name}: exit 0 in \d+ s", r.stdout, re.M), f"part {name} did not end with exit 0"
    page = open(os.path.join(ROOT, "docs", "gpu.md"), encoding="utf-8").read()
    assert re.findall(r"^\| `(\w+)` \|", page, re.M) == parts
