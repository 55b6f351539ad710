"""The GPU kernels' own source text, compiled for the CPU and run by the GPU path's own callers.

An ElementwiseKernel body runs once per index i with its parameters in scope. Here the same
body runs in a C++ loop over i (one iteration per GPU thread), inside a function whose
signature is generated from the kernel's real parameter strings (cuda.KERNELS): a raw
parameter is a pointer, an array parameter or output the element i of one, a scalar a
value, in the order the strings give. ``cpu_kernel`` stands in for cuda.kernel, so
im2col_gpu, col2im_gpu and adam_gpu run as they are, on NumPy arrays, and pass their
arguments in the order they pass them to CuPy: a body that does not match its parameter
string, or a caller that does not match either, fails here on every machine, GPU or not.
CuPy's launch itself is tested by tests/test_gpu.py where a GPU is there.
"""
import ctypes
import functools
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from hypothesis import given

from scratchvae import cuda
from scratchvae.im2col import col2im_cpu, col2im_gpu, im2col_cpu, im2col_gpu
from scratchvae.optim import adam_cpu, adam_gpu
from scratchvae.sizes import conv_out_size as out_size
from shapes import conv_cases

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


def harness(name, arrays, t):
    """C++ source of kernel `name` as a loop over i, for the given array-ness of each input parameter
    (raw parameters are always pointers, outputs always arrays) and T = t."""
    params, outputs, body = cuda.KERNELS[name]
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
    for _, typ, var in declarations(outputs):
        c_args.append(f"{typ}* {var}_")
        per_i.append(f"{typ}& {var} = {var}_[i];")
    return (f"#include <cmath>\n#include <cstddef>\ntypedef {t} T;\n"
            f"extern \"C\" void {name}({', '.join(c_args)}, std::ptrdiff_t n) {{\n"
            f"    for (std::ptrdiff_t i = 0; i < n; ++i) {{ {' '.join(per_i)}\n{body}\n    }}\n}}\n")


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


def cpu_kernel(name):
    """cuda.kernel's stand-in: a callable taking the ElementwiseKernel's arguments (inputs, then outputs),
    running the body once per element of the outputs."""
    n_in = len(declarations(cuda.KERNELS[name][0]))

    def launch(*args):
        ins, outs = args[:n_in], args[n_in:]
        assert len(outs) == len(declarations(cuda.KERNELS[name][1])), f"{name}: {len(args)} arguments"
        dtype = outs[0].dtype
        for a in (*(a for a in ins if isinstance(a, np.ndarray)), *outs):
            assert a.dtype == dtype and a.flags.c_contiguous, f"{name}: a {a.dtype} array, contiguous: {a.flags.c_contiguous}"
        size = outs[0].size
        assert all(o.size == size for o in outs), f"{name}: outputs of sizes {[o.size for o in outs]}"
        arrays = tuple(isinstance(a, np.ndarray) for a in ins)
        f = compiled(name, arrays, dtype)
        scalar = C_TYPES[dtype][1]
        c_args = []
        for (raw, typ, _), a in zip(declarations(cuda.KERNELS[name][0]), ins):
            if isinstance(a, np.ndarray):
                assert raw or a.size == size, f"{name}: an array input of {a.size} numbers for {size} threads"
                c_args.append(a.ctypes.data_as(ctypes.c_void_p))
            else:
                c_args.append(ctypes.c_int(a) if typ == "int32" else scalar(a))
        f(*c_args, *(o.ctypes.data_as(ctypes.c_void_p) for o in outs), ctypes.c_ssize_t(size))
    return launch


@pytest.fixture
def kernels_on_the_cpu(monkeypatch):
    monkeypatch.setattr(cuda, "kernel", cpu_kernel)


def test_the_harness_follows_the_parameter_string():
    src = harness("im2col", (True,) + (False,) * 12, "double")
    assert "const T* img, int nimg, int nch" in src and "T* col_" in src and "T& col = col_[i];" in src
    src = harness("adam", (True,) + (False,) * 6, "float")
    assert "typedef float T;" in src and "const T* g_, T lr, T b1" in src and "T& v = v_[i];" in src


@given(conv_cases(max_extra=10))
def test_im2col_kernel_source(kernels_on_the_cpu, c):
    x = np.random.default_rng(0).normal(size=(c.n, c.cin, c.h, c.w))
    shape = (c.cin, c.kh, c.kw, out_size(c.h, c.kh, c.sy, c.ph), out_size(c.w, c.kw, c.sx, c.pw), c.n)
    want, got = np.full(shape, np.nan), np.full(shape, np.nan)   # every number must be written
    im2col_cpu(x, c.kh, c.kw, c.sy, c.sx, c.ph, c.pw, want)
    im2col_gpu(x, c.kh, c.kw, c.sy, c.sx, c.ph, c.pw, got)
    np.testing.assert_array_equal(got, want)


@given(conv_cases(max_extra=10))
def test_col2im_kernel_source(kernels_on_the_cpu, c):
    oh, ow = out_size(c.h, c.kh, c.sy, c.ph), out_size(c.w, c.kw, c.sx, c.pw)
    stored = np.random.default_rng(1).normal(size=(c.cin, c.kh, c.kw, oh, ow, c.n))  # (C, kh, kw, oh, ow, N)
    got = col2im_gpu(stored, c.h, c.w, c.sy, c.sx, c.ph, c.pw)
    # exactly the CPU's sums: the kernel adds in the same order
    np.testing.assert_array_equal(got, col2im_cpu(stored, c.h, c.w, c.sy, c.sx, c.ph, c.pw))


def test_adam_kernel_source(kernels_on_the_cpu):
    rng = np.random.default_rng(2)
    n = 1000
    p, g = rng.normal(size=n), rng.normal(size=n)
    m, v = 0.1 * rng.normal(size=n), rng.uniform(0, 0.01, size=n)   # moments from earlier steps
    cpu = [a.copy() for a in (p, m, v)]
    b1, b2, t = 0.9, 0.999, 3
    args = (1e-2, b1, b2, 1 - b1 ** t, 1 - b2 ** t, 1e-8)
    adam_cpu(cpu[0], g, cpu[1], cpu[2], *args)
    adam_gpu(p, g, m, v, *args)
    # the same operations but for the order of one product, (1 − β₂)·g·g against g²·(1 − β₂): a rounding
    # or two in float64. (In float32 the kernel takes 1 − β from β rounded to float32, so its 1 − β₂ is off
    # the CPU's by 1.3·10⁻⁵ of itself: not compared here.)
    for name, want, got in zip("pmv", cpu, (p, m, v)):
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0, err_msg=name)


def test_a_caller_that_passes_one_argument_too_few_fails(kernels_on_the_cpu):
    with pytest.raises(AssertionError, match="arguments"):
        cuda.kernel("adam")(np.zeros(3), 1.0, 1.0, 1.0, 1.0, 1.0, np.zeros(3), np.zeros(3), np.zeros(3))
