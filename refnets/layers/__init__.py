"""Functional layers: ``forward(x, params=None) -> (y, cache)``,
``backward(dy, cache) -> (dx, grads)``. See :mod:`refnets.layers.base`."""

from .activations import (Activation, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh,
                          get_activation)
from .base import Layer, check_array
from .conv import Conv2D, col2im, conv2d_naive, conv_output_shape, im2col
from .conv_transpose import ConvTranspose2D
from .dense import Dense
from .pooling import AvgPool2D, Flatten, MaxPool2D
from .functional import FunctionalConv2D, FunctionalDense, FunctionalRNN, MemoryFunctional
from .normalization import BatchNorm
from .recurrent import RNN, LastStep
from .residual import Residual

__all__ = ["Layer", "check_array", "Dense", "Activation", "Identity", "Tanh", "ReLU",
           "LeakyReLU", "Sigmoid", "Softplus", "get_activation", "RNN", "LastStep",
           "Conv2D", "im2col", "col2im", "conv_output_shape", "conv2d_naive",
           "MaxPool2D", "AvgPool2D", "Flatten", "FunctionalDense",
           "MemoryFunctional", "FunctionalRNN", "FunctionalConv2D", "BatchNorm", "Residual",
           "ConvTranspose2D"]
