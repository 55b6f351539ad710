"""The run folder as users meet it: one writer at a time, no dead ends, nothing stale left behind, hints that
run as printed, data that may move but not change, and a trained model to load and draw from."""
import errno
import fcntl
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pytest

import scratchvae
from runs import FAST, ROOT, params_equal, run_as_printed, said_command, start, tiny_data, \
    trained_run, wait_for_a_row
from scratchvae.run.checkpoint import load as load_file
from scratchvae.cli import run
from scratchvae.cli.encode import main as encode_main
from scratchvae.cli.sample import main as sample_main
from scratchvae.cli.train import main as train_main
from scratchvae.data.episodes import episode_name, write_episode
from scratchvae.files.lock import FolderInUse, locked
from scratchvae.run.runfolder import RunFolder, RunSettings

pytestmark = pytest.mark.slow                  # every test here runs a tool end to end
LONG = ["--steps", "100000", "--checkpoint-every", "100000"]        # runs until a signal stops it


def stop(proc, sig=signal.SIGINT):
    proc.send_signal(sig)
    return proc.communicate(timeout=120)


# ---- 1. one writer at a time ------------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_first(tmp_path, data):
    """Two real processes on one --out: the second, a new start with other settings or a resume, is refused in
    one line naming the first's pid, and touches nothing; the run stays one run."""
    out = str(tmp_path / "run")
    first = start("--data", data, "--out", out, *FAST, "--steps", "100000")
    wait_for_a_row(first, out)
    for args in (["--data", data, "--out", out, *FAST, "--steps", "3", "--latent", "4", "--batch-size", "5"],
                 ["--out", out, "--resume", "--quiet"]):
        second = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "train-scratch"), *args],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        line, = second.stderr.strip().splitlines()
        assert line == (f"train-scratch: error: {out} is in use by train-scratch (pid {first.pid}), which is writing "
                        "into it; wait for it to end, or use another folder")
        assert second.stdout == ""
    _, err = stop(first)
    assert first.returncode == 130, err
    rows = RunFolder(out).read_log()
    assert len({r["step"] for r in rows}) == len(rows)                  # no row written twice
    settings, _ = RunFolder(out).read_settings()
    assert settings.latent_dim == 8 and load_file(RunFolder(out).checkpoints()[-1][1]).model.latent_dim == 8


def test_the_lock_goes_with_its_holder(tmp_path, data):
    """A SIGKILLed run leaves no stale lock: the next one resumes at once. In one process the lock nests, and a
    folder made only for the lock is removed with it."""
    out = str(tmp_path / "run")
    proc = start("--data", data, "--out", out, *FAST, "--steps", "100000")
    log = os.path.join(out, "log.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and not RunFolder(out).checkpoints():
        time.sleep(0.1)
    proc.kill()
    proc.communicate()
    assert os.path.exists(log) and os.path.exists(os.path.join(out, ".lock"))
    step = RunFolder(out).checkpoints()[-1][0]
    assert train_main(["--out", out, "--resume", "--steps", str(step + 1), "--quiet"]) == 0
    folder = str(tmp_path / "new")
    with locked(folder, "first"):
        with locked(folder, "again"):                                   # this process holds it already
            pass
        r = subprocess.run([sys.executable, "-c", f"from scratchvae.files.lock import locked\n"
                            f"with locked({folder!r}, 'second'): pass"], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode != 0 and f"FolderInUse: {folder} is in use by first (pid {os.getpid()})" in r.stderr
    assert not os.path.exists(folder)
    with pytest.raises(FolderInUse):                                     # (the class the tools catch)
        raise FolderInUse("")


# ---- 2. no dead ends ----------------------------------------------------------------------------------

def test_a_nan_before_the_first_checkpoint_says_what_to_type(tmp_path, data):
    """--lr 1e30 diverges before any checkpoint: the message's command starts the run again (replacing what it
    left) and trains; --resume on that folder says the same instead of 'no checkpoint'."""
    out = str(tmp_path / "run")
    proc = start("--data", data, "--out", out, *FAST, "--steps", "6", "--lr", "1e30", "--checkpoint-every", "100")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    line, = err.strip().splitlines()
    assert "No checkpoint was written before it; start again with a lower learning rate: " in line
    again = said_command(err, "lower learning rate: ")
    assert again.endswith(f"bin/train-scratch --data {data} --out {out} --steps 6 --batch-size 8 --latent-dim 8 "
                          "--channels 4,8,8,8 --dense-size 16 --log-every 2 --eval-every 2 --checkpoint-every 100")        # --lr: the default
    assert not RunFolder(out).holds_run() and RunFolder(out).leftovers() == ["run.json", "log.jsonl"]
    resume = subprocess.run([sys.executable, os.path.join("bin", "train-scratch"), "--out", out, "--resume",
                             "--steps", "5"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resume.returncode == 2
    assert "holds a run that stopped before its first checkpoint: the loss became nan at step 2 with --lr 1e+30, " \
           "so there is nothing to resume; start it again with a lower learning rate: " in resume.stderr
    assert len(resume.stderr.splitlines()) == 1
    assert said_command(resume.stderr, "lower learning rate: ") == again.replace("--steps 6", "--steps 5")  # no --lr 1e+30
    r = run_as_printed(again, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "held a run that stopped before its first checkpoint; starting anew, replacing its run.json, log.jsonl" \
        in r.stdout
    assert RunFolder(out).checkpoints()[-1][0] == 6 and RunFolder(out).read_settings()[0].lr == 0.001
    assert [row["step"] for row in RunFolder(out).read_log()] == [2, 4, 6]     # the old rows are gone


def test_two_ctrl_c_before_the_first_checkpoint_then_the_printed_command(tmp_path, data):
    """The second Ctrl-C comes as soon as the first is acknowledged: while the step that the first lets finish,
    its log row and its checkpoint are still to come."""
    out = str(tmp_path / "run")
    proc = start("--data", data, "--out", out, *FAST, *LONG, "--batch-size", "32")
    wait_for_a_row(proc, out)
    proc.send_signal(signal.SIGINT)
    first = proc.stderr.readline()
    assert "SIGINT received: stopping after this step" in first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "before the first checkpoint, so there is nothing to resume; start again with: " in err
    assert "Traceback" not in err and not RunFolder(out).holds_run()
    r = run_as_printed(said_command(err, "start again with: "), "--steps", "3")
    assert r.returncode == 0, r.stderr
    assert RunFolder(out).checkpoints()[-1][0] == 3


def test_a_full_disk_at_the_first_checkpoint_is_no_dead_end(tmp_path, data, monkeypatch, capsys):
    """The disk fills up as the first checkpoint is written (run.json and the log fitted): one line, exit 2, no
    temporary left; the same command, run again with room on the disk, starts the run anew."""
    import scratchvae.files.atomic
    real = os.fsync

    def full_for_checkpoints(fd):
        if "/checkpoints/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)
    monkeypatch.setattr(scratchvae.files.atomic.os, "fsync", full_for_checkpoints)
    out = str(tmp_path / "run")
    args = ["--data", data, "--steps", "4", "--out", out, *FAST]
    assert run("train-scratch", train_main, args) == 2
    err = capsys.readouterr().err
    assert err == f"train-scratch: error: {RunFolder(out).checkpoint_path(3)}: No space left on device\n"
    assert sorted(os.listdir(out)) == [".lock", "checkpoints", "log.jsonl", "run.json"]
    assert os.listdir(os.path.join(out, "checkpoints")) == []
    monkeypatch.setattr(scratchvae.files.atomic.os, "fsync", real)
    assert run("train-scratch", train_main, args) == 0
    assert [s for s, _ in RunFolder(out).checkpoints()] == [3, 4]


def test_make_train_after_a_run_without_a_checkpoint_starts_it_again(tmp_path, data, monkeypatch, capsys):
    """runs/default holds only what a diverged run left: `make train` (no --out) starts anew instead of
    failing every time."""
    import scratchvae.cli.train as cli
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "DEFAULT_TRAIN_STEPS", 2)
    assert run("train-scratch", train_main, ["--data", data, *FAST, "--lr", "1e30", "--checkpoint-every", "50"]) == 3
    assert not RunFolder(os.path.join("runs", "default")).holds_run()
    assert train_main(["--data", data, *FAST]) == 0
    assert RunFolder(os.path.join("runs", "default")).checkpoints()[-1][0] == 2


# ---- 3. what a killed writer left ---------------------------------------------------------------------

KILLED_MID_WRITE = """
import os, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import scratchvae.run.checkpoint as ck
from scratchvae.cli.train import main

real, calls = np.savez, []
def slow(f, **arrays):                              # the second checkpoint: half written, then the kill
    calls.append(1)
    if len(calls) == 2:
        f.write(b"PK" + b"x" * 100000)
        f.flush()
        open({ready!r}, "w").close()
        time.sleep(600)
    real(f, **arrays)
ck.np.savez = slow
main({args!r})
"""


def test_a_sigkill_mid_checkpoint_leaves_a_temporary_the_next_run_removes(tmp_path, data):
    out, ready = str(tmp_path / "run"), str(tmp_path / "ready")
    code = KILLED_MID_WRITE.format(root=ROOT, ready=ready, args=["--data", data, "--out", out, *FAST, "--steps", "9"])
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not os.path.exists(ready):
        time.sleep(0.1)
    proc.kill()
    proc.communicate()
    stale = [f for f in os.listdir(os.path.join(out, "checkpoints")) if f.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].startswith(".ckpt_0000006.npz.")
    assert train_main(["--out", out, "--resume", "--quiet"]) == 0
    assert [f for d, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")] == []
    assert RunFolder(out).checkpoints()[-1][0] == 9


# ---- 4, 9. what is said, and when -------------------------------------------------------------------------

def test_a_refused_resume_says_nothing_before_its_refusal(tmp_path, data, capsys):
    out = str(tmp_path / "run")
    assert train_main(["--data", data, "--steps", "6", "--out", out, *FAST]) == 0
    capsys.readouterr()
    assert run("train-scratch", train_main, ["--out", out, "--resume", "--steps", "2"]) == 2
    said = capsys.readouterr()
    assert said.out == "" and "the newest checkpoint is at step 6, past the 2 steps asked for" in said.err


# ---- 7. the data may move, not change ---------------------------------------------------------------------

def test_a_run_resumes_on_its_data_moved_and_refuses_other_data(tmp_path):
    data = tiny_data(tmp_path / "eps")
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert train_main(["--data", data, "--steps", "6", "--out", one, *FAST]) == 0
    assert train_main(["--data", data, "--steps", "3", "--out", two, *FAST]) == 0
    moved = str(tmp_path / "moved")
    os.rename(data, moved)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "train-scratch"), "--out", two, "--resume"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"train-scratch: error: data folder {data} does not exist; if the run's data moved, give its new place "
        "with --data (a folder that holds the same episodes resumes the run)")
    assert train_main(["--out", two, "--resume", "--data", moved, "--steps", "6", "--quiet"]) == 0
    assert params_equal(load_file(RunFolder(one).checkpoints()[-1][1]), load_file(RunFolder(two).checkpoints()[-1][1]))
    assert RunFolder(two).read_settings()[0].data == moved

    more = tiny_data(tmp_path / "more", episodes=5)                 # one episode more
    with pytest.raises(ValueError, match=r"holds 5 episodes, 60 frames, not the 4 episodes, 48 frames this run was "
                                         r"trained on; a resume trains on the same episodes"):
        train_main(["--out", two, "--resume", "--data", more, "--steps", "9"])
    changed = str(tmp_path / "changed")                             # as many episodes and frames, one changed
    shutil.copytree(moved, changed)
    ep = dict(np.load(os.path.join(changed, episode_name(2))))
    ep["obs"][5] = 255 - ep["obs"][5]
    write_episode(os.path.join(changed, episode_name(2)), ep["obs"], ep["actions"], ep["rewards"], ep["dones"])
    with pytest.raises(ValueError, match=r"holds 4 episodes, 48 frames, not the 4 episodes, 48 frames this run was "
                                         r"trained on: as many, but other frames"):
        train_main(["--out", two, "--resume", "--data", changed, "--steps", "9"])


# ---- 10. progress where nobody watches ------------------------------------------------------------------

def test_progress_is_plain_lines_off_a_terminal_and_a_bar_on_one(tmp_path, data):
    args = [sys.executable, os.path.join(ROOT, "bin", "train-scratch"), "--data", data, "--steps", "4",
            *[a for a in FAST if a != "--quiet"]]
    r = subprocess.run([*args, "--out", str(tmp_path / "piped")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "training: 4/4 step (100%), loss=" in r.stderr
    leader, follower = pty.openpty()                                 # stderr a terminal: tqdm's bar, redrawn
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))     # 24 rows, 100 columns
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "tty")], stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:                                              # the terminal closed: the run ended
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=300) == 0
    os.close(leader)
    assert b"\r" in seen and b"training:" in seen


# ---- 11. no CarRacing needed to train ----------------------------------------------------------------------

def test_without_gymnasium_the_tools_say_how_to_get_it(tmp_path):
    (tmp_path / "gymnasium.py").write_text("raise ImportError(\"No module named 'gymnasium'\")\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    for tool, args in (("train-scratch", ["--steps", "2"]), ("collect-rollouts", ["--episodes", "1", "--quiet"])):
        r = subprocess.run([sys.executable, os.path.join(ROOT, "bin", tool), *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr
        line, = r.stderr.strip().splitlines()
        assert line.startswith(f"{tool}: error: collecting CarRacing frames needs gymnasium[box2d], which is not "
                               "installed (No module named 'gymnasium'): pip install -e '.[collect]'")
        assert ("or give --data with a folder of episodes" in line) == (tool == "train-scratch")
        assert "collecting" not in r.stdout and not os.path.exists(tmp_path / "data" / "carracing-default")


def test_the_package_needs_gymnasium_only_to_collect():
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    requires = cfg["options"]["install_requires"]
    extras = cfg["options.extras_require"]
    assert "gymnasium" not in requires
    assert "gymnasium[box2d]" in extras["collect"]
    assert "cupy-cuda12x" in extras["gpu"] and "cupy-cuda13x" in extras["gpu-cuda13"]
    assert "mpi4py" in extras["distributed"] and "mpi4py" not in requires
    for extra, packages in {"export": ("safetensors", "onnx", "onnxruntime"),
                            "tensorboard": ("tensorboardX", "tensorboard")}.items():
        assert all(p in extras[extra] and p not in requires for p in packages), extra
    # what make train and make test install: the tests run the tools under mpiexec, export and read event files too
    assert '".[collect,test,distributed,export,tensorboard]"' in open(os.path.join(ROOT, "Makefile")).read()


# ---- 12. a trained model to load and draw from ------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    return trained_run(tmp_path_factory, data, steps=7)


def test_load_takes_a_run_folder_or_a_file(trained, data, tmp_path):
    newest = scratchvae.load(trained)
    assert newest.step == 7 and newest.path == RunFolder(trained).checkpoints()[-1][1]
    best = scratchvae.load(trained, best=True)
    evals = {r["step"]: r["heldout_mse"] for r in RunFolder(trained).read_log() if "heldout_mse" in r}
    assert best.meta["eval"]["mse"] == min(evals[3], evals[6], evals[7])            # the checkpoints' steps
    assert scratchvae.load(RunFolder(trained).checkpoint_path(6)).step == 6
    frames = np.load(os.path.join(data, episode_name(1)))["obs"][:5]          # uint8 (5, 64, 64, 3)
    mu, logvar = newest.model.encode(scratchvae.to_model_input(frames))
    assert mu.shape == logvar.shape == (5, 8)
    with pytest.raises(ValueError, match=r"to_model_input expects uint8 frames \(N, H, W, 3\) in a NumPy array, "
                                         r"got uint8 \(64, 64, 3\) \(one frame: frames\[None\]\)"):
        scratchvae.to_model_input(frames[0])
    with pytest.raises(ValueError, match=r"got float32 \(5, 64, 64, 3\)$"):
        scratchvae.to_model_input(frames.astype(np.float32))
    (tmp_path / "empty").mkdir()
    with pytest.raises(scratchvae.CheckpointError, match="holds no checkpoint"):
        scratchvae.load(str(tmp_path / "empty"))
    with pytest.raises(scratchvae.CheckpointError, match="has no best checkpoint"):
        scratchvae.load(str(tmp_path / "empty"), best=True)


def test_sample_draws_a_checkpoints_pictures(trained, data, tmp_path, capsys):
    from PIL import Image
    assert sample_main(["--checkpoint", trained, "--out", str(tmp_path / "run")]) == 0
    assert "wrote samples.png, reconstructions.png, traversal.png, loss.png" in capsys.readouterr().out
    for name in ("samples.png", "reconstructions.png", "traversal.png", "loss.png"):
        with Image.open(tmp_path / "run" / name) as im:
            assert im.format == "PNG" and im.size[0] > 100
    Image.fromarray(np.full((96, 96, 3), 90, np.uint8)).save(tmp_path / "grey.png")
    assert sample_main(["--checkpoint", RunFolder(trained).checkpoint_path(3), "--images", str(tmp_path / "grey.png"),
                        "--out", str(tmp_path / "images"), "--samples", "4"]) == 0
    said = capsys.readouterr().out
    assert "(step 3)" in said and "wrote samples.png, reconstructions.png, traversal.png, loss.png" in said
    assert sample_main(["--checkpoint", trained, "--best", "--data", data, "--out", str(tmp_path / "data")]) == 0
    latents = str(tmp_path / "latents.npz")                             # codes: encode-latents' mu, or an array
    assert encode_main(["--checkpoint", trained, "--data", data, "--out", latents, "--quiet"]) == 0
    np.save(tmp_path / "z.npy", np.zeros((3, 8)))
    heights = []
    for codes in (latents, str(tmp_path / "z.npy")):
        capsys.readouterr()
        assert sample_main(["--checkpoint", trained, "--codes", codes, "--out", str(tmp_path / "codes")]) == 0
        assert "decoded.png" in capsys.readouterr().out
        with Image.open(tmp_path / "codes" / "decoded.png") as im:
            heights.append(im.size[1])
    assert heights[0] > heights[1]                                      # 48 codes take 6 rows, 3 codes one
    np.save(tmp_path / "wide.npy", np.zeros((3, 5)))
    for codes, said in ((str(tmp_path / "wide.npy"), "expected float codes (N, 8), got float64 (3, 5)"),
                        (os.path.join(ROOT, "README.md"), "expected an .npy array of codes, or a latents file")):
        assert run("sample", sample_main, ["--checkpoint", trained, "--codes", codes, "--out",
                                           str(tmp_path / "nocodes")]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1 and "pickle" not in err, err
    assert not os.path.exists(tmp_path / "nocodes")
    (tmp_path / "notes.txt").write_text("not an image")
    assert run("sample", sample_main, ["--checkpoint", trained, "--images", str(tmp_path / "notes.txt"),
                                       "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sample: error: {tmp_path / 'notes.txt'}: not a readable image") and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "bad")


def test_a_best_checkpoint_from_past_the_resume_point_is_dropped(tmp_path, data):
    """Resumed from step 3 after the newest checkpoint (6) was lost: a best.npz of step 6 belongs to the
    stretch of the run being trained again, and goes, as the log's rows past step 3 do."""
    out = str(tmp_path / "run")
    assert train_main(["--data", data, "--steps", "6", "--out", out, *FAST, "--eval-every", "1"]) == 0
    folder = RunFolder(out)
    if folder.best()[0] != 6:                                        # make step 6 the best, whatever came out
        folder.keep_best(folder.checkpoint_path(6))
    os.unlink(folder.checkpoint_path(6))
    assert train_main(["--out", out, "--resume", "--steps", "4", "--quiet"]) == 0
    assert folder.best()[0] == 4                        # the one checkpoint written since


# ---- 13. importing the package changes nothing in its host ------------------------------------------------

@pytest.mark.parametrize("first", ["", "import numpy; "])
def test_importing_the_package_leaves_the_environment_alone(first):
    code = (f"import os; {first}import scratchvae, scratchvae.ops.threads as t; "
            "print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'), t.WORKERS)")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["None", "1"], r.stderr


@pytest.mark.parametrize("tool", ["train-scratch", "collect-rollouts", "encode-latents", "sample", "explore", "export",
                                  "evaluate"])
def test_each_launcher_lets_openblas_sleep_before_numpy_loads_and_uses_every_core(tool):
    """The launcher (scratchvae/launch.py) sets OPENBLAS_THREAD_TIMEOUT before NumPy loads (seen by a finder
    that looks at the variable as NumPy is imported), and the tool then shares its copies among every core."""
    code = ("import atexit, os, runpy, sys\n"
            "class Watch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'numpy' and not hasattr(self, 'seen'):\n"
            "            self.seen = os.environ.get('OPENBLAS_THREAD_TIMEOUT')\n"
            "watch = Watch()\n"
            "sys.meta_path.insert(0, watch)\n"
            "def show():\n"
            "    import scratchvae.ops.threads as t\n"
            "    print('SEEN', watch.seen, t.WORKERS == t.CORES)\n"
            "atexit.register(show)\n"
            f"sys.argv = [{tool!r}, '--help']\n"
            f"runpy.run_path({os.path.join(ROOT, 'bin', tool)!r}, run_name='__main__')\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.splitlines()[-1] == "SEEN 4 True", r.stderr


def test_the_options_a_run_prints_start_the_same_run():
    """as_options (what the tools print for a new start) parsed by train-scratch's own parser gives back every
    setting, the on/off ones (--no-graph, --tensorboard) too; --tf32 is read as --precision tf32, and printed so."""
    from dataclasses import fields
    from scratchvae.cli import train as cli
    for precision, dtype in (("tf32", "float64"), ("fp16", "float32")):
        s = RunSettings(data="d", out="o", steps=7, batch_size=3, lr=0.01, latent_dim=5, channels="4,8,8,8",
                        dense_size=16, kl_tolerance=0.25, beta=2.0, seed=4, device="cpu", precision=precision,
                        no_graph=True, dtype=dtype, heldout=0.2, log_every=2, eval_every=3, checkpoint_every=4, keep=2,
                        eval_frames=9, tensorboard=True, readers=2)
        skip = ("epochs", "device", "tf32") + (("dtype",) if dtype == "float32" else ())
        assert all(getattr(s, f.name) != f.default for f in fields(s) if f.name not in skip)
        args = vars(cli.parser().parse_args([str(o) for o in s.as_options()]))
        assert RunSettings(**{f.name: args[f.name] for f in fields(RunSettings)}) == s
    alias = RunSettings(data="d", out="o", steps=7, tf32=True)
    args = vars(cli.parser().parse_args([str(o) for o in alias.as_options()]))
    assert RunSettings(**{f.name: args[f.name] for f in fields(RunSettings)}) == alias
    assert vars(cli.parser().parse_args(["--tf32"]))["tf32"] and alias.precision == "tf32"


def test_what_a_resume_may_change_is_said_in_full_by_help_and_page():
    """--help's --resume and training.md's resume paragraph name every setting a resume may change (CAN_CHANGE:
    --eval-frames was missing from both), and say that an option given again with the run's value is accepted."""
    import re
    from scratchvae.cli import train as cli
    from scratchvae.run.runfolder import CAN_CHANGE
    help_text = next(a.help for a in cli.parser()._actions if a.dest == "resume")
    page = open(os.path.join(ROOT, "docs", "training.md"), encoding="utf-8").read()
    paragraph = " ".join(page[page.index("`--resume` continues the run"):].split("\n\n", 1)[0].split())
    for name in CAN_CHANGE:
        option = "--" + name.replace("_", "-")
        assert option in help_text, f"--resume's help leaves out {option}"
        assert f"`{option}`" in paragraph, f"training.md's resume paragraph leaves out {option}"
    assert "run's own value is accepted and changes nothing" in help_text
    assert "already has is accepted and changes nothing" in paragraph
    assert not re.search(r"for anything else, the command refuses", paragraph)
