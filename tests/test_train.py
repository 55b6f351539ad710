"""bin/train-scratch and bin/encode-latents end to end, on a tiny synthetic dataset."""
import json
from dataclasses import replace
import os
import signal
import time

import numpy as np
import pytest

from runs import FAST, SMALL, files_and_times, params_equal, run_as_printed, run_cli, said_command, start, tiny_data, \
    wait_for_a_row
from scratchvae.run.checkpoint import load
from scratchvae.cli.encode import main as encode_main
from scratchvae.cli import run
from scratchvae.cli.train import main as train_main
from scratchvae.data.episodes import episode_name
from scratchvae.check.gradcheck import rel_error
from scratchvae.use.latents import episode_rows
from scratchvae.run.runfolder import RunFolder, RunSettings
from scratchvae.run.trainer import Trainer, TrainingStopped

pytestmark = pytest.mark.slow                  # every test here runs a tool end to end


def test_train_writes_every_output(tmp_path, data, capsys, device):
    out = str(tmp_path / "run")
    assert train_main(["--data", data, "--steps", "7", "--out", out, "--device", device, *FAST]) == 0
    files = set(os.listdir(out))
    assert {"run.json", "log.jsonl", "checkpoints", "reconstructions.png", "samples.png", "traversal.png",
            "loss.png"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    assert [s for s, _ in RunFolder(out).checkpoints()] == [3, 6, 7]
    rows = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert [r["step"] for r in rows] == [2, 3, 4, 6, 7]      # every 2 steps, at each checkpoint, at the end
    assert all(np.isfinite(r["loss"]) for r in rows)
    evals = {r["step"]: r["heldout_mse"] for r in rows if "heldout_mse" in r}
    assert sorted(evals) == [2, 3, 4, 6, 7]             # every --eval-every 2, at each checkpoint, at the end
    best = load(os.path.join(out, "checkpoints", "best.npz"))               # the lowest MSE of the checkpoints
    assert best.meta["eval"] == {"split": "heldout", "mse": min(evals[s] for s in (3, 6, 7))}
    assert evals[best.step] == best.meta["eval"]["mse"]
    settings = json.load(open(os.path.join(out, "run.json")))
    assert settings["steps"] == 7 and settings["batch_size"] == 8 and settings["device"] == device
    from PIL import Image
    for name in ("reconstructions.png", "samples.png", "traversal.png", "loss.png"):
        with Image.open(os.path.join(out, name)) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 50
    said = capsys.readouterr().out
    assert "done at step 7" in said and out in said


def test_images_per_second_is_images_over_the_time_between_rows(tmp_path, data, monkeypatch):
    """A clock that moves 0.5 s each time it is read: the loop reads it once at the start and once per
    row, so each row saw log_every · batch_size images in 0.5 s."""
    import itertools
    import scratchvae.run.losslog
    ticks = itertools.count()
    monkeypatch.setattr(scratchvae.run.losslog.time, "perf_counter", lambda: 0.5 * next(ticks))
    t = Trainer(RunSettings(data, str(tmp_path / "run"), steps=4, batch_size=8, **SMALL, log_every=2,
                            eval_every=100, checkpoint_every=100), progress=False)
    t.run()
    assert [(r["step"], r["images_per_s"]) for r in t.folder.read_log()] == [(2, 32.0), (4, 32.0)]


def test_settings_come_from_one_object(tmp_path, data):
    """The command line fills RunSettings field by field: each option lands in the run's settings."""
    from scratchvae.cli.train import parser
    args = ["--data", data, "--steps", "3", "--batch-size", "5", "--lr", "0.002", "--latent", "4",
            "--kl-tolerance", "0.25", "--beta", "2", "--seed", "7", "--dtype", "float64", "--heldout", "0.3",
            "--log-every", "3", "--eval-every", "6", "--checkpoint-every", "9", "--keep", "2"]
    ns = vars(parser().parse_args(args))
    assert ns["latent_dim"] == 4                                   # --latent is --latent-dim's old name
    out = str(tmp_path / "run")
    assert train_main([*args, "--out", out, "--quiet"]) == 0
    got = json.load(open(os.path.join(out, "run.json")))
    want = dict(steps=3, epochs=None, batch_size=5, lr=0.002, latent_dim=4, kl_tolerance=0.25, beta=2.0, seed=7,
                dtype="float64", heldout=0.3, log_every=3, eval_every=6, checkpoint_every=9, keep=2,
                device="cpu", data=os.path.abspath(data), out=out)
    assert {k: got[k] for k in want} == want
    ck = load(RunFolder(out).checkpoints()[-1][1])
    assert ck.meta["settings"] == got
    assert (ck.model.latent_dim, ck.model.kl_tolerance, ck.model.beta, ck.model.dtype) == (4, 0.25, 2.0, np.float64)
    with pytest.raises(ValueError, match="steps or as epochs"):
        RunSettings(data, out)


def test_resume_is_bit_identical(tmp_path, data, device):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    on = ["--device", device, *FAST]
    assert train_main(["--data", data, "--steps", "8", "--out", one, *on]) == 0
    assert train_main(["--data", data, "--steps", "4", "--out", two, *on]) == 0
    assert train_main(["--data", data, "--steps", "8", "--out", two, "--resume", *on]) == 0
    a, b = load(RunFolder(one).checkpoints()[-1][1]), load(RunFolder(two).checkpoints()[-1][1])
    assert a.step == b.step == 8
    for k in a.model.params:
        np.testing.assert_array_equal(a.model.params[k], b.model.params[k])
        np.testing.assert_array_equal(a.optimizer.m[k], b.optimizer.m[k])
    rows_a = [json.loads(line)["loss"] for line in open(os.path.join(one, "log.jsonl"))]
    rows_b = [json.loads(line)["loss"] for line in open(os.path.join(two, "log.jsonl"))]
    assert rows_a == rows_b


def test_log_rows_after_resuming_mid_window(tmp_path, data):
    """Resumed at step 3 with a row every 2 steps: row 4 is step 4 alone, row 6 the mean of steps 5 and 6."""
    every = [*FAST]
    every[every.index("--log-every") + 1] = "1"
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert train_main(["--data", data, "--steps", "6", "--out", one, *every]) == 0
    assert train_main(["--data", data, "--steps", "3", "--out", two, *FAST]) == 0
    assert train_main(["--data", data, "--steps", "6", "--out", two, "--resume", *FAST]) == 0
    per_step = {r["step"]: r["loss"] for r in map(json.loads, open(os.path.join(one, "log.jsonl")))}
    rows = {r["step"]: r["loss"] for r in map(json.loads, open(os.path.join(two, "log.jsonl")))}
    assert sorted(rows) == [2, 3, 4, 6]
    assert rows[4] == per_step[4]
    assert rows[6] == float(np.mean([per_step[5], per_step[6]]))


def test_epochs_run_and_resume(tmp_path, data):
    out = str(tmp_path / "run")
    assert train_main(["--data", data, "--epochs", "1", "--out", out, *FAST]) == 0   # 36 frames / 8 = 5 steps
    assert RunFolder(out).checkpoints()[-1][0] == 5
    assert train_main(["--data", data, "--epochs", "2", "--out", out, "--resume", *FAST]) == 0
    assert RunFolder(out).checkpoints()[-1][0] == 10
    r = run_cli("--data", data, "--epochs", "1", "--out", out, "--resume", *FAST)
    assert r.returncode == 2 and "the newest checkpoint is at step 10, past the 5 steps asked for" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_checkpoints_and_says_how_to_resume(tmp_path, data, sig, device):
    """The resume command is printed as it runs: pasted into a shell without the virtual environment, it
    resumes."""
    out = str(tmp_path / "run")
    proc = start("--data", data, "--steps", "100000", "--out", out, "--device", device, *FAST,
                 "--checkpoint-every", "100000")
    wait_for_a_row(proc, out)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr                     # 130 for SIGINT, 143 for SIGTERM
    assert f"{sig.name} received: stopping after this step" in stderr
    assert f"stopped by {sig.name}" in stderr and "Traceback" not in stderr
    again = said_command(stderr, "Resume with: ")
    assert again.endswith(f"bin/train-scratch --resume --out {out}")
    (step, path), = RunFolder(out).checkpoints()
    assert load(path).step == step >= 2
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]
    r = run_as_printed(again, "--steps", str(step + 2), "--quiet")
    assert r.returncode == 0, r.stderr
    assert RunFolder(out).checkpoints()[-1][0] == step + 2


def poisoned_trainer(data, out, log_every, checkpoint_every, after_step, name, value, device="cpu"):
    """A 20-step Trainer whose update `after_step` writes `value` into the first entry of parameter `name`."""
    t = Trainer(RunSettings(data, out, steps=20, batch_size=8, **SMALL, log_every=log_every,
                            eval_every=log_every, checkpoint_every=checkpoint_every, device=device), progress=False)
    real_step = t._step

    def poisoned():                     # (around the whole step: on the GPU the step is a replayed graph)
        real_step()
        if t.step == after_step:
            t.model.params[name].reshape(-1)[0] = value
    t._step = poisoned
    return t


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data, device):
    out = str(tmp_path / "run")
    t = poisoned_trainer(data, out, 2, 3, 4, "decoder.dense.b", np.nan, device)   # after step 4: a NaN weight
    with pytest.raises(TrainingStopped, match=r"the loss became nan at step 5; stopping\. Last good checkpoint: "
                                              r".*ckpt_0000003\.npz") as e:
        t.settings = replace(t.settings, eval_every=10)            # (an evaluation at step 4 would see it first)
        t.run()
    assert e.value.exit_code != 0
    assert [s for s, _ in RunFolder(out).checkpoints()] == [3]
    assert np.isfinite(load(RunFolder(out).checkpoints()[0][1]).model.params["decoder.dense.b"]).all()


def test_finite_parameters_whose_pictures_are_not_finite_stop_the_run(tmp_path, data, capsys):
    """One step at --lr 1e9 leaves finite weights whose held-out reconstructions are NaN (step 1's loss, taken
    before the update, was finite): the run stops there, naming it, and writes no checkpoint or row of it."""
    out = str(tmp_path / "run")
    args = ["--data", data, "--out", out, *FAST, "--steps", "1", "--lr", "1e9"]
    assert run("train-scratch", train_main, args) == 3
    err = capsys.readouterr().err
    assert "the held-out MSE became nan at step 1; stopping. No checkpoint was written" in err, err
    assert not RunFolder(out).holds_run() and RunFolder(out).read_log() == []


def test_a_torn_last_log_line_is_dropped_on_resume(tmp_path, data):
    out = str(tmp_path / "run")
    assert train_main(["--data", data, "--steps", "4", "--out", out, *FAST]) == 0
    with open(os.path.join(out, "log.jsonl"), "a") as f:
        f.write('{"step": 5, "lo')                      # what a kill in mid-append leaves
    assert train_main(["--data", data, "--steps", "6", "--out", out, "--resume", *FAST]) == 0
    rows = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert [r["step"] for r in rows] == [2, 3, 4, 6]


@pytest.mark.parametrize("args, match", [
    (["--batch-size", "0"], "--batch-size: expected a number of at least 1, got 0"),
    (["--steps", "-3"], "--steps: expected a number of at least 1, got -3"),
    (["--lr", "nan"], "--lr: expected a number above 0, got nan"),
    (["--data", "/nonexistent/folder"], "data folder /nonexistent/folder does not exist"),
])
def test_bad_arguments_one_line_nonzero(tmp_path, args, match):
    r = run_cli("--out", str(tmp_path / "run"), "--quiet", *args)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], r.stderr
    assert not os.path.exists(tmp_path / "run")


def test_bad_inputs_in_process(tmp_path, data, monkeypatch):
    (tmp_path / "empty").mkdir()
    r = run_cli("--data", str(tmp_path / "empty"), "--out", str(tmp_path / "r1"), "--quiet")
    assert r.returncode == 2 and "holds no episode files" in r.stderr and "Traceback" not in r.stderr

    # an unreadable episode among good ones: a one-line warning naming it, and training goes on
    bad = tmp_path / "withbad"
    tiny_data(bad, episodes=3)
    (bad / "episode_000009.npz").write_bytes(b"garbage")
    r = run_cli("--data", str(bad), "--steps", "2", "--out", str(tmp_path / "r2"), *FAST)
    assert r.returncode == 0, r.stderr
    assert "train-scratch: warning: skipped 1 unreadable episode file(s) of 4" in r.stderr
    assert "episode_000009.npz" in r.stderr and "UserWarning" not in r.stderr

    # a run folder that already holds a run is not overwritten without --resume
    out = str(tmp_path / "run")
    assert train_main(["--data", data, "--steps", "3", "--out", out, *FAST]) == 0
    before = files_and_times(out)
    r = run_cli("--data", data, "--steps", "3", "--out", out, *FAST)
    assert r.returncode == 2 and "already holds a run" in r.stderr
    assert files_and_times(out) == before

    # another data folder, or another configuration, on resuming: refused, naming each
    other = tiny_data(tmp_path / "other", episodes=2, size=(60, 80))
    r = run_cli("--data", other, "--steps", "6", "--out", out, "--resume", *FAST)
    assert r.returncode == 2 and f"{other} holds 2 episodes, 24 frames, not the 4 episodes, 48 frames this run was " \
                                 "trained on" in r.stderr
    r = run_cli("--steps", "6", "--out", out, "--resume", "--latent", "16", "--seed", "2")
    assert r.returncode == 2 and "cannot change: --latent-dim (8 → 16), --seed (0 → 2)" in r.stderr
    # a checkpoint of another configuration than the run's own settings
    settings = json.load(open(os.path.join(out, "run.json")))
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump({**settings, "latent_dim": 4}, f)
    r = run_cli("--out", out, "--resume")
    assert r.returncode == 2 and "latent_dim: checkpoint has 8, expected 4" in r.stderr
    with open(os.path.join(out, "run.json"), "w") as f:
        json.dump(settings, f)

    # the only checkpoint corrupt: nothing to fall back to
    (_, newest), = RunFolder(out).checkpoints()[-1:]
    with open(newest, "r+b") as f:
        f.truncate(1000)
    before = files_and_times(out)
    r = run_cli("--steps", "6", "--out", out, "--resume")
    assert r.returncode == 2 and "none of the 1 checkpoints" in r.stderr and "truncated or corrupt" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1
    assert files_and_times(out) == before

    # --resume with nothing to resume
    r = run_cli("--data", data, "--steps", "6", "--out", str(tmp_path / "fresh"), "--resume", *FAST)
    assert r.returncode == 2 and "holds no run" in r.stderr


def test_gpu_without_cupy_is_a_clear_error(tmp_path, data):
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    (tmp_path / "cupy.py").write_text("raise ImportError('No module named cupy')\n")
    r = run_cli("--device", "gpu", "--data", data, "--out", str(tmp_path / "run"), env=env)
    assert r.returncode == 2 and "needs CuPy" in r.stderr and ".[gpu]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("--device", "auto", "--data", data, "--steps", "2", "--out", str(tmp_path / "run"), *FAST, env=env)
    assert r.returncode == 0 and "--device auto chose cpu" in r.stdout


@pytest.mark.gpu
def test_auto_chooses_the_gpu_and_a_gpu_run_goes_on_on_the_cpu(tmp_path, data):
    out = str(tmp_path / "run")
    r = run_cli("--device", "auto", "--data", data, "--steps", "3", "--out", out, *FAST)
    assert r.returncode == 0 and "--device auto chose gpu" in r.stdout, r.stderr
    assert json.load(open(os.path.join(out, "run.json")))["device"] == "gpu"
    assert train_main(["--out", out, "--resume", "--steps", "5", "--device", "cpu", "--quiet"]) == 0
    assert json.load(open(os.path.join(out, "run.json")))["device"] == "cpu"
    assert load(RunFolder(out).checkpoints()[-1][1]).step == 5


def test_encode_latents(tmp_path, data, device):
    out = str(tmp_path / "run")
    assert train_main(["--data", data, "--steps", "3", "--out", out, *FAST]) == 0
    ckpt = RunFolder(out).checkpoints()[-1][1]
    target = str(tmp_path / "latents.npz")
    assert encode_main(["--checkpoint", ckpt, "--data", data, "--out", target, "--quiet", "--batch-size", "5",
                        "--device", device]) == 0
    with np.load(target) as z:
        lat = {k: z[k] for k in z.files}
    assert lat["mu"].shape == lat["logvar"].shape == (48, 8) and list(lat["starts"]) == [0, 12, 24, 36, 48]
    model = load(ckpt).model
    from scratchvae.data import read_episode
    ep = read_episode(os.path.join(data, episode_name(2)))
    rows = episode_rows(lat, 2)
    mu, logvar = model.encode(ep["obs"].transpose(0, 3, 1, 2).astype(np.float32) / 255)   # on the CPU
    if device == "cpu":
        np.testing.assert_allclose(rows["mu"], mu, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rows["logvar"], logvar, rtol=1e-5, atol=1e-6)
    else:                           # another machine's float32 rounding: test_gpu.py's tolerance for it
        assert rel_error(rows["mu"], mu) <= 1e-4 and rel_error(rows["logvar"], logvar) <= 1e-4
    np.testing.assert_array_equal(rows["actions"], ep["actions"])
    np.testing.assert_array_equal(rows["dones"], ep["dones"])
    assert list(lat["episodes"]) == [episode_name(i) for i in range(4)]


# ---- resuming and runs, as a user meets them ---------------------------------------------------------

OWN = ["--batch-size", "5", "--seed", "3", "--latent", "4", "--lr", "0.002", "--heldout", "0.3", "--steps", "6",
       "--log-every", "2", "--eval-every", "2", "--checkpoint-every", "3", "--quiet", "--channels", "4,8,8,8",
       "--dense-size", "16"]


def test_resume_continues_with_the_runs_own_settings(tmp_path, data, capsys):
    """A run of batch 5, seed 3, latent 4, lr 0.002 and 6 steps, stopped at step 3: `--resume --out` alone
    continues it to step 6 as it was, bit for bit."""
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert train_main(["--data", data, "--out", one, *OWN]) == 0
    assert train_main(["--data", data, "--out", two, *OWN]) == 0
    os.unlink(RunFolder(two).checkpoints()[-1][1])                           # as if stopped after step 3
    capsys.readouterr()
    assert train_main(["--out", two, "--resume", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "resuming with" not in said and "steps 3 → 6" in said
    a, b = load(RunFolder(one).checkpoints()[-1][1]), load(RunFolder(two).checkpoints()[-1][1])
    assert a.step == b.step == 6 and params_equal(a, b)
    assert json.load(open(os.path.join(one, "run.json"))) == {**json.load(open(os.path.join(two, "run.json"))),
                                                              "out": one}


def test_resume_overrides_are_said_and_kept(tmp_path, data, capsys):
    out = str(tmp_path / "run")
    assert train_main(["--data", data, "--out", out, *OWN]) == 0
    capsys.readouterr()
    assert train_main(["--out", out, "--resume", "--steps", "8", "--lr", "0.0005", "--batch-size", "5",
                       "--data", os.path.relpath(data)]) == 0     # the same values given again: no change
    said = capsys.readouterr().out
    assert "resuming with --steps 8 (was 6), --lr 0.0005 (was 0.002)\n" in said
    ck = load(RunFolder(out).checkpoints()[-1][1])
    assert ck.step == 8 and ck.optimizer.lr == 0.0005
    assert ck.meta["settings"]["lr"] == 0.0005 and ck.meta["settings"]["batch_size"] == 5
    # a finished run asked to go on without a longer length: nothing to do, and it says so
    before = files_and_times(out)
    assert train_main(["--out", out, "--resume", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert f"{out} is already at step 8 of 8: nothing to train" in said and "wrote" not in said
    assert files_and_times(out) == before
    # a length given in the other unit is one change, said in both units, and no setting is said as None
    assert train_main(["--out", out, "--resume", "--epochs", "1", "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "resuming with --epochs 1 (was --steps 8)\n" in said and "None" not in said


def test_default_run_goes_on_when_trained_again(tmp_path, data, monkeypatch, capsys):
    """`make train` twice: the second continues runs/default a default length further."""
    import scratchvae.cli.train as cli
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "DEFAULT_TRAIN_STEPS", 2)
    assert train_main(["--data", data, *FAST]) == 0
    assert RunFolder(os.path.join("runs", "default")).checkpoints()[-1][0] == 2
    assert train_main(["--data", data, *FAST]) == 0
    assert "runs/default holds a run at step 2; continuing it" in capsys.readouterr().out
    assert RunFolder(os.path.join("runs", "default")).checkpoints()[-1][0] == 4
    os.unlink(RunFolder(os.path.join("runs", "default")).checkpoints()[-1][1])   # stopped short of its length (4)
    assert train_main(["--quiet"]) == 0
    assert RunFolder(os.path.join("runs", "default")).checkpoints()[-1][0] == 4


def test_default_data_is_finished_before_training(tmp_path, data, monkeypatch):
    """An interrupted first collection left 2 of the default episodes: the next run collects the rest."""
    import scratchvae.cli.train as cli
    import scratchvae.data.rollouts as rollouts
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "DEFAULT_TRAIN_STEPS", 2)
    monkeypatch.setattr(cli, "DEFAULT_EPISODES", 4)
    tiny_data(cli.DEFAULT_DATA, episodes=2)
    calls = []

    def fake_collect(out, episodes, steps, **kw):                   # CarRacing's part, without CarRacing
        calls.append(rollouts.missing_episodes(out, episodes))
        tiny_data(os.path.join(tmp_path, "more"), episodes=episodes)
        for i in calls[-1]:
            os.replace(os.path.join(tmp_path, "more", episode_name(i)), os.path.join(out, episode_name(i)))
    monkeypatch.setattr(rollouts, "collect", fake_collect)
    monkeypatch.setattr(rollouts, "require_gymnasium", lambda: None)       # (CarRacing need not be installed)
    assert train_main([*FAST, "--out", "first"]) == 0
    assert calls == [[2, 3]]
    assert json.load(open(os.path.join("first", "run.json")))["train_frames"] + \
        json.load(open(os.path.join("first", "run.json")))["heldout_frames"] == 48

    assert train_main([*FAST, "--out", "second"]) == 0
    assert calls == [[2, 3]]                                        # nothing missing: no collection


def test_a_nan_is_never_checkpointed(tmp_path, data):
    """--checkpoint-every 5 --log-every 10: the losses of steps 1–5 are checked before checkpoint 5 is written."""
    out = str(tmp_path / "run")
    t = poisoned_trainer(data, out, 10, 5, 4, "decoder.dense.b", np.nan)
    with pytest.raises(TrainingStopped, match=r"the loss became nan at step 5; stopping\. No checkpoint") as e:
        t.run()
    assert e.value.exit_code == 3 and RunFolder(out).checkpoints() == []


def test_parameters_that_turn_nan_are_never_checkpointed(tmp_path, data):
    """The update of step 6 makes a parameter infinite: its loss was finite, but checkpoint 6 is not written."""
    out = str(tmp_path / "run")
    t = poisoned_trainer(data, out, 10, 3, 6, "encoder.mu.W", np.inf)
    with pytest.raises(TrainingStopped, match=r"param/encoder\.mu\.W holds NaN or infinite values at step 6; "
                                              r"stopping\. Last good checkpoint: .*ckpt_0000003\.npz \(step 3\)"):
        t.run()
    assert [s for s, _ in RunFolder(out).checkpoints()] == [3]


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path, data):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    assert train_main(["--data", data, "--out", one, *OWN, "--steps", "9"]) == 0
    assert train_main(["--data", data, "--out", two, *OWN]) == 0
    newest = RunFolder(two).checkpoints()[-1][1]
    with open(newest, "r+b") as f:
        f.truncate(2000)
    r = run_cli("--out", two, "--resume", "--steps", "9", "--quiet")
    assert r.returncode == 0, r.stderr
    warning, = r.stderr.strip().splitlines()
    assert warning.startswith("train-scratch: warning: ") and "truncated or corrupt" in warning
    assert "resuming from" in warning and "ckpt_0000003.npz (step 3) instead" in warning
    assert os.path.exists(newest + ".corrupt")
    a, b = load(RunFolder(one).checkpoints()[-1][1]), load(RunFolder(two).checkpoints()[-1][1])
    assert a.step == b.step == 9 and params_equal(a, b)


def test_batch_larger_than_the_data_and_images_counted(tmp_path, data, monkeypatch):
    with pytest.raises(ValueError, match="batch size 50 is more than the 36 training frames"):
        Trainer(RunSettings(data, str(tmp_path / "big"), steps=2, batch_size=50), progress=False)
    # 36 frames in batches of 8: an epoch is 8, 8, 8, 8 and 4 images; a row of those 5 steps counts 36
    import itertools
    import scratchvae.run.losslog
    ticks = itertools.count()
    monkeypatch.setattr(scratchvae.run.losslog.time, "perf_counter", lambda: 0.5 * next(ticks))
    t = Trainer(RunSettings(data, str(tmp_path / "run"), steps=5, batch_size=8, **SMALL, log_every=5,
                            eval_every=100, checkpoint_every=100), progress=False)
    t.run()
    assert [(r["step"], r["images_per_s"]) for r in t.folder.read_log()] == [(5, 72.0)]


def test_the_trainers_batches_are_the_datasets_epochs(tmp_path, data):
    """Step by step, the Trainer trains on the batches FrameDataset.batches gives epoch after epoch: one
    order of the frames, defined once."""
    t = Trainer(RunSettings(data, str(tmp_path / "run"), steps=12, batch_size=8, seed=5, **SMALL), progress=False)
    want = [x for epoch in range(3) for x in t.data.batches(8, "train", seed=5, epoch=epoch)]
    assert len(want) == 15 and t.batches.steps_per_epoch == 5                # 36 frames: 8, 8, 8, 8 and 4 an epoch
    for step, x in enumerate(want):
        np.testing.assert_array_equal(t.batches.for_step(step)[0], x)
    t.batches.close()
    assert not np.array_equal(want[0], want[5])                      # the second epoch is shuffled anew


def test_nothing_held_out_is_not_called_held_out(tmp_path, data, capsys):
    out = str(tmp_path / "run")
    assert train_main(["--data", data, "--out", out, "--steps", "2", "--heldout", "0", *FAST]) == 0
    rows = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert "train_mse" in rows[-1] and not any("heldout_mse" in r for r in rows)
    said = capsys.readouterr().out
    assert "MSE per pixel on training frames (nothing held out)" in said and "held-out MSE" not in said
    assert "on 48 training frames (nothing held out)" in said


def test_the_start_says_the_held_out_share_and_when_it_is_past_what_was_asked(tmp_path, data, capsys):
    """4 episodes at --heldout 0.1: one whole episode is held out, 25% of the frames, and the start says so."""
    assert train_main(["--data", data, "--out", str(tmp_path / "a"), "--steps", "1", *FAST]) == 0
    assert ("on 36 training frames (12 held out: 1 of 4 episodes, 25.0% of the frames, more than --heldout 0.1 "
            "asks, as whole episodes are held out, at least one)") in capsys.readouterr().out
    assert train_main(["--data", data, "--out", str(tmp_path / "b"), "--steps", "1", "--heldout", "0.25", *FAST]) == 0
    assert "(12 held out: 1 of 4 episodes, 25.0% of the frames) from" in capsys.readouterr().out


def test_a_diverging_run_says_one_line(tmp_path, data, device):
    """lr 100 overflows within two steps: no NumPy warnings, one line naming the step, exit 3."""
    r = run_cli("--data", data, "--out", str(tmp_path / "run"), "--lr", "100", "--steps", "30", "--log-every", "10",
                "--batch-size", "8", "--latent", "8", "--channels", "4,8,8,8", "--dense-size", "16", "--quiet",
                "--device", device)
    assert r.returncode == 3
    line, = r.stderr.strip().splitlines()
    assert "the loss became" in line and "at step 2;" in line and "warning" not in line


def test_images_per_second_counts_the_steps_not_the_evaluations(tmp_path, data):
    """Each evaluation takes a second here; the rate of the rows after it counts the training steps alone."""
    t = Trainer(RunSettings(data, str(tmp_path / "run"), steps=8, batch_size=8, **SMALL, log_every=2, eval_every=2,
                            checkpoint_every=100), progress=False)
    real = t.eval_mse

    def slow():
        time.sleep(1.0)
        return real()
    t.eval_mse = slow
    t.run()
    rates = [r["images_per_s"] for r in RunFolder(t.settings.out).read_log()]
    assert len(rates) == 4 and min(rates[1:]) > 40, rates                 # 16 images in a second would be 16/s


def test_a_diverging_runs_progress_ends_where_its_message_says(tmp_path, data):
    """The losses are read every --log-every steps, so the NaN of step 2 is found at step 10: the progress line
    then says step 2 too, not 10."""
    r = run_cli("--data", data, "--out", str(tmp_path / "run"), "--lr", "100", "--steps", "30", "--log-every", "10",
                "--batch-size", "8", "--latent", "8", "--channels", "4,8,8,8", "--dense-size", "16")
    assert r.returncode == 3 and "at step 2;" in r.stderr, r.stderr
    progress = [line for line in r.stderr.splitlines() if line.startswith("training: ")]
    assert progress[-1].startswith("training: 2/30 step (7%)"), progress


def test_a_second_signal_while_the_pictures_are_drawn_says_they_are_behind(tmp_path, data):
    """The first SIGINT asks for a checkpoint; the second comes while that checkpoint's pictures are drawn: the
    checkpoint of step 6 is there, the pictures still show step 3, and the message says so."""
    out = str(tmp_path / "run")
    t = Trainer(RunSettings(data, out, steps=20, batch_size=8, **SMALL, log_every=3, eval_every=3,
                            checkpoint_every=3), progress=False, say=lambda message: None)
    draw = t.writer.pictures

    def drawn_until_interrupted(step):
        if t.step == 6:
            t.signals(signal.SIGINT, None)                   # the first: a checkpoint after this step …
            t.signals(signal.SIGINT, None)                   # … the second, mid-drawing: at once
        draw(step)
    t.writer.pictures = drawn_until_interrupted
    with pytest.raises(TrainingStopped, match=r"the newest checkpoint is \S*ckpt_0000006\.npz \(the run's pictures "
                                              r"are not of step 6 but of step 3: the resumed run draws them at its "
                                              r"next checkpoint\)\. Resume with: "):
        t.run()
    assert [s for s, _ in RunFolder(out).checkpoints()] == [3, 6]


def test_a_second_signal_stops_at_once(tmp_path, data):
    heard = []
    t = Trainer(RunSettings(data, str(tmp_path / "run"), steps=2, batch_size=8, **SMALL), progress=False,
                say=heard.append)
    t.signals(signal.SIGINT, None)
    assert heard == ["SIGINT received: stopping after this step, with a checkpoint (send it again to stop at once)"]
    with pytest.raises(TrainingStopped, match="stopped at once by a second SIGTERM during step 1, before the first "
                                              "checkpoint, so there is nothing to resume; start again with: "
                                              f"train-scratch --data {data} --out {tmp_path / 'run'} --steps 2 "
                                              "--batch-size 8 --latent-dim 8 --channels 4,8,8,8 --dense-size 16$"
                                              ) as e:
        t.signals(signal.SIGTERM, None)
    assert e.value.exit_code == 143
