"""One writer at a time: an exclusive lock on a folder, held while a tool writes into it.

The lock is the operating system's (flock on FOLDER/.lock), so it ends with the process that
holds it, however that process ends: a crash or a SIGKILL leaves no stale lock behind. The
holder writes its pid and its name into the file, so a second writer is told whom it met.
A second writer is refused at once; it never waits.
"""
import contextlib
import fcntl
import os

from .atomic import make_folder

LOCK_NAME = ".lock"
_held = {}                                  # real path of a folder → the fd of its lock, held by this process


class FolderInUse(RuntimeError):
    """Another process holds the folder's lock; the message names it."""


def holder(folder):
    """'NAME (pid N)' of the process whose pid the folder's lock file names, or 'another process'."""
    try:
        with open(os.path.join(folder, LOCK_NAME)) as f:
            pid, name = (f.read(200).split() + ["", ""])[:2]
    except OSError:
        pid, name = "", ""
    return f"{name or 'another process'} (pid {pid})" if pid.isdigit() else "another process"


@contextlib.contextmanager
def locked(folder, tool):
    """with locked(folder, "train-scratch"): … — inside the block this process is the folder's only
    writer. The folder is made if need be (and removed again at the end if the block left nothing
    in it). Taking the lock again inside the block is allowed and changes nothing.

    Raises FolderInUse when another process holds it."""
    key = os.path.realpath(folder)
    if key in _held:
        yield
        return
    created = not os.path.isdir(folder)
    make_folder(folder)
    path = os.path.join(folder, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FolderInUse(f"{folder} is in use by {holder(folder)}, which is writing into it; wait for it to "
                          "end, or use another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {tool}\n".encode(), 0)
    _held[key] = fd
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            if created and os.listdir(folder) == [LOCK_NAME]:      # made for nothing: leave no trace
                os.unlink(path)
                os.rmdir(folder)
        os.close(fd)
