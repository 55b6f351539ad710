"""Checkpoints: a full round trip, and every way a file can be wrong."""
import os

import numpy as np
import pytest

from scratchvae import VAE, CheckpointError
from scratchvae.run import checkpoint
from scratchvae.model.optim import Adam

SMALL = dict(input_shape=(2, 12, 10), encoder=((3, 3, 2), (4, 3, 2)), decoder=((3, 3, 2), (None, 4, 2)),
             dense_size=5, latent_dim=3)


def trained(steps=3, seed=0):
    m = VAE(**SMALL, seed=seed)
    opt = Adam(m.params, lr=1e-2)
    x = np.random.default_rng(0).random((4, 2, 12, 10)).astype(np.float32)
    for _ in range(steps):
        m.loss(x)
        m.backward()
        opt.step(m.grads)
    return m, opt, x


def test_round_trip_restores_everything(tmp_path):
    m, opt, x = trained()
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, m, optimizer=opt, step=3, meta={"note": "hi"})
    ck = checkpoint.load(path)
    for k in m.params:
        np.testing.assert_array_equal(ck.model.params[k], m.params[k])
    assert ck.step == 3 and ck.meta == {"note": "hi"} and ck.optimizer.t == opt.t
    for k in m.params:
        np.testing.assert_array_equal(ck.optimizer.m[k], opt.m[k])
        np.testing.assert_array_equal(ck.optimizer.v[k], opt.v[k])
    # the generator goes on from where it was: the next noise draws are equal
    np.testing.assert_array_equal(ck.model.sample_eps(4), m.sample_eps(4))
    assert checkpoint.load(path).model.config == m.config
    assert not [f for f in os.listdir(tmp_path) if f != "ckpt.npz"]    # no temporary left behind


def test_truncated_file(tmp_path):
    m, opt, _ = trained(1)
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, m, optimizer=opt)
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.npz: not a readable checkpoint \(truncated or corrupt\?\)"):
        checkpoint.load(tmp_path / "cut.npz")


def test_corrupt_and_foreign_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(CheckpointError, match=r"junk\.npz: not a checkpoint: expected a \.npz archive"):
        checkpoint.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a scratchvae checkpoint"):
        checkpoint.load(tmp_path / "other.npz")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint.load(tmp_path / "missing.npz")


def test_mismatched_parameters_are_named(tmp_path):
    m, _, _ = trained(1)
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, m)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param/encoder.mu.W"] = arrays["param/encoder.mu.W"][:, :2]
    arrays["param/decoder.dense.b"] = arrays["param/decoder.dense.b"].astype(np.float64)
    del arrays["param/encoder.conv1.b"]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(tmp_path / "bad.npz")
    msg = str(e.value)
    assert "missing param/encoder.conv1.b" in msg
    assert "param/encoder.mu.W: expected float32 (8, 3), got float32 (8, 2)" in msg
    assert "param/decoder.dense.b: expected float32 (20,), got float64 (20,)" in msg


def test_other_configuration_is_refused(tmp_path):
    m, _, _ = trained(1)
    checkpoint.save(tmp_path / "ckpt.npz", m)
    config = checkpoint.load(tmp_path / "ckpt.npz").model.config
    with pytest.raises(CheckpointError, match=r"another configuration \(latent_dim: checkpoint has 3, expected 32\)"):
        checkpoint.check_config(tmp_path / "ckpt.npz", config, {"latent_dim": 32})


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    m, _, _ = trained(1)
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, m, step=1)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, m, step=2)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_files_that_are_no_checkpoint_say_so_in_one_line(tmp_path):
    """A single array (.npy), a text file (np.load would take it for a pickle, and its message suggests
    loading it unsafely) and an empty file: each a CheckpointError naming the file, never a TypeError."""
    np.save(tmp_path / "frames.npy", np.zeros((2, 3), np.uint8))
    (tmp_path / "README.md").write_text("# a page\n\nnot a checkpoint\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    for name in ("frames.npy", "README.md", "empty.npz"):
        with pytest.raises(CheckpointError) as e:
            checkpoint.load(tmp_path / name)
        said = str(e.value)
        assert said.startswith(f"{tmp_path / name}: not a checkpoint: expected a .npz archive"), said
        assert "pickle" not in said and "unsafe" not in said and "\n" not in said
