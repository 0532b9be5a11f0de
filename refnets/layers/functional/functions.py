"""The per-connection functions of functional transfer matrices (F01-F20 and LIN).

A functional transfer matrix replaces every weight w_ij of a dense layer by a
small parametric scalar function f(x_i; theta_ij) (Cai et al. 2017/2018).
The catalogue has one small class per function of the authors' code
(``Matrices/F01.py`` ... ``F20.py``) plus the plain linear ``LIN`` (f = w x,
which turns a functional layer back into a Dense layer). This module holds the
common base class and the family that is polynomial in x (LIN, F01-F04, F06,
F07, F17-F20: the matmul fast path); the nonlinear family (F05, F08-F16) is in
:mod:`refnets.layers.functional.functions_generic`, and the name -> function
registry (``FUNCTIONS``, ``get_function``) in :mod:`refnets.layers.functional.dense`.

Notation
--------
For one layer with n_in inputs and n_out outputs::

    theta : (k, n_out, n_in)    k trainable parameters per connection, theta[q] = q-th
    s     : (n_out, n_in)       fixed random signs +-1 ("Sgn(U)"), drawn once, never
                                trained; None for functions without signs
    z     = w1 * x + w2         the inner affine map of the 3-parameter families

Every class provides

* ``value(x, theta, s)`` -- f(x; theta) for x of shape (B, 1, n_in) broadcast
  against theta[q] of shape (n_out, n_in), giving (B, n_out, n_in);
* ``derivatives(x, theta, s)`` -- the list [df/dtheta_q for q in range(k)] and
  df/dx, each broadcastable to (B, n_out, n_in);
* ``init(n_out, n_in, rng, scheme)`` -- the official uniform ranges
  (``scheme="official"``) or a fan-in-scaled variant (``scheme="fan_in"``);
* for the functions that are polynomials in x with coefficients depending only
  on theta (the *fast path*, ``has_fast_path = True``):
  ``coefficients(theta, s) -> {p: C_p}`` with f = sum_p C_p x^p, and
  ``coefficient_grads(theta, s) -> {(p, q): dC_p/dtheta_q}`` (non-zero entries
  only). A layer of such functions is a sum of matmuls of x^p (see
  :mod:`refnets.layers.functional.dense`).

The generic ``value``/``derivatives`` and the fast-path coefficients are
written independently from the formula, so the test "generic path == fast
path" compares two derivations, not one code path with itself.

Initialisation (FTM-1a, FTM-1b)
-------------------------------
``official``: the authors' uniform ranges, ``official_ranges`` of each class;
``fan_in``: gains scaled by r = sqrt(6 / n_in), ``fan_in_ranges`` of each
class. The formulas with their derivatives (FTM-3) and every place where a
function differs from the authors' code (F05, F07, F08, F10-F13, F17) are in
``refnets/algorithms/functional_transfer/README.md``, sections 3 and 7.

References
----------
Cai, Xu, Ke, Su, Sun, "Trainable back-propagated functional transfer
matrices", arXiv:1710.10403 (2017); Applied Intelligence (2018),
doi:10.1007/s10489-018-1266-3. Official code:
github.com/cchrewrite/Functional-Transfer-Neural-Networks, ``Matrices/``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FunctionType", "LIN", "F01", "F02", "F03", "F04", "F06", "F07", "F17", "F18", "F19",
           "F20"]

_OFFICIAL = (-0.1, 0.1)          # the code's irange = 0.1
_EXP_CLIP = 30.0                 # F05: b x is clipped to [-30, 30] as in the code


def _relu(z):
    return np.maximum(z, 0.0)


def _step(z):
    """1[z > 0] as float (the ReLU derivative, 0 at the kink)."""
    return (z > 0).astype(np.float64)


def _fan(n_in):
    """He-uniform bound sqrt(6 / fan_in)."""
    return float(np.sqrt(6.0 / n_in))


class FunctionType:
    """One parametric scalar function f(x; theta) per connection.

    Attributes
    ----------
    name : str
        ``"F01"`` ... ``"F20"`` or ``"LIN"``.
    formula : str
        The function, in the parameter names of ``param_names``.
    param_names : tuple of str
        Names of theta[0], theta[1], ... (the official ``W[0], W[1], ...``).
    official_ranges : tuple of (low, high)
        Uniform init range of each parameter in the authors' code.
    uses_sign : bool
        Whether f contains a fixed random sign s = +-1 per connection.
    has_fast_path : bool
        Whether f is a polynomial in x whose coefficients depend on theta only.
    surrogate_gradient : bool
        True if ``derivatives`` returns a documented surrogate (F07) rather
        than the true derivative for some parameter.
    """

    name = "?"
    formula = "?"
    param_names: tuple = ()
    official_ranges: tuple = ()
    uses_sign = False
    has_fast_path = False
    surrogate_gradient = False

    @property
    def k(self):
        """Number of trainable parameters per connection."""
        return len(self.param_names)

    # -- initialisation ----------------------------------------------------
    def fan_in_ranges(self, n_in):
        """Per-parameter ranges of the fan-in-scaled init (FTM-1b; default: official)."""
        return self.official_ranges

    def init(self, n_out, n_in, rng, scheme="official"):
        """Draw theta of shape (k, n_out, n_in), each theta[q] ~ U(range_q) (FTM-1a, FTM-1b).

        Parameters
        ----------
        n_out, n_in : int
        rng : numpy.random.Generator
        scheme : {'official', 'fan_in'}
        """
        if scheme == "official":
            ranges = self.official_ranges
        elif scheme == "fan_in":
            ranges = self.fan_in_ranges(n_in)
        else:
            raise ValueError(f"{self.name}.init: scheme must be 'official' or 'fan_in', "
                             f"got {scheme!r}")
        theta = np.empty((self.k, n_out, n_in))
        for q, (lo, hi) in enumerate(ranges):
            theta[q] = rng.uniform(lo, hi, size=(n_out, n_in))
        return theta

    # -- the function --------------------------------------------------------
    def value(self, x, theta, s):  # pragma: no cover - interface
        """f(x; theta); x (B, 1, n_in), theta (k, n_out, n_in) -> (B, n_out, n_in)."""
        raise NotImplementedError

    def derivatives(self, x, theta, s):  # pragma: no cover - interface
        """([df/dtheta_q for q], df/dx), each broadcastable to (B, n_out, n_in)."""
        raise NotImplementedError

    def kink_argument(self, x, theta):
        """Array whose zeros are the points where f is not differentiable, or None.

        Finite-difference checks keep |kink_argument| away from 0 (ReLU kinks
        of F06-F09, the clip boundary of F05).
        """
        return None

    # -- fast path (polynomials in x) ----------------------------------------
    def coefficients(self, theta, s):
        """{p: C_p (n_out, n_in)} with f(x) = sum_p C_p x^p (fast-path functions)."""
        raise NotImplementedError(f"{self.name} has no matmul fast path")

    def coefficient_grads(self, theta, s):
        """{(p, q): dC_p/dtheta_q}, the non-zero entries (fast-path functions)."""
        raise NotImplementedError(f"{self.name} has no matmul fast path")

    def __repr__(self):
        return f"{self.name}: f(x) = {self.formula}"


# ---------------------------------------------------------------------------
# Linear in x: f = W_eff(theta, s) * x (LIN, F01, F02, F06, F07)
# ---------------------------------------------------------------------------

class LIN(FunctionType):
    """f = w x: the ordinary weight; a LIN layer is a Dense layer with W = theta[0]."""

    name, formula = "LIN", "w * x"
    param_names, official_ranges = ("w",), (_OFFICIAL,)
    has_fast_path = True

    def fan_in_ranges(self, n_in):
        return ((-_fan(n_in), _fan(n_in)),)

    def value(self, x, theta, s):
        return theta[0] * x

    def derivatives(self, x, theta, s):
        return [x], theta[0]                                   # df/dw = x, df/dx = w

    def coefficients(self, theta, s):
        return {1: theta[0]}

    def coefficient_grads(self, theta, s):
        return {(1, 0): 1.0}


class F01(LIN):
    """f = w^2 x: a non-negative weight (all connections excitatory)."""

    name, formula = "F01", "w^2 * x"

    def fan_in_ranges(self, n_in):
        r = _fan(n_in) ** 0.5
        return ((-r, r),)

    def value(self, x, theta, s):
        return theta[0] ** 2 * x

    def derivatives(self, x, theta, s):
        w = theta[0]
        return [2.0 * w * x], w ** 2                           # 2 w x ; w^2

    def coefficients(self, theta, s):
        return {1: theta[0] ** 2}

    def coefficient_grads(self, theta, s):
        return {(1, 0): 2.0 * theta[0]}


class F02(LIN):
    """f = w^3 x: a weight that starts near zero (|w^3| <= 1e-3 at init)."""

    name, formula = "F02", "w^3 * x"

    def fan_in_ranges(self, n_in):
        r = _fan(n_in) ** (1.0 / 3.0)
        return ((-r, r),)

    def value(self, x, theta, s):
        return theta[0] ** 3 * x

    def derivatives(self, x, theta, s):
        w = theta[0]
        return [3.0 * w ** 2 * x], w ** 3                      # 3 w^2 x ; w^3

    def coefficients(self, theta, s):
        return {1: theta[0] ** 3}

    def coefficient_grads(self, theta, s):
        return {(1, 0): 3.0 * theta[0] ** 2}


class F06(LIN):
    """f = s relu(w) x: a non-negative magnitude with a fixed random sign.

    The code computes relu(w) as clip(w, 0, 1000); the upper clip never binds.
    df/dw = s x 1[w > 0] (the true derivative).
    """

    name, formula = "F06", "s * relu(w) * x"
    official_ranges = ((0.0, 0.2),)
    uses_sign = True

    def fan_in_ranges(self, n_in):
        return ((0.0, _fan(n_in)),)

    def value(self, x, theta, s):
        return s * _relu(theta[0]) * x

    def derivatives(self, x, theta, s):
        w = theta[0]
        return [s * _step(w) * x], s * _relu(w)

    def coefficients(self, theta, s):
        return {1: s * _relu(theta[0])}

    def coefficient_grads(self, theta, s):
        return {(1, 0): s * _step(theta[0])}

    def kink_argument(self, x, theta):
        return theta[0]


class F07(F06):
    """f = s relu(w) x with the code's "ReLU_ada" straight-through gradient.

    Forward as F06. The parameter "gradient" is s x for every w, i.e. the
    gate 1[w > 0] is dropped: equal to the true gradient where w > 0, and
    non-zero (the true one is 0) where w <= 0, so a dead connection can
    come back. This is a surrogate, reproduced from the code on purpose.
    """

    name, formula = "F07", "s * relu(w) * x  (straight-through dw)"
    surrogate_gradient = True

    def derivatives(self, x, theta, s):
        return [s * x], s * _relu(theta[0])                   # surrogate: no gate on dw

    def coefficient_grads(self, theta, s):
        return {(1, 0): s}


# ---------------------------------------------------------------------------
# Polynomials in x with free coefficients (F03, F04)
# ---------------------------------------------------------------------------

class F03(FunctionType):
    """f = a x^2 + b x (theta = (a, b), as the code's W[0] x^2 + W[1] x)."""

    name, formula = "F03", "a * x^2 + b * x"
    param_names, official_ranges = ("a", "b"), (_OFFICIAL, _OFFICIAL)
    has_fast_path = True

    def fan_in_ranges(self, n_in):
        return ((-_fan(n_in), _fan(n_in)),) * 2

    def value(self, x, theta, s):
        return theta[0] * x ** 2 + theta[1] * x

    def derivatives(self, x, theta, s):
        a, b = theta
        return [x ** 2, x], 2.0 * a * x + b

    def coefficients(self, theta, s):
        return {2: theta[0], 1: theta[1]}

    def coefficient_grads(self, theta, s):
        return {(2, 0): 1.0, (1, 1): 1.0}


class F04(FunctionType):
    """f = a x^3 + b x^2 + c x."""

    name, formula = "F04", "a * x^3 + b * x^2 + c * x"
    param_names, official_ranges = ("a", "b", "c"), (_OFFICIAL,) * 3
    has_fast_path = True

    def fan_in_ranges(self, n_in):
        return ((-_fan(n_in), _fan(n_in)),) * 3

    def value(self, x, theta, s):
        return theta[0] * x ** 3 + theta[1] * x ** 2 + theta[2] * x

    def derivatives(self, x, theta, s):
        a, b, c = theta
        return [x ** 3, x ** 2, x], 3.0 * a * x ** 2 + 2.0 * b * x + c

    def coefficients(self, theta, s):
        return {3: theta[0], 2: theta[1], 1: theta[2]}

    def coefficient_grads(self, theta, s):
        return {(3, 0): 1.0, (2, 1): 1.0, (1, 2): 1.0}


# ---------------------------------------------------------------------------
# Squares (F17-F20): even in x (F17/F18) or in x + w1 (F19/F20)
# ---------------------------------------------------------------------------

class F17(FunctionType):
    """f = w^2 x^2: even in x, so blind to the sign of its input."""

    name, formula = "F17", "w^2 * x^2"
    param_names, official_ranges = ("w",), (_OFFICIAL,)
    has_fast_path = True

    def _sign(self, s):
        return 1.0

    def fan_in_ranges(self, n_in):
        r = _fan(n_in) ** 0.5
        return ((-r, r),)

    def value(self, x, theta, s):
        return self._sign(s) * theta[0] ** 2 * x ** 2

    def derivatives(self, x, theta, s):
        w, sg = theta[0], self._sign(s)
        return [2.0 * sg * w * x ** 2], 2.0 * sg * w ** 2 * x

    def coefficients(self, theta, s):
        return {2: self._sign(s) * theta[0] ** 2}

    def coefficient_grads(self, theta, s):
        return {(2, 0): 2.0 * self._sign(s) * theta[0]}


class F18(F17):
    """f = s w^2 x^2 (F17 with a fixed random sign)."""

    name, formula = "F18", "s * w^2 * x^2"
    uses_sign = True

    def _sign(self, s):
        return s


class F19(FunctionType):
    """f = w0^2 (x + w1)^2: a shifted square with a non-negative gain A = w0^2.

    Fast path: expanding the square, f = A x^2 + 2 A w1 x + A w1^2.
    """

    name, formula = "F19", "w0^2 * (x + w1)^2"
    param_names, official_ranges = ("w0", "w1"), (_OFFICIAL, _OFFICIAL)
    has_fast_path = True

    def _sign(self, s):
        return 1.0

    def fan_in_ranges(self, n_in):
        r = _fan(n_in) ** 0.5
        return ((-r, r), _OFFICIAL)

    def value(self, x, theta, s):
        return self._sign(s) * theta[0] ** 2 * (x + theta[1]) ** 2

    def derivatives(self, x, theta, s):
        w0, w1 = theta
        sg = self._sign(s)
        u = x + w1
        return [2.0 * sg * w0 * u ** 2, 2.0 * sg * w0 ** 2 * u], 2.0 * sg * w0 ** 2 * u

    def coefficients(self, theta, s):
        w0, w1 = theta
        A = self._sign(s) * w0 ** 2                             # (FTM-6d)
        return {2: A, 1: 2.0 * A * w1, 0: A * w1 ** 2}

    def coefficient_grads(self, theta, s):
        w0, w1 = theta
        sg = self._sign(s)
        A, dA = sg * w0 ** 2, 2.0 * sg * w0                    # A = s w0^2, dA/dw0
        return {(2, 0): dA, (1, 0): 2.0 * dA * w1, (0, 0): dA * w1 ** 2,
                (1, 1): 2.0 * A, (0, 1): 2.0 * A * w1}


class F20(F19):
    """f = s w0^2 (x + w1)^2 (F19 with a fixed random sign)."""

    name, formula = "F20", "s * w0^2 * (x + w1)^2"
    uses_sign = True

    def _sign(self, s):
        return s
