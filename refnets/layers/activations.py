"""Element-wise nonlinearities as parameter-free layers.

Each activation exposes the function and its derivative as plain methods,
``apply(z)`` and ``derivative(z)``, because several algorithms need g and g'
outside a forward/backward pair (Target Space's g(S) and g'(S), DTP's
s'(a), node perturbation on pre-activations). ``forward``/``backward`` wrap
them in the layer contract: backward computes ``dz = dy * g'(z)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..validation import check_input, check_number
from .base import Layer

__all__ = ["Activation", "Tanh", "ReLU", "LeakyReLU", "Sigmoid", "Softplus", "Identity",
           "get_activation"]


class Activation(Layer):
    """Base class: y = g(z) element-wise, no parameters."""

    name = "activation"

    def apply(self, z):  # pragma: no cover - interface
        """g(z)."""
        raise NotImplementedError

    def derivative(self, z):  # pragma: no cover - interface
        """g'(z), element-wise."""
        raise NotImplementedError

    def forward(self, x, params=None):
        """y = g(x); cache keeps x (and y, which some derivatives reuse)."""
        self._params(params)
        x = check_input(x, "x", where=f"{type(self).__name__}.forward")
        y = self.apply(x)
        return y, {"z": x, "y": y}

    def backward(self, dy, cache):
        """dz = dy * g'(z)."""
        dy = self._check_dy(dy, cache["z"].shape, f"{type(self).__name__}.backward")
        return dy * self._derivative_cached(cache), {}

    def _derivative_cached(self, cache):
        return self.derivative(cache["z"])

    def __repr__(self):
        return f"{type(self).__name__}()"


class Identity(Activation):
    """g(z) = z."""

    name = "identity"

    def apply(self, z):
        return z

    def derivative(self, z):
        return np.ones_like(z)


class Tanh(Activation):
    """g(z) = tanh z, g'(z) = 1 - tanh^2 z."""

    name = "tanh"

    def apply(self, z):
        return np.tanh(z)

    def derivative(self, z):
        return 1.0 - np.tanh(z) ** 2

    def _derivative_cached(self, cache):
        return 1.0 - cache["y"] ** 2


class ReLU(Activation):
    """g(z) = max(z, 0); g'(0) taken as 0 (the subgradient PyTorch uses)."""

    name = "relu"

    def apply(self, z):
        return np.maximum(z, 0.0)

    def derivative(self, z):
        return (z > 0).astype(z.dtype)


class LeakyReLU(Activation):
    """g(z) = z for z > 0, alpha*z otherwise; g'(0) taken as alpha.

    Parameters
    ----------
    alpha : float
        Slope for negative inputs (default 0.01, PyTorch's default).
    """

    name = "leaky_relu"

    def __init__(self, alpha=0.01):
        super().__init__()
        self.alpha = check_number(alpha, "alpha", "LeakyReLU", low=0)

    def apply(self, z):
        return np.where(z > 0, z, self.alpha * z)

    def derivative(self, z):
        return np.where(z > 0, 1.0, self.alpha).astype(z.dtype)

    def __repr__(self):
        return f"LeakyReLU(alpha={self.alpha})"


class Sigmoid(Activation):
    """Logistic g(z) = 1/(1+e^-z), computed stably (``scipy.special.expit``).

    g'(z) = g(z)(1 - g(z)) = g(z) g(-z). The second form is used: for large
    positive z, 1 - g(z) cancels catastrophically (z = 30 loses 3 digits,
    z >= 37 gives 0 instead of ~e^-z), while g(-z) keeps full precision.
    """

    name = "sigmoid"

    def apply(self, z):
        return expit(z)

    def derivative(self, z):
        return expit(z) * expit(-z)

    def _derivative_cached(self, cache):
        return cache["y"] * expit(-cache["z"])


class Softplus(Activation):
    """g(z) = log(1 + e^z) (stable: ``logaddexp(0, z)``), g'(z) = sigmoid(z)."""

    name = "softplus"

    def apply(self, z):
        return np.logaddexp(0.0, z)

    def derivative(self, z):
        return expit(z)


_ACTIVATIONS = {cls.name: cls for cls in (Identity, Tanh, ReLU, LeakyReLU, Sigmoid, Softplus)}


def get_activation(name):
    """Return an activation layer from a name ('tanh', 'relu', ...) or an instance."""
    if isinstance(name, Activation):
        return name
    try:
        return _ACTIVATIONS[name]()
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)} or an "
                         f"Activation instance, got {name!r}") from None
