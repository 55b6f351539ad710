"""The worst relative error of every gradient check, over many random cases (float64, CPU).

    python bench/gradcheck_report.py [--cases 200] [--seed 0]

Draws shapes the way the tests do (batch 1–3, channels 1–4, kernel 1–6, stride 1–3,
padding 0–2, non-square), runs each check, and prints the largest error seen, so the
margin under each test's tolerance is visible.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae import VAE, Conv2D, ConvTranspose2D, Dense, ReLU, Sigmoid  # noqa: E402
from scratchvae.check import reference  # noqa: E402
from scratchvae.check.gradcheck import check_layer, check_model, check_model_directions, rel_error  # noqa: E402
from scratchvae.ops.im2col import col2im, im2col  # noqa: E402
from scratchvae.model.layers import FastConv2D, FastConvTranspose2D  # noqa: E402
from scratchvae.ops.parity import conv_transpose_parity  # noqa: E402


def conv_case(rng):
    kh, kw, ph, pw = rng.integers(1, 7), rng.integers(1, 7), rng.integers(0, 3), rng.integers(0, 3)
    h = rng.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + 5)
    w = rng.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + 5)
    return dict(n=rng.integers(1, 4), c=rng.integers(1, 5), co=rng.integers(1, 5), h=h, w=w, kh=kh, kw=kw,
                sy=rng.integers(1, 4), sx=rng.integers(1, 4), ph=ph, pw=pw)


def convt_case(rng):
    k = conv_case(rng)
    k["opy"], k["opx"] = rng.integers(0, k["sy"]), rng.integers(0, k["sx"])
    while (k["h"] - 1) * k["sy"] - 2 * k["ph"] + k["kh"] + k["opy"] < 1:
        k["h"] += 1
    while (k["w"] - 1) * k["sx"] - 2 * k["pw"] + k["kw"] + k["opx"] < 1:
        k["w"] += 1
    return k


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    worst = {}

    def note(name, err):
        worst[name] = max(worst.get(name, 0.0), err)

    for _ in range(a.cases):
        k = conv_case(rng)
        x = rng.normal(size=(k["n"], k["c"], k["h"], k["w"]))
        args = (k["kh"], k["kw"], k["sy"], k["sx"], k["ph"], k["pw"])
        note("im2col vs loops (max |diff|)", float(np.abs(im2col(x, *args) - reference.im2col(x, *args)).max()))
        col = rng.normal(size=im2col(x, *args).shape)
        note("col2im vs loops", rel_error(col2im(col, k["h"], k["w"], *args[2:]),
                                          reference.col2im(col, k["h"], k["w"], *args[2:])))
        lhs, rhs = float((im2col(x, *args) * col).sum()), float((x * col2im(col, k["h"], k["w"], *args[2:])).sum())
        note("adjoint <im2col(x),c> = <x,col2im(c)>", abs(lhs - rhs) / max(1.0, abs(lhs)))
        conv = Conv2D(k["c"], k["co"], (k["kh"], k["kw"]), (k["sy"], k["sx"]), (k["ph"], k["pw"]),
                      dtype=np.float64, rng=rng)
        note("Conv2D forward vs reference", rel_error(conv.forward(x), reference.conv2d(
            x, conv.params["W"], conv.params["b"], (k["sy"], k["sx"]), (k["ph"], k["pw"]))))
        for name, e in check_layer(conv, x, rng=rng).items():
            note(f"Conv2D d{name} finite differences", e)

        t = convt_case(rng)
        x = rng.normal(size=(t["n"], t["c"], t["h"], t["w"]))
        convt = ConvTranspose2D(t["c"], t["co"], (t["kh"], t["kw"]), (t["sy"], t["sx"]), (t["ph"], t["pw"]),
                                (t["opy"], t["opx"]), dtype=np.float64, rng=rng)
        note("ConvTranspose2D forward vs reference", rel_error(convt.forward(x), reference.conv_transpose2d(
            x, convt.params["W"], convt.params["b"], (t["sy"], t["sx"]), (t["ph"], t["pw"]), (t["opy"], t["opx"]))))
        for name, e in check_layer(convt, x, rng=rng).items():
            note(f"ConvTranspose2D d{name} finite differences", e)
        note("parity split vs loops", rel_error(
            conv_transpose_parity(x, convt.params["W"], t["sy"], t["sx"], t["ph"], t["pw"], t["opy"], t["opx"]),
            reference.conv_transpose2d_by_parity(x, convt.params["W"], np.zeros(t["co"]), (t["sy"], t["sx"]),
                                                 (t["ph"], t["pw"]), (t["opy"], t["opx"]))))
        for method in ("parity", "col2im"):                  # the fast layers, each method forced
            fast = FastConvTranspose2D(t["c"], t["co"], (t["kh"], t["kw"]), (t["sy"], t["sx"]), (t["ph"], t["pw"]),
                                       (t["opy"], t["opx"]), dtype=np.float64, rng=rng, method=method)
            for name, e in check_layer(fast, x, rng=rng).items():
                note(f"FastConvTranspose2D[{method}] d{name} f.d.", e)
            x2 = rng.normal(size=(k["n"], k["c"], k["h"], k["w"]))
            fconv = FastConv2D(k["c"], k["co"], (k["kh"], k["kw"]), (k["sy"], k["sx"]), (k["ph"], k["pw"]),
                               dtype=np.float64, rng=rng, method=method)
            for name, e in check_layer(fconv, x2, rng=rng).items():
                note(f"FastConv2D[{method}] d{name} f.d.", e)

        n, fi, fo = rng.integers(1, 4), rng.integers(1, 7), rng.integers(1, 7)
        for name, e in check_layer(Dense(fi, fo, np.float64, rng=rng), rng.normal(size=(n, fi)), rng=rng).items():
            note(f"Dense d{name} finite differences", e)
        xr = rng.normal(size=(n, fi))
        xr += np.where(xr >= 0, 0.01, -0.01)
        note("ReLU dx finite differences", check_layer(ReLU(np.float64), xr, rng=rng)["x"])
        note("Sigmoid dx finite differences", check_layer(Sigmoid(np.float64), 3 * rng.normal(size=(n, fi)),
                                                           rng=rng)["x"])

    small = dict(encoder=((3, 3, 2), (4, 3, 2)), decoder=((3, 3, 2), (None, 4, 2)), dense_size=5, latent_dim=3)
    for i in range(max(4, a.cases // 20)):
        h, w = rng.integers(9, 15, size=2)
        m = VAE(input_shape=(2, h, w), **small, kl_tolerance=float(rng.choice([0.0, 0.5, 50.0])),
                recon=str(rng.choice(["mse", "bernoulli"])), dtype=np.float64, seed=int(rng.integers(1 << 30)))
        n = int(rng.integers(1, 4))
        errors = check_model(m, rng.random((n, 2, h, w)), rng.normal(size=(n, 3)))
        note("VAE (small) every parameter, finite differences", max(errors.values()))
    for fast in (True, False):                            # the fast layers and the im2col ones
        m = VAE(dtype=np.float64, seed=a.seed, kl_tolerance=0.0, fast=fast)
        errors = check_model_directions(m, rng.random((2, 3, 64, 64)), rng.normal(size=(2, 32)), directions=3,
                                        rng=rng)
        note(f"VAE (default 64x64, {'fast' if fast else 'im2col'} layers) random directions", max(errors.values()))

    print(f"worst relative error over {a.cases} random cases each (float64):")
    for name, e in worst.items():
        print(f"  {name:<52} {e:.2e}")


if __name__ == "__main__":
    main()
