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
from .layers.conv import Conv2D
from .layers.dense import Dense
from .layers.pooling import AvgPool2D, Flatten, MaxPool2D
from .layers.recurrent import LastStep, RNN
from .validation import check_input, trusted

__all__ = ["Sequential", "param_key", "split_key", "mlp", "convnet", "rnn_classifier"]


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
        params = [None] * len(self.layers) if params is None else params
        # The user's x is converted to float64 and checked by the first layer; the
        # hidden activations are not scanned for NaN/inf again (a NaN there means
        # the run diverged, and the loss reports it).
        x, cache = self.layers[0].forward(x, params[0])
        caches = [cache]
        with trusted():
            for k in range(1, len(self.layers)):
                x, cache = self.layers[k].forward(x, params[k])
                caches.append(cache)
        return x, caches

    def backward(self, dy, caches, input_grad=True):
        """Back-propagate ``dy`` through every layer.

        Parameters
        ----------
        dy : ndarray, dLoss/d(model output)
        caches : list of dict from :meth:`forward`
        input_grad : bool, default True
            False skips the work that only serves dLoss/dx of the model input
            (a training step never needs it; PyTorch skips it too for inputs
            that do not require grad): the layers before the first layer with
            parameters are not visited, and that layer computes its parameter
            gradients only, through its ``backward_params`` when it has one
            (Dense, Conv2D: no ``dz @ W`` for the input, no col2im). ``dx`` is
            then None; the parameter gradients are identical.

        Returns
        -------
        dx : ndarray, gradient w.r.t. the model input (None if not input_grad)
        grads : list of dict, one per layer (empty for parameter-free layers)
        """
        if len(caches) != len(self.layers):
            raise ValueError(f"Sequential.backward: expected {len(self.layers)} caches, "
                             f"got {len(caches)}")
        grads = [{} for _ in self.layers]
        first = 0
        if not input_grad:  # the first layer with parameters
            first = next((k for k, layer in enumerate(self.layers) if layer.params),
                         len(self.layers))
        dy = check_input(dy, "dy", "Sequential.backward", allow_empty=True)
        with trusted():        # dy checked once here, not again between layers
            for k in range(len(self.layers) - 1, first - 1, -1):
                layer = self.layers[k]
                if k == first and not input_grad and hasattr(layer, "backward_params"):
                    grads[k], dy = layer.backward_params(dy, caches[k]), None
                else:
                    dy, grads[k] = layer.backward(dy, caches[k])
        return (dy if input_grad else None), grads

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


def convnet(input_shape, channels, kernel_size, n_classes, rng, hidden=(), activation="relu",
            pool=2, padding="same", pool_type="max", init="glorot_uniform"):
    """Convolutional classifier: [Conv2D, act, pool] * len(channels), Flatten, dense head.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
        Shape of one input image (the batch is NCHW).
    channels : list of int
        Output channels of each conv block, e.g. ``[8, 16]``.
    kernel_size : int or pair
        Kernel of every conv (stride 1).
    n_classes : int
        Width of the last Dense layer (the model outputs logits).
    rng : numpy.random.Generator
    hidden : tuple of int
        Widths of hidden Dense layers (each followed by ``activation``) between
        Flatten and the output layer; default none.
    activation : str or Activation
        Nonlinearity after every conv and hidden Dense layer.
    pool : int or None
        Pooling window (= stride) after each conv block; ``None`` or 1: no pooling.
    padding : int, pair or 'same'
        Conv padding ('same' keeps H and W; needs an odd kernel).
    pool_type : {'max', 'avg'}
    init : str or callable
        Weight initialiser of every Conv2D and Dense layer.

    Examples
    --------
    ``convnet((1, 28, 28), [8, 16], 3, 10, rng)`` gives
    Conv2D(1, 8, 3, 'same'), ReLU, MaxPool2D(2), Conv2D(8, 16, 3, 'same'), ReLU,
    MaxPool2D(2), Flatten, Dense(784, 10).
    """
    where = "convnet"
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(not isinstance(s, (int, np.integer)) or s < 1
                                    for s in input_shape):
        raise ValueError(f"{where}: input_shape must be (C, H, W) positive ints, "
                         f"got {input_shape!r}")
    channels = list(channels)
    if not channels or any(not isinstance(c, (int, np.integer)) or c < 1 for c in channels):
        raise ValueError(f"{where}: channels must be a non-empty list of positive ints, "
                         f"got {channels!r}")
    hidden = list(hidden)
    if any(not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
        raise ValueError(f"{where}: hidden must be a list of positive ints, got {hidden!r}")
    if not isinstance(n_classes, (int, np.integer)) or n_classes < 1:
        raise ValueError(f"{where}: n_classes must be a positive int, got {n_classes!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{where}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    pools = {"max": MaxPool2D, "avg": AvgPool2D}
    if pool_type not in pools:
        raise ValueError(f"{where}: pool_type must be 'max' or 'avg', got {pool_type!r}")

    template = get_activation(activation)  # validates the name or instance

    def act():  # a fresh activation object per block
        return type(template)(**_activation_kwargs(template))

    layers, shape = [], input_shape
    for c_out in channels:
        conv = Conv2D(shape[0], c_out, kernel_size, padding=padding, rng=rng, init=init)
        shape = conv.output_shape(shape)
        layers += [conv, act()]
        if pool not in (None, 1):
            p = pools[pool_type](pool)
            shape = p.output_shape(shape)   # raises if the map got smaller than the window
            layers.append(p)
    layers.append(Flatten())
    width = int(np.prod(shape))
    for h in hidden:
        layers += [Dense(width, h, rng, init=init), act()]
        width = h
    layers.append(Dense(width, n_classes, rng, init=init))
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
