"""The loader's reads: gather against a plain loop over np.load, its errors, the open files it keeps, and the
feed that reads the next batches on a thread."""
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scratchvae.data import DataError, read_episode
from scratchvae.data.dataset import FrameDataset, open_file_limit, to_model_input
from scratchvae.data.episodes import episode_name
from scratchvae.data.feed import Feed
from scratchvae.run.batches import Batches
from test_data import make_folder

LENGTHS = [7, 12, 5, 9, 11, 3, 8, 10]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("feed") / "d", LENGTHS)


def gather_loop(folder, ep_idx, frame_idx):
    """The naive sibling: each episode file loaded whole with np.load, one frame picked at a time."""
    obs = [read_episode(os.path.join(folder, episode_name(e)))["obs"] for e in range(len(LENGTHS))]
    return np.stack([obs[e][t] for e, t in zip(ep_idx, frame_idx)])


@settings(max_examples=25, deadline=None)
@given(picks=st.lists(st.integers(0, sum(LENGTHS) - 1), min_size=1, max_size=40), open_files=st.integers(1, 9))
def test_gather_matches_the_loop(folder, picks, open_files):
    ds = FrameDataset(folder, heldout=0, open_files=open_files)
    ep, t = ds.locate(picks, "train")
    want = gather_loop(folder, ep, t)
    np.testing.assert_array_equal(ds.gather(ep, t), want)
    out = np.full((len(picks), 8, 6, 3), 7, np.uint8)
    assert ds.gather(ep, t, out=out) is out
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(ds.read_frames(int(ep[0]), [int(t[0])] * 3), want[[0, 0, 0]])
    assert len(ds._opened) <= open_files                # never more descriptors than it may keep
    ds.close()


def open_descriptors():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_open_files_stay_within_the_limit(folder):
    before = open_descriptors()
    ds = FrameDataset(folder, heldout=0, open_files=3)
    ds.gather(*ds.locate(np.arange(sum(LENGTHS)), "train"))
    assert open_descriptors() - before == 3
    ds.close()
    assert open_descriptors() == before
    every = FrameDataset(folder, heldout=0)                 # no limit given: every episode stays open
    every.gather(*every.locate(np.arange(sum(LENGTHS)), "train"))
    assert open_descriptors() - before == len(LENGTHS)
    every.close()


def test_open_file_limit_leaves_room():
    import resource
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert open_file_limit(5) == 5
    got = open_file_limit(10 ** 7)                          # more than any limit: what the limit leaves
    assert 1 <= got < 10 ** 7
    assert got <= resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 256
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= soft


def test_gather_refuses_what_it_cannot_read(folder, tmp_path):
    ds = FrameDataset(folder, heldout=0)
    with pytest.raises(IndexError, match=r"episode_000002\.npz has frames 0 … 4, asked for frame 5"):
        ds.gather(np.array([0, 2]), np.array([1, 5]))
    with pytest.raises(IndexError, match=r"episode numbers must lie in \[0, 8\), got 0 … 8"):
        ds.gather(np.array([0, 8]), np.array([0, 0]))
    with pytest.raises(ValueError, match=r"two index arrays of one length, got shapes \(2,\) and \(3,\)"):
        ds.gather(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"C-contiguous uint8 \(2, 8, 6, 3\) array, got float32 \(2, 8, 6, 3\)"):
        ds.gather(np.array([0, 1]), np.array([0, 1]), out=np.empty((2, 8, 6, 3), np.float32))
    # a file cut short after the dataset read its table: one line naming it and the frame
    copy = make_folder(tmp_path / "cut", [6, 6])
    cut = FrameDataset(copy, heldout=0)
    path = os.path.join(copy, episode_name(1))
    os.truncate(path, int(cut.offsets[1]) + 5 * cut.frame_bytes + 10)     # frame 5 cut after 10 bytes
    with pytest.raises(DataError, match=r"episode_000001\.npz: truncated while reading frame 5"):
        cut.gather(np.array([0, 1]), np.array([0, 5]))


def reader(ds, batch, log=None, fail_at=None, delay=0.0):
    """read(k, take) for a Feed: batch k is frames k·batch … of the split, in file order."""
    total = ds.num_frames()

    def read(k, take):
        if log is not None:
            log.append(k)
        if k == fail_at:
            raise DataError(f"no batch {k}")
        time.sleep(delay)
        numbers = np.arange(k * batch, (k + 1) * batch) % total
        return ds.gather(*ds.locate(numbers, "train"), out=take(batch))
    return read


def feed_threads(feed=None):
    """The feed threads running: all of them, or feed's."""
    return [t for t in threading.enumerate() if t.name == "scratchvae-feed" and (feed is None or t is feed._thread)]


def test_the_feed_gives_each_batch_as_a_direct_read_would(folder):
    ds = FrameDataset(folder, heldout=0)
    direct = reader(ds, 5)
    want = {k: direct(k, lambda n: np.empty((n, 8, 6, 3), np.uint8)).copy() for k in range(12)}
    log = []
    with Feed(reader(ds, 5, log), (8, 6, 3), depth=2) as feed:
        for k in [0, 1, 2, 3, 7, 8, 9, 2, 3, 11]:          # in order, a jump ahead, one back
            np.testing.assert_array_equal(feed.get(k), want[k])
        assert len(feed_threads(feed)) == 1
        thread = feed._thread
    assert not thread.is_alive()                            # closed: the thread is gone
    assert log[:3] == [0, 1, 2] and 7 in log and log.count(2) == 2   # read ahead; a jump starts again there


def test_a_batch_is_the_callers_until_the_next_get(folder):
    """The thread reads depth + 1 batches ahead into the ring; the array get returned is not among them,
    also when a jump restarts the thread."""
    ds = FrameDataset(folder, heldout=0)
    direct = reader(ds, 4)
    want = {k: direct(k, lambda n: np.empty((n, 8, 6, 3), np.uint8)).copy() for k in range(30)}
    log = []
    with Feed(reader(ds, 4, log), (8, 6, 3), depth=2) as feed:
        for k in (0, 1, 10, 11, 20):
            held = feed.get(k)
            deadline = time.time() + 10
            while max(log) < k + 3 and time.time() < deadline:     # let it read as far ahead as it may
                time.sleep(0.01)
            time.sleep(0.05)
            assert max(log) == k + 3                                 # depth waiting, one more read, then it waits
            np.testing.assert_array_equal(held, want[k])


def test_an_error_reaches_the_get_of_its_batch(folder):
    ds = FrameDataset(folder, heldout=0)
    with Feed(reader(ds, 3, fail_at=2, delay=0.01), (8, 6, 3)) as feed:
        feed.get(0)
        feed.get(1)
        thread = feed._thread
        with pytest.raises(DataError, match="no batch 2"):
            feed.get(2)
        assert not thread.is_alive()
        assert feed.get(3).shape == (3, 8, 6, 3)            # a later batch starts the thread again
    with pytest.raises(ValueError, match="at least 1 batch ahead, got depth=0"):
        Feed(reader(ds, 3), (8, 6, 3), depth=0)


def test_batches_for_a_step_are_the_steps_frames(folder):
    ds = FrameDataset(folder, heldout=0.25, seed=1)
    s = SimpleNamespace(seed=3, batch_size=7, device="cpu", eval_frames=10)
    for rank, size in ((0, 1), (1, 3)):
        b = Batches(ds, s, SimpleNamespace(rank=rank, size=size), np.float64)
        steps = list(range(2 * b.steps_per_epoch + 1)) + [1, 0]             # two epochs and a bit, then back
        for step in steps:
            x, n = b.for_step(step)
            frames, n2 = b.frames_for_step(step)
            assert n == n2
            np.testing.assert_array_equal(x, frames.transpose(0, 3, 1, 2) / 255)
        thread = b.feed._thread
        b.close()
        assert not thread.is_alive()


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 200), h=st.integers(1, 9), w=st.integers(1, 9),
       dtype=st.sampled_from([np.float32, np.float64, np.dtype("float32")]))
def test_model_input_in_blocks_is_the_whole_batch_turned_at_once(n, h, w, dtype):
    frames = np.random.default_rng(n).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    once = np.ascontiguousarray(frames.transpose(3, 1, 2, 0), dtype=dtype)     # the plain sibling: (3, H, W, N)
    once /= 255
    x = to_model_input(frames, "cpu", dtype)
    assert x.dtype == np.dtype(dtype) and x.transpose(1, 2, 3, 0).flags.c_contiguous
    np.testing.assert_array_equal(x, once.transpose(3, 0, 1, 2))                # bit for bit


@pytest.mark.slow
def test_reader_processes_read_what_gather_reads(folder, tmp_path):
    from scratchvae.data.readers import Readers
    ds = FrameDataset(folder, heldout=0)
    rng = np.random.default_rng(2)
    with Readers(ds, 3) as readers:
        for n in (1, 2, 5, 40):                             # fewer rows than processes, and more
            ep, t = ds.locate(rng.integers(0, sum(LENGTHS), n), "train")
            out = readers.empty((n, 8, 6, 3))
            assert readers.gather(ep, t, out) is out
            np.testing.assert_array_equal(out, gather_loop(folder, ep, t))
        ring = readers.empty((40, 8, 6, 3))                 # a leading run of a larger buffer's rows
        ep, t = ds.locate(np.arange(7), "train")
        readers.gather(ep, t, ring[:7])
        np.testing.assert_array_equal(ring[:7], gather_loop(folder, ep, t))
        with pytest.raises(ValueError, match="an array from Readers.empty"):
            readers.gather(ep, t, np.empty((7, 8, 6, 3), np.uint8))
        with pytest.raises(IndexError, match=r"episode_000002\.npz has frames 0 … 4, asked for frame 5"):
            readers.gather(np.array([2]), np.array([5]), readers.empty((1, 8, 6, 3)))
        procs = list(readers._procs)
    assert not any(p.is_alive() for p in procs)
    # a file cut short: the process that meets it says which, in one line, and the run's own reads stop there
    copy = make_folder(tmp_path / "cut", [6, 6])
    cut = FrameDataset(copy, heldout=0)
    os.truncate(os.path.join(copy, episode_name(1)), int(cut.offsets[1]) + 5 * cut.frame_bytes + 10)
    with Readers(cut, 2) as readers:
        with pytest.raises(DataError, match=r"episode_000001\.npz: truncated while reading frame 5"):
            readers.gather(np.array([0, 1]), np.array([0, 5]), readers.empty((2, 8, 6, 3)))


@pytest.mark.slow
def test_batches_read_by_reader_processes_are_the_steps_frames(folder):
    ds = FrameDataset(folder, heldout=0.25, seed=1)
    s = SimpleNamespace(seed=3, batch_size=7, device="cpu", eval_frames=10, readers=2)
    b = Batches(ds, s, SimpleNamespace(rank=0, size=1), np.float64)
    for step in list(range(b.steps_per_epoch + 2)) + [0]:
        x, n = b.for_step(step)
        frames, _ = b.frames_for_step(step)
        np.testing.assert_array_equal(x, frames.transpose(0, 3, 1, 2) / 255)
    procs, readers = list(b.readers._procs), b.readers
    b.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(RuntimeError, match="after close"):
        readers.gather(*ds.locate([0], "train"), np.empty((1, 8, 6, 3), np.uint8))
    x, n = b.for_step(1)                                    # after close: read by a thread, the same frames
    np.testing.assert_array_equal(x, b.frames_for_step(1)[0].transpose(0, 3, 1, 2) / 255)
    b.close()
