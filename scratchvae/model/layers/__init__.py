"""The layers: each a forward and a hand-written backward (see layers/base.py for the contract)."""
from .activations import ReLU, Sigmoid, sigmoid
from .base import Layer
from .conv import Conv2D, ConvTranspose2D, weight_grad
from .dense import Dense, Heads
from .fast import DenseThenDeconv, FastConv2D, FastConvTranspose2D, conv_transpose
from .shape import Crop2D, Flatten, Reshape

__all__ = ["Layer", "Conv2D", "ConvTranspose2D", "FastConv2D", "FastConvTranspose2D", "conv_transpose",
           "Dense", "Heads", "DenseThenDeconv", "ReLU", "Sigmoid", "sigmoid", "Reshape", "Flatten", "Crop2D", "weight_grad"]
