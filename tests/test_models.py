"""Sequential and the mlp builder."""

import numpy as np
import pytest

from refnets.gradcheck import numerical_gradient, rel_error
from refnets.layers import Dense, LeakyReLU, ReLU, Sigmoid, Tanh
from refnets.losses import softmax_cross_entropy
from refnets.models import Sequential, mlp, param_key, split_key


def _model(rng):
    return Sequential([Dense(3, 4, rng), Tanh(), Dense(4, 2, rng)])


def test_forward_backward_equal_the_manual_chain(rng):
    model = _model(rng)
    d1, act, d2 = model.layers
    x = rng.standard_normal((5, 3))
    y, caches = model.forward(x)
    z1, c1 = d1.forward(x)
    h1, c2 = act.forward(z1)
    z2, c3 = d2.forward(h1)
    np.testing.assert_array_equal(y, z2)
    assert len(caches) == 3
    np.testing.assert_array_equal(model.predict(x), y)

    dy = rng.standard_normal(y.shape)
    dx, grads = model.backward(dy, caches)
    dh1, g3 = d2.backward(dy, c3)
    dz1, g2 = act.backward(dh1, c2)
    dx_manual, g1 = d1.backward(dz1, c1)
    np.testing.assert_array_equal(dx, dx_manual)
    assert grads[1] == {} and g2 == {}
    for got, want in ((grads[0], g1), (grads[2], g3)):
        assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)


def test_model_gradient_equals_differences_of_the_loss(rng):
    model = mlp([3, 5, 4, 3], "tanh", rng)
    for layer in model.layers[::2]:
        layer.params["b"] = rng.standard_normal(layer.params["b"].shape)
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 3, size=6)
    out, caches = model.forward(x)
    _, dout = softmax_cross_entropy(out, y)
    dx, grads = model.backward(dout, caches)
    flat = model.flatten(grads)
    for key, value in model.params().items():
        def loss(v, key=key):
            return softmax_cross_entropy(model.forward(x, model.unflatten({**model.params(), key: v}))[0], y)[0]
        assert rel_error(flat[key], numerical_gradient(loss, value.copy())) < 1e-7, key
    num_x = numerical_gradient(lambda v: softmax_cross_entropy(model.forward(v)[0], y)[0], x.copy())
    assert rel_error(dx, num_x) < 1e-7


def test_forward_with_explicit_params(rng):
    model = _model(rng)
    before = model.copy_params()
    other = [{"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(4)}, None,
             {"W": rng.standard_normal((2, 4)), "b": rng.standard_normal(2)}]
    x = rng.standard_normal((2, 3))
    y, _ = model.forward(x, other)
    want = np.tanh(x @ other[0]["W"].T + other[0]["b"]) @ other[2]["W"].T + other[2]["b"]
    np.testing.assert_allclose(y, want, rtol=1e-14)
    assert all(np.array_equal(v, before[k]) for k, v in model.params().items())


def test_params_are_the_layers_own_arrays(rng):
    model = _model(rng)
    params = model.params()
    assert list(params) == ["0.W", "0.b", "2.W", "2.b"]
    assert params["0.W"] is model.layers[0].params["W"]
    assert params["2.b"] is model.layers[2].params["b"]
    params["0.W"][0, 0] = 123.0
    assert model.layers[0].params["W"][0, 0] == 123.0
    snapshot = model.copy_params()
    snapshot["0.W"][0, 0] = -1.0
    assert model.layers[0].params["W"][0, 0] == 123.0  # copy_params is deep


def test_flatten_unflatten_set_params_round_trip(rng):
    model = _model(rng)
    per_layer = [layer.params for layer in model.layers]
    flat = model.flatten(per_layer)
    assert flat.keys() == model.params().keys()
    back = model.unflatten(flat)
    assert back[1] == {}
    assert all(back[k][n] is per_layer[k][n] for k in (0, 2) for n in ("W", "b"))
    assert model.flatten([None, None, {"W": 1}]) == {"2.W": 1}

    other = _model(np.random.default_rng(99))
    new = other.copy_params()
    model.set_params(new)
    assert all(np.array_equal(v, new[k]) for k, v in model.params().items())
    assert all(model.params()[k] is not new[k] for k in new)  # copied, not aliased
    assert split_key(param_key(12, "W_h")) == (12, "W_h")


def test_set_params_is_all_or_nothing(rng):
    model = _model(rng)
    before = model.copy_params()
    with pytest.raises(ValueError, match=r"'2\.W' must have shape \(2, 4\), got \(4, 2\)"):
        model.set_params({"0.W": np.ones((4, 3)), "2.W": np.ones((4, 2))})
    with pytest.raises(ValueError, match=r"unknown key '1\.W'"):
        model.set_params({"0.W": np.ones((4, 3)), "1.W": np.ones((4, 2))})
    assert all(np.array_equal(v, before[k]) for k, v in model.params().items())


@pytest.mark.parametrize("key", ["W", "3.W", "-1.W", "0."])
def test_unflatten_bad_key(rng, key):
    with pytest.raises(ValueError, match=rf"keys must be '<layer index>\.<name>'.*got '{key}'"):
        _model(rng).unflatten({key: np.zeros(1)})


def test_sequential_bad_input(rng):
    model = _model(rng)
    with pytest.raises(ValueError, match="layers must be a non-empty list"):
        Sequential([])
    with pytest.raises(ValueError, match=r"layers\[1\] must be a refnets Layer, got ufunc"):
        Sequential([Dense(2, 2, rng), np.tanh])
    with pytest.raises(ValueError, match=r"params must have one entry per layer \(3\), got 2"):
        model.forward(np.zeros((1, 3)), [None, None])
    _, caches = model.forward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="expected 3 caches, got 2"):
        model.backward(np.zeros((1, 2)), caches[:2])
    with pytest.raises(ValueError, match="Sequential.flatten: expected 3 entries, got 1"):
        model.flatten([{}])
    with pytest.raises(ValueError, match=r"Dense\.forward: x must have shape \(N, 3\)"):
        model.forward(np.zeros((1, 4)))


def test_mlp_structure(rng):
    model = mlp([5, 8, 7, 3], "relu", rng)
    assert [type(layer) for layer in model.layers] == [Dense, ReLU, Dense, ReLU, Dense]
    assert [(layer.n_in, layer.n_out) for layer in model.layers[::2]] == [(5, 8), (8, 7), (7, 3)]
    assert model.layers[1] is not model.layers[3]
    assert len(model) == 5 and model[4] is model.layers[4]
    assert [type(layer) for layer in mlp([2, 3], "tanh", rng).layers] == [Dense]
    out = mlp([2, 3, 1], "tanh", rng, output_activation="sigmoid")
    assert [type(layer) for layer in out.layers] == [Dense, Tanh, Dense, Sigmoid]
    leaky = mlp([2, 3, 3, 1], LeakyReLU(0.2), rng)
    assert [layer.alpha for layer in leaky.layers[1:4:2]] == [0.2, 0.2]
    assert leaky.layers[1] is not leaky.layers[3]
    a, b = mlp([4, 6, 2], "tanh", np.random.default_rng(7)), mlp([4, 6, 2], "tanh", np.random.default_rng(7))
    assert all(np.array_equal(v, b.params()[k]) for k, v in a.params().items())
    assert "Dense(5, 8)" in repr(model)


@pytest.mark.parametrize("kwargs,match", [
    ({"sizes": [3]}, r"sizes must be a list of >= 2 positive ints, got \[3\]"),
    ({"sizes": [3, 0, 2]}, "sizes must be a list of >= 2 positive ints"),
    ({"sizes": [3, 2.5, 2]}, "sizes must be a list of >= 2 positive ints"),
    ({"activation": "gelu"}, "activation must be one of .* got 'gelu'"),
    ({"activation": None}, "activation must be one of .* got None"),
    ({"rng": None}, "rng must be a numpy.random.Generator, got NoneType"),
    ({"init": "zeros"}, "init must be one of"),
])
def test_mlp_bad_input(rng, kwargs, match):
    args = {"sizes": [3, 4, 2], "activation": "tanh", "rng": rng, **kwargs}
    with pytest.raises(ValueError, match=match):
        mlp(**args)
