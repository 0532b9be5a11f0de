"""The functional layer contract: forward/backward are pure (see refnets/layers/base.py).

For every layer type:
* forward twice on the same input gives identical outputs (no hidden state);
* backward twice with the same cache gives identical results, leaves the cache,
  the parameters, the input and dy unchanged, and its results are fresh arrays:
  writing into the first results does not change the second;
* forward with an explicit params dict uses it without mutating the layer (or
  the dict), and equals installing those params in the layer.

Layer types that other parts add (conv, pooling, normalisation, functional) are
included as they land; ``test_every_layer_type_is_covered`` names any layer
class in ``refnets.layers`` that has no case here.
"""

import copy
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import refnets.layers as layers_pkg
from refnets.layers import (RNN, Activation, AvgPool2D, BatchNorm, Conv2D, ConvTranspose2D, Dense,
                            Flatten, FunctionalConv2D, FunctionalDense, FunctionalRNN, Identity,
                            LastStep, Layer, LeakyReLU, MaxPool2D, MemoryFunctional, ReLU,
                            Residual, Sigmoid, Softplus, Tanh)


def _rnn_h0(rng):
    layer = RNN(3, 5, rng)
    return layer, rng.standard_normal((6, 2, 3)), {"h0": rng.standard_normal((2, 5))}


def _batchnorm_eval(rng):
    layer = BatchNorm(4, affine=True)
    stats = {"mean": rng.standard_normal(4), "var": rng.uniform(0.5, 2.0, 4)}
    return layer, rng.standard_normal((8, 4)), {"running_stats": stats}


# id -> (layer class, factory(rng) -> (layer, x, forward kwargs))
CASES = {
    "Dense": (Dense, lambda r: (Dense(3, 4, r), r.standard_normal((5, 3)), {})),
    "Dense-nobias-seq": (Dense, lambda r: (Dense(3, 4, r, bias=False), r.standard_normal((2, 5, 3)), {})),
    **{cls.__name__: (cls, lambda r, cls=cls: (cls(), r.standard_normal((4, 6)), {}))
       for cls in (Identity, Tanh, ReLU, LeakyReLU, Sigmoid, Softplus)},
    "RNN": (RNN, lambda r: (RNN(3, 5, r), r.standard_normal((6, 2, 3)), {})),
    "RNN-h0": (RNN, _rnn_h0),
    "LastStep": (LastStep, lambda r: (LastStep(), r.standard_normal((4, 2, 3)), {})),
    "Conv2D": (Conv2D, lambda r: (Conv2D(2, 3, 3, stride=2, padding=1, rng=r),
                                  r.standard_normal((2, 2, 7, 7)), {})),
    "MaxPool2D": (MaxPool2D, lambda r: (MaxPool2D(2), r.standard_normal((2, 3, 6, 6)), {})),
    "AvgPool2D": (AvgPool2D, lambda r: (AvgPool2D(2, stride=1), r.standard_normal((2, 3, 5, 5)), {})),
    "Flatten": (Flatten, lambda r: (Flatten(), r.standard_normal((2, 3, 4, 4)), {})),
    "BatchNorm-train": (BatchNorm, lambda r: (BatchNorm(4, affine=True), r.standard_normal((8, 4)), {})),
    "BatchNorm-eval": (BatchNorm, _batchnorm_eval),
    "FunctionalDense-LIN": (FunctionalDense, lambda r: (FunctionalDense(3, 4, "LIN", r),
                                                        r.uniform(0.1, 1.0, (5, 3)), {})),
    "FunctionalDense-F01-generic": (FunctionalDense, lambda r: (
        FunctionalDense(3, 4, "F01", r, path="generic"), r.uniform(0.1, 1.0, (5, 3)), {})),
    "FunctionalConv2D-F19": (FunctionalConv2D, lambda r: (
        FunctionalConv2D(2, 3, 3, "F19", r, stride=2, padding=1), r.standard_normal((2, 2, 5, 5)), {})),
    "FunctionalRNN-F12": (FunctionalRNN, lambda r: (
        FunctionalRNN(3, 4, "F12", r, recurrent_function="F03"), r.standard_normal((5, 2, 3)),
        {"h0": r.standard_normal((2, 4))})),
    "MemoryFunctional-truncated": (MemoryFunctional, lambda r: (
        MemoryFunctional(3, 4, r), r.standard_normal((5, 2, 3)), {})),
    "MemoryFunctional-bptt-m0": (MemoryFunctional, lambda r: (
        MemoryFunctional(3, 4, r, gradient="bptt"), r.standard_normal((5, 2, 3)),
        {"m0": r.uniform(-1, 1, (2, 4, 3))})),
    "Residual": (Residual, lambda r: (Residual([Dense(4, 4, r), Tanh(), Dense(4, 4, r)], "tanh"),
                                      r.standard_normal((5, 4)), {})),
    "ConvTranspose2D": (ConvTranspose2D, lambda r: (
        ConvTranspose2D(2, 3, 3, stride=2, padding=1, output_padding=1, rng=r),
        r.standard_normal((2, 2, 4, 4)), {})),
}
LANDED = {name: factory for name, (cls, factory) in CASES.items()}


def _backward(layer, dy, cache):
    """All results of the layer's backward (backward_full for the RNN: dh0 too)."""
    if isinstance(layer, RNN):
        return layer.backward_full(dy, cache)
    return layer.backward(dy, cache)


def _assert_same(a, b, where):
    """Recursive equality of nested dicts/lists/tuples of arrays and plain values."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_same(u, v, f"{where}[{i}]")
    else:
        assert a == b or a is b, where


def _arrays(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _arrays(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _arrays(v)


@pytest.mark.parametrize("name", sorted(LANDED))
def test_backward_is_pure(rng, name):
    layer, x, kwargs = LANDED[name](rng)
    params0 = copy.deepcopy(layer.params)
    param_ids = {k: id(v) for k, v in layer.params.items()}
    x0, kwargs0 = x.copy(), copy.deepcopy(kwargs)

    y, cache = layer.forward(x, **kwargs)
    y_again, cache_again = layer.forward(x, **kwargs)
    _assert_same(y, y_again, "forward output (second call)")
    _assert_same(cache, cache_again, "cache (second call)")
    cache0 = copy.deepcopy(cache)

    dy = rng.standard_normal(y.shape)
    dy0 = dy.copy()
    first = _backward(layer, dy, cache)
    snapshot = copy.deepcopy(first)
    _assert_same(dy, dy0, "dy after backward")
    for arr in _arrays(first):   # a caller may scale or clip its gradients in place
        arr[...] = np.nan
    second = _backward(layer, dy0.copy(), cache)
    _assert_same(second, snapshot, "second backward")

    _assert_same(cache, cache0, "cache after backward")
    _assert_same(layer.params, params0, "layer.params")
    assert {k: id(v) for k, v in layer.params.items()} == param_ids
    _assert_same(x, x0, "x")
    _assert_same(kwargs, kwargs0, "forward kwargs")


@pytest.mark.parametrize("name", sorted(LANDED))
def test_explicit_params_do_not_mutate_the_layer(rng, name):
    layer, x, kwargs = LANDED[name](rng)
    own = layer.params
    own0 = copy.deepcopy(own)
    y_own, _ = layer.forward(x, **kwargs)
    other = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in own.items()}
    other0 = copy.deepcopy(other)

    y_other, cache = layer.forward(x, other, **kwargs)
    layer.backward(rng.standard_normal(y_other.shape), cache)
    assert layer.params is own
    _assert_same(own, own0, "layer.params")
    _assert_same(other, other0, "the explicit params dict")
    if own:
        assert not np.allclose(y_other, y_own)   # the explicit params were used ...
    layer.params = copy.deepcopy(other)
    try:                                          # ... exactly as if they were the layer's
        _assert_same(layer.forward(x, **kwargs)[0], y_other, "forward with installed params")
    finally:
        layer.params = own


def _layer_classes():
    """Concrete Layer subclasses defined in refnets.layers' modules."""
    found = set()
    for info in pkgutil.walk_packages(layers_pkg.__path__, prefix="refnets.layers."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, Layer) and cls.__module__ == module.__name__
                    and not cls.__name__.startswith("_") and cls not in (Layer, Activation)):
                found.add(cls)
    return found


def test_every_layer_type_is_covered():
    covered = {cls for cls, _ in CASES.values()}
    missing = sorted(cls.__name__ for cls in _layer_classes() - covered)
    assert not missing, f"layer types without a purity case in tests/test_purity.py: {missing}"
