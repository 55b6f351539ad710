"""The GPU kernels' machinery: a Kernel is a CuPy ElementwiseKernel (one C body, run once per element) or a
Sum (a ReductionKernel), declared beside its caller and its CPU twin, and compiled the first time it runs.

    IM2COL = Kernel("im2col", "raw T img, int32 nimg, …", "raw T col", IM2COL_BODY)     # in ops/im2col.py
    IM2COL(img, n, …, col, size=threads)                                                  # in im2col_gpu

Where they live: im2col and col2im in ops/im2col.py; interleave and phase_weights in ops/parity.py;
bias_rows and relu_back in ops/elementwise.py; adam in ops/adam.py; the loss's mse_grad, mse_sum,
bernoulli_grad, bernoulli_sum, reparam, latent_back and loss_terms in model/losses.py. KERNELS names
every one (filled as their modules load). Nothing here imports CuPy until a kernel first runs on the GPU;
everything else on the GPU is array-generic code that runs under NumPy too.

Every kernel walks its output in the order it lies in memory: images stored (C, H, W, N),
columns (C, kh, kw, oh, ow, N), the batch last, so neighbouring threads (neighbouring n) read
and write neighbouring addresses. Index arithmetic is 32-bit (``int k = i``): a 64-bit division
costs several times a 32-bit one, and these kernels divide on every element; ``check_size``
refuses, with one line, an array the int type cannot index (2³¹ numbers and more), before every
launch. The three that copy images (im2col, col2im, interleave) do so for vec neighbouring images
per thread (``vec_for``: 4 when the batch and the arrays' alignment allow), decoding the index once
for all of them and moving the four as one 16-byte access (a ``Pack``, in PREAMBLE); their arrays
are passed flat (1-d), so reading one costs one addition.

The kernel bodies are plain C: tests/test_kernel_source.py compiles the same text for the CPU (one
loop iteration per thread), puts it in place of ``compiled``, and runs the GPU callers with it
where there is no GPU.
"""
import functools

from .devices import address

INT_MAX = 2 ** 31 - 1

VEC_MAX = 4                         # numbers (neighbouring images) per thread in im2col, col2im and interleave


def vec_for(nimg, *arrays):
    """How many neighbouring images one thread handles: the largest of 4, 2, 1 that divides the batch (4 only
    where every array starts at a multiple of 4 numbers' bytes: the four move as one aligned access). Each
    thread then decodes its index once for vec numbers (the divisions cost more than the copying)."""
    aligned = all(address(a) % (VEC_MAX * a.itemsize) == 0 for a in arrays)
    return next(v for v in (VEC_MAX, 2, 1) if nimg % v == 0 and (v < VEC_MAX or aligned))


def check_size(what, *arrays):
    """A kernel indexes with 32-bit ints: refuse, in one line, an array of 2³¹ numbers or more."""
    for a in arrays:
        if a.size > INT_MAX:
            raise ValueError(f"{what}: an array of {a.size:,} numbers {tuple(a.shape)} is past the 2³¹ − 1 the GPU "
                             "kernels index; use a smaller batch")


KERNELS = {}                        # name → Kernel: every kernel the package declares, as its module loads


class Kernel:
    """A CUDA ElementwiseKernel: its input parameters, output parameters and C body, in CuPy's syntax.
    Called, it checks every array argument against the 32-bit indices (check_size) and launches."""

    def __init__(self, name, params, outputs, body):
        self.name, self.params, self.outputs, self.body = name, params, outputs, body
        KERNELS[name] = self

    def __call__(self, *args, **kwargs):
        check_size(self.name, *(a for a in args if hasattr(a, "size")))
        return compiled(self)(*args, **kwargs)

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


class Sum(Kernel):
    """A CUDA ReductionKernel adding up `term` over the elements (over axis 1, a block per row, as the callers
    run them: a sum over everything at once would be one block); the CPU harness adds the terms in order.
    Declared as Sum(name, params, output, term): its body is the term each element adds."""


@functools.lru_cache(maxsize=None)
def compiled(kernel):
    """The CuPy kernel for a Kernel or a Sum, built the first time it is asked for."""
    import cupy
    if isinstance(kernel, Sum):
        return cupy.ReductionKernel(kernel.params, kernel.outputs, kernel.body, "a + b", "total = a", "0",
                                    f"scratchvae_{kernel.name}")
    return cupy.ElementwiseKernel(kernel.params, kernel.outputs, kernel.body, f"scratchvae_{kernel.name}",
                                  preamble=PREAMBLE)


PREAMBLE = f"#define VEC_MAX {VEC_MAX}\n" + """
template <typename T> struct alignas(VEC_MAX * sizeof(T)) Pack { T v[VEC_MAX]; };   // VEC_MAX numbers, one access

// vec neighbouring numbers from p; VEC_MAX of them as one aligned access (the caller checked the alignment)
template <typename T> inline __device__ Pack<T> load_pack(const T* p, int vec) {
    Pack<T> a = {};
    if (vec == VEC_MAX) a = *reinterpret_cast<const Pack<T>*>(p);
    else for (int v = 0; v < vec; ++v) a.v[v] = p[v];
    return a;
}

template <typename T> inline __device__ void store_pack(T* p, const Pack<T>& a, int vec) {
    if (vec == VEC_MAX) *reinterpret_cast<Pack<T>*>(p) = a;
    else for (int v = 0; v < vec; ++v) p[v] = a.v[v];
}
"""
