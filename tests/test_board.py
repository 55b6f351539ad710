"""train-scratch --tensorboard: the event files read back as TensorBoard reads them (its own event accumulator),
after a resume too (scratchvae/run/board.py)."""
import os
import sys

import pytest

from runs import FAST
from scratchvae.cli import run
from scratchvae.cli.train import main as train_main
from scratchvae.run.runfolder import RunFolder

pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                  reason="the tensorboard extra is not installed")
multiplexer = pytest.importorskip("tensorboard.backend.event_processing.plugin_event_multiplexer")


def board(folder):
    """What TensorBoard shows of a run folder: {tag: [(step, value)]} of the scalars, {tag: [step]} of the images."""
    ea = accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    tags = ea.Tags()
    scalars = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in tags["scalars"]}
    return scalars, {t: [e.step for e in ea.Images(t)] for t in tags["images"]}


def train(*args):
    assert train_main([*FAST, *args]) == 0


def rows_as_curves(folder):
    """The log's rows as the curves TensorBoard should show: {tag: [(step, value)]}."""
    curves = {}
    for row in RunFolder(str(folder)).read_log():
        for key, value in row.items():
            if key not in ("step", "time"):
                tag = f"loss/{key}" if key in ("loss", "recon", "kl", "kl_raw") else \
                    f"eval/{key}" if key.endswith("_mse") else f"speed/{key}"
                curves.setdefault(tag, []).append((row["step"], value))
    return curves


def assert_same_curves(shown, want):
    assert sorted(shown) == sorted(want)
    for tag, points in want.items():
        assert [s for s, _ in shown[tag]] == [s for s, _ in points], tag          # each step once, in order
        assert [v for _, v in shown[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag   # (float32)


@pytest.mark.slow
def test_the_curves_and_pictures_continue_after_a_resume_without_a_step_twice(tmp_path, data):
    out = tmp_path / "runs" / "a"
    train("--data", data, "--steps", "8", "--out", str(out), "--tensorboard")
    scalars, images = board(out)
    assert [s for s, _ in scalars["loss/loss"]] == [2, 3, 4, 6, 8]           # every 2 steps, and at checkpoints
    assert images == {f"pictures/{n}": [3, 6, 8] for n in ("reconstructions", "samples", "traversal")}
    # the process is killed after step 8's row but before its checkpoint: the resume goes on from step 6,
    # training steps 7 and 8 again, and TensorBoard must show their new numbers, once
    os.unlink(RunFolder(str(out)).checkpoint_path(8))
    train("--resume", "--out", str(out), "--steps", "12")
    scalars, images = board(out)
    assert_same_curves(scalars, rows_as_curves(out))
    assert [s for s, _ in scalars["eval/heldout_mse"]] == [2, 3, 4, 6, 8, 9, 10, 12]
    assert images == {f"pictures/{n}": [3, 6, 9, 12] for n in ("reconstructions", "samples", "traversal")}
    assert len([f for f in os.listdir(out) if f.startswith("events.out.tfevents.")]) == 2
    ea = accumulator.EventAccumulator(str(out))
    ea.Reload()
    texts = ea.Tensors("run/settings/text_summary")                 # run.json as each process started: 0 and 6
    assert [t.step for t in texts] == [0, 6]
    assert '| steps | 12 |' in texts[1].tensor_proto.string_val[0].decode()


@pytest.mark.slow
def test_turned_on_at_a_resume_the_curves_begin_at_the_start(tmp_path, data, capsys):
    out = tmp_path / "b"
    train("--data", data, "--steps", "6", "--out", str(out))
    assert not any(f.startswith("events.out") for f in os.listdir(out))
    train("--resume", "--out", str(out), "--steps", "9", "--tensorboard")
    assert "--tensorboard (was off)" in capsys.readouterr().out
    scalars, images = board(out)
    assert_same_curves(scalars, rows_as_curves(out))
    assert [s for s, _ in scalars["loss/loss"]] == [2, 3, 4, 6, 8, 9]
    assert images["pictures/samples"] == [9]                        # pictures from the resume on
    train("--resume", "--out", str(out), "--steps", "11")           # once on, it stays on
    assert [s for s, _ in board(out)[0]["loss/loss"]] == [2, 3, 4, 6, 8, 9, 10, 11]


def test_writers_within_one_second_keep_each_others_files(tmp_path, monkeypatch):
    """Event files are named by the second they were made in: two resumes within one second must not share one
    (the second would empty the first's), and must be read in the order they were made."""
    import time
    from scratchvae.run.board import Board
    monkeypatch.setattr(time, "time", lambda: 1796672305.0)         # one second for every writer
    for step in (0, 4, 2):                                          # a new run, a resume, a resume from earlier
        b = Board(str(tmp_path), step)
        b.row({"step": step + 1, "time": 1796672305.0, "loss": float(step)})
        b.close()
    assert len(os.listdir(tmp_path)) == 3
    assert board(tmp_path)[0]["loss/loss"] == [(1, 0.0), (3, 2.0)]  # the last writer purged step 5 (past its 2)


@pytest.mark.slow
def test_runs_in_one_folder_compare_in_one_tensorboard(tmp_path, data):
    for name, lr in (("small-lr", "1e-4"), ("large-lr", "3e-3")):
        train("--data", data, "--steps", "4", "--out", str(tmp_path / name), "--lr", lr, "--tensorboard")
    m = multiplexer.EventMultiplexer()
    m.AddRunsFromDirectory(str(tmp_path))
    m.Reload()
    assert sorted(m.Runs()) == ["large-lr", "small-lr"]              # each run by its folder's name
    small, large = (m.Tensors(run, "loss/loss") for run in ("small-lr", "large-lr"))
    assert [e.step for e in small] == [e.step for e in large] == [2, 3, 4]
    assert small[-1].tensor_proto.float_val != large[-1].tensor_proto.float_val


def test_without_the_extra_one_line_and_nothing_written(tmp_path, data, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    out = tmp_path / "c"
    assert run("train-scratch", train_main, [*FAST, "--data", data, "--steps", "3", "--out", str(out),
                                             "--tensorboard"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("train-scratch: error: --tensorboard (TensorBoard's event files) "
                                                   "needs tensorboardX, which is not installed"), err
    assert "pip install -e '.[tensorboard]'" in err
    assert not os.path.exists(out)


@pytest.mark.slow
def test_a_new_start_replaces_the_event_files_of_a_start_that_left_no_checkpoint(tmp_path, data):
    out = tmp_path / "d"
    train("--data", data, "--steps", "3", "--out", str(out), "--tensorboard")
    for _, path in RunFolder(str(out)).checkpoints():
        os.unlink(path)                                 # as if it had stopped before its first checkpoint
    os.unlink(RunFolder(str(out)).best_path)
    assert any(f.startswith("events.out") for f in RunFolder(str(out)).leftovers())
    train("--data", data, "--steps", "2", "--out", str(out), "--tensorboard")
    assert [s for s, _ in board(out)[0]["loss/loss"]] == [2]
