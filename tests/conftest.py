"""Shared test set-up: the device fixture, the GPU skip, and hypothesis settings."""
import os

import pytest
from hypothesis import HealthCheck, settings

from scratchvae.ops.devices import BackendError, get_xp

settings.register_profile(
    "default", max_examples=int(os.environ.get("SCRATCHVAE_EXAMPLES", "25")), deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("default")


def _gpu_reason():
    try:
        get_xp("gpu")
        return None
    except BackendError as e:
        return f"no usable GPU: {e}"


GPU_SKIP_REASON = _gpu_reason()


def pytest_collection_modifyitems(config, items):
    if GPU_SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=GPU_SKIP_REASON)
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    """The skipped tests counted once per reason (one line for every GPU test, not one per file and line);
    setup.cfg's -r leaves skips out of pytest's own summary for this."""
    reasons = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in reasons.items():
        terminalreporter.write_line(f"SKIPPED {count} test(s): {reason}")


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def device(request):
    """Each test that takes it runs on NumPy, and on CuPy where a GPU is there."""
    return request.param


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny folder of synthetic episodes (tests/runs.py's tiny_data), one per test module."""
    from runs import tiny_data
    return tiny_data(tmp_path_factory.mktemp("data") / "eps")
