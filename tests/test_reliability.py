"""Randomised sweep of bad input through every public layer, loss, optimiser and method.

Each case either raises a clear error (its type and the argument's name in the
message) or returns an exact float64 result (float32 and int input upcast
exactly: the same numbers as the float64 call). Seeded; a few seconds.
"""

import inspect
import zlib

import numpy as np
import pytest

from refnets import layers as L
from refnets import optim
from refnets.algorithms import available_methods, get_method
from refnets.losses import masked_softmax_cross_entropy, mse, softmax_cross_entropy
from refnets.validation import DivergenceError, NonFiniteInputError

SEED = 20261204
BAD_VALUES = (np.nan, np.inf, -np.inf)


def _rng(*salt):
    """A generator seeded by SEED and the case's name (crc32: stable across processes)."""
    return np.random.default_rng([SEED, *(zlib.crc32(str(s).encode()) for s in salt)])


# ---------------------------------------------------------------------------
# layers: (factory, input shape, batch axis)
# ---------------------------------------------------------------------------
def _layers():
    r = np.random.default_rng(SEED)
    return {
        "Dense": (lambda: L.Dense(4, 3, r), (5, 4), 0),
        "Identity": (L.Identity, (5, 4), 0),
        "Tanh": (L.Tanh, (5, 4), 0),
        "ReLU": (L.ReLU, (5, 4), 0),
        "LeakyReLU": (lambda: L.LeakyReLU(0.1), (5, 4), 0),
        "Sigmoid": (L.Sigmoid, (5, 4), 0),
        "Softplus": (L.Softplus, (5, 4), 0),
        "RNN": (lambda: L.RNN(3, 4, r), (4, 5, 3), 1),
        "LastStep": (L.LastStep, (4, 5, 3), 1),
        "Conv2D": (lambda: L.Conv2D(2, 3, 3, padding=1, rng=r), (3, 2, 5, 5), 0),
        "ConvTranspose2D": (lambda: L.ConvTranspose2D(2, 3, 3, stride=2, rng=r), (3, 2, 4, 4), 0),
        "MaxPool2D": (lambda: L.MaxPool2D(2), (3, 2, 4, 4), 0),
        "AvgPool2D": (lambda: L.AvgPool2D(2), (3, 2, 4, 4), 0),
        "Flatten": (L.Flatten, (3, 2, 4, 4), 0),
        "BatchNorm": (lambda: L.BatchNorm(2, affine=True), (3, 2, 4, 4), 0),
        "Residual": (lambda: L.Residual([L.Conv2D(2, 2, 3, padding=1, rng=r), L.BatchNorm(2)]),
                     (3, 2, 4, 4), 0),
        "FunctionalDense": (lambda: L.FunctionalDense(4, 3, "F03", r), (5, 4), 0),
        "FunctionalConv2D": (lambda: L.FunctionalConv2D(2, 3, 3, "F03", r), (3, 2, 5, 5), 0),
        "MemoryFunctional": (lambda: L.MemoryFunctional(3, 2, r), (4, 5, 3), 1),
        "FunctionalRNN": (lambda: L.FunctionalRNN(3, 4, "F03", r), (4, 5, 3), 1),
    }


LAYERS = _layers()


def test_the_sweep_covers_every_public_layer():
    public = {name for name in L.__all__ if inspect.isclass(getattr(L, name))
              and issubclass(getattr(L, name), L.Layer) and name not in ("Layer", "Activation")}
    assert public == set(LAYERS)


def _x(rng, shape):
    return rng.standard_normal(shape) + 0.05       # away from ReLU's kink at 0


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_upcasts_float32_and_ints_exactly(name):
    make, shape, _ = LAYERS[name]
    layer, rng = make(), _rng("upcast", name)
    for x in (_x(rng, shape).astype(np.float32), rng.integers(-3, 4, shape)):
        y, cache = layer.forward(x)
        y64, cache64 = layer.forward(x.astype(np.float64))
        assert y.dtype == np.float64, f"{name}.forward returned {y.dtype} for {x.dtype} input"
        np.testing.assert_array_equal(y, y64)
        dy = rng.standard_normal(y.shape)
        dx, grads = layer.backward(dy.astype(np.float32), cache)
        dx64, grads64 = layer.backward(dy.astype(np.float32).astype(np.float64), cache64)
        assert dx.dtype == np.float64, f"{name}.backward returned {dx.dtype}"
        np.testing.assert_array_equal(dx, dx64)
        for key in grads64:
            np.testing.assert_array_equal(grads[key], grads64[key])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_rejects_non_finite_naming_argument_and_index(name):
    make, shape, _ = LAYERS[name]
    layer, rng = make(), _rng("nonfinite", name)
    for _ in range(3):
        x = _x(rng, shape)
        bad = tuple(int(rng.integers(0, s)) for s in shape)
        x[bad] = BAD_VALUES[rng.integers(0, 3)]
        with pytest.raises(NonFiniteInputError, match=rf"{name}\.forward: x contains a "
                                                      rf"non-finite value \({x[bad]}\) at index "
                                                      rf"{re_tuple(bad)}"):
            layer.forward(x)
    y, cache = layer.forward(_x(rng, shape))
    dy = rng.standard_normal(y.shape)
    bad = tuple(int(rng.integers(0, s)) for s in y.shape)
    dy[bad] = np.nan
    arg = next(iter(inspect.signature(layer.backward).parameters))       # dy, dz, dhs, da
    with pytest.raises(ValueError, match=rf"{name}\.backward\w*: {arg} contains a non-finite value "
                                         rf"\(nan\) at index {re_tuple(bad)}"):
        layer.backward(dy, cache)


def re_tuple(t):
    return "\\(" + ", ".join(str(i) for i in t) + (",)" if len(t) == 1 else "") + "\\)"


WRONG_DTYPES = (bool, complex, str, object)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_rejects_non_numeric_dtypes_naming_x(name):
    make, shape, _ = LAYERS[name]
    rng = _rng("dtype", name)
    for i in rng.permutation(len(WRONG_DTYPES)):
        x = np.zeros(shape, dtype=WRONG_DTYPES[i])
        with pytest.raises(ValueError, match=rf"{name}\.forward: x must be a real numeric array, "
                                             rf"got dtype"):
            make().forward(x)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_rejects_empty_batch_naming_x(name):
    make, shape, axis = LAYERS[name]
    shape = list(shape)
    shape[axis] = 0
    with pytest.raises(ValueError, match=rf"{name}\.forward: x .*(empty batch|N >= 1)"):
        make().forward(np.zeros(shape))


REAL_BAD = ("0.1", None, np.nan, np.inf, True, [0.1])       # never a real number
INT_BAD = ("3", None, np.nan, 2.5, True, 0, -1, [3])          # never a positive int


@pytest.mark.parametrize("make, arg, bad", [
    (lambda v: L.LeakyReLU(v), "alpha", REAL_BAD + (-0.1,)),
    (lambda v: L.Dense(v, 3, np.random.default_rng(0)), "n_in", INT_BAD),
    (lambda v: L.Dense(3, v, np.random.default_rng(0)), "n_out", INT_BAD),
    (lambda v: L.RNN(v, 3, np.random.default_rng(0)), "n_in", INT_BAD),
    (lambda v: L.RNN(3, v, np.random.default_rng(0)), "n_hidden", INT_BAD),
    (lambda v: L.BatchNorm(v), "n_features", INT_BAD),
    (lambda v: L.BatchNorm(2, eps=v), "eps", REAL_BAD + (0.0, -1e-5)),
    (lambda v: L.BatchNorm(2, momentum=v), "momentum", REAL_BAD + (0.0, 1.5)),
    (lambda v: L.Conv2D(2, 3, v, rng=np.random.default_rng(0)), "kernel_size", INT_BAD),
    (lambda v: L.Conv2D(v, 3, 3, rng=np.random.default_rng(0)), "c_in", INT_BAD),
    (lambda v: L.Conv2D(2, 3, 3, stride=v, rng=np.random.default_rng(0)), "stride", INT_BAD),
    (lambda v: L.MaxPool2D(v), "size", INT_BAD),
    (lambda v: L.AvgPool2D(2, stride=v), "stride", tuple(b for b in INT_BAD if b is not None)),
    (lambda v: L.ConvTranspose2D(2, 3, v, rng=np.random.default_rng(0)), "kernel_size", INT_BAD),
])
def test_layer_hyperparameters_of_the_wrong_type(make, arg, bad):
    rng = _rng("layer-hyper", arg)
    for i in rng.permutation(len(bad)):
        with pytest.raises(ValueError, match=rf"{arg} must be"):
            make(bad[i])


def test_bool_hyperparameters_refuse_strings():
    r = np.random.default_rng(0)
    for make, arg in ((lambda: L.Dense(2, 2, r, bias="no"), "bias"),
                      (lambda: L.BatchNorm(2, affine="yes"), "affine"),
                      (lambda: L.Conv2D(2, 2, 3, rng=r, bias=0), "bias")):
        with pytest.raises(ValueError, match=rf"{arg} must be True or False"):
            make()


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------
LOSSES = {
    "softmax_cross_entropy": (softmax_cross_entropy, "logits", "y"),
    "masked_softmax_cross_entropy": (masked_softmax_cross_entropy, "logits", "y"),
    "mse": (mse, "pred", "target"),
}


def _loss_args(name, rng, n=6, c=4):
    logits = rng.standard_normal((n, c))
    if name == "mse":
        return logits, rng.standard_normal((n, c))
    return logits, rng.integers(0, c, n)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_sweep(name):
    fn, pred_name, target_name = LOSSES[name]
    rng = _rng("loss", name)
    logits, y = _loss_args(name, rng)
    loss64, d64 = fn(logits.astype(np.float32).astype(np.float64), y)
    loss32, d32 = fn(logits.astype(np.float32), y)
    assert d32.dtype == np.float64 and loss32 == loss64
    np.testing.assert_array_equal(d32, d64)
    with pytest.raises(ValueError, match=rf"{name}: {pred_name} is an empty batch"):
        fn(logits[:0], y[:0])
    bad = (int(rng.integers(0, 6)), int(rng.integers(0, 4)))
    value = BAD_VALUES[rng.integers(0, 3)]
    if name != "mse":          # mse leaves a non-finite pred to its caller (a NaN loss)
        broken = logits.copy()
        broken[bad] = value
        with pytest.raises(DivergenceError, match=rf"{name}: logits has the value {value} at "
                                                  rf"index {re_tuple(bad)}"):
            fn(broken, y)
    else:
        t = y.copy()
        t[bad] = value
        with pytest.raises(ValueError, match=rf"mse: target contains a non-finite value "
                                             rf"\({value}\) at index {re_tuple(bad)}"):
            fn(logits, t)


# ---------------------------------------------------------------------------
# optimisers
# ---------------------------------------------------------------------------
OPTIMIZERS = [optim.SGD, optim.Momentum, optim.RMSprop, optim.Adam, optim.LeeRMSprop]


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_optimizer_hyperparameters_of_the_wrong_type(cls):
    rng = _rng("optim", cls.__name__)
    params = inspect.signature(cls).parameters
    assert set(params) == {"lr", "weight_decay", *cls._hyper}
    for arg in params:
        is_bool = isinstance(params[arg].default, bool)
        bad = ("yes", None, 1, 0.0, [True]) if is_bool else REAL_BAD
        for i in rng.permutation(len(bad)):
            with pytest.raises(ValueError, match=rf"{cls.__name__}: {arg} must be"):
                cls(**{"lr": 0.1, arg: bad[i]})


@pytest.mark.parametrize("cls", OPTIMIZERS, ids=lambda c: c.__name__)
def test_optimizer_upcasts_float32_gradients_exactly(cls):
    rng = _rng("optim-upcast", cls.__name__)
    g = rng.standard_normal((3, 2)).astype(np.float32)
    a, b = cls(lr=0.1), cls(lr=0.1)
    pa, pb = {"w": np.ones((3, 2))}, {"w": np.ones((3, 2))}
    for _ in range(2):
        a.update(pa, {"w": g})
        b.update(pb, {"w": g.astype(np.float64)})
    assert pa["w"].dtype == np.float64
    np.testing.assert_array_equal(pa["w"], pb["w"])


# ---------------------------------------------------------------------------
# every registered method
# ---------------------------------------------------------------------------
def _setup(name):
    r = np.random.default_rng(SEED)
    x, y = r.standard_normal((16, 6)), r.integers(0, 3, 16)
    s = get_method(name).build([6, 8, 3], "tanh", r, x, y)
    return s, x, y, r


@pytest.mark.parametrize("name", available_methods())
def test_method_sweep(name):
    import copy
    s, x, y, r = _setup(name)
    rng = _rng("method", name)
    state = s.algorithm.init_state(s.model, r)
    # float32 x: the same step as the float64 call on the same numbers
    x32 = x.astype(np.float32)
    res = [s.algorithm.step(copy.deepcopy(s.model), copy.deepcopy(state), xx, y,
                            np.random.default_rng(1)) for xx in (x32, x32.astype(np.float64))]
    assert res[0].loss == res[1].loss
    for key in res[1].grads:
        assert np.asarray(res[0].grads[key]).dtype == np.float64
        np.testing.assert_array_equal(res[0].grads[key], res[1].grads[key])
    # NaN/inf in the data: a ValueError naming x and the index, never divergence
    bad = (int(rng.integers(0, 16)), int(rng.integers(0, 6)))
    xb = x.copy()
    xb[bad] = BAD_VALUES[rng.integers(0, 3)]
    for call in (lambda: s.algorithm.step(s.model, state, xb, y, r),
                 lambda: s.algorithm.predict(s.model, state, xb),
                 lambda: s.algorithm.trace(s.model, state, xb, y, r)):
        with pytest.raises(ValueError, match=rf"\.(step|predict|trace): x contains a non-finite "
                                             rf"value \({xb[bad]}\) at index {re_tuple(bad)}"):
            call()
    # a non-numeric x: a ValueError naming x
    for i in rng.permutation(len(WRONG_DTYPES)):
        with pytest.raises(ValueError, match=r"\.step: x must be a real numeric array, got dtype"):
            s.algorithm.step(s.model, state, x.astype(WRONG_DTYPES[i]), y, r)
    # an empty batch: a ValueError naming x
    with pytest.raises(ValueError, match=r"x .*empty batch|x of shape \(0, 6\)"):
        s.algorithm.step(s.model, state, x[:0], y[:0], r)


@pytest.mark.parametrize("name", available_methods())
def test_train_reports_divergence_with_method_epoch_and_step(name):
    from refnets.training import train
    s, x, y, r = _setup(name)
    s.optimizer.lr = 1e308
    with np.errstate(all="ignore"), pytest.raises(DivergenceError, match=r"train: .* diverged at epoch \d+, step \d+/\d+: "
                                              r".+ became non-finite"):
        train(s.model, s.algorithm, s.optimizer, (x, y), 5, 8, r, progress=False)


@pytest.mark.parametrize("name", available_methods())
def test_train_reports_bad_data_not_divergence(name):
    from refnets.training import train
    s, x, y, r = _setup(name)
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"train: data\[0\] \(x\) contains a non-finite value "
                                         r"\(nan\) at index \(3, 2\)"):
        train(s.model, s.algorithm, s.optimizer, (x, y), 1, 8, r, progress=False)


@pytest.mark.parametrize("name", available_methods())
def test_method_hyperparameters_of_the_wrong_type(name):
    """Every numeric constructor argument of a method's algorithm refuses non-numbers."""
    s, _, _, _ = _setup(name)
    cls = type(s.algorithm)
    params = [p for p in inspect.signature(cls).parameters.values()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    required = {p.name: getattr(s.algorithm, p.name) for p in params if p.default is p.empty}
    rng = _rng("method-hyper", name)
    for p in params:
        if isinstance(p.default, bool) or not isinstance(p.default, (int, float)):
            continue
        for i in rng.permutation(3):
            value = ("0.1", [1.0], np.nan)[i]
            with pytest.raises(ValueError, match=rf"{p.name}"):
                cls(**{**required, p.name: value})


@pytest.mark.parametrize("name", available_methods())
def test_given_values_are_checked_like_data(name):
    """A given draw (cross-checking) with NaN, or non-integer row indices, is refused by name."""
    s, x, y, r = _setup(name)
    state = s.algorithm.init_state(s.model, r)
    given = s.algorithm.trace(s.model, state, x, y, r)["given"]
    if not given:
        pytest.skip(f"{name} draws nothing per step")
    rng = _rng("given", name)
    for kw, family in given.items():
        key = sorted(family)[int(rng.integers(0, len(family)))]
        value = np.array(family[key], dtype=float)
        value.flat[int(rng.integers(0, value.size))] = np.nan
        with pytest.raises(ValueError, match=rf"given {kw}\[{key!r}\] (contains a non-finite "
                                             rf"value \(nan\)|must hold integers)"):
            s.algorithm.step(s.model, state, x, y, None, **{**given, kw: {**family, key: value}})
