"""The device name picks the array module; a missing GPU is a clear error."""
import numpy as np
import pytest

from scratchvae.ops import devices
from scratchvae.ops.devices import BackendError, get_xp, resolve_device


def test_cpu_is_numpy():
    assert get_xp("cpu") is np


def test_unknown_device():
    with pytest.raises(BackendError, match=r"unknown device 'tpu': expected one of \('cpu', 'gpu'\)"):
        get_xp("tpu")


def test_gpu_without_cupy_says_how_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_cupy(name, *a, **k):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(BackendError, match=r"needs CuPy.*\.\[gpu\]"):
        get_xp("gpu")
    assert resolve_device("auto") == "cpu"
    assert not devices.gpu_available()


def test_make_rng_from_seed_is_repeatable():
    a, b = devices.make_rng(3), devices.make_rng(3)
    assert a.integers(1 << 30) == b.integers(1 << 30)


def test_make_rng_uses_a_given_generator_itself():
    g = np.random.default_rng(7)
    assert devices.make_rng(g) is g                   # not a copy: drawing moves the caller's generator on
    first = devices.make_rng(g).random()
    fresh = np.random.default_rng(7)
    assert first == fresh.random() and g.random() == fresh.random()
    a, b = devices.make_rng(None), devices.make_rng(None)   # None: fresh entropy each time
    assert isinstance(a, np.random.Generator) and a.integers(1 << 62) != b.integers(1 << 62)


def test_the_device_table_holds_both_functions_of_every_operation():
    """Every Op enters a CPU and a GPU function under one name, and a call runs the one for its first
    argument's device (NumPy here: the CPU's)."""
    import importlib
    for m in ("ops.im2col", "ops.parity", "ops.elementwise", "ops.blas", "ops.adam", "model.losses",
              "model.layers.conv"):
        importlib.import_module(f"scratchvae.{m}")
    from scratchvae.ops.devices import DEVICE_TABLE, Op
    cpu, gpu = DEVICE_TABLE["cpu"].ops, DEVICE_TABLE["gpu"].ops
    assert cpu.keys() == gpu.keys() and {"im2col", "col2im", "matmul", "adam", "loss_terms"} <= cpu.keys()
    assert all(cpu[k] is not gpu[k] for k in cpu)
    op = Op("test_op", cpu=lambda a, k: ("cpu", a.shape, k), gpu=lambda a, k: ("gpu",))
    try:
        assert op(np.zeros(3), k=2) == ("cpu", (3,), 2)
        assert repr(DEVICE_TABLE["gpu"]).startswith("Device('gpu': cupy")
    finally:
        del cpu["test_op"], gpu["test_op"]
