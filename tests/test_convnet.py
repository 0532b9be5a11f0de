"""The convnet builder, an end-to-end conv model through the loss, and
Sequential.backward(input_grad=False)."""

import numpy as np
import pytest

from refnets.algorithms.backprop import Backprop
from refnets.gradcheck import directional_check
from refnets.layers import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, Tanh
from refnets.losses import accuracy, softmax_cross_entropy
from refnets.models import Sequential, convnet, mlp
from refnets.optim import Adam

TOL = 1e-7


def test_convnet_structure_and_shapes(rng):
    model = convnet((1, 28, 28), [8, 16], 3, 10, rng)
    kinds = [type(layer) for layer in model.layers]
    assert kinds == [Conv2D, ReLU, MaxPool2D, Conv2D, ReLU, MaxPool2D, Flatten, Dense]
    assert model.layers[-1].n_in == 16 * 7 * 7          # 'same' convs, two halvings
    y, _ = model.forward(rng.standard_normal((3, 1, 28, 28)))
    assert y.shape == (3, 10)


def test_convnet_options(rng):
    model = convnet((3, 9, 8), [4, 5], (3, 1), 2, rng, hidden=(6,), activation="tanh",
                    pool=None, padding=0, pool_type="avg")
    kinds = [type(layer) for layer in model.layers]
    assert kinds == [Conv2D, Tanh, Conv2D, Tanh, Flatten, Dense, Tanh, Dense]
    assert model.layers[5].n_in == 5 * (9 - 4) * 8        # two valid (3, 1) convs
    assert model.layers[1] is not model.layers[3]          # fresh activation objects
    model = convnet((2, 8, 8), [3], 3, 4, rng, pool=2, pool_type="avg")
    assert isinstance(model.layers[2], AvgPool2D)


def test_convnet_same_seed_same_model():
    a = convnet((1, 8, 8), [2], 3, 3, np.random.default_rng(3)).params()
    b = convnet((1, 8, 8), [2], 3, 3, np.random.default_rng(3)).params()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("kwargs,match", [
    ({"input_shape": (28, 28)}, r"input_shape must be \(C, H, W\)"),
    ({"channels": []}, r"channels must be a non-empty list of positive ints"),
    ({"n_classes": 0}, r"n_classes must be a positive int, got 0"),
    ({"hidden": (0,)}, r"hidden must be a list of positive ints"),
    ({"rng": 0}, r"rng must be a numpy.random.Generator"),
    ({"pool_type": "min"}, r"pool_type must be 'max' or 'avg', got 'min'"),
    ({"activation": "swish"}, r"activation must be one of"),
    ({"channels": [2, 2, 2, 2]}, r"MaxPool2D: pooling window \(2, 2\) is larger than the "
                                 r"input \(1, 1\)"),
])
def test_convnet_bad_input(rng, kwargs, match):
    args = {"input_shape": (1, 8, 8), "channels": [2], "kernel_size": 3, "n_classes": 3,
            "rng": rng}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        convnet(**args)


def _small_convnet(rng):
    """conv -> tanh -> max-pool -> conv (stride 2) -> flatten -> dense, random biases."""
    model = Sequential([Conv2D(2, 3, 3, padding=1, rng=rng), Tanh(), MaxPool2D(2),
                        Conv2D(3, 4, 2, stride=2, rng=rng), Flatten(), Dense(4 * 2 * 2, 3, rng)])
    for layer in model.layers:
        if "b" in layer.params:
            layer.params["b"][...] = 0.1 * rng.standard_normal(layer.params["b"].shape)
    return model


def test_end_to_end_directional_check(rng):
    """conv -> pool -> flatten -> dense -> softmax-CE: d loss / d x and d loss / d every param."""
    model = _small_convnet(rng)
    x = rng.standard_normal((3, 2, 8, 9))
    y = np.array([0, 2, 1])
    out, caches = model.forward(x)
    _, dout = softmax_cross_entropy(out, y)
    dx, grads = model.backward(dout, caches)
    one = np.array(1.0)                                   # upstream gradient of the scalar loss

    def loss_of_x(v):
        return np.array(softmax_cross_entropy(model.forward(v)[0], y)[0])

    err, _, _ = directional_check(loss_of_x, x, one, dx, rng, n_directions=6)
    assert err < TOL, err
    flat = model.flatten(grads)
    assert set(flat) == set(model.params())
    for key, value in model.params().items():
        k, name = key.split(".")

        def loss_of_param(v, k=int(k), name=name):
            params = [dict(layer.params) for layer in model.layers]
            params[k][name] = v
            return np.array(softmax_cross_entropy(model.forward(x, params)[0], y)[0])

        err, _, _ = directional_check(loss_of_param, value.copy(), one, flat[key], rng)
        assert err < TOL, (key, err)


@pytest.mark.parametrize("build", [
    lambda rng: _small_convnet(rng),
    lambda rng: mlp([2 * 8 * 9, 5, 3], "tanh", rng),
    lambda rng: Sequential([Flatten(), Dense(2 * 8 * 9, 3, rng)]),  # parameter-free first layer
    lambda rng: Sequential([Flatten(), Tanh()]),                    # no parameters at all
])
def test_backward_without_input_grad(rng, build):
    """input_grad=False: identical parameter gradients, no dx."""
    model = build(rng)
    x = rng.standard_normal((3, 2, 8, 9))
    if isinstance(model.layers[0], Dense):
        x = x.reshape(3, -1)
    out, caches = model.forward(x)
    dout = rng.standard_normal(out.shape)
    dx, full = model.backward(dout, caches)
    none, part = model.backward(dout, caches, input_grad=False)
    assert dx.shape == x.shape and none is None
    assert len(part) == len(full)
    for g_full, g_part in zip(full, part):
        assert g_full.keys() == g_part.keys()
        for key in g_full:
            np.testing.assert_array_equal(g_part[key], g_full[key])


def _bars(rng, n):
    """8x8 images holding one vertical (label 0) or horizontal (label 1) bar, plus noise."""
    y = rng.integers(0, 2, n)
    x = 0.1 * rng.standard_normal((n, 1, 8, 8))
    pos = rng.integers(0, 8, n)
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        if label == 0:
            x[idx, 0, :, pos[idx]] += 1.0
        else:
            x[idx, 0, pos[idx], :] += 1.0
    return x, y


def test_backprop_trains_a_convnet(rng):
    """Backprop + Adam on a tiny convnet separates vertical from horizontal bars."""
    model = convnet((1, 8, 8), [4], 3, 2, rng)
    algo, opt = Backprop(), Adam(lr=0.02)
    x_test, y_test = _bars(rng, 200)
    before = accuracy(model.predict(x_test), y_test)
    for _ in range(40):
        x, y = _bars(rng, 32)
        res = algo.step(model, {}, x, y, rng)
        opt.update(algo.variables(model, {}), res.grads)
    after = accuracy(model.predict(x_test), y_test)
    assert after >= 0.95, (before, after)
