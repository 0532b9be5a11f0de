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
           "Method", "Setup", "register", "get_method", "available_methods", "METHOD_MODULES"]

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
    """

    name: str
    build: Callable[..., Setup]
    summary: str
    paper: str = ""


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
