"""Functional layers: ``forward(x, params=None) -> (y, cache)``,
``backward(dy, cache) -> (dx, grads)``. See :mod:`refnets.layers.base`."""

from .activations import (Activation, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh,
                          get_activation)
from .base import Layer, check_array
from .dense import Dense
from .recurrent import RNN, LastStep

__all__ = ["Layer", "check_array", "Dense", "Activation", "Identity", "Tanh", "ReLU",
           "LeakyReLU", "Sigmoid", "Softplus", "get_activation", "RNN", "LastStep"]
