"""Write a file under a temporary name in the same folder, then rename it into place.

A reader sees either the old file or the whole new one, never half of it.
"""
import contextlib
import errno
import glob
import os
import secrets


def temporary_beside(path):
    """(fd, name) of a new hidden temporary file, .NAME.XXXXXXXX.tmp, in `path`'s folder, open for writing.
    Made with mode 0o666 less the process's umask, as an ordinary new file is (the system applies the umask:
    nothing reads or changes it); an OSError names `path`, the file meant, not the temporary one."""
    folder = os.path.dirname(os.path.abspath(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:                         # another writer's: draw another name
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from None


def make_folder(path):
    """Make folder `path` and any missing parents; returns the folders made, outermost first. A file where a
    folder is needed is an error that names it (os.makedirs would say only "File exists" or "Not a directory")."""
    probe, made = os.path.normpath(path), []
    while probe and not os.path.exists(probe):          # the nearest part of the path that exists
        made.insert(0, probe)
        probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
        raise NotADirectoryError(errno.ENOTDIR, f"{probe} is a file, not a folder", path)
    os.makedirs(path, exist_ok=True)
    return made


def folder_for(path):
    """with folder_for(path): … — folder `path` made if need be for what the block writes; when the block fails,
    the folders made for it are removed again if still empty, so a command that fails leaves no folder behind."""
    return removed_on_failure(make_folder(path))


@contextlib.contextmanager
def removed_on_failure(made):
    """with removed_on_failure(folders): … — the folders (outermost first, as make_folder returns them) removed
    again, innermost first, when the block fails and they are still empty."""
    try:
        yield
    except BaseException:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def remove_temporaries(folder):
    """Remove the temporary files (.NAME.XXXX.tmp) that a writer killed in the middle of atomic_write left in
    `folder`. Only for a folder no other process is writing (its lock held)."""
    for path in glob.glob(os.path.join(folder, ".*.tmp")):
        os.unlink(path)


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """with atomic_write(path) as f: ... — the file appears at `path` only if the block finishes."""
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and e.filename in (None, tmp):
            raise OSError(e.errno, e.strerror, path) from None     # e.g. a full disk, said of `path`
        raise
