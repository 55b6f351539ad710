"""Command-line tools (bin/ holds thin launchers for them)."""
import argparse
import math
import os
import shlex
import sys

from ..run import distributed
from ..ops import threads
from ..ops.devices import BackendError
from ..run.checkpoint import CheckpointError
from ..data.dataset import FrameDataset
from ..data.episodes import DataError
from ..files.extras import MissingPackage
from ..launch import RELAUNCHED
from ..files.lock import FolderInUse
from ..run.runfolder import parse_channels

EXPECTED = (BackendError, CheckpointError, DataError, FolderInUse, MissingPackage, distributed.MissingMPI,
            distributed.PeerLost, ValueError, OSError)
BIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bin")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the work left and how to go on (the text, said after 'interrupted: ')."""


def describe(e):
    """One line for an expected error; an OSError from the system as 'FILE: what went wrong'."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split()) or type(e).__name__


def run(prog, main, argv=None):
    """Run main(argv); expected mistakes (bad input, and anything the file system refuses: a
    read-only folder, a full disk) become one line on stderr and exit status 2, and warnings (a
    skipped file, say) one line each. Files are written under temporary names, so a failure
    leaves none half-written. Python's way of showing warnings is the tool's while main runs, and
    put back after."""
    import warnings
    shown = warnings.formatwarning
    warnings.formatwarning = lambda message, *a, **k: f"{prog}: warning: {message}\n"
    threads.use_every_core()                # the launcher has let OpenBLAS's threads sleep (bin/*)
    try:
        return main(argv)
    except distributed.ElsewhereFailed:                 # another rank's mistake, which rank 0 has said
        return 2
    except EXPECTED as e:
        print(f"{prog}: error: {describe(e)}", file=sys.stderr)
        if not getattr(e, "everywhere", False):         # under mpiexec, the other ranks wait for this one
            distributed.abort_others(2)
        return 2
    except MemoryError as e:                            # past what the limits of the options foresaw
        print(f"{prog}: error: out of memory: {describe(e)}; ask for less (--help says what each option costs)",
              file=sys.stderr)
        distributed.abort_others(2)
        return 2
    except KeyboardInterrupt as e:                      # Ctrl-C; Interrupted's text says what is kept
        if distributed.launched_rank() == 0:            # (under mpiexec every rank hears it: rank 0 says it)
            print(f"{prog}: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = shown


def command(prog, script=None):
    """A function: options → the shell command that runs this tool again with them, runnable as printed
    from the current folder in any shell, a virtual environment activated or not. The tool is named by
    the path it was run from (sys.argv[0]; run inside another program, the launcher in bin/), and
    preceded by the Python running now unless the script comes to this Python by itself: its own first
    line names it, or the launcher started the tool again under it (scratchvae/launch.py), as it will again."""
    script = script or sys.argv[0]
    if os.path.basename(script) != prog:
        script = os.path.join(BIN, prog)
    words = [shown_path(script)]
    try:
        with open(script, encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        first = ""
    if first.strip() != f"#!{sys.executable}" and os.environ.get(RELAUNCHED) != sys.executable:
        words.insert(0, shown_path(sys.executable))
    return lambda options: shlex.join([*words, *(str(o) for o in options)])


def under_mpiexec(command, n):
    """command (options → a shell command) started by the MPI launcher as n processes, as it was."""
    mpiexec = distributed.find_mpiexec()
    launcher = shlex.join([shown_path(mpiexec) if mpiexec else "mpiexec", "-n", str(n)])
    return lambda options: f"{launcher} {command(options)}"


def shown_path(path):
    """A path as a command names it: relative to the current folder when inside it (with a folder part,
    so a shell does not look it up on the PATH), else absolute."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    if rel.startswith(os.pardir):
        return path
    return rel if os.sep in rel else os.path.join(os.curdir, rel)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line on stderr (and exit status 2). Under an MPI
    launcher every process reads the same command line and finds the same mistake: only rank 0 says it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n" if distributed.launched_rank() == 0 else None)


def add_checkpoint_options(p):
    """--checkpoint and --best, as the tools that read a trained model take them (runfolder.load)."""
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint file (RUN_DIR/checkpoints/ckpt_*.npz), a run folder (its newest readable one), "
                        "or a safetensors file of weights in PyTorch's names and layouts (bin/export's, or PyTorch's)")
    p.add_argument("--best", action="store_true",
                   help="with a run folder: its best checkpoint (lowest held-out MSE) instead of the newest")


def run_dataset(ck, size=None):
    """The episodes the checkpoint's run trained on: a FrameDataset of the data folder its settings name, split
    as training split it (its held-out frames are data.eval_split's). A DataError when there are none to read:
    no folder named, one that cannot be read, or one that no longer holds the same episodes."""
    import warnings
    s = ck.meta.get("settings", {})
    if not s.get("data"):
        raise DataError("the checkpoint names no data folder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                     # a skipped episode file: said when training
        data = FrameDataset(s["data"], heldout=s.get("heldout", 0.1), seed=s.get("seed", 0), size=size)
    if s.get("data_fingerprint") not in (None, data.fingerprint):
        raise DataError(f"{s['data']} no longer holds the episodes the run was trained on")
    return data


def number_type(ok, expected, convert=float):
    """An argparse type: convert the text, then check it; the error says what was expected and what came."""
    def parse(text):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
        return v
    return parse


positive_int = number_type(lambda v: v >= 1, "a number of at least 1", int)
non_negative_int = number_type(lambda v: v >= 0, "a whole number of at least 0", int)
fraction = number_type(lambda v: 0 <= v < 1, "a fraction in [0, 1)")
positive_float = number_type(lambda v: 0 < v < math.inf, "a number above 0")
non_negative_float = number_type(lambda v: 0 <= v < math.inf, "a number of at least 0")


def at_most(most, why):
    """An argparse type: a whole number 1 … most; `why` says what the limit bounds (shown when it is passed)."""
    return number_type(lambda v: 1 <= v <= most, f"a number 1 … {most:,} ({why})", int)


def channel_list(text):
    """An argparse type: four channel counts, '32,64,128,256', kept as that text (RunSettings.channels)."""
    try:
        return ",".join(str(c) for c in parse_channels(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def one_voice(world):
    """Under mpiexec only rank 0 speaks: the other ranks' warnings (the same, about the same files) are not shown."""
    if world.rank != 0:
        import warnings
        warnings.simplefilter("ignore")


def together(w, fn):
    """fn() on every rank, then agree: when it raised an expected error (ValueError, OSError, …) on any rank,
    every rank raises, rank 0 the first failure (named by its rank when another's), the others ElsewhereFailed.
    Returns fn()'s value."""
    error, value = None, None
    try:
        value = fn()
    except EXPECTED as e:
        if w.size == 1:
            raise
        error = describe(e)
    failed = [(r, e) for r, e in enumerate(w.gather(error, "the other ranks' start", timeout=None)) if e]
    if failed:
        r, message = failed[0]
        if w.rank != 0:
            raise distributed.ElsewhereFailed(message)
        e = ValueError(message if r == 0 else f"rank {r}: {message}")
        e.everywhere = True                                 # every rank stops: nothing to abort
        raise e
    return value
