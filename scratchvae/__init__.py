"""scratchvae: the World Models vision VAE with every gradient written by hand."""
import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    # OpenBLAS, NumPy's matrix library, keeps its threads spinning for 2^28 cycles after each
    # matrix product before they sleep. A training step alternates products with copies, so the
    # spinning threads would hold the cores the copies need: let them sleep at once (2^4 cycles).
    # Read once, when NumPy loads OpenBLAS; a value already in the environment wins.
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
from . import optim
from .backend import BackendError, get_xp, to_numpy
from .checkpoint import CheckpointError
from .layers import Conv2D, ConvTranspose2D, Crop2D, Dense, Flatten, ReLU, Reshape, Sigmoid
from .vae import VAE

__version__ = "0.1.0"
