"""scratchvae: the World Models vision VAE with every gradient written by hand."""
from .backend import BackendError, get_xp, to_numpy
from .layers import Conv2D, ConvTranspose2D, Crop2D, Dense, Flatten, ReLU, Reshape, Sigmoid

__version__ = "0.1.0"
