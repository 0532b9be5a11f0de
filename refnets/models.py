"""Containers and model builders.

``Sequential`` chains layers and keeps one cache per layer. Its parameters are
exposed to optimisers as one flat dict with keys ``"<k>.<name>"`` (layer index
k, parameter name), whose values are *the layers' own arrays*, so an in-place
optimiser step updates the model.
"""

from __future__ import annotations

import numpy as np

from .layers.activations import get_activation
from .layers.base import Layer
from .layers.dense import Dense
from .layers.recurrent import LastStep, RNN

__all__ = ["Sequential", "param_key", "split_key", "mlp", "rnn_classifier"]


def param_key(k, name):
    """Flat key of parameter ``name`` of layer ``k``: ``"k.name"``."""
    return f"{k}.{name}"


def split_key(key):
    """Inverse of :func:`param_key`: ``"3.W" -> (3, "W")``."""
    k, _, name = key.partition(".")
    return int(k), name


class Sequential:
    """A chain of layers: y = layer_L(... layer_1(x)).

    Parameters
    ----------
    layers : list of Layer
    """

    def __init__(self, layers):
        layers = list(layers)
        if not layers:
            raise ValueError("Sequential: layers must be a non-empty list")
        for k, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"Sequential: layers[{k}] must be a refnets Layer, "
                                 f"got {type(layer).__name__}")
        self.layers = layers

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential([\n  {inner}\n])"

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, k):
        return self.layers[k]

    def forward(self, x, params=None):
        """Run all layers.

        Parameters
        ----------
        x : ndarray, the input batch
        params : list of (dict or None), optional
            Per-layer parameters to use instead of the layers' own.

        Returns
        -------
        y : ndarray
        caches : list of dict, one per layer
        """
        if params is not None and len(params) != len(self.layers):
            raise ValueError(f"Sequential.forward: params must have one entry per layer "
                             f"({len(self.layers)}), got {len(params)}")
        caches = []
        for k, layer in enumerate(self.layers):
            x, cache = layer.forward(x, None if params is None else params[k])
            caches.append(cache)
        return x, caches

    def backward(self, dy, caches):
        """Back-propagate ``dy`` through every layer.

        Returns
        -------
        dx : ndarray, gradient w.r.t. the model input
        grads : list of dict, one per layer (empty for parameter-free layers)
        """
        if len(caches) != len(self.layers):
            raise ValueError(f"Sequential.backward: expected {len(self.layers)} caches, "
                             f"got {len(caches)}")
        grads = [None] * len(self.layers)
        for k in range(len(self.layers) - 1, -1, -1):
            dy, grads[k] = self.layers[k].backward(dy, caches[k])
        return dy, grads

    def predict(self, x):
        """Forward pass output only."""
        return self.forward(x)[0]

    def params(self):
        """Flat dict ``{"k.name": array}`` of every layer's own parameter arrays."""
        return {param_key(k, name): value
                for k, layer in enumerate(self.layers) for name, value in layer.params.items()}

    def flatten(self, per_layer):
        """Per-layer list of dicts -> flat ``{"k.name": array}`` dict."""
        if len(per_layer) != len(self.layers):
            raise ValueError(f"Sequential.flatten: expected {len(self.layers)} entries, "
                             f"got {len(per_layer)}")
        return {param_key(k, name): value
                for k, d in enumerate(per_layer) for name, value in (d or {}).items()}

    def unflatten(self, flat):
        """Flat ``{"k.name": array}`` dict -> per-layer list of dicts."""
        out = [dict() for _ in self.layers]
        for key, value in flat.items():
            try:
                k, name = split_key(key)
            except ValueError:
                k, name = -1, ""
            if not (0 <= k < len(self.layers) and name):
                raise ValueError(f"Sequential.unflatten: keys must be '<layer index>.<name>' "
                                 f"with index in [0, {len(self.layers)}), got {key!r}")
            out[k][name] = value
        return out

    def copy_params(self):
        """Deep copy of :meth:`params` (for snapshots and comparisons)."""
        return {k: v.copy() for k, v in self.params().items()}

    def set_params(self, flat):
        """Copy values from a flat dict into the layers' arrays (in place)."""
        own = self.params()
        # Validate every key before copying anything, so a bad call changes nothing.
        for key, value in flat.items():
            if key not in own:
                raise ValueError(f"Sequential.set_params: unknown key {key!r}; known {sorted(own)}")
            if np.shape(value) != own[key].shape:
                raise ValueError(f"Sequential.set_params: {key!r} must have shape "
                                 f"{own[key].shape}, got {np.shape(value)}")
        for key, value in flat.items():
            own[key][...] = value


def mlp(sizes, activation="tanh", rng=None, output_activation=None, init="glorot_uniform"):
    """Multi-layer perceptron: Dense, act, Dense, act, ..., Dense.

    Parameters
    ----------
    sizes : list of int
        Layer widths including input and output, e.g. ``[784, 256, 10]``.
    activation : str or Activation
        Hidden nonlinearity ('tanh', 'relu', 'leaky_relu', 'sigmoid', ...).
    rng : numpy.random.Generator
    output_activation : str, optional
        Appended after the last Dense (default none: the model outputs logits).
    init : str or callable
        Weight initialiser for every Dense layer.
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
        raise ValueError(f"mlp: sizes must be a list of >= 2 positive ints, got {sizes!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"mlp: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    template = get_activation(activation)  # validates the name or instance
    layers = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(n_in, n_out, rng, init=init))
        if k < len(sizes) - 2:  # a fresh activation object per hidden layer
            layers.append(type(template)(**_activation_kwargs(template)))
    if output_activation is not None:
        layers.append(get_activation(output_activation))
    return Sequential(layers)


def _activation_kwargs(act):
    """Constructor arguments to clone an activation instance (alpha for LeakyReLU)."""
    return {"alpha": act.alpha} if hasattr(act, "alpha") else {}


def rnn_classifier(n_in, n_hidden, n_classes, rng, readout="last", init="glorot_uniform",
                   recurrent_init="orthogonal"):
    """Elman RNN followed by a linear read-out (the model outputs logits).

    Parameters
    ----------
    n_in, n_hidden, n_classes : int
        Input width D, state width H and number of classes C.
    rng : numpy.random.Generator
    readout : {'last', 'all'}
        ``'last'``: ``[RNN, LastStep, Dense]``, input (T, N, D) -> logits (N, C),
        one label per sequence. ``'all'``: ``[RNN, Dense]``, logits (T, N, C),
        one label per time step (Dense reads out every step; the loss averages
        over all T*N positions).
    init, recurrent_init : str or callable
        Initialisers of the RNN's ``W_x`` (and of the read-out's ``W``) and of
        ``W_h``.
    """
    if readout not in ("last", "all"):
        raise ValueError(f"rnn_classifier: readout must be 'last' or 'all', got {readout!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rnn_classifier: rng must be a numpy.random.Generator, "
                         f"got {type(rng).__name__}")
    layers = [RNN(n_in, n_hidden, rng, init=init, recurrent_init=recurrent_init)]
    if readout == "last":
        layers.append(LastStep())
    layers.append(Dense(n_hidden, n_classes, rng, init=init))
    return Sequential(layers)
