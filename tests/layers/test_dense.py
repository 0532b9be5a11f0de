"""Dense: forward values, gradient checks, backward_input/backward_params, bad input."""

import numpy as np
import pytest

from refnets.gradcheck import check_layer
from refnets.layers import Dense

TOL = 1e-7


def _dense(rng, n_in, n_out, bias=True):
    layer = Dense(n_in, n_out, rng, bias=bias)
    if bias:
        layer.params["b"] = rng.standard_normal(n_out)  # exercise the bias path
    return layer


@pytest.mark.parametrize("x_shape,n_out", [
    ((1, 1), 1),          # batch 1, scalar in and out
    ((1, 5), 3),          # batch 1
    ((4, 7), 3),          # odd sizes
    ((9, 2), 11),
    ((3, 4, 5), 2),       # (T, N, D): per-time-step read-out
    ((1, 1, 3), 4),       # T = 1, N = 1
    ((2, 3, 2, 4), 3),    # more leading dimensions
])
@pytest.mark.parametrize("bias", [True, False])
def test_check_layer(rng, x_shape, n_out, bias):
    layer = _dense(rng, x_shape[-1], n_out, bias)
    errors = check_layer(layer, rng.standard_normal(x_shape), rng)
    assert set(errors) == ({"x", "W", "b"} if bias else {"x", "W"})
    assert max(errors.values()) < TOL, errors


def test_check_layer_directional_large(rng):
    """W with 80*60 > max_elements entries goes through the directional checker."""
    errors = check_layer(_dense(rng, 60, 80), rng.standard_normal((5, 60)), rng)
    assert max(errors.values()) < TOL, errors


def test_forward_by_hand():
    layer = Dense(2, 3, np.random.default_rng(0))
    params = {"W": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), "b": np.array([1.0, 0.0, -1.0])}
    z, _ = layer.forward(np.array([[1.0, -1.0], [0.5, 2.0]]), params)
    # row 1: (1-2+1, 3-4+0, 5-6-1); row 2: (0.5+4+1, 1.5+8, 2.5+12-1)
    np.testing.assert_array_equal(z, [[0.0, -1.0, -2.0], [5.5, 9.5, 13.5]])


def test_backward_by_hand():
    layer = Dense(2, 1, np.random.default_rng(0))
    params = {"W": np.array([[2.0, -3.0]]), "b": np.array([0.5])}
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    _, cache = layer.forward(x, params)
    dz = np.array([[1.0], [-2.0]])
    dx, grads = layer.backward(dz, cache)
    np.testing.assert_array_equal(dx, [[2.0, -3.0], [-4.0, 6.0]])       # dz @ W
    np.testing.assert_array_equal(grads["W"], [[1 - 6, 2 + 2]])          # sum_n dz_n x_n
    np.testing.assert_array_equal(grads["b"], [1.0 - 2.0])


def test_backward_input_with_substitute_matrix(rng):
    """Feedback alignment sends the error through B instead of W; dW is unaffected."""
    layer = _dense(rng, 4, 3)
    x = rng.standard_normal((5, 4))
    _, cache = layer.forward(x)
    dz = rng.standard_normal((5, 3))
    B = rng.standard_normal((3, 4))
    np.testing.assert_allclose(layer.backward_input(dz, cache, W=B), dz @ B, rtol=1e-14)
    np.testing.assert_allclose(layer.backward_input(dz, cache), dz @ layer.params["W"], rtol=1e-14)
    dx, grads = layer.backward(dz, cache)
    assert np.array_equal(dx, layer.backward_input(dz, cache))
    bp = layer.backward_params(dz, cache)
    assert all(np.array_equal(grads[k], bp[k]) for k in grads)
    with pytest.raises(ValueError, match=r"W must have shape \(3, 4\), got \(4, 3\)"):
        layer.backward_input(dz, cache, W=B.T)


def test_sequence_input_sums_over_time(rng):
    """(T, N, D) input: the gradient is the sum of the per-step gradients."""
    layer = _dense(rng, 3, 2)
    x = rng.standard_normal((4, 5, 3))
    dz = rng.standard_normal((4, 5, 2))
    z, cache = layer.forward(x)
    assert z.shape == (4, 5, 2)
    for t in range(4):
        np.testing.assert_allclose(z[t], layer.forward(x[t])[0], rtol=1e-14)
    dx, grads = layer.backward(dz, cache)
    per_step = [layer.backward(dz[t], layer.forward(x[t])[1]) for t in range(4)]
    np.testing.assert_allclose(dx, np.stack([d for d, _ in per_step]), rtol=1e-14)
    for k in grads:
        np.testing.assert_allclose(grads[k], sum(g[k] for _, g in per_step), rtol=1e-12)


def test_explicit_params_used_and_layer_untouched(rng):
    layer = _dense(rng, 3, 2)
    own = {k: v.copy() for k, v in layer.params.items()}
    other = {"W": rng.standard_normal((2, 3)), "b": rng.standard_normal(2)}
    x = rng.standard_normal((4, 3))
    z, cache = layer.forward(x, other)
    np.testing.assert_allclose(z, x @ other["W"].T + other["b"], rtol=1e-14)
    dz = rng.standard_normal((4, 2))
    np.testing.assert_allclose(layer.backward(dz, cache)[0], dz @ other["W"], rtol=1e-14)
    assert all(np.array_equal(layer.params[k], own[k]) for k in own)


def test_initialisation(rng):
    layer = Dense(7, 5, rng)
    assert layer.params["W"].shape == (5, 7) and layer.params["W"].dtype == np.float64
    assert np.array_equal(layer.params["b"], np.zeros(5))
    assert np.abs(layer.params["W"]).max() <= np.sqrt(6 / 12)
    again = Dense(7, 5, np.random.default_rng(1234))
    assert np.array_equal(layer.params["W"], again.params["W"])
    assert set(Dense(7, 5, rng, bias=False).params) == {"W"}
    he = Dense(400, 300, rng, init="he_normal").params["W"]
    assert he.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)


# -- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3,), (4, 5), (2, 4, 2)])
def test_bad_x_shape(rng, shape):
    with pytest.raises(ValueError, match=r"Dense\.forward: x must have shape \(N, 3\).*got"):
        Dense(3, 2, rng).forward(np.zeros(shape))


def test_int_and_float32_x_upcast_exactly(rng):
    layer, x = Dense(3, 2, rng), rng.integers(-5, 5, (4, 3))
    for xx in (x, x.astype(np.float32)):
        y, _ = layer.forward(xx)
        assert y.dtype == np.float64
        np.testing.assert_array_equal(y, layer.forward(x.astype(np.float64))[0])
    with pytest.raises(ValueError, match="Dense.forward: x must be a real numeric array, got dtype <U1"):
        layer.forward(np.full((4, 3), "a"))


def test_bad_dz_shape(rng):
    layer = Dense(3, 2, rng)
    _, cache = layer.forward(np.zeros((4, 3)))
    for method in (layer.backward, layer.backward_params, layer.backward_input):
        with pytest.raises(ValueError, match=r"dz must have the output's shape \(4, 2\), got \(2, 4\)"):
            method(np.zeros((2, 4)), cache)


def test_bad_params(rng):
    layer = Dense(3, 2, rng)
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"params is missing keys \['b'\]"):
        layer.forward(x, {"W": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"params\['W'\] must have shape \(2, 3\), got \(3, 2\)"):
        layer.forward(x, {"W": np.zeros((3, 2)), "b": np.zeros(2)})
    with pytest.raises(ValueError, match="params must be a dict or None, got list"):
        layer.forward(x, [np.zeros((2, 3))])


@pytest.mark.parametrize("kwargs,match", [
    ({"n_in": 0, "n_out": 2}, "Dense: n_in must be >= 1, got 0"),
    ({"n_in": 3, "n_out": 2.5}, "Dense: n_out must be an integer, got 2.5"),
    ({"n_in": "3", "n_out": 2}, "Dense: n_in must be an integer, got '3'"),
    ({"n_in": 3, "n_out": 2, "init": "xavier"}, "init must be one of .* got 'xavier'"),
    ({"n_in": 3, "n_out": 2, "rng": 0}, "rng must be a numpy.random.Generator"),
])
def test_bad_constructor_arguments(rng, kwargs, match):
    kwargs.setdefault("rng", rng)
    with pytest.raises(ValueError, match=match):
        Dense(**kwargs)
