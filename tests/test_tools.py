"""The three tools as a user meets them: nothing to do, bad options, a file system that refuses, and
encode-latents' checks. (Training itself: tests/test_train.py.)"""
import errno
import os
import sys

import numpy as np
import pytest

from scratchvae.run.checkpoint import load
from scratchvae.run.runfolder import RunFolder
from scratchvae.cli import run
from scratchvae.cli.collect import main as collect_main
from scratchvae.cli.encode import main as encode_main
from scratchvae.cli.train import main as train_main
from scratchvae.data.rollouts import collect

from runs import FAST, one_line, tiny_data, trained_run

pytestmark = pytest.mark.slow                  # every test here runs a tool end to end


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data):
    return trained_run(tmp_path_factory, data, steps=3)



def leftovers(folder):
    return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if f.endswith(".tmp")]


# ---- collect-rollouts --------------------------------------------------------------------------------

def test_nothing_to_collect(tmp_path, capsys):
    folder = tiny_data(tmp_path / "eps", episodes=3, policy="brownian")
    s = collect(folder, 3, 10, workers=2)                           # every episode there: no pool of 0
    assert (s["collected"], s["skipped"]) == (0, 3)
    assert collect_main(["--episodes", "3", "--out", folder, "--workers", "2", "--quiet"]) == 0
    assert f"nothing to collect: all 3 episodes are already in {folder}" in capsys.readouterr().out


@pytest.mark.parametrize("args, said", [
    (["--size", "64"], "argument --size: expected HEIGHTxWIDTH, e.g. 64x64, got '64'"),
    (["--size", "axb"], "argument --size: expected HEIGHTxWIDTH, e.g. 64x64, got 'axb'"),
    (["--size", "32x64"], "argument --size: expected each side at least 46"),
    (["--seed", "-1"], "argument --seed: expected a whole number of at least 0, got -1"),
])
def test_collect_options_say_what_they_expect(tmp_path, capsys, args, said):
    with pytest.raises(SystemExit) as e:
        collect_main([*args, "--out", str(tmp_path / "eps")])
    assert e.value.code == 2 and said in one_line(capsys)


def test_collect_refuses_a_file_and_another_size(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert run("collect-rollouts", collect_main, ["--out", str(tmp_path / "file"), "--quiet"]) == 2
    assert f"--out {tmp_path / 'file'} is a file; expected a folder" in one_line(capsys)
    folder = tiny_data(tmp_path / "eps", episodes=1)
    assert run("collect-rollouts", collect_main, ["--out", folder, "--size", "96x96", "--quiet"]) == 2
    assert "holds 64x64 frames; --size 96x96 would mix sizes" in one_line(capsys)


# ---- errors from the file system: one line, exit 2, nothing half-written ---------------------------------

def refuse(monkeypatch, module, name, code):
    def fail(*a, **k):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(module, name, fail)


def test_a_full_disk_while_training(tmp_path, data, monkeypatch, capsys):
    import scratchvae.files.atomic
    refuse(monkeypatch, scratchvae.files.atomic.os, "fsync", errno.ENOSPC)
    out = tmp_path / "run"
    assert run("train-scratch", train_main, ["--data", data, "--steps", "2", "--out", str(out), *FAST]) == 2
    assert one_line(capsys) == f"train-scratch: error: {out / 'run.json'}: No space left on device"
    assert leftovers(out) == [] and not (out / "run.json").exists()


def test_a_read_only_folder(tmp_path, data, run_dir, monkeypatch, capsys):
    real_open = os.open

    def refuse_temporaries(path, *a, **k):                     # atomic_write's and check_writable's
        if str(path).endswith(".tmp"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, *a, **k)
    monkeypatch.setattr(os, "open", refuse_temporaries)
    out = tmp_path / "run"
    assert run("train-scratch", train_main, ["--data", data, "--steps", "2", "--out", str(out), *FAST]) == 2
    assert one_line(capsys) == f"train-scratch: error: {out / 'run.json'}: Read-only file system"
    target = tmp_path / "lat" / "latents.npz"
    assert run("encode-latents", encode_main, ["--checkpoint", run_dir, "--data", data, "--out", str(target),
                                               "--quiet"]) == 2
    assert one_line(capsys) == f"encode-latents: error: {target}: cannot write here: Read-only file system"


def test_files_are_made_as_the_umask_says(tmp_path):
    from scratchvae.files.atomic import atomic_write
    old = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "f.txt", "w") as f:
            f.write("x")
        assert os.umask(0o027) == 0o027                         # left as it was
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "f.txt").st_mode & 0o777) == 0o640 and (tmp_path / "f.txt").read_text() == "x"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_a_refused_folder_when_collecting(tmp_path, monkeypatch, capsys):
    import scratchvae.data.rollouts
    refuse(monkeypatch, scratchvae.data.rollouts.os, "makedirs", errno.ENOSPC)
    assert run("collect-rollouts", collect_main, ["--out", str(tmp_path / "eps"), "--quiet"]) == 2
    assert one_line(capsys) == "collect-rollouts: error: [Errno 28] No space left on device"


def test_a_data_folder_that_cannot_be_read_says_so(tmp_path, data, monkeypatch, capsys):
    """chmod 000: 'permission denied', not 'holds no episode files' (it holds 4). Run as root, where the mode
    binds nothing, the listing is refused as the system refuses it to anyone else."""
    import shutil
    folder = tmp_path / "eps"
    shutil.copytree(data, folder)
    os.chmod(folder, 0)
    try:
        if os.access(folder, os.R_OK):                          # root
            real = os.listdir

            def refused(path="."):
                if os.path.abspath(path) == str(folder):
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return real(path)
            monkeypatch.setattr(os, "listdir", refused)
        assert run("train-scratch", train_main, ["--data", str(folder), "--out", str(tmp_path / "r"), *FAST]) == 2
        assert one_line(capsys) == f"train-scratch: error: data folder {folder} cannot be read: Permission denied"
    finally:
        os.chmod(folder, 0o755)


def test_data_that_is_a_file(tmp_path, capsys):
    (tmp_path / "frames.npz").write_bytes(b"x")
    assert run("train-scratch", train_main, ["--data", str(tmp_path / "frames.npz"), "--out", str(tmp_path / "r")]) == 2
    assert f"data folder {tmp_path / 'frames.npz'} is a file; expected a folder of episode files" in one_line(capsys)


# ---- encode-latents ----------------------------------------------------------------------------------

def test_encode_checks_its_output_before_the_work(tmp_path, data, run_dir, monkeypatch, capsys):
    import scratchvae.use.latents
    monkeypatch.setattr(scratchvae.use.latents, "read_episode", lambda *a: pytest.fail("encoded before checking"))
    (tmp_path / "folder.npz").mkdir()
    assert run("encode-latents", encode_main, ["--checkpoint", run_dir, "--data", data,
                                               "--out", str(tmp_path / "folder.npz"), "--quiet"]) == 2
    assert f"--out {tmp_path / 'folder.npz'} is a folder; expected the name of a .npz file" in one_line(capsys)


def test_encode_a_run_folder_into_a_new_folder_past_a_bad_file(tmp_path, data, run_dir, capsys):
    """A run folder as --checkpoint (its newest), an --out whose folder does not exist yet, an unreadable
    episode passed over with training's warning; the file says where its latents came from."""
    folder = tiny_data(tmp_path / "eps", episodes=2)
    with open(os.path.join(folder, "episode_000009.npz"), "wb") as f:
        f.write(b"garbage")
    target = tmp_path / "new" / "deeper" / "latents.npz"
    with pytest.warns(UserWarning, match=r"^skipped 1 unreadable episode file\(s\) of 3 in .*episode_000009"):
        assert run("encode-latents", encode_main, ["--checkpoint", run_dir, "--data", folder,
                                                   "--out", str(target), "--quiet"]) == 0
    (_, newest), = RunFolder(run_dir).checkpoints()[-1:]
    assert f"using {newest} (step 3)" in capsys.readouterr().out
    with np.load(target) as z:
        assert str(z["checkpoint"]) == os.path.abspath(newest) and str(z["data"]) == os.path.abspath(folder)
        assert list(z["episodes"]) == ["episode_000000.npz", "episode_000001.npz"]
        assert list(z["starts"]) == [0, 12, 24]
        assert str(z["config"]) == __import__("json").dumps(load(newest).model.config, sort_keys=True)
    assert leftovers(tmp_path) == []


def test_encode_refuses_what_is_no_checkpoint_and_an_out_under_a_file(tmp_path, data, run_dir, capsys):
    """A .npy array, a text file and a folder of no run as --checkpoint; an --out whose folder is a file: one
    line each, naming what is wrong (never a TypeError, an offer to load a file 'unsafely', or 'File exists')."""
    np.save(tmp_path / "frames.npy", np.zeros((2, 64, 64, 3), np.uint8))
    (tmp_path / "README.md").write_text("# not a checkpoint\n")
    (tmp_path / "empty").mkdir()
    target = str(tmp_path / "latents.npz")
    for bad, said in ((tmp_path / "frames.npy", "frames.npy: not a checkpoint: expected a .npz archive"),
                      (tmp_path / "README.md", "README.md: not a checkpoint: expected a .npz archive"),
                      (tmp_path / "empty", "empty holds no checkpoint")):
        assert run("encode-latents", encode_main, ["--checkpoint", str(bad), "--data", data, "--out", target,
                                                   "--quiet"]) == 2
        line = one_line(capsys)
        assert said in line and "unsafe" not in line and "TypeError" not in line, line
    out = str(tmp_path / "README.md" / "latents.npz")
    assert run("encode-latents", encode_main, ["--checkpoint", run_dir, "--data", data, "--out", out, "--quiet"]) == 2
    assert one_line(capsys) == (f"encode-latents: error: {out}: cannot write here: {tmp_path / 'README.md'} is a "
                                "file, not a folder")
    assert not os.path.exists(target)


def test_collect_refuses_to_add_to_a_folder_collected_otherwise(tmp_path, capsys):
    """Episodes 0–2 collected with seed 0: asking for 5 with --seed 5 would break 'episode i uses seed SEED+i';
    refused in one line before anything runs (no CarRacing needed to see it)."""
    folder = tiny_data(tmp_path / "eps", episodes=3, policy="brownian")
    assert run("collect-rollouts", collect_main, ["--episodes", "5", "--seed", "5", "--out", folder, "--quiet"]) == 2
    assert ("holds 3 episode(s) collected with other options, first episode_000000.npz: seed 0 (asked: 5)"
            in one_line(capsys))
    assert sorted(f for f in os.listdir(folder) if f.endswith(".npz")) == [f"episode_00000{i}.npz" for i in range(3)]


def test_run_shows_warnings_its_way_and_puts_pythons_back(capsys):
    import warnings
    from scratchvae.cli import run as run_tool
    before = warnings.formatwarning

    def main(argv):
        warnings.warn("something odd")
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        assert run_tool("tool", main, []) == 0
    assert capsys.readouterr().err == "tool: warning: something odd\n"
    assert warnings.formatwarning is before
