"""Time one training step of the default VAE (float32) against PyTorch and against its own matrix products.

    python bench/bench_step.py [--batch 100] [--blocks 8] [--steps 4] [--warmup 3] [--devices cpu,gpu]
                               [--precision fp32,tf32,fp16] [--torch all|eager,graphed,…] [--no-graph]
                               [--no-torch] [--no-floor] [--no-profile]

A step is loss, backward and an Adam update. Timing alternates blocks: --steps steps of
scratchvae, then --steps of PyTorch (when installed: pip install -e ".[bench]"), then the
GEMM floor, --blocks times, so that a slow stretch of a shared machine hits all three
alike. Reported: the median step of each, images per second, and

    ratio        PyTorch's median step ÷ scratchvae's (= scratchvae images/s ÷ PyTorch's;
                 above 1: scratchvae is faster)
    GEMM floor   the matrix products of one scratchvae step, the same shapes and the same
                 orientation, timed alone with nothing else in between: what the step would
                 cost if everything around the products (im2col, col2im, the parity split's
                 copies, activations, the loss, Adam) were free
    step/floor   scratchvae's median step ÷ the floor

On the GPU each block also times its steps queued back to back (synchronised only before and after
the block), as training runs them: the host prepares a step while the GPU runs the one before, so
the host's share of a step is hidden where the GPU is the slower; a second table reports those.

PyTorch runs the same architecture and loss (oneDNN on the CPU, cuDNN on the GPU) with as
many CPU threads as this process may use, each way --torch names, in the same blocks:

    eager          plain PyTorch, NCHW
    channels_last  (CPU) the same in channels_last
    graphed        (GPU) the whole step, Adam(capturable=True) included, captured as one CUDA graph and
                   replayed, cudnn.benchmark on; graphed_cl: the same in channels_last
    compiled       torch.compile of the model (where the installed PyTorch compiles it: a failure is
                   reported as a row and the rest goes on)
    amp, amp_cl    (GPU, --precision fp16) float16 autocast with a GradScaler and a fused Adam, forward and
                   backward captured as a graph (the scaler's step reads its inf check, which a capture
                   forbids, so it and Adam run after the replay)

The fastest is "PyTorch's best"; every ratio is printed, against it and each variant. The roofline
(bench/roofline.py): the step's FLOPs and the least bytes it must move, the device's peaks, and each
side's share of the floor max(FLOPs/peak, bytes/bandwidth). On the GPU, each side's peak memory and the
largest batch it would fit. Then, per device, the per-layer split: forward and backward timed one layer
at a time (the GPU synchronised around each).

On the GPU:
* each precision policy in --precision is timed on both sides: fp32 (scratchvae's default,
  exact float32 products; PyTorch with torch.backends.cudnn.allow_tf32 and
  torch.backends.cuda.matmul.allow_tf32 off) and tf32 (scratchvae's --tf32; PyTorch with
  both on: PyTorch's own default for convolutions);
* scratchvae's step is the training tool's: recorded once as a CUDA graph and replayed
  (scratchvae/run/step.py), or launched kernel by kernel with --no-graph;
* with PyTorch there, the kernels and memory copies of one step of each, counted by CUDA's
  activity tracer (CUPTI, through PyTorch's profiler, which records every kernel in the
  process, CuPy's included), the time the GPU spends running them (busy: its share of the
  median step) and scratchvae's kernels by time.
"""
import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time

# As the tools do (bin/*): OpenBLAS's threads sleep after each product, set before NumPy loads; every core copies
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))           # (bench/roofline.py)
from scratchvae import VAE  # noqa: E402
from scratchvae.ops import blas, threads  # noqa: E402
import numpy as np  # noqa: E402
from scratchvae.ops.devices import get_xp, gpu_available  # noqa: E402
from scratchvae.run.step import CapturedStep, train_step  # noqa: E402
from scratchvae.ops.im2col import batch_last  # noqa: E402
from scratchvae.model.layers import (Conv2D, ConvTranspose2D, Dense, DenseThenDeconv, Heads, ReLU,  # noqa: E402
                               Reshape, weight_grad)
from scratchvae.model.optim import Adam  # noqa: E402
from scratchvae.ops.parity import phase_grid  # noqa: E402
import roofline  # noqa: E402 (bench/roofline.py)


def sync(device):
    if device == "gpu":
        import cupy
        cupy.cuda.Device().synchronize()


# ---- what one step multiplies -------------------------------------------------------------------
def _transpose_products(layer, h, w, n):
    """(method, products) of a fast layer's transposed convolution for n h×w inputs to the layer: its
    method and sizes as the layer itself works them out (method_for, transposed)."""
    ci, co, th, tw, opy, opx = layer.transposed(h, w)
    method = layer.method_for(h, w)
    if method == "parity":
        ry, rx = phase_grid(th, layer.kh, layer.sy, layer.ph, opy), phase_grid(tw, layer.kw, layer.sx, layer.pw, opx)
        return method, [("mm", layer.sy * layer.sx * co, ci * ry.taps * rx.taps, ry.rows * rx.rows * n)]
    return method, [("mm", co * layer.kh * layer.kw, ci, th * tw * n)]  # dense and col2im: COL = W₂ᵀ·X


def layer_products(model, n):
    """Every matrix product of one loss + backward, per layer: {name: [(kind, a, b, c), …]} with
    ("mm", M, K, N) an (M, K)·(K, N) product and ("wgrad", A, K, L) weight_grad of an (A, L) and a
    (K, L) matrix; {name: method} of each convolution's transposed direction; and {name: forward FLOPs},
    2× the multiply-adds of the layer's forward as a plain loop would do them. Walks the model's encoder
    and decoder lists as its forward does, following the image size."""
    names = {id(layer): name for name, layer in model.layers.items()}
    c, h, w = model.input_shape
    out, methods, flops = {}, {}, {}

    def dense(layer):                               # y = x·W, dW = xᵀ·dy, dx = dy·Wᵀ
        i, o = layer.in_features, layer.out_features
        out[names[id(layer)]] = [("mm", n, i, o), ("mm", i, n, o), ("mm", n, o, i)]
        flops[names[id(layer)]] = 2 * n * i * o

    for layer in model.encoder + model.decoder:
        name = names.get(id(layer))
        if isinstance(layer, Conv2D):
            oh, ow = layer.output_shape(h, w)
            k = layer.in_channels * layer.kh * layer.kw
            out[name] = [("mm", layer.out_channels, k, oh * ow * n), ("wgrad", layer.out_channels, k, oh * ow * n)]
            flops[name] = 2 * layer.out_channels * k * oh * ow * n
            methods[name] = "-"                                      # no input gradient
            if layer.input_grad:
                methods[name], dx = _transpose_products(layer, h, w, n)
                out[name] += dx
            h, w = oh, ow
        elif isinstance(layer, ConvTranspose2D):
            k = layer.out_channels * layer.kh * layer.kw
            flops[name] = 2 * layer.in_channels * k * h * w * n
            methods[name], fwd = _transpose_products(layer, h, w, n)
            out[name] = fwd + [("wgrad", layer.in_channels, k, h * w * n), ("mm", layer.in_channels, k, h * w * n)]
            h, w = layer.output_shape(h, w)
        elif isinstance(layer, Dense):
            dense(layer)
        elif isinstance(layer, Heads):              # the two heads, one entry (timed as one layer)
            dense(layer.mu)
            dense(layer.logvar)
            mu, logvar = names[id(layer.mu)], names[id(layer.logvar)]
            out[HEADS], flops[HEADS] = out.pop(mu) + out.pop(logvar), flops.pop(mu) + flops.pop(logvar)
        elif isinstance(layer, Reshape) and len(layer.shape) == 3:   # the decoder's (dense_size, h0, w0)
            h, w = layer.shape[1:]
        elif isinstance(layer, DenseThenDeconv):    # decoder.dense and deconv1 as one map
            dc, name = layer.deconv, names[id(layer.deconv)]
            d, f, k = layer.dense.in_features, layer.dense.out_features, dc.out_channels * dc.kh * dc.kw
            out[names[id(layer.dense)]] = [("mm", n, d, f), ("mm", d, f, k), ("mm", k, d, n)]  # h, W_d·W₁, Yᵀ
            out[name] = [("mm", f, n, k), ("mm", k, n, d), ("mm", f, k, d), ("mm", d, k, n)]  # ∂W₁, ∂W_d (2), ∂z
            flops[names[id(layer.dense)]], flops[name] = 2 * n * d * f, 2 * n * f * k
            methods[name] = "joined"
            h, w = dc.output_shape(1, 1)
    return out, methods, flops


HEADS = "encoder.mu+logvar"                         # the encoder's two dense heads, one layer (Heads)


def gemm_floor(products, xp, device, dtype=np.float32):
    """A callable that runs every product once, on arrays made beforehand, and returns the seconds."""
    rng = np.random.default_rng(0)
    ops = []
    for kind, a, b, c in products:
        if kind == "mm":
            A, B = (xp.asarray(rng.random(s, dtype=dtype)) for s in ((a, b), (b, c)))
            ops.append(lambda A=A, B=B: blas.matmul(A, B))
        else:
            A, B = (xp.asarray(rng.random(s, dtype=dtype)) for s in ((a, c), (b, c)))
            ops.append(lambda A=A, B=B, out=xp.empty((a, b), dtype=dtype): weight_grad(A, B, out))

    def run():
        total = 0.0
        for op in ops:
            sync(device)
            t = time.perf_counter()
            op()
            sync(device)
            total += time.perf_counter() - t
        return total
    return run


def step_flops(products):
    return sum(2 * a * b * c for _, a, b, c in products)


def time_products(products, xp, device, repeats=5):
    """Median seconds of one run of `products`, alone."""
    run = gemm_floor(products, xp, device)
    run()
    return statistics.median(run() for _ in range(repeats))


# ---- the two training steps ---------------------------------------------------------------------
class OneRankSum:
    """A job of one rank whose sum still runs: an in-place pass over the gradients on the current stream, standing
    in for NCCL's one-rank all-reduce (a copy), so that CapturedShardedStep's two graphs are timed around it."""
    rank, size = 0, 1

    def allreduce(self, a, what=None):
        a *= 1
        return a


def sharded_step(batch):
    """scratchvae's GPU step as several ranks record it (two graphs around the sum), for one rank."""
    from scratchvae.run.step import CapturedShardedStep
    model = VAE(device="gpu", seed=0)
    opt = Adam(model.params, lr=1e-4)
    x = batch_last(get_xp("gpu").asarray(np.random.default_rng(0).random((batch, 3, 64, 64), dtype=np.float32)))
    step = CapturedShardedStep(model, opt, OneRankSum())
    return lambda: step(x, size=batch)


def scratch_step(device, batch, graph=True):
    xp = get_xp(device)
    model = VAE(device=device, seed=0)
    opt = Adam(model.params, lr=1e-4)
    # stored (C, H, W, N), the layout the layers keep their images in, as the training loader
    # (data.dataset.to_model_input) delivers them; PyTorch gets its own layout, NCHW
    x = batch_last(xp.asarray(np.random.default_rng(0).random((batch, 3, 64, 64), dtype=np.float32)))
    if device == "gpu" and graph:
        captured = CapturedStep(model, opt)                 # as the training tool runs it

        def step():
            captured(x)
        return step, model, x

    return lambda: train_step(model, opt, x), model, x


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


# PyTorch's ways of running the same step: eager (NCHW or channels_last), the whole step captured as one
# CUDA graph and replayed (Adam(capturable=True) inside it, cudnn.benchmark on), torch.compile, and
# automatic mixed precision (float16 autocast with a GradScaler; forward and backward captured as a graph,
# the scaler's step and update after it: GradScaler.step reads its inf check, which a capture forbids).
TORCH_VARIANTS = {"cpu": ("eager", "channels_last", "compiled"),
                  "gpu": ("eager", "graphed", "graphed_cl", "compiled", "amp", "amp_cl")}


def torch_variants(device, policy, asked):
    """The variants that apply to a row: AMP only at fp16 (and only there), the rest at fp32 and tf32."""
    names = TORCH_VARIANTS[device] if asked == "all" else [v for v in asked.split(",") if v in TORCH_VARIANTS[device]]
    return [v for v in names if v.startswith("amp") == (policy == "fp16")]


def torch_step(device, batch, threads, variant="eager"):
    """A callable that runs one training step of PyTorch's model the `variant` way."""
    import torch
    net, dev = torch_model(device, threads)
    cl = variant in ("channels_last", "graphed_cl", "amp_cl")
    fmt = torch.channels_last if cl else torch.contiguous_format
    net = net.to(memory_format=fmt)
    x = torch.rand(batch, 3, 64, 64, device=dev).contiguous(memory_format=fmt)
    benchmark = variant != "eager" and device == "gpu"

    if variant in ("eager", "channels_last"):
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            net(x).backward()
            opt.step()
    elif variant == "compiled":
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        compiled = torch.compile(net)

        def step():
            opt.zero_grad(set_to_none=True)
            compiled(x).backward()
            opt.step()
    elif variant in ("graphed", "graphed_cl"):
        opt = torch.optim.Adam(net.parameters(), lr=1e-4, capturable=True)

        def whole():
            net(x).backward()
            opt.step()
        step = _graphed(whole, opt)
    elif variant in ("amp", "amp_cl"):
        opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True)
        scaler = torch.amp.GradScaler("cuda")

        def forward_backward():
            with torch.autocast("cuda", dtype=torch.float16, cache_enabled=False):
                loss = net(x)
            scaler.scale(loss).backward()
        replay = _graphed(forward_backward, opt, after=lambda: (scaler.step(opt), scaler.update()))

        def step():
            replay()
            scaler.step(opt)
            scaler.update()
    else:
        raise ValueError(f"unknown PyTorch variant {variant!r}")

    def run():
        torch.backends.cudnn.benchmark = benchmark
        step()
    return run


def _graphed(body, opt, after=None, warmup=3):
    """body (forward, backward and whatever else is capture-safe) recorded once as a CUDA graph, after warm-up
    runs on a side stream (as PyTorch's documentation for whole-network capture does); a callable that replays
    it. after(): what follows body in each warm-up step but stays outside the graph."""
    import torch
    torch.backends.cudnn.benchmark = True
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            opt.zero_grad(set_to_none=True)
            body()
            if after:
                after()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        body()
    return graph.replay


def queued(step, device, steps):
    """Seconds per step of `steps` steps launched back to back, the device synchronised only before the first
    and after the last: the host queues a step while the GPU still runs the one before, as in training (whose
    steps never wait for the GPU). On the CPU the same as timed's."""
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t) / steps


def timed(step, device, steps):
    """Seconds of each of `steps` steps, the device synchronised around each: a step's latency."""
    out = []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        step()
        sync(device)
        out.append(time.perf_counter() - t)
    return out


# ---- kernels per step ---------------------------------------------------------------------------
def kernels_per_step(step, steps=3):
    """(kernels, {copy: count}, busy seconds, {kernel name: [seconds, count]}) per step on the GPU, counted by
    CUDA's own activity tracer (CUPTI, through PyTorch's profiler), which records every kernel the process runs:
    CuPy's, cuBLAS's and PyTorch's alike, inside CUDA graphs too; copies by the tracer's name for them
    ("Memcpy HtoD (Pinned -> Device)", …); busy: the kernels', copies' and fills' durations added up."""
    from torch.profiler import ProfilerActivity, profile
    step()
    sync("gpu")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        sync("gpu")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    copies = collections.Counter(e["name"] for e in events if e.get("cat") == "gpu_memcpy")
    busy = sum(e.get("dur", 0) for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")) * 1e-6
    by_name = collections.defaultdict(lambda: [0.0, 0.0])
    for e in events:
        if e.get("cat") == "kernel":
            by_name[e["name"]][0] += e.get("dur", 0) * 1e-6 / steps
            by_name[e["name"]][1] += 1 / steps
    return (sum(e.get("cat") == "kernel" for e in events) / steps,
            {name: n / steps for name, n in sorted(copies.items())}, busy / steps, dict(by_name))


def set_precision(policy, have_torch):
    """fp32: exact float32 products on both sides; tf32: TF32 tensor cores on both (PyTorch's default for its
    convolutions, here for its matrix products too)."""
    blas.set_tf32(policy == "tf32")
    if have_torch:
        import torch
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = policy == "tf32"


# ---- per layer ----------------------------------------------------------------------------------
def profile_layers(model, x, device, repeats=3):
    """Seconds per layer, forward and backward, one layer at a time with a sync around each."""
    spent = {}

    def wrap(name, layer, method):
        inner = getattr(layer, method)

        def timed_call(arg, **kw):
            sync(device)
            t = time.perf_counter()
            out = inner(arg, **kw)
            sync(device)
            spent[(name, method)] = spent.get((name, method), 0.0) + time.perf_counter() - t
            return out
        setattr(layer, method, timed_call)

    names = {id(layer): name for name, layer in model.layers.items()}
    named, last = {}, None
    for layer in model.encoder + model.decoder:     # a layer computed as one (DenseThenDeconv): timed as one
        if isinstance(layer, ReLU):
            named[f"{last}.relu"] = layer
            continue
        last = names.get(id(getattr(layer, "deconv", layer)))
        if isinstance(layer, Heads):                # its backward sums the two heads' input products itself
            named[HEADS] = layer
        elif last:
            named[last] = layer
    named["decoder.sigmoid"] = model.sigmoid
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


def print_profile(model, x, device, batch):
    spent = profile_layers(model, x, device)
    products, methods, per_layer = layer_products(model, batch)
    for name, method in methods.items():
        if method == "joined":                      # one entry for the two layers computed as one
            per_layer[name] += per_layer.pop("decoder.dense")
            products[name] += products.pop("decoder.dense")
    xp = get_xp(device)
    total = sum(spent.values())
    print(f"\nper-layer split on {device} (forward + backward of the loss, batch {batch}); "
          "floor: the layer's matrix products alone:")
    print(f"{'layer':<24}{'method':>8}{'forward ms':>12}{'backward ms':>13}{'floor ms':>10}{'share':>8}{'GFLOP/s':>9}")
    for name in dict.fromkeys(k for k, _ in spent):
        f, b = spent.get((name, "forward"), 0.0), spent.get((name, "backward"), 0.0)
        flops = 3 * per_layer.get(name, 0)
        rate = f"{flops / (f + b) / 1e9:.1f}" if flops else ""
        method = methods.get(name, "")
        floor = f"{time_products(products[name], xp, device) * 1e3:.2f}" if name in products else ""
        if method == "joined":
            name = "decoder.dense+deconv1"
        print(f"{name:<24}{method:>8}{f * 1e3:>12.2f}{b * 1e3:>13.2f}{floor:>10}{(f + b) / total:>8.1%}{rate:>9}")


def main():
    threads.use_every_core()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", default="100", help="batch size, or several separated by commas (100,1000)")
    p.add_argument("--blocks", type=int, default=8, help="alternating blocks (default 8)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per block (default 4)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--devices", default="cpu,gpu" if gpu_available() else "cpu")
    p.add_argument("--precision", default="fp32,tf32", help="GPU precision policies to time: fp32, tf32, fp16 "
                   "(default fp32,tf32; the CPU is always fp32). At fp16 PyTorch runs AMP and scratchvae, which "
                   "has no half-precision step on the GPU yet, its tf32 step")
    p.add_argument("--torch", default="all", help="PyTorch's variants to time, separated by commas: "
                   f"{', '.join(dict.fromkeys(TORCH_VARIANTS['cpu'] + TORCH_VARIANTS['gpu']))} "
                   "(default all that apply: AMP at fp16, the rest at fp32 and tf32; graphs and AMP on the GPU)")
    p.add_argument("--no-graph", action="store_true", help="GPU: launch scratchvae's step kernel by kernel")
    p.add_argument("--sharded", action="store_true", help="GPU: also time scratchvae's step as a job of several "
                   "ranks records it, two graphs around the sum, for one rank with the sum forced on")
    p.add_argument("--top", type=int, default=12, help="GPU: scratchvae's kernels listed by time (default 12)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-floor", action="store_true")
    p.add_argument("--no-profile", action="store_true")
    a = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import torch
        have_torch = not a.no_torch
        print(f"PyTorch {torch.__version__}", end="; ")
    except ImportError:
        have_torch = False
    print(f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', '(unset)')}, {cores} CPU thread(s), "
          f"{threads.WORKERS} copying")
    rows = []
    for device in a.devices.split(","):
        xp = get_xp(device)
        for policy in (a.precision.split(",") if device == "gpu" else ["fp32"]):
            if device == "gpu":
                set_precision(policy, have_torch)
            for batch in (int(b) for b in a.batch.split(",")):
                rows.append(measure(a, device, policy, batch, xp, cores, have_torch))
    if "gpu" in a.devices:
        set_precision("fp32", have_torch)
    print_tables(a, rows, cores, have_torch)


def print_tables(a, rows, cores, have_torch):
    print(f"\ntraining step, default VAE, float32 parameters, {cores} CPU thread(s), {threads.WORKERS} copying; "
          f"medians of {a.blocks} alternating blocks × {a.steps} steps; GPU step "
          f"{'launched kernel by kernel' if a.no_graph else 'replayed as a CUDA graph'}. ratio: PyTorch's best "
          "(the fastest variant timed) ÷ scratchvae, above 1: scratchvae faster; roof: the roofline's floor "
          "(bench/roofline.py); share: the floor ÷ the step:")
    head = f"{'device':<8}{'prec':>5}{'batch':>6}{'ms/step':>10}{'img/s':>9}{'GFLOP/s':>9}"
    if have_torch:
        head += f"{'best torch':>15}{'ms':>9}{'ratio':>7}{'eager ratio':>12}"
    if not a.no_floor:
        head += f"{'floor ms':>10}{'step/floor':>11}"
    head += f"{'roof ms':>9}{'share':>7}"
    if have_torch:
        head += f"{'torch share':>12}"
    counted = any("scratchvae kernels" in r for r in rows)
    if counted:
        head += f"{'kernels':>9}{'torch kernels':>14}{'busy':>6}{'torch busy':>11}"
    print(head)
    for r in rows:
        m, b = r["med"], r["batch"]
        ours = m["scratchvae"]
        line = (f"{r['device']:<8}{r['policy']:>5}{b:>6}{ours * 1e3:>10.2f}{b / ours:>9.0f}"
                f"{r['flops'] / ours / 1e9:>9.1f}")
        best = r.get("best")
        if have_torch:
            if best:
                eager = m.get("torch:eager")
                line += (f"{best[6:]:>15}{m[best] * 1e3:>9.2f}{m[best] / ours:>7.2f}"
                         f"{(f'{eager / ours:.2f}' if eager else '-'):>12}")
            else:
                line += f"{'-':>15}{'-':>9}{'-':>7}{'-':>12}"
        if "floor" in m:
            line += f"{m['floor'] * 1e3:>10.2f}{ours / m['floor']:>11.2f}"
        line += f"{r['roof'] * 1e3:>9.2f}{r['roof'] / ours:>7.1%}"
        if have_torch:
            torch_share = f"{r['roof'] / m[best]:.1%}" if best else "-"
            line += f"{torch_share:>12}"
        if "scratchvae kernels" in r:
            torch_busy = f"{r['torch busy'] / m[best]:.0%}" if best and "torch busy" in r else "-"
            line += (f"{r['scratchvae kernels']:>9.0f}{r.get('torch kernels', float('nan')):>14.0f}"
                     f"{r['scratchvae busy'] / ours:>6.0%}{torch_busy:>11}")
        print(line)
    for r in rows:
        if r["policy"] == "fp16":
            print("(fp16 rows: scratchvae's step is its tf32 one; PyTorch's is AMP)")
            break
    print("\nthe roofline's inputs:")
    for r in rows:
        print(f"  {r['device']} {r['policy']} batch {r['batch']}: {r['flops'] / 1e9:.1f} GFLOP, at least "
              f"{r['bytes'] / 1e9:.3f} GB; peak {r['peak'][0] / 1e12:.1f} TFLOP/s, {r['peak'][1] / 1e9:.0f} GB/s "
              f"(a copy measured {r['peak'][2] / 1e9:.0f} GB/s); {r['peak'][3]}")
    if have_torch:
        print("\nevery PyTorch variant timed, ms/step (ratio: its step ÷ scratchvae's):")
        print(f"{'device':<8}{'prec':>5}{'batch':>6}{'variant':>15}{'ms/step':>10}{'img/s':>9}{'ratio':>7}"
              f"{'queued ms':>11}{'queued ratio':>13}")
        for r in rows:
            m, q, b = r["med"], r["queued"], r["batch"]
            for k in (k for k in m if k.startswith("torch:")):
                print(f"{r['device']:<8}{r['policy']:>5}{b:>6}{k[6:]:>15}{m[k] * 1e3:>10.2f}{b / m[k]:>9.0f}"
                      f"{m[k] / m['scratchvae']:>7.2f}{q[k] * 1e3:>11.2f}{q[k] / q['scratchvae']:>13.2f}")
            for k, why in r["failed"].items():
                print(f"{r['device']:<8}{r['policy']:>5}{b:>6}{k[6:]:>15}  failed: {why}")
    gpu_rows = [r for r in rows if r["device"] == "gpu"]
    if gpu_rows:
        print(f"\nthe same steps queued back to back, as training runs them ({a.steps} a block, the GPU synchronised "
              "before and after each block), ms/step, medians of the blocks:")
        print(f"{'device':<8}{'prec':>5}{'batch':>6}{'queued ms':>11}{'img/s':>9}{'best torch ms':>15}{'ratio':>7}")
        for r in gpu_rows:
            q, b, best = r["queued"], r["batch"], r.get("best")
            line = f"{r['device']:<8}{r['policy']:>5}{b:>6}{q['scratchvae'] * 1e3:>11.2f}{b / q['scratchvae']:>9.0f}"
            if best:
                line += f"{q[best] * 1e3:>15.2f}{q[best] / q['scratchvae']:>7.2f}"
            print(line)
        print_memory(gpu_rows)
    if not have_torch:
        print("(PyTorch is not installed: no reference column; pip install -e '.[bench]' to add it)")


def print_memory(rows):
    """Peak GPU memory of a step on each side, and the largest batch each would fit on the card: a line
    through the two batch sizes' peaks (memory = fixed + per image × batch), solved for the card's memory."""
    import cupy
    card = cupy.cuda.Device().mem_info[1]
    print(f"\npeak GPU memory of a step (scratchvae: CuPy's pool, all it holds; PyTorch: max_memory_allocated), "
          f"card {card / 2**30:.1f} GiB:")
    print(f"{'prec':>5}{'batch':>6}{'scratchvae MiB':>16}{'best torch MiB':>16}")
    for r in rows:
        mem = r["memory"]
        print(f"{r['policy']:>5}{r['batch']:>6}{mem.get('scratchvae', 0) / 2**20:>16.0f}"
              f"{mem.get(r.get('best'), float('nan')) / 2**20:>16.0f}")
    for policy in dict.fromkeys(r["policy"] for r in rows):
        these = sorted((r for r in rows if r["policy"] == policy), key=lambda r: r["batch"])
        if len(these) < 2:
            continue
        lo, hi = these[0], these[-1]
        for side in ("scratchvae", hi.get("best")):
            if side and side in lo["memory"] and side in hi["memory"]:
                per = (hi["memory"][side] - lo["memory"][side]) / (hi["batch"] - lo["batch"])
                fixed = lo["memory"][side] - per * lo["batch"]
                most = int((card - fixed) / per) if per > 0 else float("inf")
                print(f"  {policy} {side}: {per / 2**20:.2f} MiB an image + {fixed / 2**20:.0f} MiB: the largest "
                      f"batch on this card about {most:,}")


def measure(a, device, policy, batch, xp, cores, have_torch):
    """One row of the table: the alternating blocks, then (GPU) the kernel counts and (unless --no-profile)
    the per-layer split."""
    if device == "gpu" and policy == "fp16":
        blas.set_tf32(True)                             # (scratchvae's step has no half precision on the GPU yet)
    step, model, x = scratch_step(device, batch, graph=not a.no_graph)
    runs, failed, memory = {"scratchvae": step}, {}, {}
    if a.sharded and device == "gpu" and not a.no_graph:
        runs["scratchvae:sharded"] = sharded_step(batch)
    if have_torch:
        for variant in torch_variants(device, policy, a.torch):
            name = f"torch:{variant}"
            try:
                run = torch_step(device, batch, cores, variant)
                for _ in range(a.warmup):
                    run()
                runs[name] = run
            except Exception as e:                      # (torch.compile and graph capture can fail: say so, go on)
                failed[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"
    by_layer, _, forward_flops = layer_products(model, batch)
    products = [p for ps in by_layer.values() for p in ps]
    if not a.no_floor:
        runs["floor"] = gemm_floor(products, xp, device)
    for k, run in runs.items():
        if not k.startswith("torch:"):
            for _ in range(a.warmup):
                run()
    if device == "gpu":
        memory = peak_memory(runs)
    times = {k: [] for k in runs}
    back_to_back = {k: [] for k in runs if k != "floor"}
    for _ in range(a.blocks):
        for k, run in runs.items():
            if k == "floor":
                times[k] += [run() for _ in range(a.steps)]
            else:
                times[k] += timed(run, device, a.steps)
                back_to_back[k].append(queued(run, device, a.steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    flops, nbytes = roofline.step_flops(sum(forward_flops.values())), roofline.step_bytes(model, batch)
    peak = roofline.peaks(device, policy, xp)
    best = min((k for k in med if k.startswith("torch:")), key=med.get, default=None)
    if "scratchvae:sharded" in med:
        print(f"\n{device} {policy} batch {batch}: two graphs around a one-rank sum "
              f"{med['scratchvae:sharded'] * 1e3:.2f} ms a step against one graph {med['scratchvae'] * 1e3:.2f} ms "
              f"(queued: {statistics.median(back_to_back['scratchvae:sharded']) * 1e3:.2f} against "
              f"{statistics.median(back_to_back['scratchvae']) * 1e3:.2f})")
    row = dict(device=device, policy=policy, batch=batch, med=med, n=len(times["scratchvae"]), flops=flops,
               bytes=nbytes, peak=peak, roof=roofline.floor_seconds(flops, nbytes, peak[0], peak[1]), best=best,
               failed=failed, memory=memory, queued={k: statistics.median(v) for k, v in back_to_back.items()})
    if device == "gpu" and have_torch:
        print(f"\nkernels per step on the GPU, {policy}, batch {batch} (CUPTI, through PyTorch's profiler):")
        for k in ("scratchvae", best):
            if k is None:
                continue
            count, copies, busy, by_name = kernels_per_step(runs[k])
            key = "scratchvae" if k == "scratchvae" else "torch"
            row[f"{key} kernels"], row[f"{key} busy"] = count, busy
            said = ", ".join(f"{n:g} × {name}" for name, n in copies.items()) or "none"
            print(f"  {k:<20}{count:6.0f} kernels, GPU busy {busy * 1e3:.2f} ms of the median "
                  f"{med[k] * 1e3:.2f} ms step; memory copies: {said}")
            if k == "scratchvae":
                for name, (sec, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:a.top]:
                    print(f"      {sec * 1e3:8.3f} ms {n:5.1f}×  {name[:90]}")
    if not a.no_profile:
        print_profile(model, x, device, batch)
    if device == "gpu" and policy == "fp16":
        blas.set_tf32(False)
    return row


def peak_memory(runs):
    """{run: peak bytes} on the GPU: scratchvae's CuPy pool (what it holds after warm-up: the model, Adam, the
    layers' buffers and the graph's arrays; the pool keeps what it allocated) and each PyTorch variant's
    max_memory_allocated over one step."""
    import cupy
    out = {"scratchvae": cupy.get_default_memory_pool().total_bytes()}
    try:
        import torch
    except ImportError:
        return out
    for k, run in runs.items():
        if k.startswith("torch:"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            run()
            torch.cuda.synchronize()
            out[k] = torch.cuda.max_memory_allocated()
    return out


if __name__ == "__main__":
    main()
