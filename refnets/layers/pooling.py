"""Pooling (max, average) over NCHW feature maps, and Flatten.

Windows of size (p_h, p_w) move with stride (s_h, s_w) (default: the window
size, i.e. non-overlapping) over an unpadded input; trailing rows/columns that
do not fill a window are dropped (PyTorch's ``ceil_mode=False``)::

    H_out = (H - p_h) // s_h + 1          (same for W)

Notes
-----
Max pooling::

    y[n, c, i, j] = max_{u, v} x[n, c, s_h i + u, s_w j + v]
    dx[n, c, s_h i + u*, s_w j + v*] += dy[n, c, i, j]

(u*, v*) is the arg max of the window: the **first** maximum in row-major
order (u, then v), which is what PyTorch's CPU kernel (and ``numpy.argmax``) pick.
With ties (several equal maxima, e.g. after a ReLU clamps a window to zeros)
the whole gradient goes to that first entry; max is not differentiable there,
and finite differences straddle the kink, so gradient checks use inputs
without ties. A NaN in a window propagates to y, as in PyTorch, so a
diverging network is not hidden by the pooling (its gradient may go to another
entry of that window than PyTorch's; it is NaN downstream anyway).

Average pooling::

    y[n, c, i, j] = (1 / (p_h p_w)) sum_{u, v} x[n, c, s_h i + u, s_w j + v]
    dx[n, c, s_h i + u, s_w j + v] += dy[n, c, i, j] / (p_h p_w)

Both are vectorised with no loop over samples or pixels: the only Python loop
runs over the p_h*p_w window offsets (u, v). For each offset,
``x[:, :, u::s_h, v::s_w]`` (cropped to H_out x W_out) is the (N, C, H_out, W_out)
array of entry (u, v) of every window -- ``sliding_window_view(x)[..., u, v]`` --
so the forward is a running max (or sum) over p_h*p_w whole arrays and the
backward adds one strided slice per offset, the same fold as
:func:`refnets.layers.conv.col2im`. (Reducing the window view's trailing axes
with ``argmax`` instead is several times slower: its inner loop is only p_h*p_w
long.)
"""

from __future__ import annotations

import numpy as np

from ..validation import check_input
from .base import Layer
from .conv import _offset_slices, _pair

__all__ = ["MaxPool2D", "AvgPool2D", "Flatten"]


class _Pool2D(Layer):
    """Shared argument handling of the pooling layers."""

    def __init__(self, size, stride=None):
        super().__init__()
        name = type(self).__name__
        self.size = _pair(size, "size", name)
        self.stride = self.size if stride is None else _pair(stride, "stride", name)

    def __repr__(self):
        size = self.size[0] if self.size[0] == self.size[1] else self.size
        extra = "" if self.stride == self.size else f", stride={self.stride}"
        return f"{type(self).__name__}({size}{extra})"

    def output_shape(self, input_shape):
        """(C, H_out, W_out) for an input of shape (C, H, W) or (N, C, H, W)."""
        c, h, w = tuple(input_shape)[-3:]
        return (c,) + self._out_hw((h, w), type(self).__name__)

    def _out_hw(self, hw, where):
        (ph, pw), (sh, sw) = self.size, self.stride
        if ph > hw[0] or pw > hw[1]:
            raise ValueError(f"{where}: pooling window {self.size} is larger than the input "
                             f"({hw[0]}, {hw[1]}); expected window <= input")
        return ((hw[0] - ph) // sh + 1, (hw[1] - pw) // sw + 1)

    def _check_x(self, x, params, where):
        self._params(params)
        x = check_input(x, "x", where=where, ndim=4)
        return x, self._out_hw(x.shape[2:], where)

    def _offsets(self, out_hw):
        """(k, rows, cols) for each window offset, k = u*p_w + v (row-major)."""
        pw = self.size[1]
        for u, v, rows, cols in _offset_slices(*self.size, self.stride, out_hw):
            yield u * pw + v, rows, cols


class MaxPool2D(_Pool2D):
    """Max pooling, NCHW (PyTorch ``nn.MaxPool2d(size, stride)``, no padding).

    Parameters
    ----------
    size : int or pair (p_h, p_w)
        Window size.
    stride : int or pair, optional
        Window step; default ``size`` (non-overlapping windows).

    Notes
    -----
    The gradient of each window goes to its first maximum in row-major order
    (PyTorch's choice). At ties max is not differentiable; see the module
    docstring.
    """

    def forward(self, x, params=None):
        """y = max over each window.

        Parameters
        ----------
        x : ndarray of shape (N, C, H, W)

        Returns
        -------
        y : ndarray of shape (N, C, H_out, W_out)
        cache : dict with ``arg``, the row-major offset k = u*p_w + v of each
            window's first maximum, int8 array of shape (N, C, H_out, W_out)
            (intp for windows of more than 127 entries).
        """
        x, out_hw = self._check_x(x, params, "MaxPool2D.forward")
        n, c = x.shape[:2]
        y = np.empty((n, c) + out_hw, dtype=x.dtype)
        small = self.size[0] * self.size[1] <= 127               # int8 suffices (less memory)
        arg = np.zeros((n, c) + out_hw, dtype=np.int8 if small else np.intp)
        for k, rows, cols in self._offsets(out_hw):
            s = x[:, :, rows, cols]                  # entry k of every window
            if k == 0:
                y[...] = s
                continue
            # strictly greater: with ties the first maximum keeps the gradient
            np.copyto(arg, k, where=s > y)
            np.maximum(y, s, out=y)                  # running max; NaN propagates
        return y, {"arg": arg, "x_shape": x.shape, "y_shape": y.shape}

    def backward(self, dy, cache):
        """Route dy[n, c, i, j] to the arg max of window (i, j); returns ``(dx, {})``."""
        dy = self._check_dy(dy, cache["y_shape"], "MaxPool2D.backward")
        arg = cache["arg"]
        dx = np.zeros(cache["x_shape"], dtype=dy.dtype)
        for k, rows, cols in self._offsets(dy.shape[2:]):
            dx[:, :, rows, cols] += np.where(arg == k, dy, 0.0)
        return dx, {}


class AvgPool2D(_Pool2D):
    """Average pooling, NCHW (PyTorch ``nn.AvgPool2d(size, stride)``, no padding).

    Parameters
    ----------
    size : int or pair (p_h, p_w)
    stride : int or pair, optional
        Default ``size``.
    """

    def forward(self, x, params=None):
        """y = mean over each window; x (N, C, H, W) -> y (N, C, H_out, W_out)."""
        x, out_hw = self._check_x(x, params, "AvgPool2D.forward")
        y = np.zeros(x.shape[:2] + out_hw, dtype=x.dtype)
        for _, rows, cols in self._offsets(out_hw):
            y += x[:, :, rows, cols]
        y /= self.size[0] * self.size[1]
        return y, {"x_shape": x.shape, "y_shape": y.shape}

    def backward(self, dy, cache):
        """Spread dy / (p_h p_w) uniformly over each window; returns ``(dx, {})``."""
        dy = self._check_dy(dy, cache["y_shape"], "AvgPool2D.backward")
        share = dy / (self.size[0] * self.size[1])
        dx = np.zeros(cache["x_shape"], dtype=dy.dtype)
        for _, rows, cols in self._offsets(dy.shape[2:]):
            dx[:, :, rows, cols] += share
        return dx, {}


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) in (c, y, x) order, like ``torch.flatten(x, 1)``.

    Any input with at least two dimensions is accepted: all dimensions after the
    first are flattened (C-order). Backward reshapes dy back.
    """

    def forward(self, x, params=None):
        """Return ``(x.reshape(N, -1), cache)``."""
        self._params(params)
        x = check_input(x, "x", where="Flatten.forward")
        if x.ndim < 2:
            raise ValueError(f"Flatten.forward: x must have a batch dimension and at least one "
                             f"feature dimension (N, ...), got shape {x.shape}")
        y = x.reshape(x.shape[0], -1)
        return y, {"x_shape": x.shape, "y_shape": y.shape}

    def backward(self, dy, cache):
        """dx = dy.reshape(x.shape); returns ``(dx, {})``."""
        dy = self._check_dy(dy, cache["y_shape"], "Flatten.backward")
        return dy.reshape(cache["x_shape"]), {}

    def output_shape(self, input_shape):
        """(prod(input_shape),) for a per-sample input shape such as (C, H, W)."""
        return (int(np.prod(input_shape)),)
