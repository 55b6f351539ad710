"""The GPU path against the CPU: the kernels exactly, the layers and the VAE to rounding.

Every test here is marked gpu and skipped, with the reason, where CuPy or a GPU is missing.
(The finite-difference and learning tests elsewhere also run on the GPU, through the
`device` fixture.)
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae import Conv2D, ConvTranspose2D, Dense, VAE
from scratchvae.backend import to_numpy
from scratchvae.gradcheck import rel_error_each
from scratchvae.im2col import col2im, im2col
from scratchvae.layers import FastConv2D, FastConvTranspose2D
from scratchvae.optim import Adam
from shapes import conv_cases

pytestmark = pytest.mark.gpu


def cp():
    import cupy
    return cupy


@given(conv_cases(max_extra=12))
def test_im2col_gpu_equals_cpu_exactly(c):
    x = np.random.default_rng(0).normal(size=(c.n, c.cin, c.h, c.w))
    args = (c.kh, c.kw, c.sy, c.sx, c.ph, c.pw)
    np.testing.assert_array_equal(to_numpy(im2col(cp().asarray(x), *args)), im2col(x, *args))


@given(conv_cases(max_extra=12))
def test_col2im_gpu_equals_cpu_exactly(c):
    oh, ow = (c.h + 2 * c.ph - c.kh) // c.sy + 1, (c.w + 2 * c.pw - c.kw) // c.sx + 1
    col = np.random.default_rng(1).normal(size=(c.n, c.cin, c.kh, c.kw, oh, ow))
    args = (c.h, c.w, c.sy, c.sx, c.ph, c.pw)
    gpu = to_numpy(col2im(cp().asarray(col), *args))
    np.testing.assert_array_equal(gpu, col2im(col, *args))                     # same sums, same order
    np.testing.assert_array_equal(gpu, to_numpy(col2im(cp().asarray(col), *args)))   # run to run


# Compared element by element (rel_error_each: a wrong small entry cannot hide behind a large one, and it is
# never laxer than the largest difference over the largest magnitude at the same tolerance).
# float64: every entry to 1e-10 of itself, down to 1e-4 of the largest. float32: to 1e-4 of itself, down to
# 1e-3 of the largest in a layer and 1e-2 in the whole VAE (measured on the CPU, float32 against float64: at
# most 2.5e-5 for a layer at 1e-3, 2.9e-5 for the VAE's gradients at 1e-2; two roundings apart, still under)
LAYER_TOL = [(np.float64, 1e-10, 1e-4), (np.float32, 1e-4, 1e-3)]
VAE_TOL = [(np.float64, 1e-10, 1e-4), (np.float32, 1e-4, 1e-2)]


def _twins(make, dtype):
    """The same layer on both devices, with the CPU's weights copied to the GPU."""
    cpu, gpu = make(dtype, "cpu"), make(dtype, "gpu")
    for k in cpu.params:
        gpu.params[k][...] = cp().asarray(cpu.params[k])
    return cpu, gpu


LAYERS = {
    "conv": (lambda dt, dev: Conv2D(3, 5, (4, 3), (2, 1), (1, 2), dtype=dt, rng=0, device=dev), (4, 3, 17, 13)),
    "convT": (lambda dt, dev: ConvTranspose2D(5, 3, (6, 5), 2, 1, 1, dtype=dt, rng=0, device=dev), (4, 5, 7, 9)),
    "dense": (lambda dt, dev: Dense(20, 7, dtype=dt, rng=0, device=dev), (6, 20)),
    # the fast layers, each method of the transposed direction forced (the VAE's shapes pick among them)
    "fastconv-parity": (lambda dt, dev: FastConv2D(3, 5, (4, 3), (2, 1), (1, 2), dtype=dt, rng=0, device=dev,
                                                   method="parity"), (4, 3, 17, 13)),
    "fastconv-col2im": (lambda dt, dev: FastConv2D(3, 5, (4, 3), (2, 1), (1, 2), dtype=dt, rng=0, device=dev,
                                                   method="col2im"), (4, 3, 17, 13)),
    "fastconvT-parity": (lambda dt, dev: FastConvTranspose2D(5, 3, (6, 5), 2, 1, 1, dtype=dt, rng=0, device=dev,
                                                             method="parity"), (4, 5, 7, 9)),
    "fastconvT-col2im": (lambda dt, dev: FastConvTranspose2D(5, 3, (6, 5), 2, 1, 1, dtype=dt, rng=0, device=dev,
                                                             method="col2im"), (4, 5, 7, 9)),
    "fastconvT-dense": (lambda dt, dev: FastConvTranspose2D(6, 3, 5, 2, 0, 1, dtype=dt, rng=0, device=dev,
                                                            method="dense"), (4, 6, 1, 1)),
}


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("dtype, tol, floor", LAYER_TOL)
def test_layers_gpu_match_cpu(name, dtype, tol, floor):
    make, shape = LAYERS[name]
    cpu, gpu = _twins(make, dtype)
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape).astype(dtype)
    y = cpu.forward(x)
    assert rel_error_each(gpu.forward(cp().asarray(x)), y, floor) <= tol
    dy = rng.normal(size=y.shape).astype(dtype)
    assert rel_error_each(gpu.backward(cp().asarray(dy)), cpu.backward(dy), floor) <= tol
    for k in cpu.grads:
        assert rel_error_each(gpu.grads[k], cpu.grads[k], floor) <= tol, k


@pytest.mark.parametrize("dtype, tol, floor", VAE_TOL)
@pytest.mark.parametrize("shape", [(3, 64, 64), (3, 60, 80)])
@pytest.mark.parametrize("fast", [True, False])
def test_vae_gpu_matches_cpu(dtype, tol, floor, shape, fast):
    cpu = VAE(input_shape=shape, dtype=dtype, seed=4, kl_tolerance=0.1, fast=fast)
    gpu = VAE(input_shape=shape, dtype=dtype, seed=4, kl_tolerance=0.1, device="gpu", fast=fast)
    rng = np.random.default_rng(4)
    x = rng.random((6, *shape)).astype(dtype)
    eps = rng.normal(size=(6, 32)).astype(dtype)
    a, b = cpu.loss(x, eps), gpu.loss(cp().asarray(x), cp().asarray(eps))
    for k in a:
        assert rel_error_each(b[k], a[k], floor) <= tol, k
    cpu.backward()
    gpu.backward()
    g_cpu, g_gpu = cpu.grads, gpu.grads
    for k in g_cpu:
        assert rel_error_each(g_gpu[k], g_cpu[k], floor) <= tol, k


def test_adam_kernel_matches_cpu():
    rng = np.random.default_rng(5)
    p_cpu = {"w": rng.normal(size=(50, 7))}
    p_gpu = {"w": cp().asarray(p_cpu["w"])}
    a, b = Adam(p_cpu, lr=1e-2), Adam(p_gpu, lr=1e-2)
    for _ in range(5):
        g = rng.normal(size=(50, 7))
        a.step({"w": g})
        b.step({"w": cp().asarray(g)})
    assert rel_error_each(p_gpu["w"], p_cpu["w"], 1e-4) <= 1e-12
    assert rel_error_each(b.m["w"], a.m["w"], 1e-4) <= 1e-12
    assert rel_error_each(b.v["w"], a.v["w"], 1e-4) <= 1e-12


@given(st.integers(0, 1000))
def test_loss_stays_on_the_device(seed):
    m = VAE(input_shape=(3, 64, 64), seed=seed, device="gpu")
    out = m.loss(cp().random.random((2, 3, 64, 64), dtype=np.float32))
    assert all(type(v).__module__.startswith("cupy") and v.shape == () for v in out.values())


# ---- a training step never waits for the GPU ------------------------------------------------------------
SPIN = r"""
__device__ unsigned long long now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
extern "C" __global__ void spin(unsigned long long ns) {
    unsigned long long t0 = now();
    while (now() - t0 < ns) __nanosleep(1000);
}
"""


def busy_gpu(seconds):
    """Queue one kernel that keeps the GPU busy for `seconds`, and an event behind it; returns the event at
    once. event.done says, without waiting, whether the kernel has finished."""
    cp().RawKernel(SPIN, "spin")((1,), (1,), (np.uint64(seconds * 1e9),))
    done = cp().cuda.Event()
    done.record()
    return done


def test_a_training_step_never_waits_for_the_gpu(tmp_path):
    """Before step 2 the GPU is kept busy for 10 s by one queued kernel. Steps 2 and 3 (batch, loss,
    backward, Adam, the losses into their device-side buffer) must return while it still runs: any
    device-to-host copy (a float() of a loss, a NaN check, a .get()) or other synchronisation inside a step
    would wait for it to finish. The log row after step 3 reads the losses back, so the kernel must have
    finished when it returns: the probe sees a read where there is one. Whether the kernel still runs is
    asked of the GPU (an event behind it), not read off a clock, so a busy machine only makes it surer."""
    from runs import tiny_data
    from scratchvae.runfolder import RunSettings
    from scratchvae.train import Trainer
    t = Trainer(RunSettings(tiny_data(tmp_path / "eps"), str(tmp_path / "run"), steps=3, batch_size=8,
                            device="gpu", log_every=3, eval_every=100, checkpoint_every=100), progress=False)
    spin, finished = [], {}

    def probed(name, call):
        def wrapped():
            if name == "step" and t.step == 1:          # step 1 compiled the kernels and made cuBLAS's handle
                cp().cuda.Device().synchronize()
                spin.append(busy_gpu(10.0))
            out = call()
            finished[f"{name} {t.step}"] = spin[0].done if spin else None
            return out
        return wrapped
    t._step, t._log_row = probed("step", t._step), probed("row", t._log_row)
    t.run()
    assert finished["step 3"] is False, "the spinning kernel had finished when step 3 returned: a step waited for it"
    assert finished["row 3"] is True, "the log row returned before the spinning kernel finished: it read nothing"
