"""scratchvae: the World Models vision VAE with every gradient written by hand."""
from . import optim
from .backend import BackendError, get_xp, to_numpy
from .checkpoint import CheckpointError
from .layers import Conv2D, ConvTranspose2D, Crop2D, Dense, Flatten, ReLU, Reshape, Sigmoid
from .vae import VAE

__version__ = "0.1.0"
