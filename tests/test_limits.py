"""Work bounded before it starts: what an option multiplies (samples, images, frames, codes, a batch) is
checked first and refused past its stated limit, in one line, with exit 2 and nothing made; an out of
memory that still happens is one line too; and encode-latents streams a folder of any size."""
import os
import subprocess
import sys

import numpy as np
import pytest

from scratchvae.cli import run
from scratchvae.cli.encode import main as encode_main
from scratchvae.cli.explore import main as explore_main
from scratchvae.cli.sample import main as sample_main

from runs import ROOT, tiny_data, trained_run

pytestmark = pytest.mark.slow                  # the tools run end to end


# what NumPy says when np.empty((10**6, 10**6), np.float32) fails (raised as it is: where the system promises
# any amount of memory, overcommit_memory=1, NumPy's own call would not fail)
NUMPYS = "Unable to allocate 3.64 TiB for an array with shape (1000000, 1000000) and data type float32"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data):
    return trained_run(tmp_path_factory, data, steps=3)


def refused(capsys, tool, main, argv):
    """main(argv) under the tool's runner, refused: exit 2 and one line on stderr (returned)."""
    try:
        code = run(tool, main, argv)
    except SystemExit as e:                     # argparse's refusal
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("tool, main, option, most", [
    ("sample", sample_main, ["--samples", "100000"], "1,024"),
    ("explore", explore_main, ["--frames", "100000"], "4,096"),
    ("encode-latents", encode_main, ["--batch-size", "100000"], "4,096"),
])
def test_a_count_past_its_limit_is_refused_before_any_work(tmp_path, run_dir, data, capsys, tool, main, option,
                                                            most):
    out = tmp_path / "new" / "out"
    rest = {"sample": ["--out", str(out)], "explore": [], "encode-latents": ["--data", data, "--out", str(out)]}
    line = refused(capsys, tool, main, ["--checkpoint", run_dir, *option, *rest[tool]])
    assert f"argument {option[0]}: expected a number 1 … {most} (" in line and "got 100000" in line, line
    assert not (tmp_path / "new").exists()


def test_too_many_images_are_refused_before_any_is_read(tmp_path, run_dir, capsys):
    paths = [str(tmp_path / f"missing{i}.png") for i in range(300)]      # (none exists: none is opened)
    line = refused(capsys, "sample", sample_main, ["--checkpoint", run_dir, "--images", *paths,
                                                   "--out", str(tmp_path / "out")])
    assert line == "sample: error: --images: expected at most 256 files (each is read and encoded; the pictures " \
                   "show 8 of them), got 300"
    assert not (tmp_path / "out").exists()


def test_an_image_past_pillows_pixel_limit_is_not_decoded(tmp_path, run_dir, capsys, monkeypatch):
    from PIL import Image
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)             # 10,000 pixels: past it, a 'bomb'
    line = refused(capsys, "sample", sample_main, ["--checkpoint", run_dir, "--images", str(tmp_path / "big.png"),
                                                   "--out", str(tmp_path / "out")])
    assert "big.png: not a readable image (DecompressionBomb" in line
    assert not (tmp_path / "out").exists()


def test_codes_are_read_from_the_front_of_the_file(tmp_path, run_dir, capsys):
    """An .npy whose header says 10⁹ codes but holds 100: the first 64 are decoded, and the rest of the file is
    never read (np.load would try to read all of it, and fail)."""
    path = tmp_path / "z.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 9, 8)})
        f.write(np.zeros((100, 8), np.float32).tobytes())
    assert sample_main(["--checkpoint", run_dir, "--codes", str(path), "--out", str(tmp_path / "out"),
                        "--samples", "1"]) == 0
    assert "decoded.png" in capsys.readouterr().out
    with open(tmp_path / "short.npy", "wb") as f:                   # fewer bytes than its first 64 rows need
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (100, 8)})
        f.write(np.zeros((10, 8), np.float32).tobytes())
    line = refused(capsys, "sample", sample_main, ["--checkpoint", run_dir, "--codes", str(tmp_path / "short.npy"),
                                                   "--out", str(tmp_path / "out2")])
    assert "short.npy: expected an .npy array of codes, or a latents file with mu; got a file cut short" in line
    assert not (tmp_path / "out2").exists()


def test_an_out_of_memory_is_one_line_and_leaves_no_folder(tmp_path, run_dir, capsys, monkeypatch):
    import scratchvae.run.pictures
    def too_big(*a, **k):
        raise MemoryError(NUMPYS)
    monkeypatch.setattr(scratchvae.run.pictures, "samples_figure", too_big)
    out = tmp_path / "new" / "deeper"
    line = refused(capsys, "sample", sample_main, ["--checkpoint", run_dir, "--out", str(out)])
    assert line.startswith("sample: error: out of memory: Unable to allocate"), line
    assert not (tmp_path / "new").exists()


def test_encode_latents_streams_a_folder(tmp_path_factory, tmp_path, data):
    """Peak memory of encode-latents on 8 episodes and on 64 (8× the frames): within a few MB of each other,
    where holding the latents (here 8 kB a frame: a code of 1,024 numbers, mu and log σ², 157 MB for 64
    episodes of 300 frames), or the frames (236 MB), would grow with them."""
    from scratchvae.cli.train import main as train_main
    from runs import FAST
    run_dir = str(tmp_path_factory.mktemp("wide") / "run")
    assert train_main(["--data", data, "--steps", "1", "--out", run_dir, *FAST, "--latent-dim", "1024"]) == 0
    peaks = []
    for episodes in (8, 64):
        folder = tiny_data(tmp_path / f"eps{episodes}", episodes=episodes, frames=300)
        code = ("import resource, sys\n"
                "from scratchvae.cli.encode import main\n"
                f"assert main(['--checkpoint', {run_dir!r}, '--data', {folder!r}, '--out', "
                f"{str(tmp_path / f'lat{episodes}.npz')!r}, '--quiet']) == 0\n"
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        peaks.append(int(r.stdout.split()[-1]) / 1024)                  # MB
    with np.load(tmp_path / "lat64.npz") as z:
        assert z["mu"].shape == (64 * 300, 1024) and list(z["starts"][-2:]) == [63 * 300, 64 * 300]
    assert peaks[1] - peaks[0] < 40, f"peak memory {peaks[0]:.0f} MB for 8 episodes, {peaks[1]:.0f} MB for 64"


def test_a_training_step_out_of_memory_says_what_to_ask_for_instead(tmp_path, data, capsys, monkeypatch):
    """The first step runs out of memory: one line, exit 2, and the command that starts again at half the
    batch, which then trains."""
    import scratchvae.run.trainer
    from scratchvae.cli.train import main as train_main
    from runs import FAST, said_command
    real = scratchvae.run.step.train_step

    def too_big(model, opt, x, eps=None):
        if len(x) > 4:
            raise MemoryError(NUMPYS)
        return real(model, opt, x, eps)
    monkeypatch.setattr(scratchvae.run.step, "train_step", too_big)
    out = str(tmp_path / "run")
    line = refused(capsys, "train-scratch", train_main, ["--data", data, "--out", out, "--steps", "2", *FAST])
    assert line.startswith("train-scratch: out of memory in step 1 at --batch-size 8 (Unable to allocate 3.64 TiB"), line
    again = said_command(line, "start again with a smaller batch: ")
    assert "--batch-size 4" in again
    argv = again.split()[again.split().index("--data"):]
    assert train_main(argv) == 0
