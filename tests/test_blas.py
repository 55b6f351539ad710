"""blas.gemm_args against a column-major product written in NumPy: the arguments cuBLAS gets describe
out = a·b for every layout of a, b and out (C-contiguous or a transposed view), and blas.matmul on the
CPU writes any of those outs. (cuBLAS itself is called in tests/test_gpu.py where a GPU is there.)"""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided

from scratchvae.ops import blas


def column_major(arr, rows, cols, ld):
    """arr's memory from its first number on, read as a column-major rows×cols matrix, leading dimension ld."""
    return as_strided(arr, shape=(rows, cols), strides=(arr.itemsize, ld * arr.itemsize))


def cublas_gemm(op_a, op_b, m, n, k, A, lda, B, ldb, C, ldc):
    """What cublas<t>gemm does (alpha 1, beta 0): C (m×n) = op(A)·op(B), all three column-major."""
    a = column_major(A, m, k, lda) if op_a == blas.OP_N else column_major(A, k, m, lda).T
    b = column_major(B, k, n, ldb) if op_b == blas.OP_N else column_major(B, n, k, ldb).T
    assert lda >= (m if op_a == blas.OP_N else k) and ldb >= (k if op_b == blas.OP_N else n) and ldc >= m
    column_major(C, m, n, ldc)[...] = a @ b


def matrix(rng, rows, cols, layout):
    """A (rows, cols) matrix stored as layout says: "C", or "F" (the transposed view of a C-contiguous one)."""
    a = rng.normal(size=(rows, cols) if layout == "C" else (cols, rows))
    return a if layout == "C" else a.T


layouts = st.sampled_from("CF")


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), layouts, layouts, layouts)
def test_gemm_args_describe_the_product(m, k, n, la, lb, lo):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a, b = matrix(rng, m, k, la), matrix(rng, k, n, lb)
    out = np.full((m, n) if lo == "C" else (n, m), np.nan)
    out = out if lo == "C" else out.T
    op_a, op_b, mm, nn, kk, A, lda, B, ldb, ldc = blas.gemm_args(a, b, out)
    cublas_gemm(op_a, op_b, mm, nn, kk, A, lda, B, ldb, out, ldc)
    np.testing.assert_allclose(out, a @ b, rtol=1e-13, atol=1e-13)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), layouts, layouts, layouts, st.booleans())
def test_matmul_on_the_cpu_writes_any_out(m, k, n, la, lb, lo, accumulate):
    rng = np.random.default_rng(m * 100 + k * 10 + n + 1)
    a, b = matrix(rng, m, k, la), matrix(rng, k, n, lb)
    out = matrix(rng, m, n, lo)
    want = out + a @ b if accumulate else a @ b
    assert blas.matmul(a, b, out=out, accumulate=accumulate) is out
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-13)


def test_layout_names_the_two_contiguous_orders():
    a = np.zeros((3, 4))
    assert blas.layout(a) == "C" and blas.layout(a.T) == "F" and blas.layout(a[:, ::2]) is None
    assert blas.layout(np.zeros((1, 5))) == "C" and blas.layout(np.zeros((5, 1))) == "C"
