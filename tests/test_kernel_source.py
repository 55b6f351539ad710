"""The GPU kernels' own source text, compiled for the CPU and checked against NumPy.

An ElementwiseKernel body runs once per index i with its parameters in scope. Here the
same body runs in a C++ loop over i (one iteration per GPU thread), so its index
arithmetic is tested on every machine, GPU or not. CuPy's launch itself is tested by
tests/test_gpu.py where a GPU is there.
"""
import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given

from scratchvae import cuda
from scratchvae.im2col import col2im, im2col
from scratchvae.sizes import conv_out_size as out_size
from shapes import conv_cases

CXX = shutil.which("g++") or shutil.which("c++")
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler to build the kernel source for the CPU")

HARNESS = """
#include <cmath>
#include <cstddef>
template <typename T>
void im2col(const T* img, int nimg, int nch, int h, int w, int oh, int ow, int kh, int kw, int sy, int sx,
            int ph, int pw, T* out, std::ptrdiff_t n) {
    for (std::ptrdiff_t i = 0; i < n; ++i) { T& col = out[i];
%(IM2COL)s
    }
}
template <typename T>
void col2im(const T* col, int nimg, int nch, int h, int w, int oh, int ow, int kh, int kw, int sy, int sx,
            int ph, int pw, T* out, std::ptrdiff_t n) {
    for (std::ptrdiff_t i = 0; i < n; ++i) { T& img = out[i];
%(COL2IM)s
    }
}
template <typename T>
void adam(const T* gs, T lr, T b1, T b2, T c1, T c2, T eps, T* ps, T* ms, T* vs, std::ptrdiff_t n) {
    for (std::ptrdiff_t i = 0; i < n; ++i) { const T& g = gs[i]; T& p = ps[i]; T& m = ms[i]; T& v = vs[i];
%(ADAM)s
    }
}
extern "C" {
void im2col_d(const double* a, int nimg, int nch, int h, int w, int oh, int ow, int kh, int kw, int sy, int sx,
              int ph, int pw, double* o, std::ptrdiff_t n) {
    im2col<double>(a, nimg, nch, h, w, oh, ow, kh, kw, sy, sx, ph, pw, o, n); }
void col2im_d(const double* a, int nimg, int nch, int h, int w, int oh, int ow, int kh, int kw, int sy, int sx,
              int ph, int pw, double* o, std::ptrdiff_t n) {
    col2im<double>(a, nimg, nch, h, w, oh, ow, kh, kw, sy, sx, ph, pw, o, n); }
void adam_d(const double* g, double lr, double b1, double b2, double c1, double c2, double eps,
            double* p, double* m, double* v, std::ptrdiff_t n) { adam<double>(g, lr, b1, b2, c1, c2, eps, p, m, v, n); }
}
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("kernels")
    src, so = d / "kernels.cpp", d / "kernels.so"
    src.write_text(HARNESS % {"IM2COL": cuda.IM2COL_BODY, "COL2IM": cuda.COL2IM_BODY, "ADAM": cuda.ADAM_BODY})
    # -ffp-contract=off: no fused multiply-adds, as for additions on the GPU
    subprocess.run([CXX, "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    lib = ctypes.CDLL(os.fspath(so))
    d_ptr = ctypes.POINTER(ctypes.c_double)
    ints = [ctypes.c_int] * 12
    lib.im2col_d.argtypes = [d_ptr, *ints, d_ptr, ctypes.c_ssize_t]
    lib.col2im_d.argtypes = [d_ptr, *ints, d_ptr, ctypes.c_ssize_t]
    lib.adam_d.argtypes = [d_ptr] + [ctypes.c_double] * 6 + [d_ptr] * 3 + [ctypes.c_ssize_t]
    return lib


def ptr(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


@given(conv_cases(max_extra=10))
def test_im2col_kernel_source(lib, c):
    x = np.random.default_rng(0).normal(size=(c.n, c.cin, c.h, c.w))
    oh, ow = out_size(c.h, c.kh, c.sy, c.ph), out_size(c.w, c.kw, c.sx, c.pw)
    img = np.ascontiguousarray(x.transpose(1, 2, 3, 0))     # the kernel reads (C, H, W, N)
    buf = np.empty((c.cin, c.kh, c.kw, oh, ow, c.n))        # and writes the (C, kh, kw, oh, ow, N) buffer
    lib.im2col_d(ptr(img), c.n, c.cin, c.h, c.w, oh, ow, c.kh, c.kw, c.sy, c.sx, c.ph, c.pw, ptr(buf), buf.size)
    np.testing.assert_array_equal(buf.transpose(5, 0, 1, 2, 3, 4), im2col(x, c.kh, c.kw, c.sy, c.sx, c.ph, c.pw))


@given(conv_cases(max_extra=10))
def test_col2im_kernel_source(lib, c):
    oh, ow = out_size(c.h, c.kh, c.sy, c.ph), out_size(c.w, c.kw, c.sx, c.pw)
    col = np.random.default_rng(1).normal(size=(c.n, c.cin, c.kh, c.kw, oh, ow))
    buf = np.ascontiguousarray(col.transpose(1, 2, 3, 4, 5, 0))          # the kernel reads (C, kh, kw, oh, ow, N)
    out = np.empty((c.cin, c.h, c.w, c.n))                               # and writes the (C, H, W, N) image
    lib.col2im_d(ptr(buf), c.n, c.cin, c.h, c.w, oh, ow, c.kh, c.kw, c.sy, c.sx, c.ph, c.pw, ptr(out), out.size)
    # exactly the CPU's sums: the kernel adds in the same order
    np.testing.assert_array_equal(out.transpose(3, 0, 1, 2), col2im(col, c.h, c.w, c.sy, c.sx, c.ph, c.pw))


def test_adam_kernel_source(lib):
    from scratchvae.optim import Adam
    rng = np.random.default_rng(2)
    p0, g = rng.normal(size=40), rng.normal(size=40)
    ref = {"w": p0.copy()}
    opt = Adam(ref, lr=1e-2)
    opt.step({"w": g})
    p, m, v = p0.copy(), np.zeros(40), np.zeros(40)
    lib.adam_d(ptr(g), 1e-2, 0.9, 0.999, 1 - 0.9, 1 - 0.999, 1e-8, ptr(p), ptr(m), ptr(v), 40)
    np.testing.assert_allclose(p, ref["w"], rtol=1e-15)
    np.testing.assert_allclose(m, opt.m["w"], rtol=1e-15)
