"""Per-connection functions that are nonlinear in x (F05, F08-F16): the generic-path family.

These functions are not polynomials in their input, so a layer of them has no
matmul form: :class:`~refnets.layers.functional.dense.FunctionalDense` evaluates
them on every connection of every sample (the blocked generic path). The
notation and the interface of :class:`~refnets.layers.functional.functions.FunctionType`
are in :mod:`refnets.layers.functional.functions`; the formulas and derivatives
(FTM-3) and the differences from the authors' code are in
``refnets/algorithms/functional_transfer/README.md``, sections 3 and 7.

References
----------
Cai et al., arXiv:1710.10403 (2017); official code ``Matrices/F05.py``,
``F08.py`` ... ``F16.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .functions import _EXP_CLIP, _OFFICIAL, FunctionType, _fan, _relu, _step

__all__ = ["F05", "F08", "F09", "F10", "F11", "F12", "F13", "F14", "F15", "F16"]


# ---------------------------------------------------------------------------
# Exponential (F05)
# ---------------------------------------------------------------------------

class F05(FunctionType):
    """f = a exp(b x), with b x clipped to [-30, 30] as in the code.

    Official init b ~ U(-4, -2) (a decaying exponential). Where |b x| > 30
    the clipped exponent is constant, so df/db = df/dx = 0 there (the code
    keeps a x e and a b e; inside the clip both agree).
    """

    name, formula = "F05", "a * exp(clip(b * x, -30, 30))"
    param_names, official_ranges = ("a", "b"), (_OFFICIAL, (-4.0, -2.0))

    def fan_in_ranges(self, n_in):
        return ((-_fan(n_in), _fan(n_in)), (-4.0, -2.0))

    def value(self, x, theta, s):
        return theta[0] * np.exp(np.clip(theta[1] * x, -_EXP_CLIP, _EXP_CLIP))

    def derivatives(self, x, theta, s):
        a, b = theta
        u = b * x
        e = np.exp(np.clip(u, -_EXP_CLIP, _EXP_CLIP))
        inside = (np.abs(u) < _EXP_CLIP).astype(np.float64)    # d clip(u)/du
        return [e, a * x * e * inside], a * b * e * inside

    def kink_argument(self, x, theta):
        return np.abs(theta[1] * x) - _EXP_CLIP


# ---------------------------------------------------------------------------
# Signed ReLU / logistic of an affine map, 2 parameters (F08, F10)
# ---------------------------------------------------------------------------

class F08(FunctionType):
    """f = s relu(a x + c) (fixed sign s; the code caps the ReLU at 20, here not)."""

    name, formula = "F08", "s * relu(a * x + c)"
    param_names, official_ranges = ("a", "c"), (_OFFICIAL, _OFFICIAL)
    uses_sign = True

    def fan_in_ranges(self, n_in):
        return ((-_fan(n_in), _fan(n_in)), _OFFICIAL)

    def value(self, x, theta, s):
        return s * _relu(theta[0] * x + theta[1])

    def derivatives(self, x, theta, s):
        a, c = theta
        g = s * _step(a * x + c)                               # s 1[z > 0]
        return [g * x, g], g * a

    def kink_argument(self, x, theta):
        return theta[0] * x + theta[1]


class F10(FunctionType):
    """f = s sigma(a x + c), sigma the logistic (stable ``expit``, no clip)."""

    name, formula = "F10", "s * sigmoid(a * x + c)"
    param_names, official_ranges = ("a", "c"), (_OFFICIAL, _OFFICIAL)
    uses_sign = True

    def fan_in_ranges(self, n_in):
        return ((-4.0 * _fan(n_in), 4.0 * _fan(n_in)), _OFFICIAL)

    def value(self, x, theta, s):
        return s * expit(theta[0] * x + theta[1])

    def derivatives(self, x, theta, s):
        a, c = theta
        sig = expit(a * x + c)
        g = s * sig * (1.0 - sig)                              # s sigma'(z)
        return [g * x, g], g * a


# ---------------------------------------------------------------------------
# Amplitude * phi(w1 x + w2), 3 parameters (F09, F11-F16)
# ---------------------------------------------------------------------------

class _Amplitude(FunctionType):
    """f = w0 phi(z), z = w1 x + w2; subclasses give phi and phi'.

    df/dw0 = phi(z), df/dw1 = w0 phi'(z) x, df/dw2 = w0 phi'(z),
    df/dx = w0 w1 phi'(z).
    """

    param_names, official_ranges = ("w0", "w1", "w2"), (_OFFICIAL,) * 3

    def fan_in_ranges(self, n_in):
        return ((-_fan(n_in), _fan(n_in)), (-1.0, 1.0), _OFFICIAL)

    def phi(self, z):  # pragma: no cover - interface
        raise NotImplementedError

    def phi_and_derivative(self, z):  # pragma: no cover - interface
        raise NotImplementedError

    def value(self, x, theta, s):
        return theta[0] * self.phi(theta[1] * x + theta[2])

    def derivatives(self, x, theta, s):
        w0, w1, w2 = theta
        p, dp = self.phi_and_derivative(w1 * x + w2)
        g = w0 * dp                                             # w0 phi'(z)
        return [p, g * x, g], g * w1


class F09(_Amplitude):
    """f = w0 relu(w1 x + w2)."""

    name, formula = "F09", "w0 * relu(w1 * x + w2)"

    def phi(self, z):
        return _relu(z)

    def phi_and_derivative(self, z):
        return _relu(z), _step(z)

    def kink_argument(self, x, theta):
        return theta[1] * x + theta[2]


class F11(_Amplitude):
    """f = w0 sigma(w1 x + w2)."""

    name, formula = "F11", "w0 * sigmoid(w1 * x + w2)"

    def phi(self, z):
        return expit(z)

    def phi_and_derivative(self, z):
        sig = expit(z)
        return sig, sig * (1.0 - sig)


class F12(_Amplitude):
    """f = w0 sin(w1 x + w2); official w1, w2 ~ U(-10, 10) (random Fourier-like features).

    The code sends the input gradient down as -w0 w1 cos z (wrong sign);
    here df/dx = +w0 w1 cos z.
    """

    name, formula = "F12", "w0 * sin(w1 * x + w2)"
    official_ranges = (_OFFICIAL, (-10.0, 10.0), (-10.0, 10.0))

    def fan_in_ranges(self, n_in):
        return ((-_fan(n_in), _fan(n_in)), (-10.0, 10.0), (-10.0, 10.0))

    def phi(self, z):
        return np.sin(z)

    def phi_and_derivative(self, z):
        return np.sin(z), np.cos(z)


class F13(F12):
    """f = w0 cos(w1 x + w2); phi' = -sin (the code's input gradient has the wrong sign)."""

    name, formula = "F13", "w0 * cos(w1 * x + w2)"

    def phi(self, z):
        return np.cos(z)

    def phi_and_derivative(self, z):
        return np.cos(z), -np.sin(z)


class F14(_Amplitude):
    """f = w0 sinh(w1 x + w2) (unbounded: overflows for |z| > ~710, not clipped, as in the code)."""

    name, formula = "F14", "w0 * sinh(w1 * x + w2)"

    def phi(self, z):
        return np.sinh(z)

    def phi_and_derivative(self, z):
        return np.sinh(z), np.cosh(z)


class F15(_Amplitude):
    """f = w0 (cosh(w1 x + w2) - 1)."""

    name, formula = "F15", "w0 * (cosh(w1 * x + w2) - 1)"

    def phi(self, z):
        return np.cosh(z) - 1.0

    def phi_and_derivative(self, z):
        return np.cosh(z) - 1.0, np.sinh(z)


class F16(_Amplitude):
    """f = w0 tanh(w1 x + w2)."""

    name, formula = "F16", "w0 * tanh(w1 * x + w2)"

    def phi(self, z):
        return np.tanh(z)

    def phi_and_derivative(self, z):
        t = np.tanh(z)
        return t, 1.0 - t * t
