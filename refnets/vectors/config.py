"""A JSON form of a :class:`~refnets.models.Sequential`'s structure: ``model -> config -> model``.

One dict per layer, ``{"type": class name, constructor keywords...}``; parameter
values are not part of it (a vector file holds them as ``param/*`` arrays).
"""

from __future__ import annotations

import numpy as np

from ..layers import activations as _act
from ..layers.conv import Conv2D
from ..layers.conv_transpose import ConvTranspose2D
from ..layers.dense import Dense
from ..layers.functional import FunctionalConv2D, FunctionalDense, FunctionalRNN
from ..layers.normalization import BatchNorm
from ..layers.pooling import AvgPool2D, Flatten, MaxPool2D
from ..layers.recurrent import RNN, LastStep
from ..layers.residual import Residual
from ..models import Sequential

__all__ = ["model_config", "model_from_config"]


def _pair(p):
    return [int(p[0]), int(p[1])]


def _layer_config(layer):
    t = type(layer).__name__
    if isinstance(layer, Dense):
        return {"type": t, "n_in": layer.n_in, "n_out": layer.n_out, "bias": layer.bias}
    if isinstance(layer, ConvTranspose2D):
        return {"type": t, "c_in": layer.c_in, "c_out": layer.c_out,
                "kernel_size": _pair(layer.kernel_size), "stride": _pair(layer.stride),
                "padding": _pair(layer.padding), "output_padding": _pair(layer.output_padding),
                "bias": layer.bias}
    if isinstance(layer, Conv2D):
        return {"type": t, "c_in": layer.c_in, "c_out": layer.c_out,
                "kernel_size": _pair(layer.kernel_size), "stride": _pair(layer.stride),
                "padding": _pair(layer.padding), "bias": layer.bias}
    if isinstance(layer, (MaxPool2D, AvgPool2D)):
        return {"type": t, "size": _pair(layer.size), "stride": _pair(layer.stride)}
    if isinstance(layer, RNN):
        return {"type": t, "n_in": layer.n_in, "n_hidden": layer.n_hidden}
    if isinstance(layer, BatchNorm):
        return {"type": t, "n_features": layer.n_features, "affine": layer.affine,
                "eps": layer.eps, "momentum": layer.momentum}
    if isinstance(layer, Residual):
        return {"type": t, "branch": [_layer_config(sub) for sub in layer.branch],
                "activation": _layer_config(layer.activation)}
    if isinstance(layer, FunctionalConv2D):
        if layer.signs is not None:
            raise ValueError(f"model_config: {layer!r} has fixed random signs, which the config "
                             f"does not hold yet")
        return {"type": t, "c_in": layer.c_in, "c_out": layer.c_out,
                "kernel_size": _pair(layer.kernel_size), "function": layer.function.name,
                "stride": layer.stride, "padding": layer.padding}
    if isinstance(layer, FunctionalRNN):
        if layer.input_ftm.signs is not None or layer.recurrent_ftm.signs is not None:
            raise ValueError(f"model_config: {layer!r} has fixed random signs, which the config "
                             f"does not hold yet")
        return {"type": t, "n_in": layer.n_in, "n_hidden": layer.n_hidden,
                "function": layer.input_ftm.function.name,
                "recurrent_function": layer.recurrent_ftm.function.name}
    if isinstance(layer, FunctionalDense):
        if layer.signs is not None:
            raise ValueError(f"model_config: {layer!r} has fixed random signs, which the config "
                             f"does not hold yet")
        return {"type": t, "n_in": layer.n_in, "n_out": layer.n_out,
                "function": layer.function.name, "path": layer.path, "bias": layer.bias}
    if type(layer) in (Flatten, LastStep):
        return {"type": t}
    if isinstance(layer, _act.Activation) and type(layer).__name__ in _ACTIVATIONS:
        cfg = {"type": t}
        if hasattr(layer, "alpha"):
            cfg["alpha"] = float(layer.alpha)
        return cfg
    raise ValueError(f"model_config: layer {type(layer).__name__} has no config form yet "
                     f"(supported: {sorted(_BUILDERS)})")


_ACTIVATIONS = {cls.__name__: cls for cls in (_act.Identity, _act.Tanh, _act.ReLU,
                                              _act.LeakyReLU, _act.Sigmoid, _act.Softplus)}


def _json_pair(v):
    return tuple(v) if isinstance(v, list) else v


def _rng():
    # Constructors draw initial weights; every value is then replaced by the file's.
    return np.random.default_rng(0)


_BUILDERS = {
    "Dense": lambda c: Dense(c["n_in"], c["n_out"], _rng(), bias=c.get("bias", True)),
    "Conv2D": lambda c: Conv2D(c["c_in"], c["c_out"], tuple(c["kernel_size"]),
                               stride=tuple(c.get("stride", (1, 1))),
                               padding=tuple(c.get("padding", (0, 0))), rng=_rng(),
                               bias=c.get("bias", True)),
    "ConvTranspose2D": lambda c: ConvTranspose2D(
        c["c_in"], c["c_out"], tuple(c["kernel_size"]), stride=tuple(c.get("stride", (1, 1))),
        padding=tuple(c.get("padding", (0, 0))),
        output_padding=tuple(c.get("output_padding", (0, 0))), rng=_rng(),
        bias=c.get("bias", True)),
    "MaxPool2D": lambda c: MaxPool2D(tuple(c["size"]), tuple(c.get("stride", c["size"]))),
    "AvgPool2D": lambda c: AvgPool2D(tuple(c["size"]), tuple(c.get("stride", c["size"]))),
    "RNN": lambda c: RNN(c["n_in"], c["n_hidden"], _rng()),
    "BatchNorm": lambda c: BatchNorm(c["n_features"], affine=c.get("affine", False),
                                     eps=c.get("eps", 1e-5), momentum=c.get("momentum", 0.1)),
    "Residual": lambda c: Residual([_layer_from_config(b) for b in c["branch"]],
                                   _layer_from_config(c["activation"])),
    "FunctionalDense": lambda c: FunctionalDense(c["n_in"], c["n_out"], c["function"], _rng(),
                                                 path=c.get("path", "auto"),
                                                 bias=c.get("bias", True)),
    "FunctionalConv2D": lambda c: FunctionalConv2D(
        c["c_in"], c["c_out"], tuple(c["kernel_size"]), c["function"], _rng(),
        stride=_json_pair(c.get("stride", 1)), padding=_json_pair(c.get("padding", 0))),
    "FunctionalRNN": lambda c: FunctionalRNN(c["n_in"], c["n_hidden"], c["function"], _rng(),
                                             recurrent_function=c.get("recurrent_function")),
    "Flatten": lambda c: Flatten(),
    "LastStep": lambda c: LastStep(),
    **{name: (lambda c, cls=cls: cls(**({"alpha": c["alpha"]} if "alpha" in c else {})))
       for name, cls in _ACTIVATIONS.items()},
}


def _layer_from_config(cfg):
    if not isinstance(cfg, dict) or cfg.get("type") not in _BUILDERS:
        raise ValueError(f"model_from_config: each layer must be a dict with 'type' one of "
                         f"{sorted(_BUILDERS)}, got {cfg!r}")
    try:
        return _BUILDERS[cfg["type"]](cfg)
    except KeyError as exc:
        raise ValueError(f"model_from_config: layer {cfg['type']} needs the key {exc}, "
                         f"got {cfg!r}") from None


def model_config(model):
    """A JSON-able description of a Sequential: one dict per layer (type and constructor keywords).

    Parameter values are not part of it; :func:`model_from_config` builds the
    same structure (with throw-away initial values to be replaced).
    """
    if not isinstance(model, Sequential):
        raise ValueError(f"model_config: model must be a refnets Sequential, "
                         f"got {type(model).__name__}")
    return [_layer_config(layer) for layer in model.layers]


def model_from_config(config):
    """Inverse of :func:`model_config` (the parameters are placeholders)."""
    if not isinstance(config, list) or not config:
        raise ValueError(f"model_from_config: config must be a non-empty list of layer dicts, "
                         f"got {config!r}")
    return Sequential([_layer_from_config(c) for c in config])
