"""The run's pictures: what each says (its step, its labels) and how its axes are drawn, read back
from the matplotlib Figure before it becomes a PNG."""
import numpy as np
import pytest

from scratchvae.run import pictures
from scratchvae.model.vae import VAE


@pytest.fixture(scope="module")
def model_and_frames():
    model = VAE(input_shape=(3, 64, 64), latent_dim=4, seed=0)
    x = np.random.default_rng(0).random((10, 3, 64, 64), dtype=np.float32)
    return model, x


def rows(n, start=10, every=10, mse_every=20):
    out = []
    for i in range(n):
        step = start + i * every
        r = {"step": step, "loss": 900.0 / (i + 1), "recon": 880.0 / (i + 1), "kl": 16.0, "kl_raw": 2.0 + i}
        if step % mse_every == 0:
            r["heldout_mse"] = 0.01 / (i + 1)
        out.append(r)
    return out


def test_loss_panels_each_on_its_own_log_axis():
    fig = pictures.loss_figure(rows(12))
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == ["reconstruction (sum over pixels)", "KL, floored (what the loss uses)",
                                             "KL, raw", "held-out MSE per pixel"]
    assert fig.get_suptitle() == "training log, step 120"
    for ax in axes:
        assert ax.get_yscale() == "log"
        lo, hi = ax.get_ylim()
        ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert len(ticks) >= 2 and all(labels) and lo > 0              # numbers on every panel's own axis
        assert ax.get_xlim()[0] < 10 and ax.get_xlim()[1] > 120       # one step range for all panels


def test_a_single_point_gets_a_sane_axis():
    fig = pictures.loss_figure([{"step": 1, "recon": 2000.0, "kl": 16.0, "kl_raw": 3.0, "heldout_mse": 0.004}])
    for ax in fig.get_axes():
        lo, hi = ax.get_ylim()
        assert 0 < lo < hi
        assert [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]] == [1]


def test_nothing_held_out_is_titled_so():
    fig = pictures.loss_figure([{"step": 5, "recon": 1.0, "kl": 1.0, "kl_raw": 1.0, "train_mse": 0.1}])
    assert fig.get_axes()[-1].get_title() == "MSE per pixel, training frames (nothing held out)"


@pytest.mark.parametrize("vmin, vmax, want", [(430, 4400, (200, 5000, [200, 500, 1000, 2000, 5000])),
                                              (0.001, 100, (0.001, 100, [0.001, 0.01, 0.1, 1, 10, 100])),
                                              (3.1, 7.2, (2, 10, [2, 5, 10])), (16, 16, (10, 20, [10, 20])),
                                              (0.0014, 0.0048, (0.001, 0.005, [0.001, 0.002, 0.005]))])
def test_log_axis_puts_a_labelled_tick_on_each_side_of_every_value(vmin, vmax, want):
    assert pictures.log_axis(vmin, vmax) == want


def test_the_held_out_error_can_be_read_off_below_its_lowest_labelled_tick():
    """A run whose held-out error ends at 0.0014: a labelled tick below it (0.001) and above its start, and
    unlabelled marks between the labelled ones."""
    rows = [{"step": s, "recon": 10.0, "kl": 16.0, "kl_raw": 15.0, "heldout_mse": m}
            for s, m in ((100, 0.0048), (200, 0.0025), (500, 0.0018), (1000, 0.0014))]
    ax = pictures.loss_figure(rows).get_axes()[-1]
    labelled = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert min(labelled) <= 0.0014 and max(labelled) >= 0.0048
    assert [round(t, 4) for t in ax.yaxis.get_minorticklocs()] == [0.003, 0.004]


def test_image_pictures_say_their_step(model_and_frames):
    model, x = model_and_frames
    fig = pictures.reconstructions_figure(model, x, step=250)
    assert fig.get_suptitle() == "held-out frames (top) and their reconstructions from μ (bottom), step 250"
    assert [t.get_text() for t in fig.get_axes()[0].get_yticklabels()] == ["frame", "recon"]
    fig = pictures.samples_figure(model, step=250)
    assert fig.get_suptitle() == "decoded from z ~ N(0, I) (the decoder's mean for each z), step 250"


def test_traversal_labels_its_sweep_and_marks_the_frames_own_mu(model_and_frames):
    model, x = model_and_frames
    fig = pictures.traversal_figure(model, x, step=7, dims=[2, 0], steps=5, span=2.0)
    ax = fig.get_axes()[0]
    assert "step 7" in fig.get_suptitle()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-2", "-1", "+0", "+1", "+2"]
    mu = model.encode(x)[0][len(x) // 2]
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"z[2]\nμ = {mu[2]:+.2f}", f"z[0]\nμ = {mu[0]:+.2f}"]
    centres = pictures.centres(5, 64)
    marks = [line.get_xdata()[0] for line in ax.get_lines() if line.get_color() == "red"]
    want = [np.interp(np.clip(mu[d], -2, 2), np.linspace(-2, 2, 5), centres) for d in (2, 0)]
    np.testing.assert_allclose(marks, want)                        # one mark per row, at mu[d] on the sweep


def test_tile_places_every_image():
    images = np.arange(5 * 3 * 2 * 3, dtype=np.uint8).reshape(5, 3, 2, 3)
    t = pictures.tile(images, cols=2)
    assert t.shape == (3 * (3 + pictures.PAD) + pictures.PAD, 2 * (2 + pictures.PAD) + pictures.PAD, 3)
    p = pictures.PAD
    np.testing.assert_array_equal(t[p + 2 * (3 + p):p + 2 * (3 + p) + 3, p:p + 2], images[4])   # row 2, column 0
    assert (t[:p] == 255).all() and (t[p + 2 * (3 + p):, p + 2 + p:] == 255).all()             # padding, no 6th
