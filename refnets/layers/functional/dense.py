"""Functional transfer matrix layer: a learnable scalar function on every connection.

a_j = sum_i f(x_i; theta_ij, s_ij) + b_j (FTM-2); the activation phi is a
separate layer. Backward is the revised delta rule (FTM-4) and the revised
error transmission (FTM-5): the input gradient goes through the per-sample
Jacobian J_nij = f'(x_ni) instead of the constant W^T of a Dense layer. The
derivations, including the fast path's (FTM-6), are in
``refnets/algorithms/functional_transfer/README.md``.

Symbol table
------------
==========================  ==========================  ==========================
paper symbol                code name                   shape
==========================  ==========================  ==========================
x                           ``x``                       (N, n_in)
theta_ij (k per edge)       ``params['theta']``         (k, n_out, n_in)
Sgn(U), fixed signs s_ij    ``signs``                   (n_out, n_in) or None
b                           ``params['b']``             (n_out,)
a = F o x + b               ``a``                       (N, n_out)
delta = dE/da               ``dy``                      (N, n_out)
C_p (fast path)             ``fn.coefficients(...)[p]``  (n_out, n_in)
G_p = delta^T x^p           ``G[p]``                    (n_out, n_in)
==========================  ==========================  ==========================

Two paths compute the same thing:

* **generic** (every function): x[:, None, :] broadcast against theta into
  (N, n_out, n_in) blocks of at most ``max_elements`` connection-samples;
  nothing of that size is cached, backward recomputes the derivatives block by
  block from the cached x, so a call needs at most ``MEMORY_BLOCKS`` block-sized
  temporaries whatever the batch size;
* **fast** (LIN, F01-F04, F06, F07, F17-F20): f = sum_p C_p x^p, so the layer
  is a few matmuls (FTM-6a to FTM-6c). ``path='auto'`` uses it whenever the
  function has one.

References
----------
Cai, Xu, Ke, Su, Sun, "Trainable back-propagated functional transfer
matrices", arXiv:1710.10403 (2017), Applied Intelligence (2018): the
transfer computation and the revised delta rule / error transmission.
"""

from __future__ import annotations

import numpy as np

from ...validation import check_bool, check_choice, check_input, check_number
from ..base import Layer
from .functions import (F01, F02, F03, F04, F06, F07, F17, F18, F19, F20, LIN,
                               FunctionType)
from .functions_generic import F05, F08, F09, F10, F11, F12, F13, F14, F15, F16

__all__ = ["FunctionalDense", "FunctionType", "FUNCTIONS", "FUNCTION_NAMES", "get_function",
           "DEFAULT_MAX_ELEMENTS", "MEMORY_BLOCKS"]

#: name -> singleton instance of every function type, in the official order, LIN last.
FUNCTIONS = {cls.name: cls() for cls in (F01, F02, F03, F04, F05, F06, F07, F08, F09, F10,
                                         F11, F12, F13, F14, F15, F16, F17, F18, F19, F20,
                                         LIN)}
FUNCTION_NAMES = tuple(FUNCTIONS)


def get_function(function, where=""):
    """Return the :class:`FunctionType` named ``function`` ('F12', 'f12', 'LIN', ...).

    A :class:`FunctionType` instance is passed through; ``where`` names the caller
    in the error message.
    """
    if isinstance(function, FunctionType):
        return function
    if isinstance(function, str) and function.upper() in FUNCTIONS:
        return FUNCTIONS[function.upper()]
    prefix = f"{where}: " if where else ""
    raise ValueError(f"{prefix}function must be one of {list(FUNCTION_NAMES)} or a FunctionType, "
                     f"got {function!r}")


#: Default block size of the generic path (connection-samples per temporary array).
DEFAULT_MAX_ELEMENTS = 2 ** 18

#: Upper bound on the number of block-sized temporaries alive at once in the generic path.
MEMORY_BLOCKS = 10


def _powers(x, max_power):
    """[None (x^0 is never formed), x, x^2, ..., x^max_power] by repeated multiplication
    (cheaper than ``x ** 3``, which goes through the generic ``pow``)."""
    powers = [None, x]
    for _ in range(2, max_power + 1):
        powers.append(powers[-1] * x)
    return powers


def given_or_drawn(value, name, shape, draw, rng, where, signs=False):
    """An initial draw of a layer: the given array (copied, float64, shape-checked,
    nothing drawn from ``rng``) or ``draw(rng)``.

    ``rng`` may be None when every draw is given; a needed draw then raises,
    naming it. ``signs=True`` also checks that every entry is +1 or -1.
    """
    if value is None:
        if not isinstance(rng, np.random.Generator):
            got = "None" if rng is None else type(rng).__name__
            raise ValueError(f"{where}: rng must be a numpy.random.Generator to draw {name} "
                             f"(or give {name}= an array of shape {tuple(shape)}), got {got}")
        return draw(rng)
    a = check_input(value, name, where, allow_empty=True)
    if a.shape != tuple(shape):
        raise ValueError(f"{where}: given {name} must have shape {tuple(shape)}, got {a.shape}")
    if signs and not np.all(np.abs(a) == 1.0):
        raise ValueError(f"{where}: given {name} must hold only +1 and -1")
    return a.copy()


def draw_signs(shape, rng):
    """Fixed random signs +-1 with probability 1/2 each (the code's ``Sgn(U)``; FTM-1c)."""
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


class FunctionalDense(Layer):
    """a_j = sum_i f(x_i; theta_ij) + b_j: a dense layer with a function per connection.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths.
    function : str or FunctionType
        ``'F01'`` ... ``'F20'`` or ``'LIN'`` (see :mod:`refnets.layers.functional.functions`).
    rng : numpy.random.Generator or None
        Draws theta (the function's official or fan-in-scaled ranges) and then,
        for functions with signs, the fixed signs; None when both are given.
    init : {'official', 'fan_in'}
        Initial ranges of theta; biases start at zero.
    path : {'auto', 'generic', 'fast'}
        ``'auto'``: the matmul fast path when the function has one.
    max_elements : int
        Block size of the generic path: no temporary array holds more than
        this many float64 values; the extra memory of a call stays below
        ``MEMORY_BLOCKS * 8 * max_elements`` bytes (README section 7).
    bias : bool
        Include b (default True).
    theta : ndarray of shape (k, n_out, n_in), optional
        Given initial parameters instead of a draw (copied; nothing is drawn
        from ``rng`` for them). The authors' ``W`` of shape (k, n_in, n_out)
        is ``theta.transpose(0, 2, 1)``.
    signs : ndarray of shape (n_out, n_in) of +-1, optional
        Given fixed signs (functions with signs only; the authors' ``U.T``).

    Attributes
    ----------
    params : dict
        ``'theta'`` (k, n_out, n_in) and ``'b'`` (n_out,).
    signs : ndarray of shape (n_out, n_in) or None
        Fixed, non-trainable signs (not in ``params``, so no optimiser sees them).
    """

    def __init__(self, n_in, n_out, function, rng, init="official", path="auto",
                 max_elements=DEFAULT_MAX_ELEMENTS, bias=True, theta=None, signs=None):
        super().__init__()
        where = "FunctionalDense"
        self.n_in = check_number(n_in, "n_in", where, low=1, integer=True)
        self.n_out = check_number(n_out, "n_out", where, low=1, integer=True)
        self.max_elements = check_number(max_elements, "max_elements", where, low=1,
                                         integer=True)
        self.bias = check_bool(bias, "bias", where)
        self.function = get_function(function, where)
        check_choice(path, "path", ("auto", "generic", "fast"), where)
        if path == "fast" and not self.function.has_fast_path:
            raise ValueError(f"{where}: path='fast' needs a function with a matmul "
                             f"fast path, got {self.function.name} (use 'auto' or 'generic')")
        self.init_scheme = check_choice(init, "init", ("official", "fan_in"), where)
        self.path = "fast" if (path == "auto" and self.function.has_fast_path) else (
            "generic" if path == "auto" else path)
        shape = (self.n_out, self.n_in)
        # (FTM-1a/1b) theta, then (FTM-1c) the fixed signs: drawn in this order, or given
        self.params = {"theta": given_or_drawn(
            theta, "theta", (self.function.k,) + shape,
            lambda r: self.function.init(self.n_out, self.n_in, r, init), rng, where)}
        if self.bias:
            self.params["b"] = np.zeros(self.n_out)
        if self.function.uses_sign:
            self.signs = given_or_drawn(signs, "signs", shape, lambda r: draw_signs(shape, r),
                                        rng, where, signs=True)
        else:
            if signs is not None:
                raise ValueError(f"{where}: signs must be None for {self.function.name}, "
                                 f"which has no fixed signs; got an array")
            self.signs = None

    def __repr__(self):
        return (f"FunctionalDense({self.n_in}, {self.n_out}, {self.function.name!r}, "
                f"path={self.path!r}{'' if self.bias else ', bias=False'})")

    # -- blocks of the generic path -----------------------------------------
    def _blocks(self, n_rows):
        """Yield (row slice, output slice) blocks of <= max_elements connection-samples.

        Whole output rows are kept when one sample's n_out * n_in fits; otherwise the
        outputs are split too (a block is then one sample by a group of outputs).
        """
        per_row = self.n_out * self.n_in
        if per_row <= self.max_elements:
            rows = max(1, self.max_elements // per_row)
            for r0 in range(0, n_rows, rows):
                yield slice(r0, min(r0 + rows, n_rows)), slice(0, self.n_out)
        else:
            outs = max(1, self.max_elements // self.n_in)
            for r0 in range(n_rows):
                for o0 in range(0, self.n_out, outs):
                    yield slice(r0, r0 + 1), slice(o0, min(o0 + outs, self.n_out))

    def _sign_block(self, signs, outs):
        return None if signs is None else signs[outs]

    # -- forward -------------------------------------------------------------
    def forward(self, x, params=None):
        """a = F o x + b.

        Parameters
        ----------
        x : ndarray of shape (N, n_in) or (..., n_in)
            Leading dimensions are flattened (gradients sum over all of them).
        params : dict with 'theta' (k, n_out, n_in) and 'b' (n_out,), optional

        Returns
        -------
        a : ndarray of shape (..., n_out)
        cache : dict with the input (flattened), theta, signs and the path used.
        """
        where = "FunctionalDense.forward"
        p = self._params(params)
        x = check_input(x, "x", where)                          # float64, finite, non-empty
        if x.ndim < 2 or x.shape[-1] != self.n_in:
            raise ValueError(f"{where}: x must have shape (N, {self.n_in}) "
                             f"(or (..., {self.n_in})), got {x.shape}")
        x2 = x.reshape(-1, self.n_in)
        theta, s, fn = p["theta"], self.signs, self.function
        if self.path == "fast":
            C = fn.coefficients(theta, s)
            xp = _powers(x2, max(C))
            a = np.zeros((x2.shape[0], self.n_out))
            for power, Cp in C.items():
                if power == 0:
                    a += Cp.sum(axis=1)                        # sum_i C_0,ji (FTM-6a)
                else:
                    a += xp[power] @ Cp.T                      # x^p @ C_p^T (FTM-6a)
        else:
            a = np.empty((x2.shape[0], self.n_out))
            for rows, outs in self._blocks(x2.shape[0]):
                f = fn.value(x2[rows, None, :], theta[:, outs], self._sign_block(s, outs))
                a[rows, outs] = f.sum(axis=2)                  # sum over inputs i (FTM-2)
        if self.bias:
            a += p["b"]
        cache = {"x": x2, "x_shape": x.shape, "theta": theta, "signs": s, "path": self.path,
                 "a_shape": x.shape[:-1] + (self.n_out,)}
        return a.reshape(cache["a_shape"]), cache

    def edges(self, cache):
        """Per-edge values and derivatives at the input of a forward pass (for tracing).

        Parameters
        ----------
        cache : dict from :meth:`forward`

        Returns
        -------
        dict with ``'f'`` f(x_ni; theta_ji) (FTM-2, FTM-3), ``'df_dx'`` f'(x_ni; theta_ji)
        (the per-sample Jacobian of FTM-5), each of shape (N, n_out, n_in), and
        ``'df_dtheta'`` of shape (k, N, n_out, n_in) (FTM-4); N counts the flattened
        leading dims. Full-size arrays: meant for small cases.
        """
        x, theta, s = cache["x"][:, None, :], cache["theta"], cache["signs"]
        full = (x.shape[0], self.n_out, self.n_in)
        dfdtheta, dfdx = self.function.derivatives(x, theta, s)
        return {"f": np.broadcast_to(self.function.value(x, theta, s), full).copy(),
                "df_dx": np.broadcast_to(dfdx, full).copy(),
                "df_dtheta": np.stack([np.broadcast_to(d, full) for d in dfdtheta])}

    # -- backward ------------------------------------------------------------
    def backward(self, dy, cache):
        """Revised delta rule and error transmission.

        Parameters
        ----------
        dy : ndarray of shape (..., n_out)
            delta = dL/da.
        cache : dict from :meth:`forward`

        Returns
        -------
        dx : ndarray like the input
        grads : dict with 'theta' (k, n_out, n_in) and 'b' (n_out,), sums over the batch.
        """
        where = "FunctionalDense.backward"
        delta = self._check_dy(check_input(dy, "dy", where), cache["a_shape"], where)
        delta = delta.reshape(-1, self.n_out)
        x, theta, s = cache["x"], cache["theta"], cache["signs"]
        if cache["path"] == "fast":
            dx, dtheta = self._backward_fast(delta, x, theta, s)
        else:
            dx, dtheta = self._backward_generic(delta, x, theta, s)
        grads = {"theta": dtheta}
        if self.bias:
            grads["b"] = delta.sum(axis=0)                      # dE/db (FTM-4)
        return dx.reshape(cache["x_shape"]), grads

    def _backward_fast(self, delta, x, theta, s):
        fn = self.function
        C = fn.coefficients(theta, s)
        xp = _powers(x, max(C))
        G = {}                                                  # G_p = delta^T x^p (FTM-6b)
        for power in C:
            if power == 0:
                G[0] = delta.sum(axis=0)[:, None]
            else:
                G[power] = delta.T @ xp[power]
        dtheta = np.zeros_like(theta)
        for (power, q), dC in fn.coefficient_grads(theta, s).items():
            dtheta[q] += G[power] * dC                          # chain rule through C_p (FTM-6b)
        dx = np.zeros_like(x)
        for power, Cp in C.items():
            if power == 1:
                dx += delta @ Cp
            elif power > 1:
                dx += power * xp[power - 1] * (delta @ Cp)       # p x^(p-1) (delta C_p) (FTM-6c)
        return dx, dtheta

    def _backward_generic(self, delta, x, theta, s):
        fn = self.function
        dtheta = np.zeros_like(theta)
        dx = np.zeros_like(x)
        for rows, outs in self._blocks(x.shape[0]):
            xb, db = x[rows, None, :], delta[rows, outs]
            dfdtheta, dfdx = fn.derivatives(xb, theta[:, outs], self._sign_block(s, outs))
            shape = (xb.shape[0], db.shape[1], self.n_in)
            for q, d in enumerate(dfdtheta):
                # dL/dtheta_q,ji += sum_n delta_nj df/dtheta_q(x_ni)   (FTM-4)
                dtheta[q, outs] += np.einsum("no,noi->oi", db, np.broadcast_to(d, shape))
            # dL/dx_ni += sum_j delta_nj f'_ji(x_ni)                (FTM-5)
            dx[rows] += np.einsum("no,noi->ni", db, np.broadcast_to(dfdx, shape))
        return dx, dtheta
