"""Command-line tools (bin/ holds thin launchers for them)."""
import sys

from ..backend import BackendError
from ..checkpoint import CheckpointError
from ..data.episodes import DataError

EXPECTED = (BackendError, CheckpointError, DataError, ValueError, FileNotFoundError, NotADirectoryError,
            PermissionError, IsADirectoryError, FileExistsError)


def run(prog, main, argv=None):
    """Run main(argv); expected mistakes become one line on stderr and exit status 2."""
    try:
        return main(argv)
    except EXPECTED as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def positive_int(text):
    import argparse
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {v}")
    return v


def fraction(text):
    import argparse
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {v}")
    return v
