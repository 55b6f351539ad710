"""scratchvae: the World Models vision VAE with every gradient written by hand."""
from . import optim
from .backend import BackendError, get_xp, to_numpy
from .checkpoint import CheckpointError
from .data.dataset import to_model_input
from .layers import Conv2D, ConvTranspose2D, Crop2D, Dense, Flatten, ReLU, Reshape, Sigmoid
from .runfolder import load
from .vae import VAE

__version__ = "0.1.0"
