"""Batch normalisation as a functional layer, with running statistics passed explicitly.

Notes
-----
Training mode (``running_stats=None``): normalise with the statistics of the
batch itself. For x of shape (N, C) the statistics are per feature over the
batch; for (N, C, H, W) (and (N, C, L)) per channel over batch and positions
(PyTorch's BatchNorm1d / BatchNorm2d). With n the number of values averaged::

    mu = mean(x),  v = mean((x - mu)^2)            (biased variance)
    x_hat = (x - mu) / sqrt(v + eps)
    y = x_hat                  (affine=False, the HSIC authors' setting)
    y = gamma * x_hat + beta   (affine=True)

Backward, with dx_hat = dy (times gamma if affine) and means over the same axes::

    dx = (v + eps)^(-1/2) [dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)]
    dgamma = sum(dy * x_hat),  dbeta = sum(dy)

The mean-subtraction makes sum(dx) = 0 per channel, so a bias added before
the BN gets a zero gradient (the Dense bias is dead under BN).

Evaluation mode (``running_stats={'mean': ..., 'var': ...}``): normalise with
the given fixed statistics; then x -> y is affine and dx = dx_hat / sqrt(var + eps).

Running statistics are **not** layer state. ``init_running_stats()`` makes a
fresh dict, ``update_running_stats(stats, cache)`` returns the PyTorch update
(momentum 0.1 on the batch mean and the *unbiased* batch variance) computed from
a training-mode cache; the caller (an algorithm's ``state``) keeps the dict.

References
----------
S. Ioffe, C. Szegedy, "Batch Normalization: Accelerating Deep Network Training
by Reducing Internal Covariate Shift", ICML 2015 (Algorithm 1; backward in
section 3).
"""

from __future__ import annotations

import numpy as np

from ..validation import check_bool, check_input, check_int, check_number
from .base import Layer

__all__ = ["BatchNorm"]


class BatchNorm(Layer):
    """Batch normalisation over all axes but the channel axis 1.

    Parameters
    ----------
    n_features : int
        C, the size of axis 1 of the input ((N, C), (N, C, L) or (N, C, H, W)).
    affine : bool, default False
        False: no parameters (the HSIC-bottleneck authors' ``affine=False``).
        True: learnable ``gamma`` (C,) (init 1) and ``beta`` (C,) (init 0).
    eps : float, default 1e-5
        Added to the variance (PyTorch's default).
    momentum : float in (0, 1], default 0.1
        Weight of the new batch in :meth:`update_running_stats` (PyTorch's).
    """

    def __init__(self, n_features, affine=False, eps=1e-5, momentum=0.1):
        super().__init__()
        where = "BatchNorm"
        self.n_features = check_int(n_features, "n_features", where, low=1)
        self.affine = check_bool(affine, "affine", where)
        self.eps = check_number(eps, "eps", where, low=0, low_open=True)
        self.momentum = check_number(momentum, "momentum", where, low=0, high=1, low_open=True)
        if self.affine:
            self.params = {"gamma": np.ones(self.n_features), "beta": np.zeros(self.n_features)}

    def __repr__(self):
        return f"BatchNorm({self.n_features}{', affine=True' if self.affine else ''})"

    # -- helpers ------------------------------------------------------------
    def _check_x(self, x, where):
        x = check_input(x, "x", where=where, ndim=(2, 3, 4))
        if x.shape[1] != self.n_features:
            raise ValueError(f"{where}: x must have {self.n_features} channels on axis 1 "
                             f"((N, {self.n_features}) or (N, {self.n_features}, H, W)), "
                             f"got shape {x.shape}")
        return x

    @staticmethod
    def _axes(ndim):
        """Reduction axes: every axis but the channel axis 1."""
        return (0,) + tuple(range(2, ndim))

    @staticmethod
    def _bcast(v, ndim):
        """(C,) -> broadcastable against (N, C, ...)."""
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def init_running_stats(self):
        """Fresh running statistics: mean 0, var 1 (PyTorch's initial values)."""
        return {"mean": np.zeros(self.n_features), "var": np.ones(self.n_features)}

    def _check_stats(self, stats, where):
        if not isinstance(stats, dict) or set(stats) != {"mean", "var"}:
            raise ValueError(f"{where}: running_stats must be a dict with keys 'mean' and 'var', "
                             f"got {stats if not isinstance(stats, dict) else sorted(stats)!r}")
        checked = {}
        for key in ("mean", "var"):
            checked[key] = check_input(stats[key], f"running_stats[{key!r}]", where,
                                       allow_empty=True)
            if checked[key].shape != (self.n_features,):
                raise ValueError(f"{where}: running_stats[{key!r}] must have shape "
                                 f"({self.n_features},), got {checked[key].shape}")
        if np.any(checked["var"] < 0):
            raise ValueError(f"{where}: running_stats['var'] must be >= 0, got minimum "
                             f"{checked['var'].min()}")
        return checked

    # -- the contract ---------------------------------------------------------
    def forward(self, x, params=None, running_stats=None):
        """Normalise ``x``.

        Parameters
        ----------
        x : ndarray of shape (N, C), (N, C, L) or (N, C, H, W)
        params : dict with 'gamma' (C,) and 'beta' (C,) when affine, optional
        running_stats : dict with 'mean' (C,) and 'var' (C,), optional
            None (default): training mode, the batch's own statistics.
            Given: evaluation mode, these fixed statistics.

        Returns
        -------
        y : ndarray like ``x``
        cache : dict with x_hat, 1/sqrt(var + eps), the mode, the batch
            statistics (training mode) and the parameters used.
        """
        where = "BatchNorm.forward"
        p = self._params(params)
        x = self._check_x(x, where)
        axes = self._axes(x.ndim)
        n = x.size // self.n_features
        if running_stats is None:
            if n < 2:
                raise ValueError(f"{where}: training mode needs more than one value per channel "
                                 f"(got x of shape {x.shape}); pass running_stats for evaluation")
            mean = x.mean(axis=axes)
            var = np.mean((x - self._bcast(mean, x.ndim)) ** 2, axis=axes)     # biased
        else:
            stats = self._check_stats(running_stats, where)
            mean, var = stats["mean"], stats["var"]
        inv_std = 1.0 / np.sqrt(var + self.eps)
        x_hat = (x - self._bcast(mean, x.ndim)) * self._bcast(inv_std, x.ndim)
        y = x_hat
        if self.affine:
            y = x_hat * self._bcast(p["gamma"], x.ndim) + self._bcast(p["beta"], x.ndim)
        cache = {"x_hat": x_hat, "inv_std": inv_std, "training": running_stats is None,
                 "batch_mean": mean, "batch_var": var, "n": n, "y_shape": y.shape,
                 "gamma": p["gamma"] if self.affine else None}
        return y, cache

    def backward(self, dy, cache):
        """Return ``(dx, grads)``; grads = {'gamma', 'beta'} if affine else {}.

        Parameters
        ----------
        dy : ndarray like the output
        cache : dict from :meth:`forward`

        Notes
        -----
        Training mode: dx = inv_std [dx_hat - mean(dx_hat) - x_hat mean(dx_hat x_hat)]
        (Ioffe & Szegedy 2015, section 3, simplified). Evaluation mode:
        dx = inv_std dx_hat.
        """
        dy = self._check_dy(dy, cache["y_shape"], "BatchNorm.backward")
        ndim, x_hat = dy.ndim, cache["x_hat"]
        axes = self._axes(ndim)
        grads = {}
        dx_hat = dy
        if self.affine:
            grads = {"gamma": np.sum(dy * x_hat, axis=axes), "beta": np.sum(dy, axis=axes)}
            dx_hat = dy * self._bcast(cache["gamma"], ndim)
        inv_std = self._bcast(cache["inv_std"], ndim)
        if not cache["training"]:
            return dx_hat * inv_std, grads
        mean_dxh = np.mean(dx_hat, axis=axes, keepdims=True)
        mean_dxh_xh = np.mean(dx_hat * x_hat, axis=axes, keepdims=True)
        return inv_std * (dx_hat - mean_dxh - x_hat * mean_dxh_xh), grads

    def update_running_stats(self, running_stats, cache, momentum=None):
        """Running statistics after one training-mode forward (PyTorch's rule).

        mean <- (1 - momentum) mean + momentum mu_B;
        var  <- (1 - momentum) var  + momentum v_B n / (n - 1)   (unbiased batch variance)

        Parameters
        ----------
        running_stats : dict with 'mean' (C,) and 'var' (C,)
        cache : dict from a training-mode :meth:`forward`
        momentum : float in (0, 1], optional
            Overrides ``self.momentum`` for this update; 1/(i+1) at the i-th
            batch (i = 0, 1, ...) gives the cumulative average of the batches
            (PyTorch's ``momentum=None``).

        Returns
        -------
        dict, a new one (the argument is not modified).
        """
        where = "BatchNorm.update_running_stats"
        stats = self._check_stats(running_stats, where)
        if not cache.get("training", False):
            raise ValueError(f"{where}: cache must come from a training-mode forward "
                             f"(running_stats=None), got an evaluation-mode cache")
        a = self.momentum if momentum is None else check_number(
            momentum, "momentum", where, low=0, high=1, low_open=True)
        n = cache["n"]
        return {"mean": (1 - a) * stats["mean"] + a * cache["batch_mean"],
                "var": (1 - a) * stats["var"] + a * cache["batch_var"] * n / (n - 1)}
