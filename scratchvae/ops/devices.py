"""The device table: which array module does the arithmetic (NumPy on the CPU, CuPy on the GPU), and which
function does each operation that is written twice, once per device.

Every layer, the model and the optimizer take their array module from here (by device name, ``get_xp``)
or from the arrays they are given (``xp_of``), so one line of code serves both devices. An operation with
a CPU body and a GPU body (a CUDA kernel's caller) is declared once, as an Op, beside both:

    col2im_stored = Op("col2im", cpu=col2im_cpu, gpu=col2im_gpu)      # ops/im2col.py
    col2im_stored(stored, h, w, …)      # runs col2im_gpu for a CuPy array, col2im_cpu for a NumPy one

Each Op enters its two functions in DEVICE_TABLE[name].ops, and a call looks up the one for where its
first argument lives: the only branch on the device in the operations. CuPy is imported here (get_xp, xp_of)
and where a GPU function runs, never on the CPU's path.
"""
import numpy as np

DEVICES = ("cpu", "gpu")                    # the names the tools take

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


class Device:
    """One device of the table: its name, its array module (imported when first asked for) and its functions
    for the operations declared by Op (name → function)."""

    def __init__(self, name, module):
        self.name, self.module, self.ops = name, module, {}
        self._xp = None

    @property
    def xp(self):
        if self._xp is None:
            import importlib
            self._xp = importlib.import_module(self.module)
        return self._xp

    def __repr__(self):
        return f"Device({self.name!r}: {self.module}, {len(self.ops)} operations)"


DEVICE_TABLE = {"cpu": Device("cpu", "numpy"), "gpu": Device("gpu", "cupy")}


def device_for(a):
    """The table's Device an array lives on."""
    return DEVICE_TABLE["gpu" if is_gpu_array(a) else "cpu"]


class Op:
    """An operation written once per device: called, it runs the function for the device its first argument
    lives on (the table's one look-up)."""

    def __init__(self, name, cpu, gpu):
        self.name = name
        DEVICE_TABLE["cpu"].ops[name], DEVICE_TABLE["gpu"].ops[name] = cpu, gpu

    def __call__(self, *args, **kwargs):
        return device_for(args[0]).ops[self.name](*args, **kwargs)

    def __repr__(self):
        return f"Op({self.name!r})"


def xp_of(a):
    """The array module an array belongs to."""
    return device_for(a).xp


def device_of(a):
    """The name of the device an array lives on, "cpu" or "gpu"."""
    return device_for(a).name


def to_numpy(a):
    """Copy an array to the host as a NumPy array (this waits for the GPU)."""
    return a.get() if is_gpu_array(a) else np.asarray(a)


def check_dtype(dtype, half=False):
    """dtype as a NumPy dtype: float32 or float64, or float16 too where half is True (a layer computing in
    half precision inside a mixed-precision model: model/vae.py)."""
    dtype = np.dtype(dtype)
    if dtype not in ((np.float16, np.float32, np.float64) if half else (np.float32, np.float64)):
        raise ValueError(f"dtype must be {'float16, ' if half else ''}float32 or float64, got {dtype}")
    return dtype


def make_rng(rng):
    """A NumPy Generator from a seed, a Generator, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


PERMUTATIONS = ((0, 1, 2, 3), (1, 2, 3, 0))     # images as NCHW, or stored (C, H, W, N) as the layers keep them


def in_memory_order(*arrays):
    """The arrays seen in the order their numbers lie in memory, each C-contiguous, all through the same
    transposition (so element k of one goes with element k of the others); None when no one order fits all.
    For an elementwise pass: run over these, each thread's neighbour is its neighbour in memory."""
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        return None
    perms = PERMUTATIONS if len(shape) == 4 else (tuple(range(len(shape))), tuple(reversed(range(len(shape)))))
    for perm in perms:
        views = [a.transpose(perm) for a in arrays]
        if all(v.flags.c_contiguous for v in views):
            return views
    return None


def tiling(arrays):
    """The 1-d array that the arrays tile, one after another in the order given, each a C-contiguous view
    of the next piece of it; None if they do not (a VAE's parameters and gradients do: see VAE.flatten)."""
    arrays = list(arrays)
    if not arrays:
        return None
    base = _root(arrays[0])
    if base is arrays[0] or base.ndim != 1 or not base.flags.c_contiguous or base.dtype != arrays[0].dtype:
        return None
    start = address(base)
    offset = 0
    for a in arrays:
        if _root(a) is not base or not a.flags.c_contiguous or address(a) != start + offset * base.itemsize:
            return None
        offset += a.size
    return base if offset == base.size else None


def named_views(flat, shapes):
    """{name: view of flat of that shape}, laid end to end in the order of shapes (a dict name → shape): what
    tiling finds again."""
    out, off = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = flat[off:off + size].reshape(shape)
        off += size
    return out


def address(a):
    """Where an array's first number lies (in the GPU's memory for a CuPy array): an integer."""
    return a.data.ptr if is_gpu_array(a) else a.ctypes.data


def _root(a):
    """The array that owns a view's memory."""
    while a.base is not None:
        a = a.base
    return a
