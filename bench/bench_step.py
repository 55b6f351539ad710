"""Time one training step of the default VAE (batch 100, float32) on each available device.

    python bench/bench_step.py [--batch 100] [--steps 20] [--warmup 3] [--devices cpu,gpu] [--no-torch]

For each device: the median step time over --steps steps after --warmup, images per second,
the step's floating-point operations and the achieved rate, and where the time goes per
layer (forward and backward timed one layer at a time, the GPU synchronised around each).
Where PyTorch is installed (pip install -e ".[bench]"), the same architecture and loss are
built in PyTorch and timed in the same run on the same device, with the same number of CPU
threads, and the ratio is printed: scratchvae images/s ÷ PyTorch images/s.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from scratchvae import VAE  # noqa: E402
from scratchvae.backend import gpu_available, get_xp  # noqa: E402
from scratchvae.layers import Conv2D, ConvTranspose2D, Dense  # noqa: E402
from scratchvae.optim import Adam  # noqa: E402


def forward_flops(model, batch):
    """Multiply-adds ×2 of every convolution, transposed convolution and dense layer, one forward."""
    c, h, w = model.input_shape
    total, per_layer = 0, {}
    for name, layer in model.layers.items():
        if isinstance(layer, Conv2D):
            h, w = layer.output_shape(h, w)
            f = 2 * layer.out_channels * h * w * layer.in_channels * layer.kh * layer.kw
        elif isinstance(layer, ConvTranspose2D):
            if name.endswith("deconv1"):
                h, w = model.unflat.shape[1:]
            f = 2 * layer.in_channels * h * w * layer.out_channels * layer.kh * layer.kw
            h, w = layer.output_shape(h, w)
        else:
            f = 2 * layer.in_features * layer.out_features
        per_layer[name] = f * batch
        total += f * batch
    return total, per_layer


def sync(device):
    if device == "gpu":
        import cupy
        cupy.cuda.Device().synchronize()


def time_scratch(device, batch, steps, warmup):
    xp = get_xp(device)
    model = VAE(device=device, seed=0)
    opt = Adam(model.params, lr=1e-4)
    x = xp.asarray(np.random.default_rng(0).random((batch, 3, 64, 64), dtype=np.float32))
    times = []
    for i in range(warmup + steps):
        sync(device)
        t = time.perf_counter()
        model.loss(x)
        model.backward()
        opt.step(model.grads)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times), model, x


def profile_layers(model, x, device, repeats=3):
    """Seconds per layer, forward and backward, one layer at a time with a sync around each."""
    spent = {}

    def wrap(name, layer, method):
        inner = getattr(layer, method)

        def timed(arg):
            sync(device)
            t = time.perf_counter()
            out = inner(arg)
            sync(device)
            spent[(name, method)] = spent.get((name, method), 0.0) + time.perf_counter() - t
            return out
        setattr(layer, method, timed)

    named = dict(model.layers)
    named.update({f"{k}.relu": r for k, r in model.relus.items()})
    named["decoder.sigmoid"] = model.out
    for name, layer in named.items():
        for method in ("forward", "backward"):
            wrap(name, layer, method)
    for _ in range(repeats):
        model.loss(x)
        model.backward()
    for layer in named.values():
        for method in ("forward", "backward"):
            del layer.__dict__[method]
    return {k: v / repeats for k, v in spent.items()}


def torch_model(device, threads):
    import torch
    from torch import nn
    torch.set_num_threads(threads)
    dev = "cuda" if device == "gpu" else "cpu"

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Conv2d(3, 32, 4, 2), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                                     nn.Conv2d(64, 128, 4, 2), nn.ReLU(), nn.Conv2d(128, 256, 4, 2), nn.ReLU(),
                                     nn.Flatten())
            self.mu, self.logvar = nn.Linear(1024, 32), nn.Linear(1024, 32)
            self.dense = nn.Linear(32, 1024)
            self.dec = nn.Sequential(nn.ConvTranspose2d(1024, 128, 5, 2), nn.ReLU(),
                                     nn.ConvTranspose2d(128, 64, 5, 2), nn.ReLU(),
                                     nn.ConvTranspose2d(64, 32, 6, 2), nn.ReLU(),
                                     nn.ConvTranspose2d(32, 3, 6, 2), nn.Sigmoid())

        def forward(self, x):
            h = self.enc(x)
            mu, logvar = self.mu(h), self.logvar(h)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            y = self.dec(self.dense(z).view(-1, 1024, 1, 1))
            recon = ((y - x) ** 2).sum(dim=(1, 2, 3)).mean()
            kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)
            return recon + torch.clamp(kl, min=0.5 * 32).mean()

    return Net().to(dev), dev


def time_torch(device, batch, steps, warmup, threads):
    import torch
    net, dev = torch_model(device, threads)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, 64, 64, device=dev)
    times = []
    for i in range(warmup + steps):
        if dev == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        net(x).backward()
        opt.step()
        if dev == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--devices", default="cpu,gpu" if gpu_available() else "cpu")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-profile", action="store_true")
    a = p.parse_args()
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import torch  # noqa: F401
        have_torch = not a.no_torch
    except ImportError:
        have_torch = False
    rows = []
    for device in a.devices.split(","):
        t, model, x = time_scratch(device, a.batch, a.steps, a.warmup)
        fwd, per_layer = forward_flops(model, a.batch)
        step_flops = 3 * fwd                       # forward, then ∂W and ∂x: about twice the forward again
        row = dict(device=device, ms=t * 1e3, ips=a.batch / t, gflop=step_flops / 1e9,
                   rate=step_flops / t / 1e9)
        if have_torch:
            tt = time_torch(device, a.batch, a.steps, a.warmup, threads)
            row.update(torch_ms=tt * 1e3, torch_ips=a.batch / tt, ratio=(a.batch / t) / (a.batch / tt))
        rows.append(row)
        if not a.no_profile:
            spent = profile_layers(model, x, device)
            total = sum(spent.values())
            print(f"\nper-layer split on {device} (forward + backward of the loss, batch {a.batch}):")
            print(f"{'layer':<26}{'forward ms':>12}{'backward ms':>13}{'share':>8}{'GFLOP/s':>10}")
            for name in dict.fromkeys(k for k, _ in spent):
                f, b = spent.get((name, "forward"), 0.0), spent.get((name, "backward"), 0.0)
                flops = 3 * per_layer.get(name, 0)
                rate = f"{flops / (f + b) / 1e9:.1f}" if flops else ""
                print(f"{name:<26}{f * 1e3:>12.2f}{b * 1e3:>13.2f}{(f + b) / total:>8.1%}{rate:>10}")
    print(f"\ntraining step, default VAE, batch {a.batch}, float32, {threads} CPU thread(s), median of {a.steps}:")
    head = f"{'device':<8}{'ms/step':>10}{'images/s':>10}{'GFLOP/step':>12}{'GFLOP/s':>9}"
    if have_torch:
        head += f"{'torch ms':>10}{'torch img/s':>12}{'ratio':>8}"
    print(head)
    for r in rows:
        line = f"{r['device']:<8}{r['ms']:>10.1f}{r['ips']:>10.1f}{r['gflop']:>12.2f}{r['rate']:>9.1f}"
        if have_torch:
            line += f"{r['torch_ms']:>10.1f}{r['torch_ips']:>12.1f}{r['ratio']:>8.2f}"
        print(line)
    if not have_torch:
        print("(PyTorch is not installed: no reference column; pip install -e '.[bench]' to add it)")


if __name__ == "__main__":
    main()
