"""Which array module does the arithmetic: NumPy on the CPU, CuPy on the GPU.

Every layer, the model and the optimizer take their array module from here
(by device name) or from the arrays they are given (``xp_of``), so one line of
code serves both devices. CuPy is imported in two places only: here, and in
scratchvae/cuda.py (the hand-written kernels), which runs only for CuPy arrays.
"""
import numpy as np

DEVICES = ("cpu", "gpu")

GPU_HINT = ('install the GPU extra on a machine with an NVIDIA GPU and its driver (pip install -e ".[gpu]" for '
            'CUDA 12, ".[gpu-cuda13]" for CUDA 13), or use --device cpu')


class BackendError(RuntimeError):
    """The asked-for device cannot be used (no CuPy, no GPU, an unknown name)."""


def _cupy():
    """Import CuPy, or say clearly why it cannot be used."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install raising at import
        raise BackendError(f"device 'gpu' needs CuPy, which could not be imported ({e}); {GPU_HINT}") from None
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        raise BackendError(f"device 'gpu' needs a working CUDA GPU, but CUDA reported: {e}; {GPU_HINT}") from None
    if n < 1:
        raise BackendError(f"device 'gpu' needs a CUDA GPU, but none was found; {GPU_HINT}")
    return cupy


def get_xp(device="cpu"):
    """The array module for a device name: numpy for "cpu", cupy for "gpu"."""
    if device == "cpu":
        return np
    if device == "gpu":
        return _cupy()
    raise BackendError(f"unknown device {device!r}: expected one of {DEVICES}")


def gpu_available():
    """True when CuPy imports and sees at least one GPU."""
    try:
        _cupy()
        return True
    except BackendError:
        return False


def resolve_device(device):
    """Turn "auto" into "cpu" or "gpu"; check the others."""
    if device == "auto":
        return "gpu" if gpu_available() else "cpu"
    get_xp(device)
    return device


def is_gpu_array(a):
    return type(a).__module__.split(".")[0] == "cupy"


def xp_of(a):
    """The array module an array belongs to."""
    if is_gpu_array(a):
        import cupy
        return cupy
    return np


def device_of(a):
    return "gpu" if is_gpu_array(a) else "cpu"


def to_numpy(a):
    """Copy an array to the host as a NumPy array (this waits for the GPU)."""
    return a.get() if is_gpu_array(a) else np.asarray(a)


def check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def make_rng(rng):
    """A NumPy Generator from a seed, a Generator, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)
