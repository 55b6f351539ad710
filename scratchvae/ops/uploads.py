"""Host → GPU copies that do not make the host wait for the GPU.

A training step sends three things to the GPU: its batch of frames, its reparameterization noise
and Adam's bias corrections. A copy from ordinary (pageable) host memory waits for everything the
GPU has queued before it, and so does allocating page-locked memory (CUDA's implicit
synchronisation). cupy.asarray stages a copy through a pool of page-locked blocks, and a block
comes back to the pool only once its copy is done: while the GPU is a few steps behind, every
step finds the pool's blocks still in flight, allocates new ones, and waits.

An Uploader owns `depth` page-locked buffers, allocated together on first use (again only when a
larger array comes), and takes them in turn:

    buffer i  ←  the array                     (host memory, page-locked)
    queue the copy buffer i → the device        (on the current stream; the host goes on at once)
    record event i behind it                   (event i done: buffer i may be written again)

Buffer i is written again `depth` uploads later, after its event says its copy was made. So the
host may run `depth` uploads ahead of the GPU and waits only past that: the back-pressure that
keeps a host which is faster than the GPU from queueing without end.

    up = Uploader()
    eps = up(rng.standard_normal((n, 32), dtype=np.float32))    # a CuPy array, its copy queued
    up(np.array([lr, c1, c2], np.float32), out=scalars)         # straight into an existing array
"""
import numpy as np


class Uploader:
    def __init__(self, depth=4):
        if depth < 1:
            raise ValueError(f"an Uploader needs at least 1 buffer, got depth={depth}")
        self.depth = depth
        self.cp = None                      # the CuPy module, imported on first use
        self.buffers = []                   # depth page-locked uint8 arrays, all of one size
        self.events = [None] * depth        # event i: recorded behind the last copy out of buffer i
        self.next = 0                       # the buffer the next upload takes

    def __call__(self, a, out=None):
        """a (a NumPy array) on the GPU: into `out` (a C-contiguous CuPy array of a's dtype and size)
        when given, else into a new array of a's shape. The copy is queued on the current stream."""
        cp = self.cp = self.cp or _cupy()
        a = np.ascontiguousarray(a)
        if out is not None and (out.dtype != a.dtype or out.size != a.size or not out.flags.c_contiguous):
            raise ValueError(f"upload into an array that does not fit: {a.dtype} {a.shape} into "
                             f"{out.dtype} {out.shape}{'' if out.flags.c_contiguous else ' (not contiguous)'}")
        if not self.buffers or a.nbytes > self.buffers[0].size:
            self._allocate(a.nbytes)
        i, self.next = self.next, (self.next + 1) % self.depth
        event = self.events[i]
        if event is not None and not event.done:                    # the GPU is depth uploads behind:
            event.synchronize()                                     # wait for buffer i's copy
        buf = self.buffers[i][:a.nbytes]                            # (nbytes,) uint8, page-locked
        buf[...] = a.reshape(-1).view(np.uint8)
        out = cp.empty(a.shape, a.dtype) if out is None else out
        stream = cp.cuda.get_current_stream()
        if a.nbytes:
            out.data.copy_from_host_async(buf.ctypes.data, a.nbytes, stream)
        if event is None:
            event = self.events[i] = cp.cuda.Event(disable_timing=True)
        event.record(stream)
        return out

    def _allocate(self, nbytes):
        """depth buffers of nbytes (rounded up to 4 KiB), after every copy out of the old ones is made."""
        for event in self.events:
            if event is not None:
                event.synchronize()
        size = -(-max(nbytes, 1) // 4096) * 4096
        self.buffers = [np.frombuffer(self.cp.cuda.alloc_pinned_memory(size), np.uint8, size)
                        for _ in range(self.depth)]


def _cupy():
    import cupy
    return cupy
