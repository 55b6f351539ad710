"""How the tools in bin/ start: before NumPy loads, and under a Python that has what the package needs.

The README's commands (`bin/sample --help`, `bin/train-scratch …`) are typed from the clone in any shell.
Each launcher's first line asks for the PATH's python3, which in a new terminal is often one without
NumPy or Pillow (the clone's virtual environment not activated). Then the tool starts again, the same
process (exec), under the clone's own `.venv/bin/python`, which `make setup` (and `make train`,
`make test`) made; with no `.venv` yet, one line says what to run, and the exit status is 2.

The standard library alone: this runs before anything else of the package is imported (the package's
__init__ imports nothing until asked). Two settings must be made before NumPy loads, here for every tool:

* OPENBLAS_THREAD_TIMEOUT: OpenBLAS's threads sleep right after each matrix product, so the package's
  own threads (scratchvae/ops/threads.py) have the cores between products;
* OPENBLAS_NUM_THREADS under mpiexec, when the launcher has not pinned each process to cores of its own:
  each of the N processes on a machine gets its share of the cores, as for the package's own threads
  (scratchvae/run/distributed.py).
"""
import importlib
import importlib.util
import os
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
# the modules a Python must have to run a tool (setup.cfg's install_requires; collect-rollouts and export: their
# extra's too), each with the name of the package that installs it
NEEDS = {"numpy": "numpy", "PIL": "Pillow", "tqdm": "tqdm", "matplotlib": "matplotlib"}
TOOLS = {"train-scratch": ("train", {}), "collect-rollouts": ("collect", {"gymnasium": "gymnasium", "Box2D": "box2d"}),
         "encode-latents": ("encode", {}), "sample": ("sample", {}), "explore": ("explore", {}), "evaluate": ("evaluate", {}),
         "export": ("export", {"safetensors": "safetensors", "onnx": "onnx"})}
EXTRA = {"collect-rollouts": "collect", "export": "export"}     # the extra of setup.cfg that brings a tool's own
RELAUNCHED = "SCRATCHVAE_RELAUNCHED"        # set to the Python a tool started again under


def lacking(needs):
    """The packages of `needs` ({module: package}) whose module this Python cannot import (looked up, not
    imported)."""
    out = []
    for module, package in needs.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(package)
    return out


def venv_python():
    """The clone's .venv/bin/python, or None when there is no set-up yet."""
    path = os.path.join(VENV, "bin", "python")
    return path if os.access(path, os.X_OK) else None


def in_venv():
    return os.path.realpath(sys.prefix) == os.path.realpath(VENV)


def shown(path):
    """A path as a message names it: relative to the current folder when inside it, else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


def setup_command():
    """The command that sets the clone up, as typed from the current folder."""
    here = os.path.realpath(os.curdir) == os.path.realpath(ROOT)
    return "make setup" if here else shlex.join(["make", "-C", shown(ROOT), "setup"])


def set_threads():
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    local = os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") or "1"
    pinned = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < (os.cpu_count() or 1)
    if local.isdigit() and int(local) > 1 and not pinned:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(local))))


def launch(tool):
    """Run bin/<tool>: its exit status. Under the clone's .venv (exec'd) when this Python lacks a module the
    tool needs and this Python is not that one; one line and 2 when no Python here has them."""
    set_threads()
    module, extra = TOOLS[tool]
    missing = lacking({**NEEDS, **extra})
    if missing:
        python = venv_python()
        if python and not in_venv() and not os.environ.get(RELAUNCHED):
            os.environ[RELAUNCHED] = python
            try:
                os.execv(python, [python, sys.argv[0], *sys.argv[1:]])
            except OSError as e:
                return say(tool, f"could not start {shown(python)}: {e.strerror}; set the clone up again with: "
                                 f"{setup_command()}")
        names = ", ".join(missing)
        if python:
            return say(tool, f"{shown(python)} lacks {names}: the clone's set-up did not finish; run it again: "
                             f"{setup_command()}")
        package = shown(ROOT) + (f"[{EXTRA[tool]}]" if tool in EXTRA else "")
        return say(tool, f"this Python ({sys.executable}) lacks {names}, and the clone has no .venv yet: set it up "
                         f"with: {setup_command()} (or install the package into this Python: "
                         f"pip install -e {shlex.quote(package)})")
    return importlib.import_module(f"scratchvae.cli.{module}").entry()


def say(tool, message):
    print(f"{tool}: error: {message}", file=sys.stderr)
    return 2
