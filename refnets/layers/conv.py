"""2-D convolution (NCHW) by im2col + one matmul, with a plain-loop reference.

Layout (PyTorch's ``nn.Conv2d``, cross-correlation, no kernel flip)::

    x : (N, C_in, H, W)        W : (C_out, C_in, kh, kw)        b : (C_out,)
    y : (N, C_out, H_out, W_out),   H_out = (H + 2 p_h - kh) // s_h + 1   (same for W)

    y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * xp[n, c, s_h i + u, s_w j + v]

where ``xp`` is ``x`` zero-padded by (p_h, p_w) on each side.

Notes
-----
**im2col.** Every receptive field becomes one row of a matrix::

    cols[(n, i, j), (c, u, v)] = xp[n, c, s_h i + u, s_w j + v]
    cols : (N*H_out*W_out, C_in*kh*kw)

rows ordered (n, i, j), columns ordered (c, u, v) -- the column order of
``W_mat = W.reshape(C_out, -1)`` -- so the convolution is one matmul::

    Y = cols @ W_mat.T + b                  Y : (N*H_out*W_out, C_out)
    y = Y.reshape(N, H_out, W_out, C_out).transpose(0, 3, 1, 2)

The windows come from ``numpy.lib.stride_tricks.sliding_window_view`` (a
zero-copy view of every kh x kw window), followed by one copy.

*Memory layout (speed only, the values are as above).* ``im2col`` stores
``cols`` column-major, i.e. it fills the C-contiguous (C_in*kh*kw, N*H_out*W_out)
array ``cols.T`` and returns its transpose view. Row (c, u, v) of ``cols.T`` is
channel c of the padded input shifted by (u, v): a copy whose inner loop runs
along image rows, several times faster than gathering 3-element kernel rows.
The layer accordingly computes the transposed products, which need no
reordering either::

    Y.T = W_mat @ cols.T                   (C_out, N*H_out*W_out): channel-major

**Backward.** With dY.T = dy.transpose(1, 0, 2, 3).reshape(C_out, -1)::

    dW = (dY.T @ cols).reshape(W.shape)    (sum over the batch and positions)
    db = dY.T.sum(axis=1)
    dcols = dY @ W_mat                     (computed as (W_mat.T @ dY.T).T)
    dx = col2im(dcols)                     (adjoint of im2col)

``col2im`` is the adjoint (transpose) of the linear map ``im2col``: every entry of
``dcols`` is added back to the input pixel it was copied from, so pixels shared
by overlapping windows receive the sum of their contributions. It loops over the
kh*kw kernel offsets (u, v) only; each iteration is one strided slice-add over
all samples, channels and positions at once.

``conv2d_naive`` computes the defining sum with explicit loops: slow, readable,
and the oracle the tests compare the im2col path against.

References
----------
Chellapilla, Puri & Simard (2006), "High performance convolutional neural
networks for document processing" (the im2col unrolling).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..validation import check_bool, check_input, check_rng
from .base import Layer
from .init import get_initializer

__all__ = ["Conv2D", "im2col", "col2im", "conv_output_shape", "conv2d_naive"]


# ----------------------------------------------------------------------------
# argument normalisation
# ----------------------------------------------------------------------------
def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _channels(c_in, c_out, where):
    """Validate the channel counts of a conv-like layer -> (c_in, c_out) as ints."""
    for name, v in (("c_in", c_in), ("c_out", c_out)):
        if not _is_int(v) or v < 1:
            raise ValueError(f"{where}: {name} must be a positive int, got {v!r}")
    return int(c_in), int(c_out)


def _check_nchw(x, c_in, where):
    """``x`` as a floating (N, c_in, H, W) array, or a ValueError naming it."""
    x = check_input(x, "x", where=where, ndim=4)
    if x.shape[1] != c_in:
        raise ValueError(f"{where}: x must have {c_in} channels (N, {c_in}, H, W), "
                         f"got shape {x.shape}")
    return x


def _pair(value, name, where, minimum=1):
    """int or pair of ints (each >= minimum) -> (a, b)."""
    if _is_int(value):
        pair = (int(value), int(value))
    elif (isinstance(value, (tuple, list)) and len(value) == 2
          and all(_is_int(v) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{where}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    return pair


def _padding(padding, kh, kw, stride, where):
    """int, pair or 'same' -> (p_h, p_w).

    'same' (odd kernels, stride 1 only) pads (k - 1) // 2 on each side, so the
    output has the input's height and width.
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding != "same":
            raise ValueError(f"{where}: padding must be an int, a pair of ints, 'same' or "
                             f"'valid', got {padding!r}")
        if stride != (1, 1):
            raise ValueError(f"{where}: padding='same' requires stride 1, got stride {stride}")
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"{where}: padding='same' requires an odd kernel size "
                             f"(symmetric zero padding), got kernel ({kh}, {kw})")
        return ((kh - 1) // 2, (kw - 1) // 2)
    return _pair(padding, "padding", where, minimum=0)


def _geometry(in_hw, kh, kw, stride, padding, where):
    """Validate and return (stride, padding, (H_out, W_out))."""
    kh, kw = _pair((kh, kw), "kernel_size", where)
    stride = _pair(stride, "stride", where)
    pad = _padding(padding, kh, kw, stride, where)
    h, w = in_hw
    hp, wp = h + 2 * pad[0], w + 2 * pad[1]
    if kh > hp or kw > wp:
        raise ValueError(f"{where}: kernel ({kh}, {kw}) is larger than the padded input "
                         f"({hp}, {wp}) (input ({h}, {w}), padding {pad}); expected "
                         f"kernel <= padded input")
    return stride, pad, ((hp - kh) // stride[0] + 1, (wp - kw) // stride[1] + 1)


def conv_output_shape(input_shape, kernel_size, stride=1, padding=0):
    """Spatial output size of a convolution (or pooling) window.

    Parameters
    ----------
    input_shape : tuple of int
        (H, W), or any shape ending in (H, W) such as (N, C, H, W).
    kernel_size : int or pair
    stride : int or pair
    padding : int, pair or 'same'

    Returns
    -------
    (H_out, W_out) : tuple of int, ``(H + 2p - k) // s + 1`` per axis.
    """
    where = "conv_output_shape"
    input_shape = tuple(input_shape)
    if len(input_shape) < 2 or not all(_is_int(v) and v >= 1 for v in input_shape[-2:]):
        raise ValueError(f"{where}: input_shape must end in (H, W) positive ints, "
                         f"got {input_shape!r}")
    kh, kw = _pair(kernel_size, "kernel_size", where)
    return _geometry(input_shape[-2:], kh, kw, stride, padding, where)[2]


# ----------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------
def _pad(x, pad):
    if pad == (0, 0):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))


def _windows(xp, kh, kw, stride, out_hw):
    """Zero-copy view (N, C, H_out, W_out, kh, kw) of every window of ``xp``.

    ``_windows(xp)[n, c, i, j, u, v] = xp[n, c, s_h i + u, s_w j + v]``.
    """
    v = sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return v[:, :, :(out_hw[0] - 1) * stride[0] + 1:stride[0],
             :(out_hw[1] - 1) * stride[1] + 1:stride[1]]


def _offset_slices(kh, kw, stride, out_hw):
    """For each window offset (u, v): the slices of the (padded) input it touches.

    ``x[:, :, rows, cols]`` with ``(u, v, rows, cols)`` from this generator is
    the (N, C, H_out, W_out) array of entry (u, v) of every window, i.e.
    ``_windows(x)[..., u, v]``, as an assignable basic-slicing view.
    """
    (sh, sw), (ho, wo) = stride, out_hw
    for u in range(kh):
        for v in range(kw):
            yield u, v, slice(u, u + sh * (ho - 1) + 1, sh), slice(v, v + sw * (wo - 1) + 1, sw)


def im2col(x, kh, kw, stride=1, padding=0):
    """Unroll every receptive field of ``x`` into a row.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    kh, kw : int
        Kernel height and width.
    stride : int or pair
    padding : int, pair, 'same' or 'valid'
        Zero padding on each side.

    Returns
    -------
    cols : ndarray of shape (N*H_out*W_out, C*kh*kw)
        ``cols[(n, i, j), (c, u, v)] = xp[n, c, s_h*i + u, s_w*j + v]``; rows in
        (n, i, j) order, columns in (c, u, v) order (that of
        ``W.reshape(C_out, -1)``). A fresh array stored column-major (the
        transpose of a C-contiguous array, see the module notes); use
        ``np.ascontiguousarray(cols)`` if you need row-major memory.
    """
    where = "im2col"
    x = check_input(x, "x", where=where, ndim=4)
    stride, pad, out_hw = _geometry(x.shape[2:], kh, kw, stride, padding, where)
    n, c = x.shape[:2]
    win = _windows(_pad(x, pad), kh, kw, stride, out_hw)      # (N, C, Ho, Wo, kh, kw)
    cols_t = np.empty((c, kh, kw, n, out_hw[0], out_hw[1]), dtype=x.dtype)
    cols_t[...] = win.transpose(1, 4, 5, 0, 2, 3)             # the one copy
    return cols_t.reshape(c * kh * kw, n * out_hw[0] * out_hw[1]).T


def col2im(dcols, x_shape, kh, kw, stride=1, padding=0):
    """Adjoint of :func:`im2col`: sum every row entry back onto its input pixel.

    Parameters
    ----------
    dcols : ndarray of shape (N*H_out*W_out, C*kh*kw)
        Same row/column order as :func:`im2col` (any memory layout;
        column-major, as the layer produces it, avoids one copy).
    x_shape : tuple (N, C, H, W)
        Shape of the original (unpadded) input.
    kh, kw, stride, padding : as in :func:`im2col`.

    Returns
    -------
    dx : ndarray of shape ``x_shape``
        ``<im2col(x), dcols> = <x, col2im(dcols)>`` for every x. Overlapping
        windows add up; entries that fell on the zero padding are dropped.
    """
    where = "col2im"
    x_shape = tuple(int(s) for s in x_shape)
    if len(x_shape) != 4 or min(x_shape) < 1:
        raise ValueError(f"{where}: x_shape must be (N, C, H, W) positive ints, got {x_shape}")
    stride, pad, out_hw = _geometry(x_shape[2:], kh, kw, stride, padding, where)
    n, c, h, w = x_shape
    ho, wo = out_hw
    dcols = check_input(dcols, "dcols", where=where, allow_empty=True)
    if dcols.shape != (n * ho * wo, c * kh * kw):
        raise ValueError(f"{where}: dcols must have shape ({n * ho * wo}, {c * kh * kw}), got "
                         f"{dcols.shape} (expected (N*H_out*W_out, C*kh*kw))")
    # dcols.T[(c, u, v), (n, i, j)] viewed as (u, v, c, n, i, j): entry (u, v) of every window
    dwin = dcols.T.reshape(c, kh, kw, n, ho, wo).transpose(1, 2, 0, 3, 4, 5)
    # accumulate channel-major (C, N, H+2p_h, W+2p_w), so both sides of each add
    # run along contiguous image rows
    dxp = np.zeros((c, n, h + 2 * pad[0], w + 2 * pad[1]), dtype=dcols.dtype)
    for u, v, rows, cols in _offset_slices(kh, kw, stride, out_hw):
        dxp[:, :, rows, cols] += dwin[u, v]
    dxp = dxp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + w]    # drop the padding
    return np.ascontiguousarray(dxp.transpose(1, 0, 2, 3))


# ----------------------------------------------------------------------------
# reference implementation
# ----------------------------------------------------------------------------
def conv2d_naive(x, W, b=None, stride=1, padding=0):
    """The defining sum with plain loops: slow, readable, the test oracle.

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
    W : ndarray of shape (C_out, C_in, kh, kw)
    b : ndarray of shape (C_out,), optional
    stride : int or pair
    padding : int, pair or 'same'

    Returns
    -------
    y : ndarray of shape (N, C_out, H_out, W_out)
        ``y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] * xp[n, c, s_h i + u, s_w j + v]``
    """
    where = "conv2d_naive"
    x = check_input(x, "x", where=where, ndim=4)
    W = check_input(W, "W", where=where, ndim=4)
    if W.shape[1] != x.shape[1]:
        raise ValueError(f"{where}: W must have C_in = x.shape[1] = {x.shape[1]} input "
                         f"channels, got W of shape {W.shape}")
    c_out, _, kh, kw = W.shape
    (sh, sw), pad, (ho, wo) = _geometry(x.shape[2:], kh, kw, stride, padding, where)
    xp = _pad(x, pad)
    y = np.zeros((x.shape[0], c_out, ho, wo), dtype=np.result_type(x, W))
    for n in range(x.shape[0]):
        for o in range(c_out):
            for i in range(ho):
                for j in range(wo):
                    patch = xp[n, :, sh * i:sh * i + kh, sw * j:sw * j + kw]
                    y[n, o, i, j] = np.sum(patch * W[o])
            if b is not None:
                y[n, o] += b[o]
    return y


# ----------------------------------------------------------------------------
# the layer
# ----------------------------------------------------------------------------
class Conv2D(Layer):
    """2-D convolution, NCHW, PyTorch ``nn.Conv2d`` layout (cross-correlation).

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels.
    kernel_size : int or pair (kh, kw)
    stride : int or pair, default 1
    padding : int, pair, 'same' or 'valid', default 0
        Zero padding on each side. 'same' (odd kernels, stride 1) pads
        (k - 1) // 2 and keeps H and W; 'valid' is 0.
    rng : numpy.random.Generator
        Draws the initial weights.
    init : str or callable
        Initialiser for W of shape (C_out, C_in, kh, kw) with fan_in =
        C_in*kh*kw (see :mod:`refnets.layers.init`); default ``"glorot_uniform"``
        as for :class:`~refnets.layers.Dense`. Biases start at zero.
    bias : bool, default True

    Notes
    -----
    See the module docstring for the im2col forward and the col2im backward.
    Parameter gradients are sums over the batch and all output positions.
    """

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, rng=None,
                 init="glorot_uniform", bias=True):
        super().__init__()
        where = "Conv2D"
        self.c_in, self.c_out = _channels(c_in, c_out, where)
        check_rng(rng, "rng", where)
        self.kernel_size = _pair(kernel_size, "kernel_size", where)
        self.stride = _pair(stride, "stride", where)
        self.padding = _padding(padding, *self.kernel_size, self.stride, where)
        self._padding_arg = padding
        self.bias = check_bool(bias, "bias", where)
        shape = (self.c_out, self.c_in) + self.kernel_size
        self.params = {"W": np.asarray(get_initializer(init)(shape, rng), dtype=np.float64)}
        if self.bias:
            self.params["b"] = np.zeros(self.c_out)

    def __repr__(self):
        kh, kw = self.kernel_size
        k = kh if kh == kw else (kh, kw)
        extra = ""
        if self.stride != (1, 1):
            extra += f", stride={self.stride[0] if len(set(self.stride)) == 1 else self.stride}"
        if self.padding != (0, 0):
            extra += f", padding={self._padding_arg!r}"
        if not self.bias:
            extra += ", bias=False"
        return f"Conv2D({self.c_in}, {self.c_out}, {k}{extra})"

    def output_shape(self, input_shape):
        """(C_out, H_out, W_out) for an input of shape (C_in, H, W) or (N, C_in, H, W)."""
        ho, wo = conv_output_shape(input_shape, self.kernel_size, self.stride, self.padding)
        return (self.c_out, ho, wo)

    def forward(self, x, params=None):
        """y = conv(x, W) + b via im2col and one matmul.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
        params : dict with 'W' (C_out, C_in, kh, kw) and 'b' (C_out,), optional

        Returns
        -------
        y : ndarray of shape (N, C_out, H_out, W_out)
        cache : dict with the im2col matrix, the weights used and the shapes.
        """
        where = "Conv2D.forward"
        p = self._params(params)
        x = _check_nchw(x, self.c_in, where)
        kh, kw = self.kernel_size
        _, _, (ho, wo) = _geometry(x.shape[2:], kh, kw, self.stride, self.padding, where)
        W = p["W"]
        W_mat = W.reshape(self.c_out, -1)                         # (C_out, C_in*kh*kw)
        cols = im2col(x, kh, kw, self.stride, self.padding)       # (N*Ho*Wo, C_in*kh*kw)
        Y_t = W_mat @ cols.T                                      # Y.T: (C_out, N*Ho*Wo)
        if self.bias:
            Y_t += p["b"][:, None]
        n = x.shape[0]
        y = np.ascontiguousarray(Y_t.reshape(self.c_out, n, ho, wo).transpose(1, 0, 2, 3))
        return y, {"cols": cols, "W": W, "x_shape": x.shape, "y_shape": y.shape}

    def _dY_t(self, dy, cache, where):
        """dY.T = dy as a (C_out, N*H_out*W_out) matrix, columns in (n, i, j) order."""
        dy = self._check_dy(dy, cache["y_shape"], where)
        return dy.transpose(1, 0, 2, 3).reshape(self.c_out, -1)

    def _input_grad(self, dY_t, cache, W):
        kh, kw = self.kernel_size
        dcols = (W.reshape(self.c_out, -1).T @ dY_t).T          # dY @ W_mat: (N*Ho*Wo, C_in*kh*kw)
        return col2im(dcols, cache["x_shape"], kh, kw, self.stride, self.padding)

    def _param_grads(self, dY_t, cache):
        grads = {"W": (dY_t @ cache["cols"]).reshape(cache["W"].shape)}
        if self.bias:
            grads["b"] = dY_t.sum(axis=1)
        return grads

    def backward_input(self, dy, cache, W=None):
        """dL/dx = col2im(dY @ W_mat); feedback alignment may pass its own ``W``.

        Parameters
        ----------
        dy : ndarray of shape (N, C_out, H_out, W_out)
        cache : dict from :meth:`forward`
        W : ndarray of shape (C_out, C_in, kh, kw), optional
            Kernel to send the error through; default the forward weights.

        Returns
        -------
        dx : ndarray of shape (N, C_in, H, W)
        """
        dY_t = self._dY_t(dy, cache, "Conv2D.backward_input")
        if W is None:
            W = cache["W"]
        elif np.shape(W) != cache["W"].shape:
            raise ValueError(f"Conv2D.backward_input: W must have shape {cache['W'].shape}, "
                             f"got {np.shape(W)}")
        return self._input_grad(dY_t, cache, np.asarray(W))

    def backward_params(self, dy, cache):
        """dW = (dY.T @ cols).reshape(W.shape), db = sum of dy over (N, H_out, W_out).

        Returns
        -------
        grads : dict with 'W' (C_out, C_in, kh, kw) and 'b' (C_out,)
        """
        return self._param_grads(self._dY_t(dy, cache, "Conv2D.backward_params"), cache)

    def backward(self, dy, cache):
        """Return ``(dx, {'W': dW, 'b': db})``.

        Parameters
        ----------
        dy : ndarray of shape (N, C_out, H_out, W_out)
        cache : dict from :meth:`forward`

        Returns
        -------
        dx : ndarray of shape (N, C_in, H, W), ``col2im(dY @ W_mat)``
        grads : dict, dW = (dY.T @ cols).reshape(W.shape), db = sum of dy over (N, H_out, W_out)
        """
        dY_t = self._dY_t(dy, cache, "Conv2D.backward")           # dY.T: (C_out, N*Ho*Wo)
        return self._input_grad(dY_t, cache, cache["W"]), self._param_grads(dY_t, cache)
