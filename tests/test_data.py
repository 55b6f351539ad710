"""CarRacing data: preprocessing on real frames, rollouts, resume, the loader and its errors."""
import importlib.util
import os
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from scratchvae.data import DataError, preprocess, read_episode, write_episode
from scratchvae.data.dataset import FrameDataset, to_model_input
from scratchvae.data.episodes import episode_name, frame_table
from scratchvae.data.preprocess import parse_size
from scratchvae.data.manifest import check_request, complete, read_manifest, write_manifest
from scratchvae.data.rollouts import collect, make_env, run_episode

# Only the tests that run CarRacing need gymnasium; the loader's and the files' tests run without it.
needs_env = pytest.mark.skipif(importlib.util.find_spec("gymnasium") is None,
                               reason="needs gymnasium[box2d] to run CarRacing")


@pytest.fixture(scope="module")
def real_frames():
    env = make_env()
    frame, _ = env.reset(seed=11)
    frames = [frame]
    for _ in range(60):
        frame, *_ = env.step(np.array([0.1, 0.5, 0.0], np.float32))
        frames.append(frame)
    env.close()
    return np.stack(frames)


@needs_env
def test_preprocess_real_frames(real_frames):
    assert real_frames.shape[1:] == (96, 96, 3) and real_frames.dtype == np.uint8
    out = preprocess(real_frames[-1])
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    want = np.asarray(Image.fromarray(real_frames[-1][:84]).resize((64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(out, want)
    # the dashboard (rows 84–95, mostly black) is gone: changing it changes nothing
    tampered = real_frames[-1].copy()
    tampered[84:] = 255
    np.testing.assert_array_equal(preprocess(tampered), out)
    assert preprocess(real_frames[-1], (60, 80)).shape == (60, 80, 3)


def test_preprocess_bad_input():
    with pytest.raises(ValueError, match=r"uint8 \(H>84, W, 3\) frame, got float32 \(96, 96, 3\)"):
        preprocess(np.zeros((96, 96, 3), np.float32))
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        parse_size("64")


@needs_env
@pytest.mark.slow
@pytest.mark.parametrize("policy", ["brownian", "random"])
def test_rollout_is_repeatable_per_seed(policy):
    a = run_episode(5, 30, policy)
    b = run_episode(5, 30, policy)
    c = run_episode(6, 30, policy)
    assert a["obs"].shape == (30, 64, 64, 3) and a["obs"].dtype == np.uint8
    assert a["actions"].shape == (30, 3) and a["actions"].dtype == np.float32
    assert a["rewards"].shape == a["terminated"].shape == a["truncated"].shape == (30,)
    assert a["terminated"].dtype == a["truncated"].dtype == bool
    assert a["truncated"][-1] and not a["truncated"][:-1].any() and not a["terminated"].any()    # cut by the 30 steps
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["obs"], c["obs"])
    low, high = np.array([-1, 0, 0]), np.array([1, 1, 1])
    assert np.all(a["actions"] >= low) and np.all(a["actions"] <= high)
    if policy == "brownian":          # steps of √(1/50)·N(0,1): small next to the action range
        assert np.abs(np.diff(a["actions"], axis=0)).mean() < 0.2


def episode_files(folder):
    return sorted(f for f in os.listdir(folder) if f.startswith("episode_"))


@needs_env
@pytest.mark.slow
def test_resume_collects_only_what_is_missing(tmp_path):
    out = str(tmp_path / "eps")
    s = collect(out, 3, 15, workers=2, seed=100, progress=False)
    assert s["collected"] == 3 and s["frames"] == 45
    before = {f: (os.stat(os.path.join(out, f)).st_mtime_ns, open(os.path.join(out, f), "rb").read())
              for f in episode_files(out)}
    s = collect(out, 5, 15, workers=2, seed=100, progress=False)
    assert s["collected"] == 2 and s["skipped"] == 3
    assert episode_files(out) == [episode_name(i) for i in range(5)]
    for f, (mtime, data) in before.items():
        assert os.stat(os.path.join(out, f)).st_mtime_ns == mtime
        assert open(os.path.join(out, f), "rb").read() == data
    ep = read_episode(os.path.join(out, episode_name(4)))
    np.testing.assert_array_equal(ep["obs"], run_episode(104, 15)["obs"])      # seed S + index
    assert ep["dones"][-1] and ep["truncated"][-1] and not ep["terminated"].any()   # the --steps cut marks the end
    assert int(ep["seed"]) == 104 and str(ep["policy"]) == "brownian" and int(ep["max_steps"]) == 15
    assert read_manifest(out)[episode_name(4)] == {"seed": 104, "policy": "brownian", "max_steps": 15,
                                                   "size": [64, 64], "frames": 15}
    # the same folder asked for other episodes: refused before anything is collected, naming the first
    for kw, said in ((dict(seed=7), "seed 100 (asked: 7)"), (dict(policy="random"), "policy brownian (asked: random)"),
                     (dict(steps=30), "step limit 15 (asked: 30)"), (dict(size=(96, 96)), "size 64x64 (asked: 96x96)")):
        args = {**dict(episodes=6, steps=15, workers=2, seed=100, progress=False), **kw}
        with pytest.raises(DataError, match=r"holds 5 episode\(s\) collected with other options, first "
                                            rf"episode_000000\.npz: {re.escape(said)}"):
            collect(out, **args)
        assert episode_files(out) == [episode_name(i) for i in range(5)]


def test_the_manifest_is_checked_and_completed_from_the_files(tmp_path):
    """Episodes from a collection killed before its manifest caught up, and a folder with no manifest at
    all: the facts come from the files themselves, and a mismatched request is refused (no CarRacing needed:
    the check comes before any episode is run)."""
    out = tmp_path / "eps"
    out.mkdir()
    obs = np.zeros((4, 64, 64, 3), np.uint8)
    for i in range(3):
        write_episode(str(out / episode_name(i)), obs, np.zeros((4, 3)), np.zeros(4), np.zeros(4, bool),
                      seed=20 + i, policy="random", max_steps=4)
    write_manifest(str(out), {episode_name(0): {"seed": 20, "policy": "random", "max_steps": 4, "size": [64, 64],
                                                "frames": 4}}, "CarRacing-v3")
    records = complete(str(out), read_manifest(str(out)))
    assert sorted(records) == [episode_name(i) for i in range(3)]
    assert records[episode_name(2)] == {"seed": 22, "policy": "random", "max_steps": 4, "size": [64, 64], "frames": 4}
    check_request(str(out), records, 3, 20, "random", 4, (64, 64))          # as collected: fine
    with pytest.raises(DataError, match=r"holds 3 episode\(s\) .* first episode_000000\.npz: seed 20 \(asked: 0\)"):
        collect(str(out), 3, 4, seed=0, policy="random", progress=False)
    with pytest.raises(DataError, match="step limit 4 .asked: 500."):
        collect(str(out), 5, 500, seed=20, policy="random", progress=False)
    # a file from before max_steps was recorded: what it does say is still checked
    write_episode(str(out / episode_name(3)), obs, np.zeros((4, 3)), np.zeros(4), np.zeros(4, bool), seed=23,
                  policy="random")
    facts = complete(str(out), {})[episode_name(3)]
    assert facts["max_steps"] is None and facts["seed"] == 23
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="manifest.json: not a readable manifest"):
        collect(str(out), 3, 4, seed=20, policy="random", progress=False)


@needs_env
def test_stale_temporary_is_removed(tmp_path):
    out = tmp_path / "eps"
    out.mkdir()
    (out / ".episode_000000.npz.abc.tmp").write_bytes(b"half")
    (out / ".manifest.json.def.tmp").write_bytes(b"{\"for")                 # killed while writing the manifest
    collect(str(out), 1, 5, progress=False)
    assert sorted(os.listdir(out)) == [".lock", episode_name(0), "manifest.json"]


# ---- the loader, on synthetic episodes --------------------------------------------------------------

def make_folder(path, lengths, size=(8, 6), seed=0):
    """Episodes whose pixel values encode (episode, frame), so batches can be traced back."""
    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(seed)
    for e, t in enumerate(lengths):
        obs = rng.integers(0, 256, size=(t, *size, 3), dtype=np.uint8)
        obs[:, 0, 0, 0], obs[:, 0, 0, 1] = e, np.arange(t)
        write_episode(os.path.join(path, episode_name(e)), obs, np.zeros((t, 3)), np.zeros(t), np.zeros(t))
    return str(path)


def test_batches_cover_every_training_frame_once(tmp_path):
    folder = make_folder(tmp_path / "d", [7, 12, 5, 9, 11, 3, 8, 10])
    ds = FrameDataset(folder, heldout=0.25, seed=1)
    assert len(ds.heldout_episodes) == 2 and len(ds.train_episodes) == 6
    seen = []
    for x in ds.batches(4, seed=3):
        assert x.dtype == np.float32 and x.shape[1:] == (3, 8, 6) and x.shape[0] <= 4
        assert x.min() >= 0 and x.max() <= 1
        codes = np.rint(x[:, :2, 0, 0] * 255).astype(int)              # (episode, frame) of each image
        seen += [tuple(c) for c in codes]
    want = [(e, t) for e in ds.train_episodes for t in range(ds.lengths[e])]
    assert sorted(seen) == sorted(want) and len(seen) == ds.num_frames("train")
    assert not {e for e, _ in seen} & set(ds.heldout_episodes.tolist())
    held = [tuple(c) for x in ds.batches(5, "heldout") for c in np.rint(x[:, :2, 0, 0] * 255).astype(int)]
    assert {e for e, _ in held} == set(ds.heldout_episodes.tolist())
    # shuffled across episodes: a batch mixes episodes, and another seed gives another order
    ep3, frame3 = next(ds.index_batches(20, seed=3))
    ep4, frame4 = next(ds.index_batches(20, seed=4))
    ep3b, _ = next(ds.index_batches(20, seed=3, epoch=1))          # another epoch, another order
    assert not np.array_equal(ep3, ep3b)
    assert len(set(ep3.tolist())) > 1
    assert not (np.array_equal(ep3, ep4) and np.array_equal(frame3, frame4))
    ep_plain, _ = next(ds.index_batches(20))                          # no seed: file order
    assert np.all(np.diff(ep_plain) >= 0)


def test_pixels_match_the_files(tmp_path):
    folder = make_folder(tmp_path / "d", [4, 6])
    ds = FrameDataset(folder, heldout=0)
    ep = read_episode(os.path.join(folder, episode_name(1)))
    got = ds.gather(np.array([1, 1]), np.array([5, 2]))
    np.testing.assert_array_equal(got, ep["obs"][[5, 2]])
    x = to_model_input(got)
    assert x.transpose(1, 2, 3, 0).flags.c_contiguous               # stored (3, H, W, N), the layers' layout
    np.testing.assert_allclose(x, ep["obs"][[5, 2]].transpose(0, 3, 1, 2) / 255, rtol=1e-6)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        FrameDataset(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"holds no episode files \(\*\.npz\)"):
        FrameDataset(str(tmp_path / "empty"))


def test_bad_files_are_skipped_with_a_warning(tmp_path):
    folder = make_folder(tmp_path / "d", [5, 5, 5])
    good = open(os.path.join(folder, episode_name(2)), "rb").read()
    open(os.path.join(folder, "episode_000003.npz"), "wb").write(good[: len(good) // 2])     # truncated
    open(os.path.join(folder, "episode_000004.npz"), "wb").write(b"garbage" * 100)           # corrupt
    np.savez(os.path.join(folder, "notes.npz"), a=np.zeros(2))                               # not an episode
    with pytest.warns(UserWarning, match=r"skipped 3 unreadable episode file\(s\) of 6"):
        ds = FrameDataset(folder)
    assert len(ds.paths) == 3


def test_compressed_truncated_and_wrong_size(tmp_path):
    folder = make_folder(tmp_path / "d", [5])
    p = os.path.join(folder, "episode_000009.npz")
    np.savez_compressed(p, obs=np.zeros((2, 8, 6, 3), np.uint8), actions=np.zeros((2, 3)), rewards=np.zeros(2),
                        dones=np.zeros(2, bool))
    with pytest.raises(DataError, match="obs is compressed"):
        frame_table(p)
    os.unlink(p)
    make_folder(tmp_path / "d2", [3], size=(4, 4))
    os.rename(tmp_path / "d2" / episode_name(0), os.path.join(folder, "episode_000010.npz"))
    with pytest.raises(DataError, match=r"episode_000010.npz: frames are 4x4, expected 8x6"):
        FrameDataset(folder)
    with pytest.raises(DataError, match=r"frames are 8x6, expected 64x64"):
        FrameDataset(str(tmp_path / "d"), size=(64, 64))


def test_all_files_bad(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.npz").write_bytes(b"nope")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match=r"holds no readable episodes \(1 skipped\)"):
            FrameDataset(str(tmp_path / "d"))


def test_locate_numbers_a_split_in_episode_order(tmp_path):
    ds = FrameDataset(make_folder(tmp_path / "d", [4, 1, 6, 3, 5]), heldout=0.4, seed=2)
    for split in ("train", "heldout"):
        episodes = ds.episodes(split)                              # every frame of the split, in order:
        ep_idx = np.concatenate([[e] * ds.lengths[e] for e in episodes])
        frame_idx = np.concatenate([np.arange(ds.lengths[e]) for e in episodes])
        n = ds.num_frames(split)
        got_ep, got_frame = ds.locate(np.arange(n), split)
        np.testing.assert_array_equal(got_ep, ep_idx)
        np.testing.assert_array_equal(got_frame, frame_idx)
        pick = np.random.default_rng(0).permutation(n)[:7]
        np.testing.assert_array_equal(ds.locate(pick, split)[1], frame_idx[pick])
        with pytest.raises(IndexError, match=rf"\[0, {n}\) for the {split} split, got .* {n}"):
            ds.locate([0, n], split)


@pytest.mark.parametrize("dones, terminated, truncated", [
    ([0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]),             # an older file's episode cut by --steps: dones unmarked
    ([0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]),             # … and one the environment ended
])
def test_an_older_episode_file_reads_with_both_ends(tmp_path, dones, terminated, truncated):
    """Files from before terminated and truncated were recorded hold dones alone, marking only the environment's
    end: read, every episode's last step is marked, as terminated when dones said so, else as truncated."""
    path = str(tmp_path / episode_name(0))
    obs = np.zeros((4, 64, 64, 3), np.uint8)
    np.savez(path, obs=obs, actions=np.zeros((4, 3), np.float32), rewards=np.zeros(4, np.float32),
             dones=np.array(dones, bool))                    # (as write_episode wrote them before)
    ep = read_episode(path)
    np.testing.assert_array_equal(ep["terminated"], np.array(terminated, bool))
    np.testing.assert_array_equal(ep["truncated"], np.array(truncated, bool))
    assert ep["dones"].tolist() == [False, False, False, True]


def test_an_episode_written_with_its_ends_reads_them_back(tmp_path):
    path = str(tmp_path / episode_name(0))
    obs = np.zeros((3, 64, 64, 3), np.uint8)
    write_episode(path, obs, np.zeros((3, 3)), np.zeros(3), terminated=[0, 0, 1], truncated=[0, 0, 0])
    ep = read_episode(path)
    assert ep["terminated"].tolist() == [False, False, True] and not ep["truncated"].any()
    assert ep["dones"].tolist() == [False, False, True]
    with np.load(path) as z:                                 # in the file itself, for readers that are not ours
        assert z["truncated"].dtype == bool and z["dones"].tolist() == [False, False, True]


@needs_env
@pytest.mark.slow
def test_ctrl_c_while_collecting_says_what_is_kept_and_how_to_go_on(tmp_path):
    """Ctrl-C after the first episode is written: exit 130 and one line saying how many episodes are kept and
    the command that collects the rest, which, run as printed, does."""
    import signal
    import subprocess
    import sys
    import time
    from runs import ROOT, run_as_printed, said_command
    out = str(tmp_path / "eps")
    proc = subprocess.Popen([sys.executable, os.path.join("bin", "collect-rollouts"), "--episodes", "3", "--steps",
                             "40", "--workers", "1", "--out", out, "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(os.path.join(out, episode_name(0))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    line, = err.strip().splitlines()
    have = len(episode_files(out))
    assert line.startswith(f"collect-rollouts: interrupted: {have} of the 3 episodes are in {out}, kept"), line
    assert f"the same command collects the other {3 - have}: " in line and have >= 1
    r = run_as_printed(said_command(line, "collects the other " + f"{3 - have}: "))
    assert r.returncode == 0, r.stderr
    assert episode_files(out) == [episode_name(i) for i in range(3)]
