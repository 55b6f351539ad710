"""Batches read ahead: a thread reads the frames of the next steps while the model works on this one.

A step's batch is a function of (seed, step) alone (run/batches.py), so which frames step k + 1 needs is
known before step k ends. The feed's thread reads them then: the model's step (BLAS on the CPU, the GPU's
queued work) and the reads (system calls, which let go of Python's lock) overlap, and a step finds its
frames waiting.

    feed = Feed(read, (64, 64, 3))        # read(k, take): batch k's uint8 frames, in take(n)'s array
    frames = feed.get(k)                  # batch k: waiting already when k follows the last get
    frames = feed.get(k + 1)
    feed.close()

The thread reads k, k + 1, k + 2, … and keeps at most `depth` finished batches waiting. A get of another k
than the next (the first get, a resume, a jump) stops it and starts it again from there; an exception in
read reaches the caller at the get of that batch, as if it had been read there.

The arrays come from a ring of depth + 2 buffers made once (no 12 MB allocation a step, with its page
faults): the one get returned, up to depth waiting and the one being read. So an array get returns is
the caller's until its next get (the thread takes depth + 1 more buffers before it comes round to it
again, from wherever a restart left the ring), and is written again after that.
"""
import queue
import threading

import numpy as np


class Feed:
    def __init__(self, read, frame_shape, depth=2, empty=None):
        """read(k, take): batch k as a uint8 array made by take(n) (n frames of frame_shape), filled, or None
        (no frames). depth: how many batches the thread may read ahead (≥ 1). empty(shape): how the ring's
        buffers are made (default np.empty of uint8; Readers.empty for shared memory)."""
        if depth < 1:
            raise ValueError(f"a Feed reads at least 1 batch ahead, got depth={depth}")
        self.read, self.frame_shape, self.depth = read, tuple(frame_shape), depth
        self.empty = empty or (lambda shape: np.empty(shape, np.uint8))
        self._thread = None
        self._next = None                     # the k the next get takes from the thread
        self._ring, self._slot = [], 0        # depth + 2 buffers, taken in turn; the one take() gives next

    def get(self, k):
        """Batch k's frames (read(k, take)'s array, or None)."""
        if self._thread is None or k != self._next:
            self._restart(k)
        got, what = self._queue.get()
        self._next = k + 1
        if isinstance(what, BaseException):
            self._stop()
            raise what
        assert got == k, (got, k)
        return what

    def close(self):
        """Stop the thread (reads in flight finish first; nothing read ahead is kept)."""
        self._stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- the thread -----------------------------------------------------------------------------
    def _restart(self, k):
        self._stop()
        self._queue = queue.Queue(self.depth)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(k, self._queue, self._stopping),
                                        name="scratchvae-feed", daemon=True)
        self._thread.start()

    def _run(self, k, out, stopping):
        while not stopping.is_set():
            try:
                item = (k, self.read(k, self._take))
            except BaseException as e:          # (delivered at that batch's get, then the thread ends)
                item = (k, e)
            while not stopping.is_set():        # put, waiting for room, unless told to stop
                try:
                    out.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if isinstance(item[1], BaseException):
                return
            k += 1

    def _stop(self):
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread, self._next = None, None

    def _take(self, n):
        """A uint8 array for n frames of the dataset's shape: the ring's next buffer, or a prefix of it."""
        shape = self.frame_shape
        if not self._ring or self._ring[0].shape[0] < n:
            self._ring = [self.empty((n, *shape)) for _ in range(self.depth + 2)]
        buf, self._slot = self._ring[self._slot], (self._slot + 1) % len(self._ring)
        return buf[:n]                                      # (n, H, W, 3), C-contiguous
