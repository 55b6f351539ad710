"""The GPU path against the CPU: the kernels exactly, the layers and the VAE to rounding.

Every test here is marked gpu and skipped, with the reason, where CuPy or a GPU is missing.
(The finite-difference and learning tests elsewhere also run on the GPU, through the
`device` fixture.)
"""
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae import Conv2D, ConvTranspose2D, Dense, VAE
from scratchvae.ops.devices import to_numpy
from scratchvae.check.gradcheck import rel_error_each
from scratchvae.ops.im2col import col2im, im2col
from scratchvae.model.layers import FastConv2D, FastConvTranspose2D
from scratchvae.model.optim import Adam
from shapes import conv_cases, conv_transpose_cases

pytestmark = pytest.mark.gpu


def cp():
    import cupy
    return cupy


batches = st.sampled_from([1, 2, 3, 4, 6, 8])     # 4 and 8: four neighbouring images per thread; 2, 6: two


@given(conv_cases(max_extra=12), batches)
def test_im2col_gpu_equals_cpu_exactly(c, batch):
    c = replace(c, n=batch)
    x = np.random.default_rng(0).normal(size=(c.n, c.cin, c.h, c.w))
    args = (c.kh, c.kw, c.sy, c.sx, c.ph, c.pw)
    np.testing.assert_array_equal(to_numpy(im2col(cp().asarray(x), *args)), im2col(x, *args))


@given(conv_cases(max_extra=12), batches)
def test_col2im_gpu_equals_cpu_exactly(c, batch):
    c = replace(c, n=batch)
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
    from scratchvae.run.runfolder import RunSettings
    from scratchvae.run.trainer import Trainer
    t = Trainer(RunSettings(tiny_data(tmp_path / "eps"), str(tmp_path / "run"), steps=3, batch_size=8,
                            device="gpu", log_every=3, eval_every=100, checkpoint_every=100), progress=False)
    spin, finished = [], {}

    def probed(name, call):
        def wrapped():
            if name == "step" and t.step == 1:          # step 1 compiled the kernels, made cuBLAS's handle and
                #                                           recorded the step as a CUDA graph (run/step.py)
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


# ---- the fused kernels, each against its CPU sibling, element by element ---------------------------------
def _stored(a):
    """a (N, C, H, W) as the layers keep images: stored (C, H, W, N), seen NCHW."""
    return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


def _to_gpu_stored(a):
    return cp().ascontiguousarray(cp().asarray(a).transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)


@pytest.mark.parametrize("dtype, tol, floor", LAYER_TOL)
@given(conv_transpose_cases(max_extra=6), st.booleans(), batches)
def test_parity_split_gpu_matches_cpu(dtype, tol, floor, c, with_bias, batch):
    from scratchvae.ops.parity import conv_transpose_parity
    c = replace(c, n=batch)
    rng = np.random.default_rng(8)
    x = _stored(rng.normal(size=(c.n, c.cin, c.h, c.w)).astype(dtype))
    W = rng.normal(size=(c.cin, c.cout, c.kh, c.kw)).astype(dtype)
    b = rng.normal(size=c.cout).astype(dtype) if with_bias else None
    args = (c.sy, c.sx, c.ph, c.pw, c.opy, c.opx)
    want = conv_transpose_parity(x, W, *args, bias=b)
    got = conv_transpose_parity(cp().asarray(x), cp().asarray(W), *args, bias=None if b is None else cp().asarray(b))
    assert rel_error_each(got, want, floor) <= tol


@pytest.mark.parametrize("dtype, tol, floor", LAYER_TOL)
@pytest.mark.parametrize("kind", ["mse", "bernoulli"])
def test_loss_kernels_match_cpu(dtype, tol, floor, kind):
    from scratchvae.model import losses
    rng = np.random.default_rng(9)
    logits = _stored(rng.normal(scale=3, size=(7, 3, 9, 5)).astype(dtype))
    x = _stored(rng.uniform(size=logits.shape).astype(dtype))
    f = losses.mse_from_logits if kind == "mse" else losses.bernoulli_recon
    want_value, want_grad = f(logits, x)
    value, grad = f(_to_gpu_stored(logits), _to_gpu_stored(x))
    assert rel_error_each(value, want_value, floor) <= tol and rel_error_each(grad, want_grad, floor) <= tol


@pytest.mark.parametrize("dtype, tol, floor", LAYER_TOL)
def test_latent_kernels_match_cpu(dtype, tol, floor):
    from scratchvae.model import losses
    rng = np.random.default_rng(10)
    mu, logvar, eps, dz = (rng.normal(size=(9, 6)).astype(dtype) for _ in range(4))
    want = losses.reparameterize(mu, logvar, eps)
    got = losses.reparameterize(*(cp().asarray(a) for a in (mu, logvar, eps)))
    for a, b in zip(got, want):
        assert rel_error_each(a, b, floor) <= tol
    active = np.arange(9) % 2 == 0
    want = losses.latent_backward(dz, mu, logvar, eps, want[1], active, 0.25)
    got = losses.latent_backward(*(cp().asarray(a) for a in (dz, mu, logvar, eps)), got[1], cp().asarray(active), 0.25)
    for a, b in zip(got, want):
        assert rel_error_each(a, b, floor) <= tol


@pytest.mark.parametrize("dtype, tol, floor", LAYER_TOL)
def test_loss_terms_match_cpu(dtype, tol, floor):
    from scratchvae.model import losses
    kl = np.random.default_rng(14).uniform(0, 30, size=1000).astype(dtype)
    kl[::7] = 16.0                                          # exactly at the floor: not above it
    recon = np.array(812.5, dtype=dtype)
    want, want_active = losses.loss_terms(recon, kl, 16.0, 0.5)
    got, active = losses.loss_terms(cp().asarray(recon), cp().asarray(kl), 16.0, 0.5)
    np.testing.assert_array_equal(to_numpy(active), want_active)
    for k in want:
        assert rel_error_each(got[k], want[k], floor) <= tol, k


@pytest.mark.parametrize("dtype, tol, floor", LAYER_TOL)
def test_relu_bias_and_row_sums_match_cpu(dtype, tol, floor):
    from scratchvae.ops.elementwise import add_bias_rows, row_sums
    from scratchvae.model.layers import ReLU
    rng = np.random.default_rng(11)
    m, b = rng.normal(size=(6, 500)).astype(dtype), rng.normal(size=6).astype(dtype)
    np.testing.assert_array_equal(to_numpy(add_bias_rows(cp().asarray(m), cp().asarray(b))), add_bias_rows(m.copy(), b))
    assert rel_error_each(row_sums(cp().asarray(m), cp().empty(6, dtype)), row_sums(m, np.empty(6, dtype)), floor) <= tol
    x = _stored(rng.normal(size=(5, 4, 3, 7)).astype(dtype))
    dy = _stored(rng.normal(size=x.shape).astype(dtype))
    cpu, gpu = ReLU(dtype, "cpu", inplace=True), ReLU(dtype, "gpu", inplace=True)
    y_gpu = gpu.forward(_to_gpu_stored(x))
    np.testing.assert_array_equal(to_numpy(y_gpu), cpu.forward(x.copy(order="K")))
    np.testing.assert_array_equal(to_numpy(gpu.backward(_to_gpu_stored(dy))), cpu.backward(dy.copy(order="K")))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(st.integers(1, 70), st.integers(1, 70), st.integers(1, 70), st.sampled_from("CF"), st.sampled_from("CF"),
       st.sampled_from("CF"), st.booleans())
def test_blas_matmul_every_layout(dtype, m, k, n, la, lb, lo, accumulate):
    """cuBLAS through blas.matmul, each operand and the output C-contiguous or transposed, against NumPy."""
    from scratchvae.ops import blas
    rng = np.random.default_rng(m * 10000 + k * 100 + n)

    def make(r, c, layout):
        a = rng.normal(size=(r, c) if layout == "C" else (c, r)).astype(dtype)
        return a if layout == "C" else a.T
    a, b, out = make(m, k, la), make(k, n, lb), make(m, n, lo)
    a64, b64, out64 = (v.astype(np.float64) for v in (a, b, out))
    want = out64 + a64 @ b64 if accumulate else a64 @ b64
    got = cp().asarray(out.T).T if lo == "F" else cp().asarray(out)
    blas.matmul(cp().asarray(a.T).T if la == "F" else cp().asarray(a),
                cp().asarray(b.T).T if lb == "F" else cp().asarray(b), out=got, accumulate=accumulate)
    # each entry within the rounding bound of a sum of k + 1 products, (k + 2)·u·Σ|terms| (u: the unit
    # roundoff); a wrong layout is off by the size of the terms themselves
    u = np.finfo(dtype).eps / 2
    bound = (k + 2) * u * (np.abs(a64) @ np.abs(b64) + (np.abs(out64) if accumulate else 0))
    assert (np.abs(to_numpy(got) - want) <= bound).all()


def test_tf32_switch_changes_float32_products_only():
    from scratchvae.ops import blas
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(256, 512)), rng.normal(size=(512, 256))
    want = a @ b
    errors = {}
    try:
        for on in (False, True):
            blas.set_tf32(on)
            errors[on] = rel_error_each(blas.matmul(cp().asarray(a, np.float32), cp().asarray(b, np.float32)), want, 1e-2)
            errors[on, "f64"] = rel_error_each(blas.matmul(cp().asarray(a), cp().asarray(b)), want, 1e-2)
    finally:
        blas.set_tf32(False)
    assert errors[False] < 1e-4 < errors[True] < 1e-1          # TF32 keeps a 10-bit mantissa
    assert errors[False, "f64"] < 1e-12 and errors[True, "f64"] < 1e-12


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_recorded_step_equals_the_step_launched_kernel_by_kernel(dtype):
    """Six steps through CapturedStep (one plain and then recorded, five replays) and six plain
    steps, from the same weights and noise: the same parameters, moments and losses, bit for bit."""
    from scratchvae.run.step import CapturedStep
    rng = np.random.default_rng(13)
    batches = [cp().asarray(rng.random((5, 3, 64, 64)).astype(dtype)) for _ in range(6)]
    runs = []
    for recorded in (False, True):
        m = VAE(dtype=dtype, seed=3, device="gpu")
        opt = Adam(m.params, lr=1e-3)
        step = CapturedStep(m, opt)
        losses = []
        for x in batches:
            if recorded:
                out = step(x)
            else:
                out = m.loss(x)
                m.backward()
                opt.step(m.grads)
            losses.append(to_numpy(cp().stack([out[k] for k in ("loss", "recon", "kl", "kl_raw")])))
        runs.append((to_numpy(m.flat_params), to_numpy(opt.flat_m), to_numpy(opt.flat_v), np.array(losses)))
        if recorded:
            assert step.graph is not None and step.failed is None
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_adam_updates_a_vae_in_one_launch():
    m = VAE(seed=1, device="gpu")
    opt = Adam(m.params, lr=1e-3)
    assert opt.flat is m.flat_params and opt.step_scalars is not None
    calls = []
    from scratchvae.ops.devices import DEVICE_TABLE
    gpu = DEVICE_TABLE["gpu"].ops
    real = gpu["adam"]
    gpu["adam"] = lambda *a: (calls.append(a[0].size), real(*a))
    try:
        m.loss(cp().random.random((2, 3, 64, 64), dtype=np.float32))
        m.backward()
        opt.step(m.grads)
    finally:
        gpu["adam"] = real
    assert calls == [m.num_params()]


@given(st.integers(1, 70), st.integers(1, 70), st.integers(1, 70), st.sampled_from("CF"), st.sampled_from("CF"),
       st.sampled_from("CF"), st.booleans())
def test_half_products_on_the_gpu_are_the_cpus(m, k, n, la, lb, lo, accumulate):
    """float16 through cublasGemmEx (32-bit compute) against matmul_half_cpu (float32 sums, one rounding): the
    float32 sums may differ in order, so each entry within one float16 rounding of the CPU's plus the float32
    sums' bound (k + 2)·u₃₂·Σ|terms|."""
    from scratchvae.ops import blas
    rng = np.random.default_rng(m * 10000 + k * 100 + n)

    def make(r, c, layout):
        a = rng.normal(size=(r, c) if layout == "C" else (c, r)).astype(np.float16)
        return a if layout == "C" else a.T
    a, b, out = make(m, k, la), make(k, n, lb), make(m, n, lo)
    want = blas.matmul_half_cpu(a, b, out=out.copy(), accumulate=accumulate).astype(np.float64)
    got = cp().asarray(out.T).T if lo == "F" else cp().asarray(out)
    blas.matmul(cp().asarray(a.T).T if la == "F" else cp().asarray(a),
                cp().asarray(b.T).T if lb == "F" else cp().asarray(b), out=got, accumulate=accumulate)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    terms = np.abs(a64) @ np.abs(b64) + (np.abs(out.astype(np.float64)) if accumulate else 0)
    bound = np.finfo(np.float16).eps * np.abs(want) + (k + 2) * np.finfo(np.float32).eps / 2 * terms
    assert (np.abs(to_numpy(got).astype(np.float64) - want) <= bound).all()


def test_a_mixed_vae_on_the_gpu_matches_the_cpu():
    """The same mixed-precision model on both devices: the loss to float32's rounding of float16 logits, the
    gradients element by element to 1e-2 of themselves down to 5e-2 of the largest (float16 keeps 11 bits; on
    the CPU a mixed model's gradients are within 5% of its float32 twin's in norm: tests/test_precision.py)."""
    cpu = VAE(seed=4, kl_tolerance=0.1, compute_dtype=np.float16)
    gpu = VAE(seed=4, kl_tolerance=0.1, compute_dtype=np.float16, device="gpu")
    cpu.scaler.scale = gpu.scaler.scale = 2 ** 10
    rng = np.random.default_rng(4)
    x = rng.random((6, 3, 64, 64)).astype(np.float32)
    eps = rng.normal(size=(6, 32)).astype(np.float32)
    a, b = cpu.loss(x, eps), gpu.loss(cp().asarray(x), cp().asarray(eps))
    for k in a:
        assert rel_error_each(b[k], a[k], 1e-3) <= 1e-3, k
    cpu.backward()
    gpu.backward()
    for k in cpu.grads:
        assert rel_error_each(gpu.grads[k], cpu.grads[k], 5e-2) <= 1e-2, k


def test_a_mixed_training_step_on_the_gpu_skips_an_overflow():
    from scratchvae.run.step import train_step
    model = VAE(seed=0, compute_dtype=np.float16, device="gpu")
    model.scaler.scale = 2 ** 24
    opt = Adam(model.params)
    x = cp().asarray(np.random.default_rng(0).random((8, 3, 64, 64)).astype(np.float32))
    before = to_numpy(model.flat_params)
    train_step(model, opt, x)
    assert opt.t == 0 and model.scaler.scale == 2 ** 23
    np.testing.assert_array_equal(to_numpy(model.flat_params), before)
    model.scaler.scale = 2 ** 10
    train_step(model, opt, x)
    assert opt.t == 1
    np.testing.assert_array_equal(to_numpy(model.flat_compute), to_numpy(model.flat_params).astype(np.float16))
