"""Elman recurrent layer (tanh cell) with backpropagation through time.

Notes
-----
Sequences are time-major, x of shape (T, N, D) (PyTorch's ``nn.RNN`` default
layout). For t = 1..T, with h_0 given (zeros by default)::

    a_t = x_t @ W_x.T + h_{t-1} @ W_h.T + b        (N, H)   pre-activation
    h_t = tanh(a_t)                                 (N, H)

and the layer returns every state, hs = (h_1, ..., h_T) of shape (T, N, H).

Backward (BPTT), given dhs[t] = dL/dh_t from whatever reads the states::

    for t = T, ..., 1:                               (with da_{T+1} := 0)
        dh_t  = dhs[t] + da_{t+1} @ W_h             (from the output and from step t+1)
        da_t  = dh_t * (1 - h_t^2)                   (through tanh)
    dh_0  = da_1 @ W_h
    dW_x  = sum_t da_t.T @ x_t
    dW_h  = sum_t da_t.T @ h_{t-1}
    db    = sum_t sum_n da_t
    dx_t  = da_t @ W_x

Only the recursion for dh_t is sequential; the weight gradients and dx are
one matmul each over all T*N rows once the loop has filled da.

References
----------
Elman (1990), "Finding structure in time", Cognitive Science 14(2), 179-211.
Werbos (1990), "Backpropagation through time: what it does and how to do it",
Proc. IEEE 78(10).
"""

from __future__ import annotations

import numpy as np

from ..validation import check_input, check_int
from .base import Layer
from .init import get_initializer

__all__ = ["RNN", "LastStep"]


class RNN(Layer):
    """Elman RNN, h_t = tanh(x_t W_x^T + h_{t-1} W_h^T + b) (PyTorch ``nn.RNN`` layout).

    Parameters
    ----------
    n_in : int
        Input width D.
    n_hidden : int
        State width H.
    rng : numpy.random.Generator
        Draws the initial weights.
    init : str or callable
        Initialiser of the input weights ``W_x`` (default ``"glorot_uniform"``).
    recurrent_init : str or callable
        Initialiser of the recurrent weights ``W_h`` (default ``"orthogonal"``:
        all singular values 1, so at initialisation the linearised recursion
        neither explodes nor vanishes; Saxe et al. 2014). The bias ``b`` starts
        at zero.

    Attributes
    ----------
    params : dict
        ``'W_x'`` (H, D), ``'W_h'`` (H, H), ``'b'`` (H,). PyTorch's two biases
        ``b_ih + b_hh`` are the single ``b`` here.
    """

    def __init__(self, n_in, n_hidden, rng, init="glorot_uniform", recurrent_init="orthogonal"):
        super().__init__()
        self.n_in = check_int(n_in, "n_in", "RNN", low=1)
        self.n_hidden = check_int(n_hidden, "n_hidden", "RNN", low=1)
        H, D = self.n_hidden, self.n_in
        self.params = {
            "W_x": np.asarray(get_initializer(init)((H, D), rng), dtype=np.float64),
            "W_h": np.asarray(get_initializer(recurrent_init)((H, H), rng), dtype=np.float64),
            "b": np.zeros(H),
        }

    def __repr__(self):
        return f"RNN({self.n_in}, {self.n_hidden})"

    def forward(self, x, params=None, h0=None):
        """Run the recursion over all time steps.

        Parameters
        ----------
        x : ndarray of shape (T, N, n_in)
            Time-major input sequence.
        params : dict with 'W_x' (H, n_in), 'W_h' (H, H), 'b' (H,), optional
        h0 : ndarray of shape (N, H), optional
            Initial state; zeros by default.

        Returns
        -------
        hs : ndarray of shape (T, N, H)
            h_1, ..., h_T.
        cache : dict with x, h0, hs and the weights used.
        """
        where = "RNN.forward"
        p = self._params(params)
        x = check_input(x, "x", where=where, allow_empty=True)
        if x.ndim != 3 or x.shape[2] != self.n_in or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{where}: x must have shape (T, N, {self.n_in}) (time-major, "
                             f"T >= 1, N >= 1), got {x.shape}")
        T, N, _ = x.shape
        H = self.n_hidden
        if h0 is None:
            h0 = np.zeros((N, H))
        else:
            h0 = check_input(h0, "h0", where=where)
            if h0.shape != (N, H):
                raise ValueError(f"{where}: h0 must have shape ({N}, {H}) (N, n_hidden), "
                                 f"got {h0.shape}")
        W_x, W_h = p["W_x"], p["W_h"]

        # The input part of every a_t in one matmul over all T*N rows; the array
        # is then overwritten in place, step by step, with h_t = tanh(a_t).
        hs = (x.reshape(T * N, -1) @ W_x.T + p["b"]).reshape(T, N, H)
        h = h0
        for t in range(T):
            hs[t] += h @ W_h.T                      # a_t = x_t W_x^T + b + h_{t-1} W_h^T
            h = np.tanh(hs[t], out=hs[t])           # h_t = tanh(a_t)
        return hs, {"x": x, "h0": h0, "hs": hs, "W_x": W_x, "W_h": W_h, "b": p["b"]}

    def backward_full(self, dhs, cache):
        """BPTT, also returning the gradient of the initial state.

        Parameters
        ----------
        dhs : ndarray of shape (T, N, H)
            dL/dh_t for every t (only the direct contributions; the paths
            through later states are added here).
        cache : dict from :meth:`forward`

        Returns
        -------
        dx : ndarray of shape (T, N, n_in)
        grads : dict with 'W_x', 'W_h', 'b'
        dh0 : ndarray of shape (N, H)
        """
        hs, W_h = cache["hs"], cache["W_h"]
        dhs = self._check_dy(dhs, hs.shape, "RNN.backward", "dhs")
        T, N, H = hs.shape
        x, h0 = cache["x"], cache["h0"]

        dtanh = 1.0 - hs * hs                       # tanh'(a_t) = 1 - h_t^2, all t at once
        da = np.empty_like(hs)                      # dL/da_t
        dh_prev = np.zeros((N, H))                  # dL/dh_t through step t+1 (none at t = T)
        for t in range(T - 1, -1, -1):
            dh = dhs[t] + dh_prev                   # dL/dh_t: from the output and from step t+1
            np.multiply(dh, dtanh[t], out=da[t])    # da_t = dh_t * tanh'(a_t)
            dh_prev = da[t] @ W_h                   # dL/dh_{t-1} through a_t
        dh0 = dh_prev

        # Sums over t and n of the per-step outer products, as matmuls over T*N rows.
        da2 = da.reshape(T * N, H)
        grads = {
            "W_x": da2.T @ x.reshape(T * N, self.n_in),
            # h_{t-1} is h0 for the first step (da[0]) and hs[t-1] for da[t], t >= 1
            "W_h": da[0].T @ h0 + da[1:].reshape(-1, H).T @ hs[:-1].reshape(-1, H),
            "b": da2.sum(axis=0),
        }
        dx = (da2 @ cache["W_x"]).reshape(x.shape)
        return dx, grads, dh0

    def backward(self, dhs, cache):
        """BPTT: ``(dx, {'W_x', 'W_h', 'b'})``; see :meth:`backward_full` for dh0."""
        dx, grads, _ = self.backward_full(dhs, cache)
        return dx, grads


class LastStep(Layer):
    """Select the last time step: (T, N, H) -> (N, H).

    Backward scatters dy into the last step; the other steps get zero.
    """

    def forward(self, x, params=None):
        """Return ``x[-1]``.

        Parameters
        ----------
        x : ndarray of shape (T, N, H)

        Returns
        -------
        y : ndarray of shape (N, H)
        cache : dict with the input shape.
        """
        self._params(params)
        x = check_input(x, "x", where="LastStep.forward", ndim=3, batch_axis=1)
        if x.shape[0] == 0:
            raise ValueError(f"LastStep.forward: x must have at least one time step "
                             f"(shape (T, N, H)), got {x.shape}")
        return x[-1], {"x_shape": x.shape}

    def backward(self, dy, cache):
        """dx[T-1] = dy, dx[t] = 0 otherwise."""
        shape = cache["x_shape"]
        dy = self._check_dy(dy, shape[1:], "LastStep.backward")
        dx = np.zeros(shape)
        dx[-1] = dy
        return dx, {}
