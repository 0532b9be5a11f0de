"""Recurrent functional transfer matrices: the per-connection memory function and an FTM Elman RNN.

Memory function (FTM-8, the authors' ``Memory-Blocks/memoryblock.py``): every
connection (i -> j) keeps its own state m_ij, its previous output::

    y_ij(t) = tanh(alpha_ij x_i(t) + rho_ij m_ij(t-1) + c_ij),    m_ij(t) = y_ij(t)
    a_j(t)  = sum_i y_ij(t) + b_j

a one-dimensional IndRNN-like cell on every *edge*, not on the neuron. Its
gradient is the authors' one-step truncated one (FTM-9a, states held fixed) or
full BPTT (FTM-9b), both followed by the sums FTM-9c.

FTM Elman RNN (FTM-10, not in the paper): h_t = tanh(F_x o x_t + F_h o h_{t-1} + b)
with :class:`~refnets.layers.functional.dense.FunctionalDense` matrices (no bias)
and full BPTT. With f = LIN it is exactly :class:`~refnets.layers.recurrent.RNN`.

The derivations are in ``refnets/algorithms/functional_transfer/README.md``.

Symbol table
------------
==========================  ==========================  ==============================
paper symbol                code name                   shape
==========================  ==========================  ==============================
x(t), input sequence        ``x``                       (T, N, n_in), time-major
alpha, rho, c               ``params['theta'][0..2]``   (3, n_out, n_in)
b                           ``params['b']``             (n_out,)
y_ij(t) = m_ij(t)           ``cache['ys']``             (T, N, n_out, n_in)
m_ij(0)                     ``m0``                      (N, n_out, n_in)
a_j(t)                      ``a``                       (T, N, n_out)
g_t = dE/du_t (FTM-9)       ``g``                       (T, N, n_out, n_in)
F_x, F_h (FTM-10)           ``params['theta_x']``,      (k, H, n_in), (k_h, H, H)
                            ``params['theta_h']``
h_t                         ``hs``                      (T, N, H)
==========================  ==========================  ==============================

References
----------
Cai, Xu, Ke, Su, Sun, "Trainable back-propagated functional transfer
matrices", arXiv:1710.10403 (2017), the memory-function section;
official code ``Memory-Blocks/memoryblock.py``.
Li, Li, Cook, Zhu, Gao, "Independently recurrent neural network (IndRNN)",
CVPR 2018 (the element-wise recurrence).
"""

from __future__ import annotations

import numpy as np

from ...validation import check_choice, check_input, check_number
from ..base import Layer
from .dense import DEFAULT_MAX_ELEMENTS, FunctionalDense, given_or_drawn

__all__ = ["MemoryFunctional", "FunctionalRNN"]


def _check_sequence(x, n_in, where):
    x = check_input(x, "x", where, batch_axis=1)                # time-major (T, N, n_in)
    if x.ndim != 3 or x.shape[2] != n_in or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{where}: x must have shape (T, N, {n_in}) (time-major, T >= 1, "
                         f"N >= 1), got {x.shape}")
    return x


def _check_state(value, name, shape, where):
    a = check_input(value, name, where)
    if a.shape != tuple(shape):
        raise ValueError(f"{where}: {name} must have shape {tuple(shape)}, got {a.shape}")
    return a


class MemoryFunctional(Layer):
    """Functional transfer matrix of memory functions, y_ij(t) = tanh(alpha x + rho m + c).

    Parameters
    ----------
    n_in, n_out : int
    rng : numpy.random.Generator or None
        Draws alpha, rho, c ~ U(-irange, irange) (the code's init); b = 0.
        None when ``theta`` is given.
    gradient : {'truncated', 'bptt'}
        ``'truncated'``: the authors' one-step gradient (states held fixed);
        ``'bptt'``: exact backpropagation through the whole sequence.
    irange : float
        Half-width of the uniform init (official 0.1), > 0.
    theta : ndarray of shape (3, n_out, n_in), optional
        Given initial (alpha, rho, c) instead of a draw. The authors' ``W`` of
        shape (3, n_in, n_out) is ``theta.transpose(0, 2, 1)``.

    Attributes
    ----------
    params : dict
        ``'theta'`` (3, n_out, n_in) = (alpha, rho, c), ``'b'`` (n_out,).

    Notes
    -----
    The layer keeps no state between calls: pass the previous call's final
    state ``cache['m_last']`` as ``m0`` to continue a sequence (the code's
    online mode); ``m0=None`` starts from zeros (the code's ``reset``).
    """

    def __init__(self, n_in, n_out, rng, gradient="truncated", irange=0.1, theta=None):
        super().__init__()
        where = "MemoryFunctional"
        self.n_in = check_number(n_in, "n_in", where, low=1, integer=True)
        self.n_out = check_number(n_out, "n_out", where, low=1, integer=True)
        self.gradient = check_choice(gradient, "gradient", ("truncated", "bptt"), where)
        irange = check_number(irange, "irange", where, low=0.0, low_open=True)
        shape = (3, self.n_out, self.n_in)
        # alpha, rho, c ~ U(-irange, irange) (the authors' init), or given
        self.params = {"theta": given_or_drawn(theta, "theta", shape,
                                               lambda r: r.uniform(-irange, irange, size=shape),
                                               rng, where),
                       "b": np.zeros(self.n_out)}

    def __repr__(self):
        return f"MemoryFunctional({self.n_in}, {self.n_out}, gradient={self.gradient!r})"

    @staticmethod
    def cell(x_t, m_prev, theta):
        """One step of every connection: y = tanh(alpha x + rho m_prev + c).

        Parameters
        ----------
        x_t : ndarray of shape (N, n_in)
        m_prev : ndarray of shape (N, n_out, n_in)
        theta : ndarray of shape (3, n_out, n_in)

        Returns
        -------
        y : ndarray of shape (N, n_out, n_in)
        """
        alpha, rho, c = theta
        return np.tanh(alpha * x_t[:, None, :] + rho * m_prev + c)

    def forward(self, x, params=None, m0=None):
        """Run the connections' recursions over the sequence.

        Parameters
        ----------
        x : ndarray of shape (T, N, n_in)
        params : dict with 'theta' (3, n_out, n_in) and 'b' (n_out,), optional
        m0 : ndarray of shape (N, n_out, n_in), optional
            Initial connection states (zeros by default).

        Returns
        -------
        a : ndarray of shape (T, N, n_out)
        cache : dict with x, m0, every state ys (T, N, n_out, n_in), ``m_last`` (= ys[-1])
            and the parameters used.
        """
        where = "MemoryFunctional.forward"
        p = self._params(params)
        x = _check_sequence(x, self.n_in, where)
        T, N, _ = x.shape
        shape = (N, self.n_out, self.n_in)
        m0 = np.zeros(shape) if m0 is None else _check_state(m0, "m0", shape, where)
        theta = p["theta"]
        ys = np.empty((T,) + shape)
        m = m0
        for t in range(T):
            m = ys[t] = self.cell(x[t], m, theta)              # m_ij(t) = y_ij(t) (FTM-8)
        a = ys.sum(axis=3) + p["b"]                             # a_j(t) = sum_i y_ij(t) + b_j (FTM-8)
        return a, {"x": x, "m0": m0, "ys": ys, "m_last": ys[-1], "theta": theta,
                   "gradient": self.gradient}

    def backward_full(self, da, cache):
        """Gradients, also w.r.t. the initial state (zero for the truncated gradient).

        Parameters
        ----------
        da : ndarray of shape (T, N, n_out)
        cache : dict from :meth:`forward`

        Returns
        -------
        dx : (T, N, n_in), grads : dict 'theta', 'b', dm0 : (N, n_out, n_in)
        """
        ys, x, theta = cache["ys"], cache["x"], cache["theta"]
        T, N = x.shape[:2]
        where = "MemoryFunctional.backward"
        da = self._check_dy(check_input(da, "da", where, batch_axis=1), (T, N, self.n_out), where)
        alpha, rho, _ = theta
        dtanh = 1.0 - ys * ys                                   # (1 - y_t^2), all t
        if cache["gradient"] == "truncated":
            g = da[..., None] * dtanh                           # m(t-1) held fixed (FTM-9a)
            dm0 = np.zeros_like(cache["m0"])
        else:
            g = np.empty_like(ys)
            carry = np.zeros_like(ys[0])                        # rho * g_{t+1}; none after T
            for t in range(T - 1, -1, -1):
                g[t] = (da[t][..., None] + carry) * dtanh[t]    # e_t (1 - y_t^2) (FTM-9b)
                carry = rho * g[t]
            dm0 = carry
        m_prev = np.concatenate([cache["m0"][None], ys[:-1]], axis=0)   # m(t-1) for every t
        grads = {"theta": np.stack([np.einsum("tnoi,tni->oi", g, x),    # dL/dalpha (FTM-9c)
                                    np.einsum("tnoi,tnoi->oi", g, m_prev),   # dL/drho
                                    g.sum(axis=(0, 1))]),               # dL/dc
                 "b": da.sum(axis=(0, 1))}
        dx = np.einsum("tnoi,oi->tni", g, alpha)
        return dx, grads, dm0

    def backward(self, da, cache):
        """``(dx, {'theta', 'b'})``; see :meth:`backward_full` for dm0."""
        dx, grads, _ = self.backward_full(da, cache)
        return dx, grads


class FunctionalRNN(Layer):
    """Elman RNN with functional transfer matrices: h_t = tanh(F_x o x_t + F_h o h_{t-1} + b).

    Parameters
    ----------
    n_in, n_hidden : int
    function : str or FunctionType
        Function of the input FTM F_x.
    rng : numpy.random.Generator or None
        Draws F_x (theta, then signs), then F_h; None when all four are given.
    recurrent_function : str or FunctionType, optional
        Function of F_h (default: ``function``).
    init : {'official', 'fan_in'}
    path, max_elements :
        Passed to both :class:`FunctionalDense` matrices.
    theta_x, theta_h, signs_x, signs_h : ndarray, optional
        Given initial parameters (k, H, n_in), (k_h, H, H) and fixed signs
        (H, n_in), (H, H) of F_x and F_h instead of draws.

    Attributes
    ----------
    params : dict
        ``'theta_x'`` (k, H, n_in), ``'theta_h'`` (k_h, H, H), ``'b'`` (H,).
    input_ftm, recurrent_ftm : FunctionalDense
        The two matrices (bias-free); their ``signs`` are the fixed signs.
    """

    def __init__(self, n_in, n_hidden, function, rng, recurrent_function=None, init="official",
                 path="auto", max_elements=DEFAULT_MAX_ELEMENTS, theta_x=None, theta_h=None,
                 signs_x=None, signs_h=None):
        super().__init__()
        where = "FunctionalRNN"
        self.n_in = check_number(n_in, "n_in", where, low=1, integer=True)
        self.n_hidden = check_number(n_hidden, "n_hidden", where, low=1, integer=True)
        self.input_ftm = FunctionalDense(n_in, n_hidden, function, rng, init=init, path=path,
                                         max_elements=max_elements, bias=False, theta=theta_x,
                                         signs=signs_x)
        self.recurrent_ftm = FunctionalDense(
            n_hidden, n_hidden, function if recurrent_function is None else recurrent_function,
            rng, init=init, path=path, max_elements=max_elements, bias=False, theta=theta_h,
            signs=signs_h)
        self.params = {"theta_x": self.input_ftm.params["theta"],
                       "theta_h": self.recurrent_ftm.params["theta"],
                       "b": np.zeros(self.n_hidden)}

    def __repr__(self):
        return (f"FunctionalRNN({self.n_in}, {self.n_hidden}, "
                f"{self.input_ftm.function.name!r}, {self.recurrent_ftm.function.name!r})")

    def forward(self, x, params=None, h0=None):
        """Run the recursion.

        Parameters
        ----------
        x : ndarray of shape (T, N, n_in)
        params : dict with 'theta_x', 'theta_h', 'b', optional
        h0 : ndarray of shape (N, H), optional (zeros by default)

        Returns
        -------
        hs : ndarray of shape (T, N, H)
        cache : dict with the input FTM's cache, one recurrent FTM cache per step,
            h0, hs and the parameters used.
        """
        where = "FunctionalRNN.forward"
        p = self._params(params)
        x = _check_sequence(x, self.n_in, where)
        T, N, _ = x.shape
        H = self.n_hidden
        h = np.zeros((N, H)) if h0 is None else _check_state(h0, "h0", (N, H), where)
        h0 = h
        # The input part of every step at once: F_x o x_t for all T*N rows.
        ax, cache_x = self.input_ftm.forward(x, {"theta": p["theta_x"]})
        hs = np.empty((T, N, H))
        caches_h = []
        for t in range(T):
            ah, cache_h = self.recurrent_ftm.forward(h, {"theta": p["theta_h"]})
            # h_t = tanh(F_x o x_t + F_h o h_{t-1} + b) (FTM-10)
            h = hs[t] = np.tanh(ax[t] + ah + p["b"])
            caches_h.append(cache_h)
        return hs, {"cache_x": cache_x, "caches_h": caches_h, "h0": h0, "hs": hs}

    def backward_full(self, dhs, cache):
        """BPTT through both FTMs, also returning dL/dh0.

        Parameters
        ----------
        dhs : ndarray of shape (T, N, H)
            Direct dL/dh_t of every step.

        Returns
        -------
        dx : (T, N, n_in), grads : dict 'theta_x', 'theta_h', 'b', dh0 : (N, H)
        """
        hs = cache["hs"]
        where = "FunctionalRNN.backward"
        dhs = self._check_dy(check_input(dhs, "dhs", where, batch_axis=1), hs.shape, where)
        T = hs.shape[0]
        da = np.empty_like(hs)                                  # dL/da_t (pre-activations)
        dtheta_h = 0.0
        dh_prev = np.zeros_like(hs[0])                          # dL/dh_t via step t+1
        for t in range(T - 1, -1, -1):
            da[t] = (dhs[t] + dh_prev) * (1.0 - hs[t] ** 2)         # (FTM-10)
            # error transmission through F_h (FTM-5): dL/dh_{t-1} = sum_j da_j f_h'(h_{t-1})
            dh_prev, g = self.recurrent_ftm.backward(da[t], cache["caches_h"][t])
            dtheta_h = dtheta_h + g["theta"]
        dx, gx = self.input_ftm.backward(da, cache["cache_x"])
        grads = {"theta_x": gx["theta"], "theta_h": dtheta_h, "b": da.sum(axis=(0, 1))}
        return dx, grads, dh_prev

    def backward(self, dhs, cache):
        """BPTT: ``(dx, {'theta_x', 'theta_h', 'b'})``."""
        dx, grads, _ = self.backward_full(dhs, cache)
        return dx, grads
