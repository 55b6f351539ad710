"""The Uploader's ring of page-locked buffers, on the CPU, with CuPy stood in for by a GPU that makes its
queued copies only when told to (or when the host waits on an event): a buffer must never be written again
before the copy out of it is made, the host must wait only when it is `depth` uploads ahead, and the buffers
are allocated once. tests/test_gpu.py holds the real one to it: a training step does not wait for a busy GPU."""
import ctypes
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from scratchvae.ops.uploads import Uploader


class FakeGPU:
    """Queued copies, made in order when run(); events done once the copies before them are made."""

    def __init__(self):
        self.queue, self.made, self.allocations = [], 0, []
        self.waits = 0                                           # times the host waited for a copy not yet made
        gpu = self

        class Event:
            def __init__(self, disable_timing=False):
                self.at = None

            def record(self, stream):
                self.at = len(gpu.queue) + gpu.made              # done once this many copies are made

            @property
            def done(self):
                return gpu.made >= self.at

            def synchronize(self):
                gpu.waits += not self.done
                gpu.run(self.at - gpu.made)

        class Array:
            def __init__(self, shape, dtype):
                self.host = np.full(shape, 255).astype(dtype)      # not yet copied into
                self.shape, self.dtype, self.size = self.host.shape, self.host.dtype, self.host.size
                self.flags = SimpleNamespace(c_contiguous=True)
                self.data = SimpleNamespace(copy_from_host_async=self._copy)

            def _copy(self, ptr, nbytes, stream):                # read the host memory when the copy is made
                gpu.queue.append(lambda: self.host.reshape(-1).view(np.uint8).__setitem__(
                    slice(None), np.frombuffer(ctypes.string_at(ptr, nbytes), np.uint8)))

        def alloc_pinned_memory(size):
            gpu.allocations.append(size)
            return bytearray(size)

        self.module = SimpleNamespace(
            empty=Array,
            cuda=SimpleNamespace(Event=Event, alloc_pinned_memory=alloc_pinned_memory,
                                 get_current_stream=lambda: "stream"))

    def run(self, n=None):
        n = len(self.queue) if n is None else n
        for copy in self.queue[:n]:
            copy()
        self.queue, self.made = self.queue[n:], self.made + n


@pytest.fixture
def gpu(monkeypatch):
    """The FakeGPU's module as what `import cupy` finds."""
    fake = FakeGPU()
    monkeypatch.setitem(sys.modules, "cupy", fake.module)
    return fake


def arrays(k, shape=(5, 3), dtype=np.float32):
    rng = np.random.default_rng(k)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(k)]


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_a_gpu_that_falls_behind_makes_the_host_wait_only_past_depth(gpu, depth):
    up = Uploader(depth=depth)
    ins = arrays(10)
    outs = []
    for i, a in enumerate(ins):
        outs.append(up(a))
        assert gpu.waits == max(0, i + 1 - depth)                 # the GPU made no copy on its own
    gpu.run()
    for a, out in zip(ins, outs):                               # every copy read its own array: no buffer
        np.testing.assert_array_equal(out.host, a)              # was written again before its copy was made
    assert len(gpu.allocations) == depth                        # the buffers, allocated together, once


def test_a_gpu_that_keeps_up_never_makes_the_host_wait(gpu):
    up = Uploader(depth=2)
    for a in arrays(6):
        out = up(a)
        gpu.run()
        np.testing.assert_array_equal(out.host, a)
    assert gpu.waits == 0


def test_a_larger_array_gets_larger_buffers_after_the_copies_in_flight(gpu):
    up = Uploader(depth=3)
    small, big = arrays(2, (4,)), arrays(1, (5000,), np.float64)
    outs = [up(a) for a in small]
    assert gpu.allocations == [4096] * 3
    out = up(big[0])                                            # 40,000 bytes: new buffers,
    assert gpu.allocations == [4096] * 3 + [40960] * 3
    assert not gpu.queue[:-1] and gpu.made == 2                 # the old ones' copies made first
    gpu.run()
    for a, o in zip(small + big, outs + [out]):
        np.testing.assert_array_equal(o.host, a)


def test_into_an_existing_array_and_what_does_not_fit(gpu):
    up = Uploader()
    hyper = gpu.module.empty((3,), np.float32)
    assert up(np.array([1e-3, 0.1, 0.001], np.float32), out=hyper) is hyper
    gpu.run()
    np.testing.assert_array_equal(hyper.host, np.array([1e-3, 0.1, 0.001], np.float32))
    with pytest.raises(ValueError, match=r"upload into an array that does not fit: float64 \(3,\) into float32 \(3,\)"):
        up(np.zeros(3), out=hyper)
    with pytest.raises(ValueError, match=r"float32 \(4,\) into float32 \(3,\)"):
        up(np.zeros(4, np.float32), out=hyper)
    with pytest.raises(ValueError, match="at least 1 buffer"):
        Uploader(depth=0)


def test_an_empty_array_and_a_strided_one(gpu):
    up = Uploader()
    a = np.arange(24, dtype=np.uint8).reshape(4, 6)[:, ::2]    # not contiguous: uploaded as its values
    out, empty = up(a), up(np.zeros((0, 3), np.float32))
    gpu.run()
    np.testing.assert_array_equal(out.host, a)
    assert empty.shape == (0, 3)
