"""Training algorithms and the registry behind ``refnets compare``.

Each method module calls :func:`register` at import with a :class:`Method`
whose ``build`` makes a ready-to-train (model, algorithm, optimizer) triple
for a given MLP architecture. ``refnets compare`` trains every registered
method on the same data and layer sizes.

To add a method: write a package ``refnets/algorithms/<name>/`` (or a module
for a one-file method), call ``register`` from it, and add its name to
``METHOD_MODULES`` below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, NamedTuple

from .base import Algorithm, StepResult, backprop_gradients, check_loss_finite

__all__ = ["Algorithm", "StepResult", "backprop_gradients", "check_loss_finite",
           "Method", "Setup", "register", "get_method", "available_methods", "METHOD_MODULES",
           "describe_model", "describe_setup"]

#: Modules imported (lazily) to fill the registry, in the order of the tables.
METHOD_MODULES = (
    "backprop",
    "target_space",
    "decorrelation",
    "hsic",
    "target_propagation",
    "functional_transfer",
)


class Setup(NamedTuple):
    """What a method's ``build`` returns."""

    model: object
    algorithm: Algorithm
    optimizer: object


@dataclass(frozen=True)
class Method:
    """A registry entry.

    Attributes
    ----------
    name : str
        CLI name (``refnets compare --methods <name>``).
    build : callable
        ``build(sizes, activation, rng, x_train, y_train) -> Setup``: the
        method's model for the MLP ``sizes`` (input, hidden..., classes), its
        algorithm and its optimiser with the method's default hyperparameters.
        ``x_train``/``y_train`` are the training set (e.g. Target Space picks
        its realisation batch from it); most methods ignore them.
    summary : str
        One line for tables.
    paper : str
        Short citation.
    loss_kind : str
        What the ``loss`` of the method's ``StepResult`` is:
        ``"cross-entropy"`` (the softmax cross-entropy of the output, the
        default) or the name of the method's own objective (e.g. ``"hsic"``);
        ``refnets compare`` shows the two in separate columns.
    exact_gradient : bool
        The update is the exact gradient of the cross-entropy (backprop, or a
        net of other layers trained by backprop), so its cosine to backprop is
        1 by construction and the table shows "n/a".
    """

    name: str
    build: Callable[..., Setup]
    summary: str
    paper: str = ""
    loss_kind: str = "cross-entropy"
    exact_gradient: bool = False


_REGISTRY: dict = {}
_loaded = False


def register(method):
    """Add a :class:`Method` to the registry (names must be unique)."""
    if not isinstance(method, Method):
        raise ValueError(f"register: expected a Method, got {type(method).__name__}")
    if method.name in _REGISTRY and _REGISTRY[method.name] is not method:
        raise ValueError(f"register: a method named {method.name!r} is already registered")
    _REGISTRY[method.name] = method
    return method


def _load():
    global _loaded
    if not _loaded:
        for mod in METHOD_MODULES:
            importlib.import_module(f"{__name__}.{mod}")
        _loaded = True


def available_methods():
    """Names of all registered methods, in registration order."""
    _load()
    return list(_REGISTRY)


def get_method(name):
    """The registered :class:`Method` called ``name``."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {list(_REGISTRY)}") from None


# -- What a build returns, in words (``refnets compare --list`` and its table) --

#: Algorithm attributes that switch diagnostics on or off rather than change training.
_NOT_HYPERPARAMETERS = {"track_backprop", "compare_to_backprop", "diagnostics",
                        "diagnostics_every", "cond_warn", "n_classes", "loss"}


def _layer_word(layer):
    """Short name of one layer: ``Dense``, ``tanh``, ``BN``, ``FTM[F03]``."""
    kind = type(layer).__name__
    if kind == "BatchNorm":
        return "BN"
    function = getattr(layer, "function", None)
    if function is not None and kind.startswith("Functional"):
        return f"{kind.replace('Functional', 'FTM-')}[{getattr(function, 'name', function)}]"
    act = getattr(layer, "name", None)
    if isinstance(act, str) and not getattr(layer, "params", None):
        return act                                  # an activation: tanh, relu, ...
    return kind


def describe_model(model, decorrelated=False):
    """One line for what a model is: its blocks and layer widths.

    A block is a layer with parameters and the parameter-free layers after it;
    repeated blocks are counted, e.g. ``"784-128-128-10: Dense-tanh x2, Dense"``
    or ``"784-128-128-10: Dense-BN-relu x3"``. ``decorrelated`` prefixes each
    block with ``R-`` (a decorrelating matrix before every layer).
    """
    layers = list(getattr(model, "layers", []))
    if not layers:
        return type(model).__name__
    blocks, widths = [], []
    for layer in layers:
        params = getattr(layer, "params", None) or {}
        w = next((v for k, v in params.items() if getattr(v, "ndim", 0) >= 2), None)
        if w is not None or not blocks:
            if w is not None:
                n_in, n_out = getattr(layer, "n_in", None), getattr(layer, "n_out", None)
                if n_in is None or n_out is None:     # Dense layout (n_out, n_in), conv (C_out, C_in, ...)
                    n_out, n_in = w.shape[0], w.shape[1]
                if not widths:
                    widths.append(int(n_in))
                widths.append(int(n_out))
            blocks.append([("R-" if decorrelated and w is not None else "") + _layer_word(layer)])
        else:
            blocks[-1].append(_layer_word(layer))
    names = ["-".join(b) for b in blocks]
    runs = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    shape = "-".join(str(v) for v in widths)
    return f"{shape}: " + ", ".join(n if c == 1 else f"{n} x{c}" for n, c in runs)


def _scalars(obj, prefix=""):
    out = {}
    for key, value in sorted(vars(obj).items()):
        if key.startswith("_") or key in _NOT_HYPERPARAMETERS:
            continue
        if value is None or isinstance(value, (bool, int, float, str)):
            out[prefix + key] = value
        elif (not prefix and hasattr(value, "__dict__") and not callable(value)
              and not type(value).__module__.endswith(".optim")):
            out.update(_scalars(value, prefix=f"{key}."))   # e.g. a Decorrelation's own settings
    return out


def describe_setup(setup):
    """What a method's ``build`` returned, in words.

    Returns
    -------
    dict with ``model`` (:func:`describe_model`), ``algorithm`` (class name),
    ``optimizer`` (class name and its settings, e.g. ``"Adam(lr=0.001, ...)"``),
    ``lr`` (the optimiser's learning rate) and ``hyperparameters`` (the
    algorithm's public scalar settings, nested settings as ``"decor.lr"``).
    """
    algo, opt = setup.algorithm, setup.optimizer
    hyper = _scalars(algo) if hasattr(algo, "__dict__") else {}
    opt_settings = {k: v for k, v in vars(opt).items()
                    if not k.startswith("_") and isinstance(v, (int, float)) and not isinstance(v, bool)
                    and k not in ("t",)}
    decorrelated = getattr(algo, "decor", None) is not None
    return {"model": describe_model(setup.model, decorrelated=decorrelated),
            "algorithm": type(algo).__name__,
            "optimizer": f"{type(opt).__name__}(" + ", ".join(f"{k}={v:g}" for k, v in opt_settings.items()) + ")",
            "lr": opt_settings.get("lr"),
            "hyperparameters": hyper}
