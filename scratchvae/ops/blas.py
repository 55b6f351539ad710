"""Matrix products: NumPy's on the CPU; on the GPU, cuBLAS called directly, on CuPy's current stream.

    matmul(a, b, out=None, accumulate=False)    out = a·b   (or out += a·b)

a (M, K) and b (K, N) may each be C-contiguous or a transposed view of a C-contiguous array
(F-contiguous): cuBLAS reads either as it lies, so no operand is ever copied to turn it around;
out (M, N) likewise, C- or F-contiguous.

Why not CuPy's own matmul: it refuses to run while a stream is being captured into a CUDA graph
(scratchvae/run/step.py captures a whole training step), and it allocates cuBLAS's scratch space
as it goes. Here one handle per device has a fixed 32 MB workspace (cublasSetWorkspace), so a
product allocates nothing and can be captured; the library is the libcublas CuPy itself loads.

cuBLAS is column-major, NumPy's arrays row-major. A row-major (M, N) out is, read column-major,
outᵀ (N, M), and outᵀ = bᵀ·aᵀ: so cuBLAS is asked for bᵀ·aᵀ with b as its first operand.
A C-contiguous b (K, N) read column-major *is* bᵀ (op N, leading dimension N); an F-contiguous
one is b itself, so cuBLAS transposes it (op T, leading dimension K). ``gemm_args`` works these
out; tests/test_blas.py checks them on the CPU against a column-major product written in NumPy.

TF32: ``set_tf32(True)`` lets float32 products round their inputs to TensorFloat-32 (10-bit
mantissa) on the tensor cores, as PyTorch's default convolutions do; off by default, so float32
products are exact float32 sums of products. float64 products are never affected.
"""
import ctypes
import glob
import os

import numpy as np

from .devices import Op

OP_N, OP_T = 0, 1                   # cublasOperation_t
DEFAULT_MATH, TF32_MATH = 0, 3      # cublasMath_t: CUBLAS_DEFAULT_MATH, CUBLAS_TF32_TENSOR_OP_MATH
WORKSPACE = 32 << 20                # bytes of cuBLAS scratch per handle, allocated once
CUDA_R_16F, COMPUTE_32F, GEMM_DEFAULT = 2, 68, -1   # cudaDataType_t, cublasComputeType_t, cublasGemmAlgo_t
_tf32 = False


def set_tf32(on):
    """Let float32 products on the GPU use TF32 tensor cores (True) or keep them exact float32 (False)."""
    global _tf32
    _tf32 = bool(on)
    for h in _handles.values():
        h.set_math()
    try:                                        # CuPy's own products (outside the training step) alike
        from cupy._core import _routines_linalg as rl
        rl.set_compute_type(np.dtype(np.float32), rl.COMPUTE_TYPE_TF32 if _tf32 else rl.COMPUTE_TYPE_DEFAULT)
    except ImportError:
        pass


def layout(a):
    """"C" (row-major, rows contiguous), "F" (a transposed view of one) or None for a 2-d array."""
    if a.ndim != 2:
        return None
    item = a.dtype.itemsize
    rows, cols = a.shape
    if a.strides[1] == item and (rows == 1 or a.strides[0] == cols * item):
        return "C"
    if a.strides[0] == item and (cols == 1 or a.strides[1] == rows * item):
        return "F"
    return None


def gemm_args(a, b, out):
    """cuBLAS's column-major gemm arguments for out = a·b, the three arrays as they lie:
    (opA, opB, m, n, k, A, lda, B, ldb, ldc), A and B the arrays whose memory is cuBLAS's A and B."""
    if layout(out) == "F":                      # out F (M, N) is outᵀ (N, M) row-major, and outᵀ = bᵀ·aᵀ
        a, b = b.T, a.T
    (m_, k_), n_ = a.shape, b.shape[1]
    # row-major out (m_, n_) read column-major is outᵀ (n_, m_) = bᵀ (n_, k_) · aᵀ (k_, m_)
    op_b, ld_b = (OP_N, n_) if layout(b) == "C" else (OP_T, k_)     # b's memory is bᵀ (C) or b (F)
    op_a, ld_a = (OP_N, k_) if layout(a) == "C" else (OP_T, m_)     # a's memory is aᵀ (C) or a (F)
    return op_b, op_a, n_, m_, k_, b, max(ld_b, 1), a, max(ld_a, 1), max(n_, 1)


def matmul_cpu(a, b, out=None, accumulate=False):
    """out = a·b (accumulate: out += a·b) for 2-d a (M, K), b (K, N); a new C-contiguous out when None."""
    if a.dtype == np.float16:
        return matmul_half_cpu(a, b, out, accumulate)
    if out is None:
        return np.matmul(a, b)
    if layout(out) == "F" and out.shape[0] > 1:             # NumPy's products write C-contiguous arrays
        matmul_cpu(b.T, a.T, out.T, accumulate)             # outᵀ = bᵀ·aᵀ
    elif accumulate:
        out += a @ b
    else:
        np.matmul(a, b, out=out)
    return out


def matmul_half_cpu(a, b, out=None, accumulate=False):
    """float16 a·b as the GPU's half-precision products make it (cublasGemmEx, 32-bit compute type): the float16
    inputs are exact in float32, every sum is a float32 sum, and the result is rounded to float16 once (with
    accumulate, out's old value joins the float32 sum first). NumPy's own float16 product has no BLAS behind it."""
    if not (a.dtype == b.dtype == np.float16) or (out is not None and out.dtype != np.float16):
        raise ValueError(f"a half-precision product needs float16 operands, got {a.dtype}, {b.dtype}"
                         + ("" if out is None else f" into {out.dtype}"))
    p = np.matmul(a.astype(np.float32), b.astype(np.float32))       # (M, N) float32 sums of exact products
    with np.errstate(over="ignore"):                                # (past 65,504: inf, which the loss scaler sees)
        if out is None:
            return p.astype(np.float16)
        if accumulate:
            p += out                                                # out + a·b, in float32
        out[...] = p                                                # one rounding to float16
    return out


def matmul_gpu(a, b, out=None, accumulate=False):
    """The same by cuBLAS, every operand read as it lies (C- or F-contiguous), on CuPy's current stream."""
    import cupy
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul needs (M, K) and (K, N) matrices, got {a.shape} and {b.shape}")
    if out is None:
        out = cupy.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    if out.shape != (a.shape[0], b.shape[1]) or not (a.dtype == b.dtype == out.dtype):
        raise ValueError(f"matmul: out must be {a.dtype} {(a.shape[0], b.shape[1])}, got {out.dtype} {out.shape}")
    if layout(out) is None:
        raise ValueError(f"matmul: out must be C- or F-contiguous, got strides {out.strides} for {out.shape}")
    a = a if layout(a) else cupy.ascontiguousarray(a)
    b = b if layout(b) else cupy.ascontiguousarray(b)
    if out.size == 0:
        return out
    if a.shape[1] == 0:
        if not accumulate:
            out.fill(0)
        return out
    handle().gemm(a, b, out, accumulate)
    return out


matmul = Op("matmul", cpu=matmul_cpu, gpu=matmul_gpu)


# ---- cuBLAS through ctypes ----------------------------------------------------------------------
_handles = {}


def handle():
    """This device's cuBLAS handle (made the first time it is asked for)."""
    import cupy
    dev = cupy.cuda.Device().id
    if dev not in _handles:
        _handles[dev] = _Handle()
    return _handles[dev]


def _library():
    import cupy
    here = os.path.dirname(cupy.__file__)
    major = cupy.cuda.runtime.runtimeGetVersion() // 1000
    names = [f"libcublas.so.{major}", "libcublas.so"]
    for pattern in (os.path.join(here, "..", "nvidia", "*", "lib", "libcublas.so*"),
                    os.path.join(here, "..", "nvidia", "cublas", "lib", "libcublas.so*")):
        names += sorted(glob.glob(pattern))
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError(f"cuBLAS (libcublas.so.{major}) could not be loaded; it comes with the CUDA toolkit or "
                  "CuPy's nvidia-cublas wheel")


class _Handle:
    def __init__(self):
        import cupy
        self.lib = _library()
        self.h = ctypes.c_void_p()
        self.check(self.lib.cublasCreate_v2(ctypes.byref(self.h)), "cublasCreate")
        self.workspace = cupy.empty(WORKSPACE, dtype=np.uint8)      # kept as long as the handle
        self.check(self.lib.cublasSetWorkspace_v2(self.h, ctypes.c_void_p(self.workspace.data.ptr),
                                                  ctypes.c_size_t(WORKSPACE)), "cublasSetWorkspace")
        self.stream = None
        self.set_math()
        self.consts = {np.dtype(np.float32): (ctypes.c_float(1), ctypes.c_float(0)),
                       np.dtype(np.float64): (ctypes.c_double(1), ctypes.c_double(0)),
                       np.dtype(np.float16): (ctypes.c_float(1), ctypes.c_float(0))}   # (32-bit compute: float)

    @staticmethod
    def check(status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def set_math(self):
        self.check(self.lib.cublasSetMathMode(self.h, TF32_MATH if _tf32 else DEFAULT_MATH), "cublasSetMathMode")

    def gemm(self, a, b, out, accumulate):
        import cupy
        stream = cupy.cuda.get_current_stream().ptr
        if stream != self.stream:
            self.check(self.lib.cublasSetStream_v2(self.h, ctypes.c_void_p(stream)), "cublasSetStream")
            self.stream = stream
        op1, op2, m, n, k, A, lda, B, ldb, ldc = gemm_args(a, b, out)
        one, zero = self.consts[out.dtype]
        if out.dtype == np.float16:                 # half in and out, float32 sums (matmul_half_cpu's twin)
            self.check(self.lib.cublasGemmEx(
                self.h, op1, op2, m, n, k, ctypes.byref(one), ctypes.c_void_p(A.data.ptr), CUDA_R_16F, lda,
                ctypes.c_void_p(B.data.ptr), CUDA_R_16F, ldb, ctypes.byref(one if accumulate else zero),
                ctypes.c_void_p(out.data.ptr), CUDA_R_16F, ldc, COMPUTE_32F, GEMM_DEFAULT), "cublasGemmEx")
            return
        f = self.lib.cublasSgemm_v2 if out.dtype == np.float32 else self.lib.cublasDgemm_v2
        self.check(f(self.h, op1, op2, m, n, k, ctypes.byref(one), ctypes.c_void_p(A.data.ptr), lda,
                     ctypes.c_void_p(B.data.ptr), ldb, ctypes.byref(one if accumulate else zero),
                     ctypes.c_void_p(out.data.ptr), ldc), "cublas gemm")
