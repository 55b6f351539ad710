"""Command-line tools (bin/ holds thin launchers for them)."""
import argparse
import math
import sys

from ..backend import BackendError
from ..checkpoint import CheckpointError
from ..data.episodes import DataError

EXPECTED = (BackendError, CheckpointError, DataError, ValueError, OSError)


def describe(e):
    """One line for an expected error; an OSError from the system as 'FILE: what went wrong'."""
    if isinstance(e, OSError) and e.strerror and e.filename:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split()) or type(e).__name__


def run(prog, main, argv=None):
    """Run main(argv); expected mistakes (bad input, and anything the file system refuses: a
    read-only folder, a full disk) become one line on stderr and exit status 2, and warnings (a
    skipped file, say) one line each. Files are written under temporary names, so a failure
    leaves none half-written."""
    import warnings
    warnings.formatwarning = lambda message, *a, **k: f"{prog}: warning: {message}\n"
    try:
        return main(argv)
    except EXPECTED as e:
        print(f"{prog}: error: {describe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line on stderr (and exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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
