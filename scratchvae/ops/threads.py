"""Strided copies and adds on every CPU core.

NumPy lets go of the GIL inside a copy or an add, so threads run them in parallel. The
matrix products already use every core (OpenBLAS); the window copies of im2col, the adds
of col2im and the interleaving of the parity split are single loops in NumPy, and on
short rows they are limited by the loop, not by memory, so two cores do them in less
time. The caller says how to cut its job (into channels, say): one slice per core. Each worker
does its slice under the caller's np.errstate (which NumPy keeps per thread).

For small jobs the function is simply called once, on the whole range.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
# How many threads share a job. One by default: importing the package changes nothing in the program
# that imports it. Using every core pays only while OpenBLAS's own threads sleep between matrix
# products; by default they spin on the cores for 2^28 cycles after each product and the copies would
# fight them for the cores (one thread is then faster: bench/README.md). OpenBLAS reads
# OPENBLAS_THREAD_TIMEOUT once, when NumPy loads it, so only a program's launcher can set it: the
# tools in bin/ set it before anything imports NumPy, then call use_every_core().
WORKERS = 1
MIN_SIZE = 1 << 16              # array elements: below this, one thread is quicker than handing out the work

_pool, _pool_pid = None, None


def set_workers(n):
    """Share jobs among n threads from now on (1: every job runs on the calling thread)."""
    global WORKERS, _pool
    if int(n) < 1:
        raise ValueError(f"workers must be at least 1, got {n}")
    if _pool is not None and _pool_pid == os.getpid():
        _pool.shutdown(wait=False)
    WORKERS, _pool = int(n), None


def use_every_core():
    """For a program's launcher: one thread per core when OpenBLAS's threads were told to sleep
    (OPENBLAS_THREAD_TIMEOUT set before NumPy loaded), else one."""
    set_workers(CORES if os.environ.get("OPENBLAS_THREAD_TIMEOUT") else 1)


def _executor():
    """The thread pool, made on first use, and again in a child process after a fork (whose copy
    of the pool has no threads)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool, _pool_pid = ThreadPoolExecutor(WORKERS, thread_name_prefix="scratchvae"), os.getpid()
    return _pool


def parallel(fn, n, size):
    """Call fn(slice) for slices of range(n) that cover it, one per core, and wait for them all.
    The slices must touch disjoint memory (each writes its own channels, say).

    size: how many array elements the whole job touches (a job under MIN_SIZE stays on one thread).
    For the CPU's NumPy arrays only: on the GPU a job is one kernel, which the device runs in parallel."""
    parts = min(WORKERS, n)
    if parts < 2 or size < MIN_SIZE:
        fn(slice(0, n))
        return
    bounds = [n * i // parts for i in range(parts + 1)]
    errors = np.geterr()                                    # np.errstate is per thread: the caller's, in each

    def call(part):
        with np.errstate(**errors):
            fn(part)
    for f in [_executor().submit(call, slice(a, b)) for a, b in zip(bounds, bounds[1:])]:
        f.result()                                          # re-raises a worker's exception here
