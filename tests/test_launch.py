"""bin/'s tools typed as the README writes them, in a new shell: no virtual environment on the PATH, a
python3 there without NumPy or Pillow (scratchvae/launch.py)."""
import os
import shutil
import subprocess
import sys
import venv

import pytest

from scratchvae import launch

from runs import ROOT, said_command

TOOLS = sorted(launch.TOOLS)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    """A folder for a PATH whose python3 has nothing but the standard library (a new virtual environment
    without pip: it sees no other Python's packages)."""
    folder = tmp_path_factory.mktemp("bare")
    venv.create(folder, with_pip=False, symlinks=True)
    python = folder / "bin" / "python3"
    r = subprocess.run([python, "-c", "import numpy"], capture_output=True)
    assert r.returncode != 0, "the bare Python imports numpy"
    return str(folder / "bin")


def new_shell(bare, *cmd, cwd=ROOT):
    """cmd run as from a new terminal: the bare python3 first on the PATH, no virtual environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", launch.RELAUNCHED)}
    env["PATH"] = os.pathsep.join([bare, "/usr/bin", "/bin"])
    return subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_importing_the_launcher_loads_no_numpy():
    r = subprocess.run([sys.executable, "-c", "import sys, scratchvae.launch, scratchvae; "
                                              "print(sorted(m for m in ('numpy', 'PIL', 'matplotlib') if m in sys.modules))"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_the_package_still_gives_its_names():
    import scratchvae
    assert scratchvae.VAE.__name__ == "VAE" and callable(scratchvae.load) and scratchvae.model.optim.Adam
    assert "Conv2D" in dir(scratchvae)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        scratchvae.nothing


@pytest.mark.skipif(launch.venv_python() is None, reason="this clone has no .venv (make setup makes it)")
@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_runs_from_a_new_shell_once_set_up(bare, tool):
    r = new_shell(bare, os.path.join("bin", tool), "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: {tool}"), r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.skipif(launch.venv_python() is None, reason="this clone has no .venv (make setup makes it)")
def test_a_command_it_prints_runs_as_printed_from_a_new_shell(bare, tmp_path, data):
    out = str(tmp_path / "run")
    r = new_shell(bare, "bin/train-scratch", "--data", data, "--out", out, "--steps", "1", "--lr", "1e9",
                  "--batch-size", "4", "--quiet", "--channels", "4,8,8,8", "--dense-size", "16", "--latent-dim", "4")
    assert r.returncode == 3, r.stdout + r.stderr
    again = said_command(r.stderr, "start again with a lower learning rate: ")
    assert again.startswith("bin/train-scratch "), again            # no Python before it: the launcher finds it
    r = new_shell(bare, "sh", "-c", again + " --steps 1")
    assert r.returncode == 0, r.stdout + r.stderr


def bare_clone(tmp_path):
    """The package and its launchers, as a clone is before any set-up (no .venv)."""
    clone = tmp_path / "clone"
    for part in ("bin", "scratchvae"):
        shutil.copytree(os.path.join(ROOT, part), clone / part, ignore=shutil.ignore_patterns("__pycache__"))
    return clone


@pytest.mark.parametrize("tool", TOOLS)
def test_before_any_set_up_one_line_says_what_to_run(bare, tmp_path, tool):
    clone = bare_clone(tmp_path)
    r = new_shell(bare, os.path.join("bin", tool), "--help", cwd=clone)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == "", r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tool}: error: this Python"), r.stderr
    assert "lacks numpy, Pillow" in lines[0] and "set it up with: make setup" in lines[0], lines[0]
    r = new_shell(bare, os.path.join(clone, "bin", tool), "--help", cwd=tmp_path)     # from elsewhere: make -C
    assert f"make -C {os.path.join('clone')} setup" in r.stderr, r.stderr


def test_a_set_up_that_did_not_finish_is_said(bare, tmp_path):
    clone = bare_clone(tmp_path)
    venv.create(clone / ".venv", with_pip=False, symlinks=True)     # made, and the packages never installed
    r = new_shell(bare, "bin/sample", "--help", cwd=clone)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == "sample: error: .venv/bin/python lacks numpy, Pillow, tqdm, matplotlib: the clone's " \
                               "set-up did not finish; run it again: make setup", r.stderr
