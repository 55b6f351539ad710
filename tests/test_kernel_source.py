"""The GPU kernels' own source text, compiled for the CPU and run by the GPU path's own callers.

An ElementwiseKernel body runs once per index i with its parameters in scope. Here the same
body runs in a C++ loop over i (one iteration per GPU thread), inside a function whose
signature is generated from the kernel's real parameter strings (cuda.KERNELS): a raw
parameter is a pointer, an array parameter or output the element i of one, a scalar a
value, in the order the strings give. A sum (a cuda.Sum, a ReductionKernel on the GPU) adds
its term over i in order. ``cpu_kernel`` stands in for cuda.compiled, so every ``*_gpu``
caller (im2col_gpu, col2im_gpu, the parity split's gpu steps, add_bias_rows_gpu,
relu_backward_gpu, recon_gpu, reparameterize_gpu, latent_backward_gpu, adam_gpu) runs as it
is, on NumPy arrays, and passes its arguments in the order it passes them to CuPy: a body
that does not match its parameter string, or a caller that does not match either, fails here
on every machine, GPU or not. CuPy's launch itself is tested by tests/test_gpu.py where a GPU
is there.
"""
import contextlib
import ctypes
import functools
from dataclasses import replace
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scratchvae.ops import cuda

from scratchvae.model import losses
from scratchvae.ops.elementwise import (add_bias_rows, add_bias_rows_gpu, relu_backward_gpu, relu_backward_inplace_cpu,
                                         relu_backward_inplace_gpu, relu_inplace_cpu, relu_inplace_gpu, row_sums,
                                         row_sums_gpu)
from scratchvae.ops.im2col import col2im_cpu, col2im_gpu, im2col_cpu, im2col_gpu
from scratchvae.ops.adam import adam_cpu, adam_gpu
from scratchvae.ops.devices import DEVICE_TABLE
from scratchvae.ops.parity import conv_transpose_parity
from scratchvae.ops.sizes import conv_out_size as out_size
from shapes import conv_cases, conv_transpose_cases

CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler to build the kernel source for the CPU")
C_TYPES = {np.dtype(np.float64): ("double", ctypes.c_double), np.dtype(np.float32): ("float", ctypes.c_float)}


def declarations(params):
    """[(raw, type, name)] of an ElementwiseKernel parameter string, e.g. 'raw T img, int32 n'."""
    out = []
    for decl in params.split(","):
        words = decl.split()
        out.append((words[0] == "raw", words[-2], words[-1]))
    return out


PRELUDE = "#include <algorithm>\n#include <cmath>\n#include <cstddef>\nusing namespace std;\n#define __device__\n"


def harness(name, arrays, t):
    """C++ source of kernel `name` as a loop over i, for the given array-ness of each input parameter
    and T = t. Inputs are read-only, as CuPy declares them: a raw one a const pointer, an array one the
    const element i of one; outputs are writable: a raw one a pointer, an array one its element i."""
    k = cuda.KERNELS[name]
    if isinstance(k, cuda.Sum):
        params, output, term = k.params, k.outputs, k.body
        c_args = [f"const {typ}* {var}_" for _, typ, var in declarations(params)]
        per_i = [f"const {typ}& {var} = {var}_[i];" for _, typ, var in declarations(params)]
        total = declarations(output)[0][2]
        return (f"{PRELUDE}typedef {t} T;\n"
                f"extern \"C\" void {name}({', '.join(c_args)}, T* {total}, std::ptrdiff_t _threads) {{\n"
                f"    T a = 0;\n    for (std::ptrdiff_t i = 0; i < _threads; ++i) {{ {' '.join(per_i)}\n"
                f"        a = a + ({term});\n    }}\n    *{total} = a;\n}}\n")
    params, outputs, body = k.params, k.outputs, k.body
    c_args, per_i = [], []
    for (raw, typ, var), is_array in zip(declarations(params), arrays):
        ctype = "int" if typ == "int32" else typ
        if raw:
            c_args.append(f"const {ctype}* {var}")
        elif is_array:
            c_args.append(f"const {ctype}* {var}_")
            per_i.append(f"const {ctype}& {var} = {var}_[i];")
        else:
            c_args.append(f"{ctype} {var}")
    for raw, typ, var in declarations(outputs):
        c_args.append(f"{typ}* {var}" if raw else f"{typ}* {var}_")
        if not raw:
            per_i.append(f"{typ}& {var} = {var}_[i];")
    return (f"{PRELUDE}{cuda.PREAMBLE}typedef {t} T;\n"
            f"extern \"C\" void {name}({', '.join(c_args)}, std::ptrdiff_t _threads) {{\n"
            f"    for (std::ptrdiff_t i = 0; i < _threads; ++i) {{ {' '.join(per_i)}\n{body}\n    }}\n}}\n")


@functools.lru_cache(maxsize=None)
def compiled(name, arrays, dtype):
    """The kernel's loop compiled to a shared library (once per signature), as a ctypes function."""
    t = C_TYPES[np.dtype(dtype)][0]
    d = tempfile.mkdtemp(prefix="kernel-")
    src, so = os.path.join(d, f"{name}.cpp"), os.path.join(d, f"{name}.so")
    with open(src, "w") as f:
        f.write(harness(name, arrays, t))
    # -ffp-contract=off: no fused multiply-adds, as for additions on the GPU
    subprocess.run([CXX, "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", so, src], check=True)
    return getattr(ctypes.CDLL(so), name)


def cpu_kernel(kernel):
    """cuda.compiled's stand-in: a callable taking the kernel's arguments as CuPy does (inputs, then outputs;
    a sum takes its inputs and returns a 0-d array), running the body once per element of the outputs."""
    name = kernel.name
    if isinstance(kernel, cuda.Sum):
        n_in = len(declarations(kernel.params))

        def total(*ins, axis=None):
            """The sum over everything, or (axis=1) over each row of 2-d inputs."""
            assert len(ins) == n_in, f"{name}: {len(ins)} arguments"
            dtype, shape = ins[0].dtype, ins[0].shape
            for a in ins:
                assert a.dtype == dtype and a.flags.c_contiguous and a.shape == shape, f"{name}: {a.dtype} {a.shape}"
            assert axis in (None, 1) and (axis is None or len(shape) == 2), f"{name}: axis {axis} of {shape}"
            rows = [tuple(a.reshape(-1) for a in ins)] if axis is None else [tuple(a[r] for a in ins)
                                                                              for r in range(shape[0])]
            out = np.zeros(len(rows) if axis == 1 else (), dtype=dtype)
            for r, row in enumerate(rows):
                one = np.zeros((), dtype=dtype)
                compiled(name, (True,) * n_in, dtype)(*(a.ctypes.data_as(ctypes.c_void_p) for a in row),
                                                       one.ctypes.data_as(ctypes.c_void_p), ctypes.c_ssize_t(row[0].size))
                out[r if axis == 1 else ()] = one
            return out
        return total
    n_in = len(declarations(kernel.params))

    def launch(*args, size=None):
        ins, outs = args[:n_in], args[n_in:]
        assert len(outs) == len(declarations(kernel.outputs)), f"{name}: {len(args)} arguments"
        dtype = outs[0].dtype
        types = [d[1] for d in declarations(kernel.params) + declarations(kernel.outputs)]
        for a, typ in zip((*ins, *outs), types):
            if isinstance(a, np.ndarray):
                want = np.dtype(bool) if typ == "bool" else dtype
                assert a.dtype == want and a.flags.c_contiguous, \
                    f"{name}: a {a.dtype} array for {typ}, contiguous: {a.flags.c_contiguous}"
        raw_out = [d[0] for d in declarations(kernel.outputs)]
        if size is not None:                                    # CuPy's rule: with size, every array is raw
            assert all(raw_out) and all(d[0] for d, a in zip(declarations(kernel.params), ins)
                                        if isinstance(a, np.ndarray)), f"{name}: size= with a non-raw array"
        else:
            size = outs[0].size                                 # the first output sets the threads
            assert all(o.size == size for o, raw in zip(outs, raw_out) if not raw), \
                f"{name}: outputs of sizes {[o.size for o in outs]}"
        arrays = tuple(isinstance(a, np.ndarray) for a in ins)
        f = compiled(name, arrays, dtype)
        scalar = C_TYPES[dtype][1]
        c_args = []
        for (raw, typ, _), a in zip(declarations(kernel.params), ins):
            if isinstance(a, np.ndarray):
                assert raw or a.size == size, f"{name}: an array input of {a.size} numbers for {size} threads"
                c_args.append(a.ctypes.data_as(ctypes.c_void_p))
            else:
                assert typ != "int32" or isinstance(a, (int, np.integer)), f"{name}: {a!r} for an int32"
                assert typ != "bool", f"{name}: a scalar bool is not used"
                c_args.append(ctypes.c_int(a) if typ == "int32" else scalar(a))
        f(*c_args, *(o.ctypes.data_as(ctypes.c_void_p) for o in outs), ctypes.c_ssize_t(size))
    return launch


@pytest.fixture
def kernels_on_the_cpu(monkeypatch):
    monkeypatch.setattr(cuda, "compiled", cpu_kernel)


def test_the_harness_follows_the_parameter_string():
    src = harness("im2col", (True,) + (False,) * 13, "double")
    assert "const T* img, int nimg, int nch" in src and "int vec, T* col," in src and "#define VEC_MAX" in src
    src = harness("adam", (True,) * 2 + (False,) * 5, "float")
    assert "typedef float T;" in src and "const T* g_, const T* scalars, T b1" in src and "T& v = v_[i];" in src
    src = harness("reparam", (True, True, True, False), "float")
    assert "const T* eps, int dim, T* kl_, T* std, T* z" in src      # raw outputs: writable pointers
    src = harness("mse_sum", (True, True), "float")
    assert "const T* l_, const T* x_, T* total" in src and "a = a + (" in src


# batches of 4 and 8 have the kernels copy 4 neighbouring images per thread, 2 and 6 two, the others one
batches = st.sampled_from([1, 2, 3, 4, 6, 8])


@given(conv_cases(max_extra=10), batches)
def test_im2col_kernel_source(kernels_on_the_cpu, c, batch):
    c = replace(c, n=batch)
    x = np.random.default_rng(0).normal(size=(c.n, c.cin, c.h, c.w))
    shape = (c.cin, c.kh, c.kw, out_size(c.h, c.kh, c.sy, c.ph), out_size(c.w, c.kw, c.sx, c.pw), c.n)
    want, got = np.full(shape, np.nan), np.full(shape, np.nan)   # every number must be written
    im2col_cpu(x, c.kh, c.kw, c.sy, c.sx, c.ph, c.pw, want)
    im2col_gpu(x, c.kh, c.kw, c.sy, c.sx, c.ph, c.pw, got)
    np.testing.assert_array_equal(got, want)


@given(conv_cases(max_extra=10), st.booleans(), batches)
def test_col2im_kernel_source(kernels_on_the_cpu, c, with_bias, batch):
    c = replace(c, n=batch)
    oh, ow = out_size(c.h, c.kh, c.sy, c.ph), out_size(c.w, c.kw, c.sx, c.pw)
    rng = np.random.default_rng(1)
    stored = rng.normal(size=(c.cin, c.kh, c.kw, oh, ow, c.n))   # (C, kh, kw, oh, ow, N)
    bias = rng.normal(size=c.cin) if with_bias else None
    got = col2im_gpu(stored, c.h, c.w, c.sy, c.sx, c.ph, c.pw, bias)
    # exactly the CPU's sums: the kernel adds in the same order, the bias last
    np.testing.assert_array_equal(got, col2im_cpu(stored, c.h, c.w, c.sy, c.sx, c.ph, c.pw, bias))


@given(conv_transpose_cases(max_extra=5), st.booleans(), batches)
def test_parity_kernels_source(kernels_on_the_cpu, c, with_bias, batch):
    """The GPU's parity split (im2col with stride 1 and padding −first, phase_weights, interleave) against the
    CPU's loops, every output pixel written (the output starts as NaN on the GPU path's own allocation)."""
    c = replace(c, n=batch)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(c.n, c.cin, c.h, c.w))
    W = rng.normal(size=(c.cin, c.cout, c.kh, c.kw))
    bias = rng.normal(size=c.cout) if with_bias else None
    args = (c.sy, c.sx, c.ph, c.pw, c.opy, c.opx)
    want = conv_transpose_parity(x, W, *args, bias=bias)
    with gpu_steps_on_numpy("gather_windows", "phase_weights", "interleave"):
        got = conv_transpose_parity(x, W, *args, bias=bias)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)   # the same products, the same sums


@contextlib.contextmanager
def gpu_steps_on_numpy(*names):
    """The device table's GPU functions for these operations, run on NumPy arrays (the kernels stood in for)."""
    cpu, gpu = DEVICE_TABLE["cpu"].ops, DEVICE_TABLE["gpu"].ops
    kept = {n: cpu[n] for n in names}
    cpu.update({n: gpu[n] for n in names})
    try:
        yield
    finally:
        cpu.update(kept)


def aligned(shape, dtype, rng, offset=0):
    """Random numbers of shape in a fresh array starting at a multiple of 64 bytes (plus offset numbers)."""
    size = int(np.prod(shape))
    raw = np.empty(size + offset + 64, dtype=dtype)
    start = (-raw.ctypes.data % 64) // raw.itemsize + offset
    out = raw[start:start + size].reshape(shape)
    out[...] = rng.normal(size=shape)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_four_images_per_thread_move_as_one_access(kernels_on_the_cpu, dtype):
    """With a batch of 8 and aligned arrays the kernels take the one-access path (vec 4); one number off the
    alignment, the same call takes four accesses (vec 2 here): the same numbers either way."""
    from scratchvae.ops.cuda import vec_for
    rng = np.random.default_rng(9)
    c = 3
    for offset, want_vec in ((0, 4), (1, 2)):
        x = aligned((2, 9, 7, 8), dtype, rng, offset).transpose(3, 0, 1, 2)      # (N, C, H, W) stored (C, H, W, N)
        col = aligned((2, 3, 4, 4, 3, 8), dtype, rng, offset)                       # (C, kh, kw, oh, ow, N)
        assert vec_for(8, np.ascontiguousarray(x.transpose(1, 2, 3, 0)), col) == want_vec
        want = np.empty_like(col)
        im2col_cpu(x, 3, 4, 2, 2, 0, 1, want)
        im2col_gpu(x, 3, 4, 2, 2, 0, 1, col)
        np.testing.assert_array_equal(col, want)
        stored = aligned((c, 3, 4, 4, 3, 8), dtype, rng, offset)
        np.testing.assert_array_equal(col2im_gpu(stored, 9, 7, 2, 2, 0, 1, np.arange(c, dtype=dtype)),
                                      col2im_cpu(stored, 9, 7, 2, 2, 0, 1, np.arange(c, dtype=dtype)))


@given(st.integers(1, 5), st.integers(1, 40))
def test_bias_rows_and_row_sums_source(kernels_on_the_cpu, c, length):
    rng = np.random.default_rng(3)
    m, b = rng.normal(size=(c, length)), rng.normal(size=c)
    want = add_bias_rows(m.copy(), b)
    np.testing.assert_array_equal(add_bias_rows_gpu(m.copy(), b), want)
    np.testing.assert_allclose(row_sums_gpu(m, np.empty(c)), row_sums(m, np.empty(c)), rtol=1e-13, atol=1e-13)


def test_relu_backward_source_reads_the_outputs_sign(kernels_on_the_cpu):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 3, 4, 2)).transpose(3, 0, 1, 2)      # (N, C, H, W) views of (C, H, W, N) storage
    x.flat[::7] = 0                                              # the kink: no gradient at 0
    y = np.maximum(x, 0)
    y = np.ascontiguousarray(y.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    dy = np.ascontiguousarray(rng.normal(size=x.shape).transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
    want = dy * (x > 0)
    assert relu_backward_gpu(dy, y)
    np.testing.assert_array_equal(dy, want)
    assert not relu_backward_gpu(np.zeros((2, 3, 4, 5)), y)     # laid out otherwise: refused, for the caller


def test_the_in_place_relu_of_the_gpu_keeps_its_output_as_the_mask(kernels_on_the_cpu):
    """The GPU's in-place ReLU (y over x, y kept in place of a mask) and its backward, on NumPy arrays as they
    lie in the layers (batch last), against the CPU's (a mask kept)."""
    rng = np.random.default_rng(8)
    x = np.ascontiguousarray(rng.normal(size=(3, 4, 2, 5))).transpose(3, 0, 1, 2)   # (N, C, H, W) view, stored batch-last
    x.flat[::5] = 0
    dy = np.ascontiguousarray(rng.normal(size=(3, 4, 2, 5))).transpose(3, 0, 1, 2)
    want_y, mask = relu_inplace_cpu(x.copy(order="K"))
    want_dx = relu_backward_inplace_cpu(dy.copy(order="K"), mask)
    y, kept = relu_inplace_gpu(x)
    assert y is x and kept is x                                  # written over x, and x (now y) kept
    np.testing.assert_array_equal(y, want_y)
    dx = relu_backward_inplace_gpu(dy, kept)
    assert dx is dy
    np.testing.assert_array_equal(dx, want_dx)


@pytest.mark.parametrize("kind", ["mse", "bernoulli"])
def test_loss_kernels_source(kernels_on_the_cpu, kind):
    rng = np.random.default_rng(5)
    stored = (1, 2, 3, 0)
    logits = np.ascontiguousarray(rng.normal(scale=4, size=(6, 3, 5, 4)).transpose(stored)).transpose(3, 0, 1, 2)
    x = np.ascontiguousarray(rng.uniform(size=logits.shape).transpose(stored)).transpose(3, 0, 1, 2)
    want_value, want_grad = (losses.mse_from_logits if kind == "mse" else losses.bernoulli_recon)(logits, x)
    value, grad = losses.recon_gpu(kind, logits.copy(order="K"), x, (2.0 if kind == "mse" else 1.0) / 6)
    np.testing.assert_allclose(value, want_value, rtol=1e-13)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-13, atol=1e-16)


def test_latent_kernels_source(kernels_on_the_cpu):
    rng = np.random.default_rng(6)
    mu, logvar, eps, dz = (rng.normal(size=(7, 5)) for _ in range(4))
    want = losses.reparameterize(mu, logvar, eps)
    got = losses.reparameterize_gpu(mu, logvar, eps)
    for name, a, b in zip(("z", "std", "kl"), got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, err_msg=name)
    active = np.arange(7) % 3 != 0
    want = losses.latent_backward(dz, mu, logvar, eps, want[1], active, 0.3)
    got = losses.latent_backward_gpu(dz, mu, logvar, eps, got[1], active, 0.3)
    for name, a, b in zip(("dmu", "dlogvar"), got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, err_msg=name)


@pytest.mark.parametrize("kl_values", [[3.0, 0.5, 9.0, 0.5, 2.0], [3.0, np.nan, 1.0, 0.2, 5.0]])
def test_loss_terms_kernel_source(kernels_on_the_cpu, kl_values):
    kl = np.array(kl_values)
    recon = np.array(123.25)
    want, want_active = losses.loss_terms(recon, kl, 0.5, 0.7)
    got, active = losses.loss_terms_gpu(recon, kl, 0.5, 0.7)
    np.testing.assert_array_equal(active, want_active)      # exactly 0.5 is not above the floor
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-15, err_msg=k)   # NaN where NumPy has NaN


def test_adam_kernel_source(kernels_on_the_cpu):
    rng = np.random.default_rng(2)
    n = 1000
    p, g = rng.normal(size=n), rng.normal(size=n)
    m, v = 0.1 * rng.normal(size=n), rng.uniform(0, 0.01, size=n)   # moments from earlier steps
    cpu = [a.copy() for a in (p, m, v)]
    b1, b2, t, lr, eps = 0.9, 0.999, 3, 1e-2, 1e-8
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    adam_cpu(cpu[0], g, cpu[1], cpu[2], (lr, c1, c2), b1, b2, eps)
    adam_gpu(p, g, m, v, np.array([lr, c1, c2]), b1, b2, eps)
    # the same operations in the same order, 1 − β taken in double and rounded to T as NumPy does: equal
    for name, want, got in zip("pmv", cpu, (p, m, v)):
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_adam_kernel_source_in_float32(kernels_on_the_cpu):
    rng = np.random.default_rng(7)
    p, g = rng.normal(size=500).astype(np.float32), rng.normal(size=500).astype(np.float32)
    m, v = np.zeros(500, np.float32), np.zeros(500, np.float32)
    cpu = [a.copy() for a in (p, m, v)]
    b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    adam_cpu(cpu[0], g, cpu[1], cpu[2], (lr, 1 - b1, 1 - b2), b1, b2, eps)
    adam_gpu(p, g, m, v, np.array([lr, 1 - b1, 1 - b2], np.float32), b1, b2, eps)
    for name, want, got in zip("pmv", cpu, (p, m, v)):
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_a_caller_that_passes_one_argument_too_few_fails(kernels_on_the_cpu):
    with pytest.raises(AssertionError, match="arguments"):
        cuda.KERNELS["adam"](np.zeros(3), np.zeros(3), 1.0, 1.0, 1.0, 1.0, np.zeros(3), np.zeros(3), np.zeros(3))


def test_sizes_past_32_bit_indexing_are_refused(monkeypatch):
    """check_size, and every launch of a cuda.Kernel (CuPy stood in for: the check comes before it)."""
    import sys
    import types

    class Huge:
        size, shape = 2 ** 31, (2 ** 31,)
    with pytest.raises(ValueError, match=r"im2col: an array of 2,147,483,648 numbers .* past the 2³¹ − 1"):
        cuda.check_size("im2col", np.zeros(3), Huge())
    ran = []
    fake = types.SimpleNamespace(ElementwiseKernel=lambda *a, **k: lambda *args, **kw: ran.append(args),
                                 ReductionKernel=lambda *a, **k: lambda *args, **kw: ran.append(args))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    cuda.compiled.cache_clear()
    try:
        for name in ("col2im", "mse_sum"):
            cuda.KERNELS[name](np.zeros(3), 5, np.zeros(2))
            with pytest.raises(ValueError, match=rf"{name}: an array of 2,147,483,648 numbers"):
                cuda.KERNELS[name](np.zeros(3), 5, Huge())
    finally:
        cuda.compiled.cache_clear()
    assert len(ran) == 2                                        # the refused launches never reached the kernel
