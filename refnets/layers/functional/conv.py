"""Functional convolution: a learnable function per kernel entry ("functional kernels").

Notes
-----
An extension not in the paper (FTM-11 in ``refnets/algorithms/functional_transfer/README.md``).
A convolution is a dense layer applied to every receptive field (im2col), so
a functional transfer matrix applied to the patch matrix is a functional
convolution::

    cols = im2col(x)                                   (N*H_out*W_out, C_in*kh*kw)
    y[n, o, i, j] = b_o + sum_{c,u,v} f(xp[n, c, s i + u, s j + v]; theta[:, o, c, u, v])

i.e. :class:`~refnets.layers.functional.dense.FunctionalDense` with
n_in = C_in*kh*kw, n_out = C_out on the rows of ``cols``, theta of shape
(k, C_out, C_in, kh, kw) viewed as (k, C_out, C_in*kh*kw) (the column order
of im2col). Backward: the FTM backward gives dcols and dtheta (summed over
the batch *and* all output positions, since the kernel is shared), and
``dx = col2im(dcols)``.

For the fast-path functions (LIN, F01-F04, F06, F07, F17-F20) f is a
polynomial sum_p C_p x^p, so the layer is a sum of ordinary convolutions of
the element-wise powers x^p with the coefficient kernels C_p (+ a constant
per output channel from C_0, including the zero padding: 0^0 = 1, because
F19's shifted square w0^2 (0 + w1)^2 is not zero on a padded pixel). Other
functions use the chunked generic path: memory and time grow with
N*H_out*W_out*C_out*C_in*kh*kw, so they are meant for small images.

With f = LIN the layer is exactly :class:`~refnets.layers.conv.Conv2D`.

References
----------
Cai et al., arXiv:1710.10403 (functional transfer matrices); Chellapilla,
Puri & Simard (2006) (the im2col unrolling).
"""

from __future__ import annotations

import numpy as np

from ..base import Layer
from ...validation import check_input
from ..conv import _channels, _check_nchw, _padding, _pair, col2im, conv_output_shape, im2col
from .dense import DEFAULT_MAX_ELEMENTS, FunctionalDense, get_function, given_or_drawn

__all__ = ["FunctionalConv2D"]


class FunctionalConv2D(Layer):
    """2-D convolution (NCHW) whose kernel entries are functions f(x; theta).

    Parameters
    ----------
    c_in, c_out : int
    kernel_size : int or pair (kh, kw)
    function : str or FunctionType
        ``'F01'`` ... ``'F20'`` or ``'LIN'``.
    rng : numpy.random.Generator or None
        Draws theta (then the fixed signs), as :class:`FunctionalDense` with
        n_in = c_in*kh*kw; None when both are given.
    stride : int or pair
    padding : int, pair, 'same' or 'valid'
    init : {'official', 'fan_in'}
    path : {'auto', 'generic', 'fast'}
    max_elements : int
        Block size of the generic path (see :mod:`refnets.layers.functional.dense`).
    theta : ndarray of shape (k, C_out, C_in, kh, kw), optional
        Given initial kernels instead of a draw.
    signs : ndarray of shape (C_out, C_in, kh, kw) of +-1, optional
        Given fixed signs (functions with signs only).

    Attributes
    ----------
    params : dict
        ``'theta'`` (k, C_out, C_in, kh, kw), ``'b'`` (C_out,).
    signs : ndarray of shape (C_out, C_in, kh, kw) or None
    """

    def __init__(self, c_in, c_out, kernel_size, function, rng, stride=1, padding=0,
                 init="official", path="auto", max_elements=DEFAULT_MAX_ELEMENTS, theta=None,
                 signs=None):
        super().__init__()
        where = "FunctionalConv2D"
        self.c_in, self.c_out = _channels(c_in, c_out, where)
        kh, kw = _pair(kernel_size, "kernel_size", where)
        _padding(padding, kh, kw, _pair(stride, "stride", where), where)
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, padding
        n_in = self.c_in * kh * kw
        k = get_function(function, where).k
        # given kernels in kernel layout, viewed as the FTM's (k, C_out, C_in*kh*kw)
        if theta is not None:
            theta = given_or_drawn(theta, "theta", (k, self.c_out, self.c_in, kh, kw), None,
                                   None, where).reshape(k, self.c_out, n_in)
        if signs is not None:
            signs = given_or_drawn(signs, "signs", (self.c_out, self.c_in, kh, kw), None, None,
                                   where, signs=True).reshape(self.c_out, n_in)
        self.ftm = FunctionalDense(n_in, self.c_out, function, rng, init=init,
                                   path=path, max_elements=max_elements, theta=theta,
                                   signs=signs)
        self.function = self.ftm.function
        k = self.function.k
        # views of the FTM's arrays in kernel layout: the optimiser updates both at once
        self.params = {"theta": self.ftm.params["theta"].reshape(k, self.c_out, self.c_in, kh, kw),
                       "b": self.ftm.params["b"]}
        self.signs = (None if self.ftm.signs is None
                      else self.ftm.signs.reshape(self.c_out, self.c_in, kh, kw))

    def __repr__(self):
        return (f"FunctionalConv2D({self.c_in}, {self.c_out}, {self.kernel_size}, "
                f"{self.function.name!r}, stride={self.stride!r}, padding={self.padding!r}, "
                f"path={self.ftm.path!r})")

    def output_shape(self, input_shape):
        """(C_out, H_out, W_out) for an input of shape (C_in, H, W) or (N, C_in, H, W)."""
        ho, wo = conv_output_shape(input_shape, self.kernel_size, self.stride, self.padding)
        return (self.c_out, ho, wo)

    def _ftm_params(self, p):
        return {"theta": p["theta"].reshape(self.function.k, self.c_out, -1), "b": p["b"]}

    def forward(self, x, params=None):
        """y = FTM(im2col(x)) reshaped to NCHW.

        Parameters
        ----------
        x : ndarray of shape (N, C_in, H, W)
        params : dict with 'theta' (k, C_out, C_in, kh, kw) and 'b' (C_out,), optional

        Returns
        -------
        y : ndarray of shape (N, C_out, H_out, W_out)
        cache : dict with the FTM's cache (holding the patch matrix) and the shapes.
        """
        where = "FunctionalConv2D.forward"
        p = self._params(params)
        x = _check_nchw(check_input(x, "x", where), self.c_in, where)
        kh, kw = self.kernel_size
        ho, wo = conv_output_shape(x.shape, self.kernel_size, self.stride, self.padding)
        cols = im2col(x, kh, kw, self.stride, self.padding)      # (N*Ho*Wo, C_in*kh*kw) (FTM-11)
        a, cache = self.ftm.forward(cols, self._ftm_params(p))   # (N*Ho*Wo, C_out)
        y = np.ascontiguousarray(a.reshape(x.shape[0], ho, wo, self.c_out).transpose(0, 3, 1, 2))
        return y, {"ftm": cache, "x_shape": x.shape, "y_shape": y.shape}

    def backward(self, dy, cache):
        """dtheta, db summed over the batch and positions; dx = col2im(dcols).

        Returns
        -------
        dx : ndarray of shape (N, C_in, H, W)
        grads : dict with 'theta' (k, C_out, C_in, kh, kw) and 'b' (C_out,)
        """
        where = "FunctionalConv2D.backward"
        dy = self._check_dy(check_input(dy, "dy", where), cache["y_shape"], where)
        da = dy.transpose(0, 2, 3, 1).reshape(-1, self.c_out)    # rows in (n, i, j) order
        dcols, g = self.ftm.backward(da, cache["ftm"])
        kh, kw = self.kernel_size
        dx = col2im(dcols, cache["x_shape"], kh, kw, self.stride, self.padding)   # (FTM-11)
        return dx, {"theta": g["theta"].reshape(self.params["theta"].shape), "b": g["b"]}
