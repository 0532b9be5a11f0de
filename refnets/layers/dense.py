"""Fully connected (affine) layer.

Notes
-----
Forward, for a batch of row vectors x (N, n_in)::

    z = x @ W.T + b            W : (n_out, n_in), b : (n_out,)

Backward, given dz = dL/dz (N, n_out)::

    dx = dz @ W                (the W^T of column notation; FA swaps in B here)
    dW = dz.T @ x              (sum over the batch)
    db = dz.sum(axis=0)

Leading dimensions beyond the batch are allowed, ``x`` of shape
(..., n_in), e.g. (T, N, n_in) for a per-time-step read-out; they are
flattened for the matmuls and the gradients sum over all of them.
"""

from __future__ import annotations

import numpy as np

from ..validation import check_bool, check_input, check_int
from .base import Layer
from .init import get_initializer

__all__ = ["Dense"]


class Dense(Layer):
    """Affine layer ``z = x @ W.T + b`` (PyTorch ``nn.Linear`` layout).

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths.
    rng : numpy.random.Generator
        Draws the initial weights.
    init : str or callable
        Weight initialiser name (see :mod:`refnets.layers.init`), default
        ``"glorot_uniform"``. Biases start at zero.
    bias : bool
        Include ``b`` (default True).
    """

    def __init__(self, n_in, n_out, rng, init="glorot_uniform", bias=True):
        super().__init__()
        self.n_in = check_int(n_in, "n_in", "Dense", low=1)
        self.n_out = check_int(n_out, "n_out", "Dense", low=1)
        self.bias = check_bool(bias, "bias", "Dense")
        self.params = {"W": np.asarray(get_initializer(init)((self.n_out, self.n_in), rng),
                                       dtype=np.float64)}
        if self.bias:
            self.params["b"] = np.zeros(self.n_out)

    def __repr__(self):
        return f"Dense({self.n_in}, {self.n_out}{'' if self.bias else ', bias=False'})"

    def forward(self, x, params=None):
        """z = x @ W.T + b.

        Parameters
        ----------
        x : ndarray of shape (..., n_in)
        params : dict with 'W' (n_out, n_in) and 'b' (n_out,), optional

        Returns
        -------
        z : ndarray of shape (..., n_out)
        cache : dict with the input and the weights used.
        """
        p = self._params(params)
        x = check_input(x, "x", where="Dense.forward")
        if x.ndim < 2 or x.shape[-1] != self.n_in:
            raise ValueError(f"Dense.forward: x must have shape (N, {self.n_in}) "
                             f"(or (..., {self.n_in})), got {x.shape}")
        W = p["W"]
        z = x @ W.T
        if self.bias:
            z = z + p["b"]
        return z, {"x": x, "W": W, "z_shape": z.shape}

    def backward_input(self, dz, cache, W=None):
        """dL/dx = dz @ W. Feedback alignment passes its fixed matrix as ``W``.

        Parameters
        ----------
        dz : ndarray of shape (..., n_out)
        W : ndarray of shape (n_out, n_in), optional
            Matrix to send the error through; default the forward weights.
        """
        dz = self._check_dy(dz, cache["z_shape"], "Dense.backward_input", "dz")
        if W is None:
            W = cache["W"]
        elif np.shape(W) != (self.n_out, self.n_in):
            raise ValueError(f"Dense.backward_input: W must have shape "
                             f"({self.n_out}, {self.n_in}), got {np.shape(W)}")
        return dz @ W

    def backward_params(self, dz, cache):
        """dL/dW = dz^T x and dL/db = sum of dz, summed over all leading dims."""
        dz = self._check_dy(dz, cache["z_shape"], "Dense.backward_params", "dz")
        x2 = cache["x"].reshape(-1, self.n_in)
        dz2 = dz.reshape(-1, self.n_out)
        grads = {"W": dz2.T @ x2}
        if self.bias:
            grads["b"] = dz2.sum(axis=0)
        return grads

    def backward(self, dz, cache):
        """Return ``(dx, {'W': dW, 'b': db})``."""
        return self.backward_input(dz, cache), self.backward_params(dz, cache)
