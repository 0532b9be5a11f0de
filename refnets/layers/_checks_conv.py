"""Self-checks of the convolution and pooling layers, registered for ``refnets gradcheck``.

Each check returns a relative error: finite differences against the analytic
backward (:func:`refnets.gradcheck.check_layer`, worst over dx and every
parameter), the im2col convolution against the plain-loop ``conv2d_naive``, or
the adjoint identity <im2col(x), c> = <x, col2im(c)>. Pooling inputs are
distinct values spaced far wider than the finite-difference step, so no window
has a tie (max is not differentiable at ties).
"""

from __future__ import annotations

import numpy as np

from ..gradcheck import check_layer, rel_error
from ..selfcheck import register_check
from .conv import Conv2D, col2im, conv2d_naive, im2col
from .pooling import AvgPool2D, Flatten, MaxPool2D


def _worst(errors):
    return max(errors.values())


def _distinct(rng, shape):
    """Entries k/size for a random permutation of k: no ties, gaps 1/size >> h."""
    size = int(np.prod(shape))
    return rng.permutation(size).reshape(shape) / size


def _conv_with_bias(rng, *args, **kwargs):
    layer = Conv2D(*args, rng=rng, **kwargs)
    if layer.bias:
        layer.params["b"] = rng.standard_normal(layer.c_out)
    return layer


@register_check("Conv2D (N=2, 3 -> 2, 6x5, k3 stride 2 padding 1)", group="layers")
def _conv_strided(rng):
    layer = _conv_with_bias(rng, 3, 2, 3, stride=2, padding=1)
    return _worst(check_layer(layer, rng.standard_normal((2, 3, 6, 5)), rng))


@register_check("Conv2D (N=1, 2 -> 3, 5x4, k (3, 2) padding (2, 1))", group="layers")
def _conv_nonsquare(rng):
    layer = _conv_with_bias(rng, 2, 3, (3, 2), padding=(2, 1))
    return _worst(check_layer(layer, rng.standard_normal((1, 2, 5, 4)), rng))


@register_check("Conv2D im2col == conv2d_naive (k3 stride 2 padding 2)", group="layers", tol=1e-12)
def _conv_vs_naive(rng):
    layer = _conv_with_bias(rng, 3, 4, 3, stride=2, padding=2)
    x = rng.standard_normal((2, 3, 7, 6))
    y, _ = layer.forward(x)
    p = layer.params
    return rel_error(y, conv2d_naive(x, p["W"], p["b"], stride=2, padding=2))


@register_check("col2im is the adjoint of im2col (k3 stride 2 padding 1)", group="layers",
                tol=1e-12)
def _col2im_adjoint(rng):
    x = rng.standard_normal((2, 3, 7, 6))
    cols = im2col(x, 3, 3, stride=2, padding=1)
    c = rng.standard_normal(cols.shape)
    lhs = np.sum(cols * c)                                          # <im2col(x), c>
    rhs = np.sum(x * col2im(c, x.shape, 3, 3, stride=2, padding=1))  # <x, col2im(c)>
    return abs(lhs - rhs) / max(abs(lhs), abs(rhs))


@register_check("MaxPool2D (N=2, C=3, 7x6, window 3 stride 2)", group="layers")
def _maxpool(rng):
    return _worst(check_layer(MaxPool2D(3, stride=2), _distinct(rng, (2, 3, 7, 6)), rng))


@register_check("AvgPool2D (N=2, C=3, 7x6, window (2, 3) stride 1)", group="layers")
def _avgpool(rng):
    return _worst(check_layer(AvgPool2D((2, 3), stride=1), rng.standard_normal((2, 3, 7, 6)),
                              rng))


@register_check("Flatten (N=2, 3x4x5)", group="layers")
def _flatten(rng):
    return _worst(check_layer(Flatten(), rng.standard_normal((2, 3, 4, 5)), rng))
