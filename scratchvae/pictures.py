"""The pictures a run writes, drawn with Pillow alone: image grids and loss curves.

Every picture is written atomically (temporary name, then rename), as PNG.
"""
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_write
from .backend import to_numpy


def to_uint8(x):
    """Float images (N, C, H, W) in [0, 1] (any device) → uint8 (N, H, W, C) on the host."""
    x = to_numpy(x)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)


def grid(images, cols, scale=2, pad=2, labels=None, label_width=0):
    """uint8 (N, H, W, 3) → one picture, `cols` images a row; optional text at the start of each row."""
    n, h, w, _ = images.shape
    rows = math.ceil(n / cols)
    cell_h, cell_w = h * scale + pad, w * scale + pad
    canvas = Image.new("RGB", (label_width + cols * cell_w + pad, rows * cell_h + pad), (255, 255, 255))
    for i in range(n):
        r, c = divmod(i, cols)
        tile = Image.fromarray(images[i]).resize((w * scale, h * scale), Image.NEAREST)
        canvas.paste(tile, (label_width + pad + c * cell_w, pad + r * cell_h))
    if labels:
        draw = ImageDraw.Draw(canvas)
        font = ImageFont.load_default()
        for r, text in enumerate(labels):
            draw.text((4, pad + r * cell_h + cell_h // 2 - 6), text, fill=(0, 0, 0), font=font)
    return canvas


def save_png(picture, path):
    with atomic_write(path) as f:
        picture.save(f, format="PNG")


def reconstructions(model, x, path, cols=8):
    """Top row: held-out frames (spread over x); the row under each: their reconstructions (from mu)."""
    x = x[::max(1, len(x) // cols)][:cols]
    originals, recons = to_uint8(x), to_uint8(model.reconstruct(x))
    rows = np.concatenate([originals, recons])
    save_png(grid(rows, len(x), labels=["frame", "recon"], label_width=48), path)


def prior_samples(model, path, n=32, cols=8, seed=0):
    """Images decoded from z ~ N(0, I)."""
    z = np.random.default_rng(seed).standard_normal((n, model.latent_dim)).astype(model.dtype)
    save_png(grid(to_uint8(model.decode(model.xp.asarray(z))), cols), path)


def latent_traversal(model, x, path, dims=None, n_dims=6, steps=9, span=3.0):
    """One frame's mu (the middle one of x), with each of a few latent dimensions swept over
    [−span, span] in turn.

    By default the dimensions are those with the largest mean KL on x: the ones the model uses.
    """
    mu, logvar = (to_numpy(a) for a in model.encode(x))
    if dims is None:
        kl = (-0.5 * (1 + logvar - mu ** 2 - np.exp(logvar))).mean(axis=0)
        dims = np.argsort(kl)[::-1][:n_dims]
    base = mu[len(mu) // 2]
    zs = np.repeat(base[None], len(dims) * steps, axis=0)
    values = np.linspace(-span, span, steps)
    for r, d in enumerate(dims):
        zs[r * steps:(r + 1) * steps, d] = values
    images = to_uint8(model.decode(model.xp.asarray(zs.astype(model.dtype))))
    save_png(grid(images, steps, labels=[f"z[{d}]" for d in dims], label_width=48), path)


def loss_curves(rows, path, series=(("recon", "reconstruction (sum over pixels)"), ("kl", "KL (floored)"),
                                    ("kl_raw", "KL (raw)"), ("heldout_mse", "held-out MSE per pixel"))):
    """One panel per series: value against step, from the log rows (dicts with 'step')."""
    panels = [(key, title, [(r["step"], r[key]) for r in rows if r.get(key) is not None]) for key, title in series]
    panels = [p for p in panels if p[2]]
    pw, ph, margin = 420, 260, 56
    canvas = Image.new("RGB", (pw * max(1, len(panels)), ph), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (key, title, pts) in enumerate(panels):
        x0, y0, x1, y1 = i * pw + margin, 24, (i + 1) * pw - 12, ph - 30
        steps = np.array([p[0] for p in pts], float)
        vals = np.array([p[1] for p in pts], float)
        lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
        if hi - lo < 1e-12:
            lo, hi = lo - 1, hi + 1
        smin, smax = float(steps.min()), float(max(steps.max(), steps.min() + 1))
        draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
        draw.text((x0, 6), title, fill=(0, 0, 0), font=font)
        for frac in (0, 0.5, 1):
            v = lo + frac * (hi - lo)
            y = y1 - frac * (y1 - y0)
            draw.line([x0 - 4, y, x0, y], fill=(0, 0, 0))
            draw.text((i * pw + 2, y - 6), f"{v:.4g}", fill=(0, 0, 0), font=font)
        for frac in (0, 0.5, 1):
            s = smin + frac * (smax - smin)
            x = x0 + frac * (x1 - x0)
            draw.line([x, y1, x, y1 + 4], fill=(0, 0, 0))
            draw.text((x - 12, y1 + 8), f"{s:.0f}", fill=(0, 0, 0), font=font)
        draw.text(((x0 + x1) // 2 - 12, ph - 14), "step", fill=(0, 0, 0), font=font)
        xy = [(x0 + (s - smin) / (smax - smin) * (x1 - x0), y1 - (v - lo) / (hi - lo) * (y1 - y0))
              for s, v in zip(steps, vals)]
        if len(xy) > 1:
            draw.line(xy, fill=(31, 119, 180), width=2)
        for x, y in xy[-1:]:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(31, 119, 180))
    save_png(canvas, path)
