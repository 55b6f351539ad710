"""The optional packages, each behind an extra of setup.cfg, and the one line said when one is missing.

    require("onnx", "export", "writing ONNX graphs")   →  the module, or MissingPackage:
    "writing ONNX graphs needs onnx, which is not installed (…): pip install -e '.[export]' in the project, or
    pip install onnx"
"""
import importlib


class MissingPackage(RuntimeError):
    """Something asked for needs a package that is not installed; the message says how to install it."""


def require(module, extra, purpose, package=None):
    """Import `module` (e.g. "safetensors.numpy"), or raise MissingPackage saying what needs it and which extra
    (pip install -e '.[extra]') brings it; `package`: its name on PyPI, when that differs from the module's."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = package or module.partition(".")[0]
        raise MissingPackage(f"{purpose} needs {package}, which is not installed ({e}): pip install -e '.[{extra}]' "
                             f"in the project, or pip install {package}") from None
