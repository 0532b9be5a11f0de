"""Target Space: supported layers, target initialisation and the authors' weight-space baselines.

* :func:`make_realiser`: which layers Target Space can realise (Dense, Conv2D
  stride-1 'same', an Elman RNN as first layer) and which it passes through
  (activations, pooling, Flatten, LastStep).
* :func:`truncated_normal`: the initial targets (TS-13, TF's
  ``truncated_normal``: re-draw beyond 2 sigma).
* :func:`tf1_weight_init`: the weight-space baselines' initialisation of the
  authors' TF1 scripts (TS-18), so that a comparison with weight space uses
  the same architecture and initialisation as theirs. The TF1 CNN draws conv
  kernels in TF patch order (ky, kx, c) and refnets in (c, ky, kx); for
  i.i.d. draws only the bookkeeping differs.
"""

from __future__ import annotations

import numpy as np

from ...layers.activations import Activation
from ...layers.conv import Conv2D
from ...layers.dense import Dense
from ...layers.pooling import AvgPool2D, Flatten, MaxPool2D
from ...layers.recurrent import RNN, LastStep
from .conv import ConvRealiser
from .dense import DenseRealiser
from .rnn import RNNRealiser

__all__ = ["make_realiser", "truncated_normal", "tf1_weight_init"]

_PARAM_FREE = (Activation, MaxPool2D, AvgPool2D, Flatten, LastStep)


def truncated_normal(shape, std, rng):
    """N(0, std^2) with every draw beyond 2 std re-drawn (TF's ``truncated_normal``; TS-13).

    Parameters
    ----------
    shape : tuple of int
    std : float > 0
    rng : numpy.random.Generator
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"truncated_normal: rng must be a numpy.random.Generator, "
                         f"got {type(rng).__name__}")
    if not (np.isfinite(std) and std > 0):
        raise ValueError(f"truncated_normal: std must be a positive finite number, got {std!r}")
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2.0
    return std * z


def make_realiser(layer, k):
    """The realiser of model layer ``k`` (None for parameter-free layers).

    Raises
    ------
    ValueError
        For layers Target Space cannot realise (naming the layer and index).
    """
    if isinstance(layer, Dense):
        return DenseRealiser(layer)
    if isinstance(layer, Conv2D):
        return ConvRealiser(layer)
    if isinstance(layer, RNN):
        if k != 0:
            raise ValueError(f"TargetSpace: an RNN layer must be the model's first layer "
                             f"(its realisation input is X_bar), got it at layer {k}")
        return RNNRealiser(layer)
    if isinstance(layer, _PARAM_FREE) and not layer.params:
        return None
    raise ValueError(f"TargetSpace: unsupported layer {layer!r} at index {k}; supported: "
                     f"Dense, Conv2D (stride 1, 'same'), RNN (first layer) and parameter-free "
                     f"activation/pooling/Flatten/LastStep layers")


def tf1_weight_init(model, rng, scheme="glorot6", truncated=True):
    """Re-initialise a model's weights (bias included) like the authors' TF1 baselines (TS-18).

    Every Dense / Conv2D / RNN weight is drawn in the solve layout
    (1 + fan_in) x fan_out, bias row included, so fan_in counts the bias (and
    shortcut inputs), then converted to refnets' layout in place.

    Parameters
    ----------
    model : Sequential or ShortcutMLP
    rng : numpy.random.Generator
    scheme : {'glorot6', 'he', 'glorot'}
        sigma = sqrt(6 / (c + n_out)) ("GlorotNormal6": a uniform bound used
        as a std; TF1 spirals and bit-RNN tanh nets), sqrt(2 / c) (He; relu
        nets), sqrt(2 / (c + n_out)) (TF1 CNN tanh), c = 1 + fan_in.
    truncated : bool
        Truncated normal (spirals, RNN) or plain normal (TF1 CNN).
    """
    if scheme not in ("glorot6", "he", "glorot"):
        raise ValueError(f"tf1_weight_init: scheme must be 'glorot6', 'he' or 'glorot', "
                         f"got {scheme!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"tf1_weight_init: rng must be a numpy.random.Generator, "
                         f"got {type(rng).__name__}")
    for k, layer in enumerate(model.layers):
        r = make_realiser(layer, k)
        if r is None:
            continue
        c, n_out = r.fan()
        std = {"glorot6": np.sqrt(6.0 / (c + n_out)), "he": np.sqrt(2.0 / c),
               "glorot": np.sqrt(2.0 / (c + n_out))}[scheme]
        W_full = truncated_normal((c, n_out), std, rng) if truncated else \
            std * rng.standard_normal((c, n_out))
        for name, value in r.params_from_full(W_full).items():
            layer.params[name][...] = value
    return model
