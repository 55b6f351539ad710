"""The benchmarks' own arithmetic, and the loader benchmark run end to end on a small folder."""
import os
import subprocess
import sys

import pytest

from scratchvae import VAE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import roofline  # noqa: E402


def test_the_roofline_counts_the_default_models_activations_by_hand():
    # images, conv1-4, mu and logvar, z, deconv1-4 (dense and deconv1 joined: deconv1's output), the sigmoid's
    by_hand = (3 * 64 * 64 + 32 * 31 * 31 + 64 * 14 * 14 + 128 * 6 * 6 + 256 * 2 * 2 + 2 * 32 + 32
               + 128 * 5 * 5 + 64 * 13 * 13 + 32 * 30 * 30 + 3 * 64 * 64 + 3 * 64 * 64)
    model = VAE()
    assert roofline.activation_numbers(model) == by_hand == 128_704
    assert roofline.step_bytes(model, 1000) == 4 * (4 * by_hand * 1000 + 10 * 4_348_547)
    assert roofline.floor_seconds(2e12, 1e9, 1e15, 1e12) == 2e-3           # compute-bound
    assert roofline.floor_seconds(2e9, 3e9, 1e15, 1e12) == 3e-3            # memory-bound


@pytest.mark.slow
def test_the_loader_benchmark_runs_on_a_small_folder(tmp_path):
    r = subprocess.run([sys.executable, "bench/bench_loader.py", "--episodes", "4", "--frames", "30", "--batch",
                        "8,16", "--seconds", "0.1", "--step-ms", "1", "--keep", str(tmp_path / "d")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("4 episodes, 120 frames of 64x64")
    rows = [line.split() for line in lines if line.split() and line.split()[0] in ("8", "16")]
    assert [row[0] for row in rows][:2] == ["8", "16"] and len(rows) > 4          # the read table, then the feed's
    for row in rows[:2]:
        before, gather = (float(v.replace(",", "")) for v in row[1:3])
        assert before > 0 and gather > 0
