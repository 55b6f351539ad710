"""The pictures a run writes: image grids and loss curves, each saying the step it shows.

Drawn with matplotlib's object interface (a Figure, never pyplot), so nothing needs a display
and nothing global changes for a program that imports this. Each ``*_figure`` function builds a
Figure (what the tests look at); ``save`` writes one as a PNG, atomically (temporary name, then
rename), and ``write_all`` writes a run's set.
"""
import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator, NullFormatter

from ..files.atomic import atomic_write
from ..ops.devices import to_numpy
from ..model.losses import kl_per_dim

PAD = 2                                                             # white pixels between tiles


def to_uint8(x):
    """Float images (N, C, H, W) in [0, 1] (any device) → uint8 (N, H, W, C) on the host."""
    x = to_numpy(x)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def tile(images, cols):
    """uint8 (N, H, W, 3) → one uint8 image, `cols` tiles a row, PAD white pixels around each."""
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + PAD) + PAD, cols * (w + PAD) + PAD, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[PAD + r * (h + PAD):PAD + r * (h + PAD) + h, PAD + k * (w + PAD):PAD + k * (w + PAD) + w] = images[i]
    return out


def centres(count, size):
    """Pixel centres of `count` tiles of `size` pixels along one side of a tile() image."""
    return [PAD + i * (size + PAD) + (size - 1) / 2 for i in range(count)]


def _grid_figure(images, cols, title, scale=2.0, left=0.2):
    """A Figure showing tile(images, cols) at `scale` screen pixels per image pixel, with a title;
    `left` inches to the left of the images for row labels."""
    picture = tile(images, cols)
    dpi = 100
    width, height = picture.shape[1] * scale / dpi, picture.shape[0] * scale / dpi
    fig = Figure(figsize=(width + left + 0.3, height + 0.9), dpi=dpi)
    ax = fig.add_axes([left / (width + left + 0.3), 0.3 / (height + 0.9), width / (width + left + 0.3),
                       height / (height + 0.9)])
    ax.imshow(picture, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(title, y=1 - 0.12 / (height + 0.9), va="top", fontsize=9)
    return fig, ax


def save(fig, path):
    with atomic_write(path) as f:
        fig.savefig(f, format="png")


def reconstructions_figure(model, x, step, cols=8, source="held-out frames"):
    """Top row: frames spread over x; the row under them: their reconstructions (decoded from mu)."""
    x = x[::max(1, len(x) // cols)][:cols]
    originals, recons = to_uint8(x), to_uint8(model.reconstruct(x))
    fig, ax = _grid_figure(np.concatenate([originals, recons]), len(x),
                           f"{source} (top) and their reconstructions from μ (bottom), step {step}", left=0.8)
    ax.set_yticks(centres(2, originals.shape[1]), ["frame", "recon"])
    ax.tick_params(left=False)
    return fig


def samples_figure(model, step, n=32, cols=8, seed=0):
    """Images decoded from z ~ N(0, I): the decoder's mean image for each z, not a sample of x."""
    z = np.random.default_rng(seed).standard_normal((n, model.latent_dim))
    return decoded_figure(model, z, f"decoded from z ~ N(0, I) (the decoder's mean for each z), step {step}", cols)


def decoded(model, z, batch=64):
    """The decoder's mean image for each code of z (N, latent_dim) on the host, decoded `batch` at a time:
    uint8 (N, H, W, 3) on the host."""
    z = np.asarray(z, model.dtype)                                  # (N, D) on the host
    return np.concatenate([to_uint8(model.decode(model.xp.asarray(z[i:i + batch]))) for i in range(0, len(z), batch)])


def decoded_figure(model, z, title, cols=8, batch=64):
    """The decoder's mean image for each code of z (N, latent_dim), `cols` a row (decoded `batch` at a time)."""
    fig, _ = _grid_figure(decoded(model, z, batch), cols, title)
    return fig


def traversal_figure(model, x, step, dims=None, n_dims=6, steps=9, span=3.0):
    """One frame's mu (the middle one of x), with each of a few latent dimensions swept over
    [−span, span] in turn. Columns are labelled with the swept value; a red mark on each row
    shows where the frame's own mu[d] lies on the sweep.

    By default the dimensions are those with the largest mean KL on x: the ones the model uses."""
    mu, logvar = (to_numpy(a) for a in model.encode(x))
    if dims is None:
        dims = np.argsort(kl_per_dim(mu, logvar))[::-1][:n_dims]
    base = mu[len(mu) // 2]
    values = np.linspace(-span, span, steps)
    zs = np.repeat(base[None], len(dims) * steps, axis=0)
    for r, d in enumerate(dims):
        zs[r * steps:(r + 1) * steps, d] = values
    images = decoded(model, zs, batch=len(zs))                      # one batch: every row decoded together
    h, w = images.shape[1:3]
    fig, ax = _grid_figure(images, steps, f"one frame's μ, each row one latent swept {-span:g} … {span:g} "
                                          f"(red: the frame's own μ), step {step}", left=1.0)
    xs, ys = centres(steps, w), centres(len(dims), h)
    ax.set_xticks(xs, [f"{v:+.2g}" for v in values], fontsize=7)
    ax.set_yticks(ys, [f"z[{d}]\nμ = {base[d]:+.2f}" for d in dims], fontsize=7)
    ax.tick_params(length=0)
    for r, d in enumerate(dims):                    # where mu[d] falls between the columns' values
        at = np.interp(np.clip(base[d], -span, span), values, xs)
        top = ys[r] - (h - 1) / 2                   # a short tick from the row's top edge, inside the row
        ax.plot([at, at], [top, top + h / 5], color="red", linewidth=2, solid_capstyle="butt")
    return fig


LOSS_SERIES = (("recon", "reconstruction (sum over pixels)"), ("kl", "KL, floored (what the loss uses)"),
               ("kl_raw", "KL, raw"), ("heldout_mse", "held-out MSE per pixel"),
               ("train_mse", "MSE per pixel, training frames (nothing held out)"))


def log_grid(a, b, subs):
    """Every m × 10^k, m in subs, from the decade below a to the decade above b, in order."""
    decades = range(int(np.floor(np.log10(a))) - 1, int(np.ceil(np.log10(b))) + 2)
    return sorted(float(f"{m}e{k}") for k in decades for m in subs)


def log_axis(vmin, vmax):
    """(lo, hi, ticks) for a log axis showing values in [vmin] … [vmax] (both > 0): lo and hi are ticks
    themselves, the nearest at or below vmin and at or above vmax, so every value has a labelled tick on
    each side of it. The ticks are the powers of ten when the values span two decades or more, else
    1, 2, 5 × 10^k, and every 1 … 9 × 10^k when those give fewer than three."""
    choices = ((1,), (1, 2, 5), range(1, 10)) if vmax >= 100 * vmin else ((1, 2, 5), range(1, 10))
    for subs in choices:
        grid = log_grid(vmin, vmax, subs)
        lo, hi = max(t for t in grid if t <= vmin), min(t for t in grid if t >= vmax)
        ticks = [t for t in grid if lo <= t <= hi]
        if len(ticks) >= 3:
            break
    return lo, hi, ticks


def loss_figure(rows, series=LOSS_SERIES):
    """One panel per series that the log rows hold: value against step, each panel its own y axis,
    on a log scale where every value is positive."""
    panels = [(key, title, [(r["step"], r[key]) for r in rows if r.get(key) is not None]) for key, title in series]
    panels = [p for p in panels if p[2]]
    fig = Figure(figsize=(3.6 * max(1, len(panels)), 3.2), dpi=100, layout="constrained")
    last = max((r["step"] for r in rows), default=0)
    first = min((r["step"] for r in rows), default=0)
    fig.suptitle(f"training log, step {last}", fontsize=10)
    for i, (key, title, pts) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        steps, vals = np.array(pts, float).T
        ax.plot(steps, vals, marker="o" if len(pts) < 20 else None, markersize=3, color="tab:blue")
        if np.all(vals > 0):
            lo, hi, ticks = log_axis(vals.min(), vals.max())  # a labelled tick below the lowest value and above the highest
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.08, hi * 1.08)
            ax.set_yticks(ticks, [f"{v:g}" for v in ticks])
            minor = [t for t in log_grid(lo, hi, range(1, 10)) if lo <= t <= hi and t not in ticks]  # unlabelled
            ax.yaxis.set_minor_locator(FixedLocator(minor))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_xlim(first - 0.02 * (last - first) - 0.5, last + 0.02 * (last - first) + 0.5)  # one range for all
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True, min_n_ticks=1))
        ax.tick_params(labelsize=8)
        ax.grid(True, which="major", alpha=0.3)
    return fig


def write_all(folder, model, x, step, source, seed=0, rows=None, samples=32):
    """The pictures a run shows, into `folder`: prior samples; reconstructions of frames x and the
    traversal of x's middle frame (when x is not None); the loss curves (when there are log rows).
    Returns the names of the files written."""
    pictures = {"samples.png": lambda: samples_figure(model, step, n=samples, seed=seed)}
    if x is not None:
        pictures["reconstructions.png"] = lambda: reconstructions_figure(model, x, step, source=source)
        pictures["traversal.png"] = lambda: traversal_figure(model, x, step)
    if rows:
        pictures["loss.png"] = lambda: loss_figure(rows)
    for name, figure in pictures.items():
        save(figure(), os.path.join(folder, name))
    return list(pictures)
