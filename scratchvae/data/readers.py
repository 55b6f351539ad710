"""Reader processes: a batch's frames read by several processes at once, straight into shared memory.

One Python thread reads about 250,000 frames a second (FrameDataset.gather: one preadv a frame, the rest
is Python's own few microseconds a frame). Threads cannot go faster together, since each frame's Python
work holds the interpreter's lock, but processes can. A Readers starts `workers` processes. Each opens
the episode files itself, and for each batch reads its share of the rows (a contiguous run of them) into
the batch's array. That array lives in shared memory (Readers.empty makes it), so nothing is copied
between processes: a request carries the array's name, the first row, and where each row's frame lies
in which file.

    readers = Readers(dataset, workers=2)
    out = readers.empty((1000, 64, 64, 3))         # uint8, in shared memory
    readers.gather(ep_idx, frame_idx, out)         # the same frames FrameDataset.gather would give
    readers.close()

The processes are started with "spawn" (a fresh interpreter, not a copy of this one, whose other
threads may hold locks) and stop when told, or when this process ends (they read from a pipe; its end
closing is their signal). A fresh interpreter imports the script that started it, so a script of your
own that makes a Readers needs the usual `if __name__ == "__main__":` around its work (the tools have it).
"""
import multiprocessing
import os
from multiprocessing import shared_memory

import numpy as np

from .dataset import read_rest
from .episodes import DataError


class Readers:
    def __init__(self, dataset, workers):
        """workers (≥ 1) processes that read dataset's episode files."""
        if workers < 1:
            raise ValueError(f"Readers needs at least 1 worker process, got {workers}")
        self.ds, self.workers = dataset, int(workers)
        self._segments = {}                             # name → SharedMemory this process made (empty())
        ctx = multiprocessing.get_context("spawn")
        self._pipes, self._procs = [], []
        for _ in range(self.workers):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_work, args=(theirs, list(dataset.paths), dataset.frame_bytes),
                               name="scratchvae-reader", daemon=True)
            proc.start()
            theirs.close()
            self._pipes.append(mine)
            self._procs.append(proc)

    def empty(self, shape):
        """A uint8 array of `shape` in shared memory, which the reader processes can fill (gather's out)."""
        nbytes = max(1, int(np.prod(shape)))
        seg = shared_memory.SharedMemory(create=True, size=nbytes)
        self._segments[seg.name] = seg
        return np.ndarray(shape, np.uint8, buffer=seg.buf)

    def gather(self, ep_idx, frame_idx, out):
        """FrameDataset.gather's frames in out (an array from empty(), or a leading run of its rows), each
        process reading a contiguous share of the rows."""
        if not self._procs:
            raise RuntimeError("Readers.gather after close(): the reader processes have stopped")
        ds, fb = self.ds, self.ds.frame_bytes
        ep_idx, frame_idx, where = ds.places(ep_idx, frame_idx)                            # (N,) each
        n = len(ep_idx)
        seg = self._segment_of(out)
        if out.dtype != np.uint8 or out.shape != (n, *ds.size, 3) or not out.flags.c_contiguous:
            raise ValueError(f"Readers.gather writes into a C-contiguous uint8 ({n}, {ds.size[0]}, {ds.size[1]}, 3) "
                             f"array from Readers.empty, got {out.dtype} {out.shape}")
        first = out.ctypes.data - _address(seg)                                           # out's first byte in seg
        cuts = np.linspace(0, n, self.workers + 1).astype(int)
        busy = []
        for pipe, lo, hi in zip(self._pipes, cuts[:-1], cuts[1:]):
            if hi > lo:                                 # rows lo … hi − 1 to this process
                pipe.send((seg.name, first + int(lo) * fb, ep_idx[lo:hi], where[lo:hi], frame_idx[lo:hi]))
                busy.append(pipe)
        errors = []
        for pipe in busy:
            try:
                reply = pipe.recv()
            except (EOFError, OSError):
                reply = "a reader process ended"
            if reply is not None:
                errors.append(reply)
        if errors:
            raise DataError(errors[0])
        return out

    def close(self):
        """Stop the processes and free the shared memory this process made."""
        for pipe in self._pipes:
            try:
                pipe.send(None)
                pipe.close()
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        self._pipes, self._procs = [], []
        for seg in self._segments.values():
            try:
                seg.close()
            except BufferError:                         # (an array made by empty() is still held: it keeps the
                pass                                    # memory until it goes; the name goes now)
            try:
                seg.unlink()
            except FileNotFoundError:
                pass
        self._segments = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _segment_of(self, out):
        """The shared segment out lies in (a ValueError if none of empty()'s does)."""
        base = out.ctypes.data
        for seg in self._segments.values():
            if _address(seg) <= base and base + out.nbytes <= _address(seg) + seg.size:
                return seg
        raise ValueError("Readers.gather writes into an array from Readers.empty (shared memory the reader "
                         "processes can reach), got another array")


def _address(seg):
    return np.frombuffer(seg.buf, np.uint8, 1).ctypes.data


def _work(pipe, paths, frame_bytes):
    """A reader process: for each request (segment, first byte, episodes, positions, frames), one preadv a frame
    into the segment, row after row; replies None, or what went wrong in one line."""
    fds, segments = {}, {}
    try:
        while True:
            try:
                request = pipe.recv()
            except (EOFError, OSError):
                return
            if request is None:
                return
            name, first, eps, where, frames = request
            seg = segments.get(name)
            if seg is None:
                seg = segments[name] = shared_memory.SharedMemory(name=name)
            rows, row, error = seg.buf, None, None
            for i, (ep, pos) in enumerate(zip(eps.tolist(), where.tolist())):
                fd = fds.get(ep)
                if fd is None:
                    fd = fds[ep] = os.open(paths[ep], os.O_RDONLY)
                row = rows[first + i * frame_bytes:first + (i + 1) * frame_bytes]
                if os.preadv(fd, [row], pos) != frame_bytes and read_rest(fd, row, pos) != frame_bytes:
                    error = f"{paths[ep]}: truncated while reading frame {int(frames[i])}"
                    break
            del rows, row
            pipe.send(error)
    finally:
        for fd in fds.values():
            os.close(fd)
        for seg in segments.values():
            seg.close()
