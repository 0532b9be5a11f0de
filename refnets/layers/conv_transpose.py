"""Transposed 2-D convolution (NCHW), the adjoint of :class:`~refnets.layers.conv.Conv2D`.

Layout (PyTorch's ``nn.ConvTranspose2d``, groups = 1, dilation = 1)::

    x : (N, C_in, H, W)        W : (C_in, C_out, kh, kw)        b : (C_out,)
    y : (N, C_out, H_out, W_out),
    H_out = (H - 1) s_h - 2 p_h + kh + op_h          (same for W; op = output_padding)

Definition: with ``conv`` the cross-correlation of :mod:`refnets.layers.conv`
using the kernel ``W`` read as a Conv2D kernel of shape (C_in, C_out, kh, kw)
(it maps C_out channels to C_in), the transposed convolution is its adjoint::

    <conv(y, W), x> = <y, conv_transpose(x, W)>       for all x, y (bias 0)

so every input pixel x[n, c, i, j] scatters ``x * W[c, :, :, :]`` onto the
window of the output it came from. This is what DTP's conv feedback maps use
(Ernoult et al. 2022): the same kernel size, stride and padding as the forward
conv, channels reversed.

Notes
-----
**im2col form.** With X the (N*H*W, C_in) matrix of input pixels (rows (n, i, j))
and W_mat = W.reshape(C_in, C_out*kh*kw)::

    cols = X @ W_mat                         (N*H*W, C_out*kh*kw)
    y    = col2im(cols, (N, C_out, H_out, W_out), kh, kw, s, p) + b

**Backward**, given dy (N, C_out, H_out, W_out)::

    dcols = im2col(dy, kh, kw, s, p)         (N*H*W, C_out*kh*kw)
    dX    = dcols @ W_matᵀ                   -> dx (N, C_in, H, W): a convolution of dy
    dW    = (Xᵀ @ dcols).reshape(W.shape)    (sum over the batch and positions)
    db    = dy.sum(axis=(0, 2, 3))

The ``output_padding`` rows/columns at the bottom/right receive no window
(they hold b only); they exist so that a stride-s conv's input size is
recovered exactly (PyTorch semantics, ``0 <= op < s``).

References
----------
V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep learning",
arXiv 1603.07285 (2016), Sec. 4 (transposed convolution as the conv's transpose).
"""

from __future__ import annotations

import numpy as np

from ..validation import check_bool
from .base import Layer
from .conv import _channels, _check_nchw, _pair, col2im, im2col
from .init import get_initializer

__all__ = ["ConvTranspose2D"]


class ConvTranspose2D(Layer):
    """Transposed convolution, NCHW, PyTorch ``nn.ConvTranspose2d`` layout.

    Parameters
    ----------
    c_in, c_out : int
        Input and output channels.
    kernel_size : int or pair (kh, kw)
    stride : int or pair, default 1
    padding : int or pair, default 0
        The padding of the forward conv this layer transposes.
    output_padding : int or pair, default 0
        Extra rows/columns at the bottom/right, each < stride.
    rng : numpy.random.Generator
    init : str or callable
        Initialiser of W (C_in, C_out, kh, kw); default "glorot_uniform". b = 0.
    bias : bool, default True
    """

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, output_padding=0,
                 rng=None, init="glorot_uniform", bias=True):
        super().__init__()
        where = "ConvTranspose2D"
        self.c_in, self.c_out = _channels(c_in, c_out, where)
        self.kernel_size = _pair(kernel_size, "kernel_size", where)
        self.stride = _pair(stride, "stride", where)
        self.padding = _pair(padding, "padding", where, minimum=0)
        self.output_padding = _pair(output_padding, "output_padding", where, minimum=0)
        for axis in (0, 1):
            if self.output_padding[axis] >= self.stride[axis]:
                raise ValueError(f"{where}: output_padding must be smaller than stride, got "
                                 f"output_padding={self.output_padding}, stride={self.stride}")
        self.bias = check_bool(bias, "bias", where)
        shape = (self.c_in, self.c_out) + self.kernel_size
        self.params = {"W": np.asarray(get_initializer(init)(shape, rng), dtype=np.float64)}
        if self.bias:
            self.params["b"] = np.zeros(self.c_out)

    def __repr__(self):
        return (f"ConvTranspose2D({self.c_in}, {self.c_out}, {self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding})")

    def output_hw(self, hw):
        """(H_out, W_out) = (H - 1) s - 2 p + k + op, per axis."""
        out = tuple((n - 1) * s - 2 * p + k + op for n, s, p, k, op in
                    zip(hw, self.stride, self.padding, self.kernel_size, self.output_padding))
        if min(out) < 1:
            raise ValueError(f"ConvTranspose2D: input of spatial size {tuple(hw)} gives an empty "
                             f"output {out}")
        return out

    def forward(self, x, params=None):
        """y = col2im(X @ W_mat) + b.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
        params : dict with 'W' (C_in, C_out, kh, kw) and 'b' (C_out,), optional

        Returns
        -------
        y : ndarray of shape (N, C_out, H_out, W_out)
        cache : dict with the pixel matrix X, the weights used and the shapes.
        """
        where = "ConvTranspose2D.forward"
        p = self._params(params)
        x = _check_nchw(x, self.c_in, where)
        n, _, h, w = x.shape
        y_shape = (n, self.c_out) + self.output_hw((h, w))
        kh, kw = self.kernel_size
        X = x.transpose(0, 2, 3, 1).reshape(-1, self.c_in)          # rows (n, i, j)
        W = p["W"]
        cols = X @ W.reshape(self.c_in, -1)                          # (N*H*W, C_out*kh*kw)
        y = col2im(cols, y_shape, kh, kw, self.stride, self.padding)
        if self.bias:
            y = y + p["b"][None, :, None, None]
        return y, {"X": X, "W": W, "x_shape": x.shape, "y_shape": y_shape}

    def backward_params(self, dy, cache):
        """dW = (Xᵀ im2col(dy)).reshape(W.shape), db = sum of dy over (N, H_out, W_out)."""
        dy = self._check_dy(dy, cache["y_shape"], "ConvTranspose2D.backward_params")
        kh, kw = self.kernel_size
        dcols = im2col(dy, kh, kw, self.stride, self.padding)       # (N*H*W, C_out*kh*kw)
        grads = {"W": (cache["X"].T @ dcols).reshape(cache["W"].shape)}
        if self.bias:
            grads["b"] = dy.sum(axis=(0, 2, 3))
        return grads

    def backward(self, dy, cache):
        """Return ``(dx, {'W': dW, 'b': db})``; dx = im2col(dy) @ W_matᵀ, a convolution of dy."""
        dy = self._check_dy(dy, cache["y_shape"], "ConvTranspose2D.backward")
        kh, kw = self.kernel_size
        n, c_in, h, w = cache["x_shape"]
        dcols = im2col(dy, kh, kw, self.stride, self.padding)
        W_mat = cache["W"].reshape(self.c_in, -1)
        dx = (dcols @ W_mat.T).reshape(n, h, w, c_in).transpose(0, 3, 1, 2)
        grads = {"W": (cache["X"].T @ dcols).reshape(cache["W"].shape)}
        if self.bias:
            grads["b"] = dy.sum(axis=(0, 2, 3))
        return np.ascontiguousarray(dx), grads
