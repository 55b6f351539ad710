"""Training on several processes (scratchvae/run/distributed.py): the pieces on stand-ins, then the tool itself
under a real MPI launcher: N processes train what one trains, and a rank that dies never leaves a hang."""
import os
import signal
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.run import distributed
from scratchvae.ops.devices import get_xp, to_numpy
from scratchvae.run.distributed import NcclSum, PeerLost, World, shard

from runs import ROOT, SMALL, tiny_data

MPIEXEC = distributed.find_mpiexec()
# Open MPI's mpiexec refuses root (a container's usual user) without these; other MPIs ignore them
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason='no mpiexec: pip install -e ".[distributed]" (make test does)')


# ---- the pieces, on stand-ins ----------------------------------------------------------------------------
@given(n=st.integers(0, 1000), size=st.integers(1, 64))
def test_shards_cover_the_batch_in_rank_order(n, size):
    bounds = [shard(n, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(hi == lo2 for (_, hi), (lo2, _) in zip(bounds, bounds[1:]))      # one after another, no gaps
    lengths = [hi - lo for lo, hi in bounds]
    assert max(lengths) - min(lengths) <= 1
    if n % size == 0:
        assert set(lengths) == {n // size}


class FakeMPI:
    COMM_TYPE_SHARED, IN_PLACE, SUM, MAX, MIN = "shared", "in place", "sum", "max", "min"


class Done:
    def Test(self):
        return True


class FakeComm:
    """Rank `rank` of `size`, all on this machine, the others' processes given by pids; a sum adds `others`
    times the rank's own numbers (as if every other rank held the same)."""

    def __init__(self, rank, pids):
        self.rank, self.pids = rank, pids

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return len(self.pids)

    def Split_type(self, kind):
        assert kind == FakeMPI.COMM_TYPE_SHARED
        return self

    def allgather(self, value):
        import socket
        return [(socket.gethostname(), pid) for pid in self.pids]

    def allreduce(self, value, op):
        return value

    def bcast(self, value, root):
        return value

    def Iallreduce(self, where, a, op):
        assert where == FakeMPI.IN_PLACE and op in (FakeMPI.SUM, FakeMPI.MAX)
        if op == FakeMPI.SUM:
            a *= len(self.pids)
        return Done()


def ended_pid():
    """The process id of a process that has ended (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_world_of_one_changes_nothing():
    w = World()
    a = np.arange(5.0)
    assert (w.size, w.rank) == (1, 0)
    assert w.allreduce(a) is a and np.array_equal(a, np.arange(5.0))
    assert w.largest(3) == 3 and w.gather("x", "test") == ["x"] and w.alone and w.sum_share(1.0) == {}


def test_a_sum_over_ranks_is_in_place_on_either_device(device):
    """The host path (MPI): a GPU array goes to the host, is summed there, and comes back into itself."""
    xp = get_xp(device)
    w = World(FakeComm(0, [os.getpid(), os.getppid()]), mpi=FakeMPI)
    a = xp.arange(6, dtype=np.float64)
    rows = xp.zeros((4, 3))
    rows[:2] = 1
    assert w.allreduce(a) is a
    assert np.array_equal(to_numpy(a), 2 * np.arange(6.0))
    w.allreduce(rows[:2])                                   # the trainer's first rows of its losses buffer
    assert np.array_equal(to_numpy(rows), [[2, 2, 2], [2, 2, 2], [0, 0, 0], [0, 0, 0]])


def test_a_wait_returns_once_done():
    w = World(FakeComm(0, [os.getpid(), os.getppid()]), mpi=FakeMPI)
    calls = []
    w.wait(lambda: calls.append(1) or len(calls) >= 4, "test")
    assert len(calls) == 4


def test_a_rank_that_ended_is_named_instead_of_waited_for():
    gone = ended_pid()
    w = World(FakeComm(0, [os.getpid(), gone]), mpi=FakeMPI)
    t = time.monotonic()
    with pytest.raises(PeerLost, match=rf"rank 1 \(process {gone} on .*\) ended while rank 0 waited for it \(the "
                                       r"gradients' sum\)"):
        w.wait(lambda: False, "the gradients' sum")
    assert time.monotonic() - t < 5 * distributed.WATCH_EVERY


def test_a_wait_past_the_timeout_ends_with_a_reason():
    w = World(FakeComm(1, [os.getppid(), os.getpid()]), timeout=0.6, mpi=FakeMPI)
    with pytest.raises(PeerLost, match=r"rank 1 heard nothing from the other ranks for \d+ s \(a test\)"):
        w.wait(lambda: False, "a test")


class FakeNccl:
    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0

    def __init__(self):
        self.calls = []
        nccl = self

        class Communicator:
            def __init__(self, n, uid, rank):
                nccl.made = (n, uid, rank)

            def allReduce(self, *args):
                nccl.calls.append(args)
        self.NcclCommunicator = Communicator

    def get_unique_id(self):
        return (1, 2, 3)

    def get_version(self):
        return 22000


class FakeCupy:
    """What use_gpu and NcclSum ask of CuPy: the number of cards, the current device and stream."""

    def __init__(self, cards):
        fake = self
        self.used = None

        class Device:
            def __init__(self, i):
                self.i = i

            def use(self):
                fake.used = self.i

        class Stream:
            ptr = 1234

        class Runtime:
            @staticmethod
            def getDeviceCount():
                return cards

        class Cuda:
            runtime = Runtime
            get_current_stream = staticmethod(lambda: Stream())
        Cuda.Device = Device
        self.cuda = Cuda


def test_nccl_sums_the_buffer_in_place_on_the_current_stream():
    nccl, cupy = FakeNccl(), FakeCupy(2)
    w = World(FakeComm(0, [os.getpid(), os.getppid()]), mpi=FakeMPI)
    s = NcclSum(w, nccl, cupy)
    assert nccl.made == (2, (1, 2, 3), 0)                  # rank 0 made the id; bcast gives it to every rank
    a = np.zeros(10, np.float32)
    s(a)
    assert nccl.calls == [(a.ctypes.data, a.ctypes.data, 10, FakeNccl.NCCL_FLOAT32, FakeNccl.NCCL_SUM, 1234)]
    with pytest.raises(ValueError, match="C-contiguous float32 or float64"):
        s(np.zeros((4, 4), np.float64)[:, 1])


@pytest.mark.parametrize("cards, nccl, expect", [
    (2, True, "NCCL, one card per rank"),
    (1, True, "MPI through the host (2 ranks share 1 card(s) on"),
    (2, False, "MPI through the host (no NCCL in this CuPy"),
])
def test_a_rank_takes_its_own_card_and_nccl_only_where_each_has_one(cards, nccl, expect, monkeypatch):
    cupy = FakeCupy(cards)
    if nccl:
        cupy.cuda.nccl = FakeNccl()
    monkeypatch.setitem(sys.modules, "cupy", cupy)              # what `import cupy` finds, as on a GPU machine
    monkeypatch.setitem(sys.modules, "cupy.cuda", cupy.cuda)    # (no nccl in it: `from cupy.cuda import nccl` fails)
    w = World(FakeComm(1, [os.getppid(), os.getpid()]), mpi=FakeMPI)
    device, how = w.use_gpu()
    assert device == cupy.used == 1 % cards
    assert how.startswith(expect)
    assert (w.gpu_sum is not None) == expect.startswith("NCCL")


# ---- the tool under a real launcher ------------------------------------------------------------------------
SETTINGS = ["--batch-size", "7", "--log-every", "2", "--eval-every", "2", "--checkpoint-every", "3", "--quiet",
            "--latent-dim", str(SMALL["latent_dim"]), "--channels", SMALL["channels"], "--dense-size",
            str(SMALL["dense_size"])]


def train(n, *args, launcher=(), timeout=300):
    """bin/train-scratch on n processes (mpiexec -n n …; n = 0: plainly, with no launcher)."""
    tool = [sys.executable, os.path.join(ROOT, "bin", "train-scratch"), *args]
    cmd = [MPIEXEC, *launcher, "-n", str(n), *tool] if n else tool
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@needs_mpi
@pytest.mark.slow
def test_a_bad_option_under_mpiexec_is_said_once():
    r = train(2, "--batch-size", "0", "--out", "unused")
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        "train-scratch: error: argument --batch-size: expected a number of at least 1, got 0 (see --help)"], r.stderr


def test_the_rank_is_read_from_the_launchers_variables():
    assert distributed.launched_rank({}) == 0
    assert distributed.launched_rank({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}) == 1
    assert distributed.launched_rank({"PMI_SIZE": "4", "PMI_RANK": "3"}) == 3
    assert distributed.launched_rank({"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "5"}) == 0   # one process: 0


def numbers(folder, step):
    """Every float array of a checkpoint (parameters and Adam's moments), by name."""
    with np.load(os.path.join(folder, "checkpoints", f"ckpt_{step:07d}.npz")) as f:
        return {k: f[k] for k in f.files if f[k].dtype.kind == "f"}


def log(folder):
    import json
    with open(os.path.join(folder, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_run(a, b, step, rtol):
    """Two run folders hold the same run to rtol: every checkpointed number, and every logged loss and MSE."""
    na, nb = numbers(a, step), numbers(b, step)
    assert na.keys() == nb.keys() and len(na) > 20
    for k in na:
        scale = max(np.abs(na[k]).max(), 1e-300)
        assert np.abs(na[k] - nb[k]).max() <= rtol * scale, k
    la, lb = log(a), log(b)
    assert [r["step"] for r in la] == [r["step"] for r in lb]
    for ra, rb in zip(la, lb):
        for key in ("loss", "recon", "kl", "kl_raw", "heldout_mse"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=rtol, abs=0), (ra["step"], key)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """40 frames, 36 for training: batches of 7 end each epoch with 1 image (an empty shard on 2 ranks)."""
    return tiny_data(str(tmp_path_factory.mktemp("data")), episodes=4, frames=12)


@pytest.mark.slow
@needs_mpi
def test_two_processes_train_what_one_trains_and_either_resumes_the_other(data, tmp_path):
    """float64, batches of 7 (3 + 4 images on 2 ranks; each epoch's last batch 1 image, 0 on rank 0): the same
    parameters, Adam moments and logged losses as one process, to rounding; then each run resumed with another
    number of processes (the 2-process run by 1, the 1-process run by 3) gives the same again."""
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    for n, out in ((0, one), (2, two)):
        r = train(n, "--data", data, "--out", out, "--steps", "7", "--dtype", "float64", *SETTINGS)
        assert r.returncode == 0, r.stderr
    assert_same_run(one, two, 7, rtol=1e-12)
    for n, out in ((3, one), (0, two)):
        r = train(n, "--resume", "--out", out, "--steps", "12", "--quiet")
        assert r.returncode == 0, r.stderr
    assert_same_run(one, two, 12, rtol=1e-12)


@pytest.mark.slow
@needs_mpi
def test_in_float32_two_processes_stay_within_the_stated_bound(data, tmp_path):
    """float32: the shards' sums round differently from the whole batch's; after 7 steps every number within
    1e-4 of its array's largest (docs/distributed.md: what bounds it)."""
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    for n, out in ((0, one), (2, two)):
        r = train(n, "--data", data, "--out", out, "--steps", "7", *SETTINGS)
        assert r.returncode == 0, r.stderr
    assert_same_run(one, two, 7, rtol=1e-4)


def drift(a, b, step):
    """The largest |a − b| / max|a| over the checkpointed float arrays of two run folders."""
    na, nb = numbers(a, step), numbers(b, step)
    return max(float(np.abs(na[k].astype(np.float64) - nb[k]).max() / max(np.abs(na[k]).max(), 1e-300)) for k in na)


@pytest.mark.slow
@needs_mpi
def test_in_float32_two_processes_drift_as_far_as_one_process_with_its_batches_reversed(tmp_path):
    """On a model where float32 shows it (291,539 parameters, 10 steps of 24 images): 2 processes end further
    from 1 process than float64's rounding, as far as one process whose every batch is taken in reverse order
    (the same images, each with its noise: the same run in exact arithmetic, its sums added in another order),
    not further. A mistake in the shards (noise or images mismatched, a share mis-weighted) would be orders of
    magnitude past it. docs/distributed.md: the numbers on CarRacing frames (bench/float32_drift.py)."""
    from scratchvae.run.runfolder import RunSettings
    from scratchvae.run.trainer import Trainer
    data = tiny_data(str(tmp_path / "data"), episodes=4, frames=40)
    model = ["--channels", "8,16,32,64", "--dense-size", "256", "--batch-size", "24", "--checkpoint-every", "10",
             "--log-every", "5", "--eval-every", "100", "--quiet"]
    one, two, rev = str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "reversed")
    for n, out in ((0, one), (2, two)):
        r = train(n, "--data", data, "--out", out, "--steps", "10", *model, timeout=600)
        assert r.returncode == 0, r.stderr
    t = Trainer(RunSettings(data, rev, steps=10, channels="8,16,32,64", dense_size=256, batch_size=24,
                            checkpoint_every=10, log_every=5, eval_every=100), progress=False)
    gather, sample_eps = t.data.gather, t.model.sample_eps
    t.data.gather = lambda ep_idx, frame_idx, out=None: gather(ep_idx[::-1], frame_idx[::-1], out=out)
    t.model.sample_eps = lambda n: sample_eps(n)[::-1].copy()
    t.run()
    shards, order = drift(one, two, 10), drift(one, rev, 10)
    assert 1e-7 < shards <= 10 * order + 1e-6, f"2 processes {shards:.2e}, batches reversed {order:.2e}"


@pytest.mark.slow
@needs_mpi
def test_a_mistake_at_the_start_is_said_once_for_every_rank(data, tmp_path):
    r = train(2, "--data", data, "--out", str(tmp_path / "run"), "--steps", "3", *SETTINGS[2:], "--batch-size", "1")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["train-scratch: error: batch size 1 is less than the 2 processes, which need at least an "
                     "image each; give --batch-size 2 or more"], r.stderr
    assert not os.path.exists(tmp_path / "run" / "run.json")


def rank_pid(rank, out):
    """The process id of the given rank of the job training into `out` (read from /proc: the launcher tells
    each rank its number in its environment)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        said = env.get(b"PMI_RANK", env.get(b"OMPI_COMM_WORLD_RANK"))
        if out.encode() in cmd and said == str(rank).encode() and b"train-scratch" in b" ".join(cmd):
            return int(pid)
    raise AssertionError(f"no rank {rank} training into {out}")


def start_and_kill_rank_1(data, out, launcher=()):
    """A 2-process run, rank 1 killed (SIGKILL) once the run has a checkpoint; returns (exit status, stderr)."""
    cmd = [MPIEXEC, *launcher, "-n", "2", sys.executable, os.path.join(ROOT, "bin", "train-scratch"), "--data", data,
           "--out", out, "--steps", "100000", *SETTINGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpts = os.path.join(out, "checkpoints")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (
            os.path.isdir(ckpts) and any(f.startswith("ckpt_") for f in os.listdir(ckpts))):
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    os.kill(rank_pid(1, out), signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=60)               # never a hang
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the job did not end within 60 s of rank 1's death: {proc.communicate()}")
    return proc.returncode, err


def assert_resumes(out):
    """One process takes the run on from its newest checkpoint, and no half-written file is left."""
    from scratchvae.run.runfolder import RunFolder
    step = RunFolder(out).checkpoints()[-1][0]
    r = train(0, "--resume", "--out", out, "--steps", str(step + 2), "--quiet")
    assert r.returncode == 0, r.stderr
    assert RunFolder(out).checkpoints()[-1][0] == step + 2
    assert not [f for d, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]


@pytest.mark.slow
@needs_mpi
def test_a_killed_rank_ends_the_job_and_leaves_a_run_that_resumes(data, tmp_path):
    out = str(tmp_path / "run")
    code, err = start_and_kill_rank_1(data, out)
    assert code != 0, err
    assert_resumes(out)


def hydra():
    """Whether the launcher is Hydra (MPICH's and Intel's), which can leave the other ranks running."""
    r = subprocess.run([MPIEXEC, "-help"], capture_output=True, text=True)
    return "-disable-auto-cleanup" in r.stdout + r.stderr


@pytest.mark.slow
@needs_mpi
def test_with_no_launcher_to_end_it_the_survivor_says_which_rank_ended(data, tmp_path):
    """With the launcher told to leave the other ranks be, rank 0 finds rank 1 gone itself: one line naming
    it, the newest checkpoint and the command that resumes, and the job ends (MPI_Abort)."""
    if not hydra():
        pytest.skip("the launcher is not Hydra: no -disable-auto-cleanup to test without")
    out = str(tmp_path / "run")
    code, err = start_and_kill_rank_1(data, out, launcher=["-disable-auto-cleanup"])
    assert code != 0, err
    ours = [line for line in err.splitlines() if line.startswith("train-scratch:")]
    assert len(ours) == 1, err
    assert "rank 1 (process" in ours[0] and "ended while rank 0 waited for it" in ours[0], err
    assert "the newest checkpoint is" in ours[0] and "Resume with: " in ours[0] and "-n 2" in ours[0], err
    assert_resumes(out)


@pytest.mark.slow
@needs_mpi
def test_two_processes_collect_the_episodes_one_collects_and_resume_alike(tmp_path):
    pytest.importorskip("gymnasium")
    pytest.importorskip("Box2D")
    from scratchvae.data.manifest import read_manifest
    tool = [sys.executable, os.path.join(ROOT, "bin", "collect-rollouts"), "--episodes", "3", "--steps", "5",
            "--workers", "1", "--quiet"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert subprocess.run([*tool, "--out", one], capture_output=True, timeout=300).returncode == 0
    r = subprocess.run([MPIEXEC, "-n", "2", *tool, "--out", two], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("3 episodes collected (0 already there) on 2 processes"), r
    assert sorted(read_manifest(two)) == sorted(read_manifest(one)) == [f"episode_{i:06d}.npz" for i in range(3)]
    for name in read_manifest(one):
        with np.load(os.path.join(one, name)) as a, np.load(os.path.join(two, name)) as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files), name
    os.unlink(os.path.join(two, "episode_000001.npz"))             # as if its rank had died before writing it
    r = subprocess.run([MPIEXEC, "-n", "2", *tool, "--out", two, "--episodes", "4"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("2 episodes collected (2 already there) on 2 processes"), r
    assert sorted(read_manifest(two)) == [f"episode_{i:06d}.npz" for i in range(4)]


@pytest.mark.slow
@needs_mpi
def test_ctrl_c_to_the_launcher_stops_every_rank_at_one_step_with_a_checkpoint(data, tmp_path):
    """The launcher passes SIGINT on; the ranks hear it at different steps, agree at the next log row, and stop
    there together: rank 0 writes that step's checkpoint and prints the command that resumes (under mpiexec)."""
    out = str(tmp_path / "run")
    cmd = [MPIEXEC, "-n", "2", sys.executable, os.path.join(ROOT, "bin", "train-scratch"), "--data", data, "--out",
           out, "--steps", "100000", *SETTINGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = os.path.join(out, "log.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (os.path.exists(rows) and os.path.getsize(rows)):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    stopped = [line for line in err.splitlines() if "stopped by SIGINT after step" in line]
    assert len(stopped) == 1 and "-n 2" in stopped[0] and "--resume --out" in stopped[0], err
    step = int(stopped[0].split("after step ")[1].split(";")[0])
    from scratchvae.run.runfolder import RunFolder
    assert RunFolder(out).checkpoints()[-1][0] == step and log(out)[-1]["step"] == step


@pytest.mark.gpu
@pytest.mark.slow
@needs_mpi
def test_two_processes_on_one_gpu_train_what_one_trains(data, tmp_path):
    """Two ranks on one card: the sum goes through the host (NCCL needs a card per rank), and the run is the
    one-process GPU run to rounding (float64)."""
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    args = ["--data", data, "--steps", "7", "--dtype", "float64", "--device", "gpu", *SETTINGS]
    r1 = train(0, "--out", one, *args)
    r2 = train(2, "--out", two, *args)
    assert r1.returncode == 0 and r2.returncode == 0, (r1.stderr, r2.stderr)
    import cupy
    if cupy.cuda.runtime.getDeviceCount() == 1:
        assert "the sums by MPI through the host (2 ranks share 1 card(s)" in r2.stdout, r2.stdout
    assert_same_run(one, two, 7, rtol=1e-12)


def test_started_as_several_processes_without_mpi4py_says_how_to_install_it(tmp_path, data):
    """A launcher's variables but no mpi4py (a package that cannot be imported stands in): one line, exit 2."""
    fake = tmp_path / "fake" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no MPI here')\n")
    env = {**os.environ, "PMI_SIZE": "2", "PYTHONPATH": str(tmp_path / "fake")}
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "train-scratch"), "--data", data, "--out",
                        str(tmp_path / "run"), "--steps", "2"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "started by an MPI launcher as 2 processes, but mpi4py cannot be imported (no MPI here)" in r.stderr
    assert 'pip install -e ".[distributed]"' in r.stderr


@needs_mpi
def test_a_launcher_whose_mpi_is_not_mpi4pys_is_named(tmp_path, data):
    """The launcher says 3 processes, MPI sees 1 (here: no launcher at all, only its variable): one line."""
    env = {**os.environ, "PMI_SIZE": "3"}
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "train-scratch"), "--data", data, "--out",
                        str(tmp_path / "run"), "--steps", "2"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "the launcher started 3 processes, but MPI sees 1" in r.stderr


def mpmd(*per_rank):
    """mpiexec with one command per rank (MPI's 'A : B' form): each rank given its own options."""
    tool = [sys.executable, os.path.join(ROOT, "bin", "train-scratch")]
    cmd = [MPIEXEC]
    for i, args in enumerate(per_rank):
        cmd += ([":"] if i else []) + ["-n", "1", *tool, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@needs_mpi
def test_a_mistake_on_another_rank_is_said_once_by_rank_0_naming_it(data, tmp_path):
    out = str(tmp_path / "run")
    r = mpmd(["--data", data, "--out", out, "--steps", "3", *SETTINGS],
             ["--data", str(tmp_path / "nowhere"), "--out", out, "--steps", "3", *SETTINGS])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"train-scratch: error: rank 1: data folder {tmp_path / 'nowhere'} does "
                                             "not exist (collect one with collect-rollouts)"], r.stderr


@pytest.mark.slow
@needs_mpi
def test_ranks_started_for_different_runs_are_refused_and_a_copy_of_the_data_is_not_a_difference(data, tmp_path):
    out = str(tmp_path / "run")
    r = mpmd(["--data", data, "--out", out, "--steps", "3", *SETTINGS],
             ["--data", data, "--out", out, "--steps", "3", *SETTINGS, "--lr", "0.002"])
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["train-scratch: error: rank 1 would train another run than rank 0: lr "
                                             "0.002 (rank 0: 0.001); start every process with the same options (and "
                                             "data holding the same episodes)"], r.stderr
    copy = shutil.copytree(data, str(tmp_path / "copy"))       # each machine may keep the episodes elsewhere
    r = mpmd(["--data", data, "--out", out, "--steps", "3", *SETTINGS],
             ["--data", copy, "--out", out, "--steps", "3", *SETTINGS])
    assert r.returncode == 0, r.stderr


class TwoRanksDisagreeing(distributed.World):
    """Rank 0 of two, whose partner reports other parameters at the checkpoint's check."""

    def __init__(self):
        super().__init__()
        self.size = 2

    def gather(self, value, what, timeout=-1):
        return [value, "another digest"]


def test_a_checkpoint_is_refused_when_the_ranks_hold_different_parameters(data, tmp_path):
    from scratchvae.run.runfolder import RunSettings
    from scratchvae.run.trainer import Trainer, TrainingStopped
    out = str(tmp_path / "run")
    t = Trainer(RunSettings(data=data, out=out, steps=3, batch_size=8, **SMALL), progress=False,
                world=TwoRanksDisagreeing())
    with pytest.raises(TrainingStopped, match="the 2 processes hold different parameters after step 0") as e:
        t._save()
    assert e.value.everywhere and not os.path.exists(os.path.join(out, "checkpoints"))
