"""One model trained by N processes: the ranks an MPI launcher starts, and the one sum they share.

    mpiexec -n 4 bin/train-scratch --data DIR --out RUN --batch-size 400

Data parallelism. Every rank holds the whole model and the same Adam state. Each step's global
batch of B images (which frames, and their noise) is drawn from the seed as one process would draw
it; rank r takes its shard, images lo … hi − 1 with (lo, hi) = (B·r // N, B·(r + 1) // N), runs
forward and backward on them, and weights its gradient by its share n_r/B = (hi − lo)/B. One
all-reduce, a sum over the ranks of the flat gradient buffer, then leaves every rank the gradient
of the whole batch:

    ∂L/∂θ = (1/B) Σ_i ∂ℓ_i/∂θ = Σ_r (n_r/B) · (1/n_r) Σ_{i in shard r} ∂ℓ_i/∂θ

(each image's loss ℓ_i, free bits included, depends on that image alone; only the mean joins them),
and every rank applies the same Adam update to the same numbers. So a run does not depend on N: two
processes give what one gives, to rounding (tests/test_distributed.py).

How the sum travels: on the CPU, MPI (mpi4py) over host buffers; on GPUs, NCCL over device buffers
(CuPy's bindings, NCCL's id sent over MPI), one GPU per rank picked by its rank on its own machine;
where NCCL cannot run (two ranks on one card, no NCCL) the buffer goes through the host and MPI.

Never a hang. A rank waiting for the others polls its request and, every WATCH_EVERY seconds, checks
that the ranks on its own machine are still alive (their process ids) and that the wait has not
passed `timeout` (a rank on another machine that died or hangs): then PeerLost, one line naming the
rank, instead of waiting for ever. (Most launchers also end the others when one rank dies.)

Without a launcher (or with one process) world() is a World of one, whose every method is a no-op,
and mpi4py is not imported.
"""
import hashlib
import os
import shutil
import socket
import sys
import time

import numpy as np

from ..ops.devices import address, is_gpu_array, to_numpy

# what the launchers set: Open MPI's mpirun, Hydra's mpiexec (MPICH, Intel MPI), Slurm's srun
SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")
WATCH_EVERY = 0.5                                          # seconds between looks at the other ranks while waiting
DEFAULT_TIMEOUT = 900.0                                    # seconds a wait may last (a checkpoint, an evaluation)
MPI_HINT = 'pip install -e ".[distributed]" (mpi4py, and Intel\'s MPI runtime with its mpiexec)'


class MissingMPI(RuntimeError):
    """Started by an MPI launcher, but mpi4py cannot be imported; the message says how to install it."""


class PeerLost(RuntimeError):
    """Another rank ended, or has not answered for `timeout` seconds; the message says which and where."""


class ElsewhereFailed(Exception):
    """Another rank failed in a step every rank takes together; rank 0 says why, this rank stops quietly."""


RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")


def launched_rank(env=None):
    """This process's rank as the MPI launcher numbered it (0 without a launcher): known before MPI is loaded."""
    env = os.environ if env is None else env
    if launched_size(env) > 1:
        for var in RANK_VARS:
            if env.get(var, "").isdigit():
                return int(env[var])
    return 0


def launched_size(env=None):
    """How many processes the MPI launcher that started this one started (1 without a launcher)."""
    env = os.environ if env is None else env
    for var in SIZE_VARS:
        if env.get(var, "").isdigit():
            return int(env[var])
    return 1


def find_mpiexec():
    """The path of the mpiexec the distributed extra installs beside this Python, else the PATH's; None if neither."""
    return shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


def shard(n, rank, size):
    """(lo, hi): rank's run of n items cut into `size` runs, in rank order, their lengths differing by at most
    one (equal when size divides n)."""
    return n * rank // size, n * (rank + 1) // size


def alive(pid):
    """Whether process pid (on this machine) still runs: it exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class World:
    """The ranks of one job. comm: an mpi4py communicator (None: one process alone)."""

    def __init__(self, comm=None, timeout=DEFAULT_TIMEOUT, mpi=None):
        self.comm, self.mpi, self.timeout = comm, mpi, timeout
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.local_rank, self.local_size, self.peers = 0, 1, {}
        self.gpu_sum = None                             # NcclSum once use_gpu() found NCCL usable
        self.sum_seconds = 0.0                          # time spent in allreduce (the sum, and waiting for it)
        self.transport = "none" if self.size == 1 else "MPI"
        if self.size > 1:
            node = comm.Split_type(mpi.COMM_TYPE_SHARED)   # the ranks on this machine
            self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
            everyone = comm.allgather((self.host, self.pid))
            self.peers = {r: pid for r, (host, pid) in enumerate(everyone) if host == self.host and r != self.rank}

    def __repr__(self):
        return f"World(rank {self.rank} of {self.size}, {self.local_size} on {self.host}, sums by {self.transport})"

    # ---- waiting, watched ------------------------------------------------------------------------
    def watch(self, what, waited, timeout):
        """PeerLost when a rank on this machine has ended, or the wait has lasted past the timeout (None: none)."""
        gone = [r for r, pid in sorted(self.peers.items()) if not alive(pid)]
        if gone:
            r = gone[0]
            raise PeerLost(f"rank {r} (process {self.peers[r]} on {self.host}) ended while rank {self.rank} "
                           f"waited for it ({what})")
        if timeout and waited > timeout:
            raise PeerLost(f"rank {self.rank} heard nothing from the other ranks for {waited:.0f} s ({what}): a "
                           "rank on another machine ended or hangs")

    def wait(self, done, what, timeout=-1):
        """Wait until done() is true (an MPI request's Test, a GPU event's query), watching the other ranks;
        timeout: seconds (None: only the ranks' ends are watched; -1: the World's own)."""
        timeout = self.timeout if timeout == -1 else timeout
        if done():
            return
        start = checked = time.monotonic()
        pause = 1e-5
        while not done():
            time.sleep(pause)
            pause = min(2 * pause, 1e-3)                    # short waits answered fast, long ones cheaply
            now = time.monotonic()
            if now - checked >= WATCH_EVERY:
                checked = now
                self.watch(what, now - start, timeout)

    # ---- collectives -----------------------------------------------------------------------------
    def allreduce(self, a, what="the gradients' sum"):
        """a ← Σ over the ranks of a, in place, on every rank (a: a C-contiguous NumPy or CuPy array).
        On a GPU with NCCL the sum is queued on the current stream; otherwise it is done on return."""
        if self.size == 1:
            return a
        t = time.perf_counter()
        if is_gpu_array(a) and self.gpu_sum is not None:
            self.gpu_sum(a)
        else:
            host = to_numpy(a) if is_gpu_array(a) else a    # a GPU array without NCCL: through the host
            self.wait(self.comm.Iallreduce(self.mpi.IN_PLACE, host, op=self.mpi.SUM).Test, what)
            if host is not a:
                a.set(host)
        self.sum_seconds += time.perf_counter() - t
        return a

    @property
    def alone(self):
        """True for a World of one process (whose collectives do nothing)."""
        return self.size == 1

    def largest(self, value, what="whether to stop"):
        """The largest of the ranks' values (whole numbers): a flag any rank raised, raised on every rank."""
        if self.size == 1:
            return int(value)
        v = np.array([int(value)], np.int64)
        self.wait(self.comm.Iallreduce(self.mpi.IN_PLACE, v, op=self.mpi.MAX).Test, what)
        return int(v[0])

    def same_everywhere(self, data, what):
        """Whether every rank's data() (bytes) is the same, compared by their SHA-256 digests, all ranks taking
        part; True at once for a World of one (data is not called)."""
        if self.size == 1:
            return True
        return len(set(self.gather(hashlib.sha256(data()).hexdigest(), what))) == 1

    def sum_share(self, seconds):
        """{"allreduce_share": the share of `seconds` this rank spent in the sums (and waiting for the others)}
        since the last call, for a log row; {} for a World of one."""
        if self.size == 1:
            return {}
        share, self.sum_seconds = self.sum_seconds / max(seconds, 1e-9), 0.0
        return {"allreduce_share": share}

    def barrier(self, what, timeout=-1):
        if self.size > 1:
            self.wait(self.comm.Ibarrier().Test, what, timeout)

    def gather(self, value, what, timeout=-1):
        """Every rank's value (picklable), in rank order, on every rank; the wait watched."""
        if self.size == 1:
            return [value]
        self.barrier(what, timeout)                         # the watched wait; the allgather is then quick
        return self.comm.allgather(value)

    def wait_device(self, what):
        """Wait, watching the other ranks, until the GPU has done what is queued on the current stream (NCCL's
        sums included: a rank that ended would leave them waiting for ever)."""
        if self.gpu_sum is None:
            return
        import cupy
        event = cupy.cuda.Event(disable_timing=True)
        event.record()
        try:
            self.wait(lambda: event.done, what)
        except PeerLost:
            self.gpu_sum.abort()                            # NCCL's kernels would never end
            raise

    def abort(self, code):
        """End every rank at once (MPI_Abort): for a failure the other ranks cannot know of."""
        if self.size > 1:
            self.comm.Abort(code)

    # ---- GPUs ------------------------------------------------------------------------------------
    def use_gpu(self):
        """One GPU per rank: device local_rank mod the cards this machine has. The sums go through NCCL when
        every rank has a card of its own and NCCL is there, else through the host. Returns (device, why)."""
        import cupy
        cards = cupy.cuda.runtime.getDeviceCount()
        device = self.local_rank % cards
        cupy.cuda.Device(device).use()
        if self.size == 1:
            return device, "one process"
        try:
            from cupy.cuda import nccl
        except ImportError:
            nccl = None
        own = self.local_size <= cards
        have = nccl is not None and getattr(nccl, "available", True)
        if have:
            try:
                nccl.get_version()                          # its library loads (a CuPy wheel may lack it)
            except Exception:
                have = False
        if self.comm.allreduce(int(own and have), op=self.mpi.MIN):
            self.gpu_sum, self.transport = NcclSum(self, nccl, cupy), "NCCL"
            return device, "NCCL, one card per rank"
        self.transport = "MPI through the host"
        why = "no NCCL in this CuPy" if not have else f"{self.local_size} ranks share {cards} card(s) on {self.host}"
        return device, f"MPI through the host ({why}; NCCL needs a card per rank)"


class NcclSum:
    """Σ over the ranks of a device array, in place, by NCCL on the current stream (queued, not awaited)."""

    def __init__(self, world, nccl, cupy):
        uid = world.comm.bcast(nccl.get_unique_id() if world.rank == 0 else None, root=0)
        self.nccl, self.cupy = nccl, cupy
        self.comm = nccl.NcclCommunicator(world.size, uid, world.rank)
        self.kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def __call__(self, a):
        if not a.flags.c_contiguous or a.dtype not in self.kinds:
            raise ValueError(f"NCCL sums C-contiguous float32 or float64 arrays, got {a.dtype} {a.shape}")
        p = address(a)
        self.comm.allReduce(p, p, a.size, self.kinds[a.dtype], self.nccl.NCCL_SUM,
                            self.cupy.cuda.get_current_stream().ptr)

    def abort(self):
        self.comm.abort()


_world = None


def world(timeout=DEFAULT_TIMEOUT):
    """This process's World: the launcher's ranks when an MPI launcher started more than one process (mpi4py
    imported then, and only then), else a World of one. Made once; later calls return the same."""
    global _world
    if _world is None:
        if launched_size() > 1:
            try:
                from mpi4py import MPI
            except ImportError as e:
                raise MissingMPI(f"started by an MPI launcher as {launched_size()} processes, but mpi4py cannot "
                                     f"be imported ({e}): {MPI_HINT}") from None
            if MPI.COMM_WORLD.Get_size() != launched_size():
                library = MPI.Get_library_version().splitlines()[0].strip()
                raise MissingMPI(f"the launcher started {launched_size()} processes, but MPI sees "
                                 f"{MPI.COMM_WORLD.Get_size()}: the MPI that mpi4py loads ({library}) is not the "
                                 "launcher's; start the job with that MPI's mpiexec, or build mpi4py against the "
                                 "launcher's MPI")
            _world = World(MPI.COMM_WORLD, timeout, MPI)
            from ..ops import threads
            # the machine's cores shared among its ranks (a launcher that pins each rank to its own has done it)
            threads.set_workers(max(1, min(threads.CORES, (os.cpu_count() or 1) // _world.local_size)))
        else:
            _world = World(timeout=timeout)
    return _world


def abort_others(code):
    """After a failure on this rank alone: end the other ranks too (nothing when this is the only one)."""
    if _world is not None and _world.size > 1:
        _world.abort(code)
