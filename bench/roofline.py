"""The physical limit of a training step: its FLOPs over the device's peak, or the bytes it must move over
the memory's bandwidth, whichever is longer (the roofline).

    floor = max(FLOPs / peak FLOP/s,  bytes / bandwidth)      share = floor / the step's time

FLOPs: 3 × the forward's multiply-adds × 2 (the backward has two products per forward product: to the input
and to the weights). Bytes, the least a step can move: every activation the forward makes written once and
read once, its gradient likewise in the backward, the images read once, and the parameters read by the
forward and the backward, their gradients written and read, and Adam reading the parameters, the
gradients and both moments and writing back the parameters and the moments (10 passes of the parameter
count). Whatever a real step adds (im2col's columns, masks, the loss's temporaries) is above this floor.

Peaks on the GPU from the device's own properties: SM count × clock × the FLOPs an SM does a clock at that
precision (dense, from NVIDIA's architecture papers, below), and memory clock × bus width × 2 (double data
rate); and the bandwidth measured by a copy. On the CPU both are measured: a large float32 matrix product
(OpenBLAS, every core) and a large copy.
"""
import time

import numpy as np

# dense FLOPs per clock per SM, by compute capability (major, minor): fp32 on the CUDA cores; tf32 and fp16
# (float32 accumulation) on the tensor cores. A100 (8.0), A10/RTX 30 (8.6), L4/RTX 40 (8.9), H100/H200 (9.0).
SM_FLOPS_PER_CLOCK = {
    (8, 0): {"fp32": 128, "tf32": 1024, "fp16": 2048},
    (8, 6): {"fp32": 256, "tf32": 512, "fp16": 1024},
    (8, 9): {"fp32": 256, "tf32": 512, "fp16": 1024},
    (9, 0): {"fp32": 256, "tf32": 2048, "fp16": 4096},
}


def step_flops(forward_flops):
    """A training step's FLOPs from its forward's: the forward, and two products of the same size backwards."""
    return 3 * forward_flops


def activation_numbers(model):
    """Numbers per image of the activations a step must keep: the images, each layer with parameters' output
    (a ReLU after it is taken as done in the product's own store, so it adds none; Flatten and Reshape are
    views), mu and logvar, z, and the sigmoid's output; found by running one image through the model."""
    c, h, w = model.input_shape
    a = model.xp.zeros((1, c, h, w), dtype=model.dtype)
    sizes = [a.size]                                      # the images
    for layer in model.encoder + model.decoder:
        if layer is model.decoder[0]:
            a = a[0]                                      # z, the size of mu
            sizes.append(a.size)
        a = layer.forward(a)
        if layer.params:
            sizes.append(sum(t.size for t in a) if isinstance(a, tuple) else a.size)
    sizes.append(a.size)                                  # the sigmoid's output
    return int(sum(sizes))


def step_bytes(model, batch):
    """The least bytes a training step moves (see the module's docstring)."""
    item = np.dtype(model.dtype).itemsize
    params = sum(int(p.size) for p in model.params.values())
    acts = activation_numbers(model) * batch
    return item * (2 * acts + 2 * acts + 10 * params)


def gpu_peaks(policy):
    """(peak FLOP/s at the policy, peak bytes/s, a line saying where they came from) of the current GPU."""
    import cupy
    dev = cupy.cuda.Device()

    def attr(name, number):                 # cudaDevAttr<name>, whose number CUDA's headers fix
        try:
            return dev.attributes[name]
        except (KeyError, AttributeError):
            return cupy.cuda.runtime.deviceGetAttribute(number, dev.id)
    sms = attr("MultiProcessorCount", 16)
    clock = attr("ClockRate", 13) * 1e3                     # Hz (kHz given)
    mem_clock = attr("MemoryClockRate", 36) * 1e3           # Hz
    bus = attr("GlobalMemoryBusWidth", 37)                  # bits
    cc = dev.compute_capability
    per_sm = SM_FLOPS_PER_CLOCK.get((int(cc[:-1]), int(cc[-1])))
    flops = sms * clock * per_sm[policy] if per_sm else float("nan")
    bandwidth = 2 * mem_clock * bus / 8
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode()
    return flops, bandwidth, (f"{name}: {sms} SMs at {clock / 1e9:.2f} GHz, compute capability {cc}, "
                              f"{per_sm[policy] if per_sm else '?'} {policy} FLOP/clock/SM; "
                              f"memory {bus}-bit at {mem_clock / 1e9:.2f} GHz")


def measured_copy_bandwidth(xp, nbytes=1 << 30, repeats=5):
    """Bytes a second a copy of nbytes moves (read + written), the best of `repeats`."""
    a = xp.ones(nbytes // 4, dtype=np.float32)
    b = xp.empty_like(a)
    best = float("inf")
    for _ in range(repeats + 1):
        _sync(xp)
        t = time.perf_counter()
        xp.copyto(b, a)
        _sync(xp)
        best = min(best, time.perf_counter() - t)
    return 2 * a.nbytes / best


def measured_cpu_flops(n=2048, repeats=5):
    """FLOP/s of a float32 n×n product on every core (OpenBLAS), the best of `repeats`."""
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats + 1):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def _sync(xp):
    if xp is not np:
        xp.cuda.Device().synchronize()


def peaks(device, policy, xp):
    """(peak FLOP/s, bandwidth bytes/s, measured copy bandwidth, description) on device at policy."""
    copy = measured_copy_bandwidth(xp)
    if device == "gpu":
        flops, bandwidth, said = gpu_peaks("fp16" if policy == "fp16" else policy)
        return flops, bandwidth, copy, said
    flops = measured_cpu_flops()
    return flops, copy, copy, "CPU: a 2048² float32 product and a 1 GiB copy, measured"


def floor_seconds(flops, nbytes, peak_flops, bandwidth):
    """The roofline's floor for a step: the longer of its compute and its memory traffic at the peaks."""
    return max(flops / peak_flops, nbytes / bandwidth)
