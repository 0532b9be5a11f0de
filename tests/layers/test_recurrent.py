"""Elman RNN (BPTT), LastStep and the rnn_classifier builder."""

import numpy as np
import pytest

from refnets.gradcheck import check_layer, directional_check, numerical_vjp, rel_error
from refnets.layers import RNN, Dense, LastStep
from refnets.losses import softmax_cross_entropy
from refnets.models import Sequential, rnn_classifier

TOL = 1e-7


def _rnn(rng, D, H):
    """An RNN with a non-zero bias, so that db and the bias path are exercised."""
    layer = RNN(D, H, rng)
    layer.params["b"] = 0.5 * rng.standard_normal(H)
    return layer


def _full_check(layer, x, h0, rng):
    """Element-wise check of dx, every parameter gradient and dh0 (h0 given)."""
    hs, cache = layer.forward(x, h0=h0)
    dhs = rng.standard_normal(hs.shape)
    dx, grads, dh0 = layer.backward_full(dhs, cache)
    p = {k: v.copy() for k, v in layer.params.items()}
    errors = {
        "x": rel_error(dx, numerical_vjp(lambda v: layer.forward(v, p, h0=h0)[0], x.copy(), dhs)),
        "h0": rel_error(dh0, numerical_vjp(lambda v: layer.forward(x, p, h0=v)[0], h0.copy(), dhs)),
    }
    for key in p:
        def f(v, key=key):
            return layer.forward(x, {**p, key: v}, h0=h0)[0]
        errors[key] = rel_error(grads[key], numerical_vjp(f, p[key].copy(), dhs))
    return errors


# -- gradient checks -------------------------------------------------------------------

@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("N", [1, 3])
@pytest.mark.parametrize("D,H", [(3, 5), (1, 4)])
def test_check_layer_zero_h0(rng, T, N, D, H):
    errors = check_layer(_rnn(rng, D, H), rng.standard_normal((T, N, D)), rng)
    assert set(errors) == {"x", "W_x", "W_h", "b"}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("N", [1, 3])
def test_gradients_with_h0(rng, T, N):
    layer = _rnn(rng, 3, 5)
    errors = _full_check(layer, rng.standard_normal((T, N, 3)), rng.standard_normal((N, 5)), rng)
    assert max(errors.values()) < TOL, errors


def test_dW_h_is_nonzero_at_T1_only_through_h0(rng):
    """At T = 1 the recurrent weights see only h0: dW_h = da_1^T h0, zero when h0 = 0."""
    layer = _rnn(rng, 2, 3)
    x = rng.standard_normal((1, 4, 2))
    dhs = rng.standard_normal((1, 4, 3))
    _, g0 = layer.backward(dhs, layer.forward(x)[1])
    assert np.array_equal(g0["W_h"], np.zeros((3, 3)))
    h0 = rng.standard_normal((4, 3))
    hs, cache = layer.forward(x, h0=h0)
    _, g1 = layer.backward(dhs, cache)
    da = dhs[0] * (1 - hs[0] ** 2)
    np.testing.assert_allclose(g1["W_h"], da.T @ h0, rtol=1e-13)


def test_directional_check_larger_sizes(rng):
    """BPTT over 20 steps at sizes too big for element-wise differences."""
    T, N, D, H = 20, 6, 16, 32
    layer = _rnn(rng, D, H)
    x, h0 = rng.standard_normal((T, N, D)), rng.standard_normal((N, H))
    hs, cache = layer.forward(x, h0=h0)
    dhs = rng.standard_normal(hs.shape)
    dx, grads, dh0 = layer.backward_full(dhs, cache)
    p = layer.params
    err, _, _ = directional_check(lambda v: layer.forward(v, h0=h0)[0], x, dhs, dx, rng)
    assert err < TOL
    err, _, _ = directional_check(lambda v: layer.forward(x, h0=v)[0], h0, dhs, dh0, rng)
    assert err < TOL
    for key in p:
        err, _, _ = directional_check(lambda v, key=key: layer.forward(x, {**p, key: v}, h0=h0)[0],
                                      p[key], dhs, grads[key], rng)
        assert err < TOL, key


def test_default_h0_is_zeros(rng):
    layer = _rnn(rng, 3, 4)
    x = rng.standard_normal((5, 2, 3))
    hs_default, c_default = layer.forward(x)
    hs_zero, c_zero = layer.forward(x, h0=np.zeros((2, 4)))
    assert np.array_equal(hs_default, hs_zero)
    dhs = rng.standard_normal(hs_default.shape)
    for a, b in zip(layer.backward_full(dhs, c_default), layer.backward_full(dhs, c_zero)):
        if isinstance(a, dict):
            for k in a:
                assert np.array_equal(a[k], b[k])
        else:
            assert np.array_equal(a, b)


def test_backward_equals_backward_full(rng):
    layer = _rnn(rng, 3, 4)
    hs, cache = layer.forward(rng.standard_normal((4, 2, 3)), h0=rng.standard_normal((2, 4)))
    dhs = rng.standard_normal(hs.shape)
    dx, grads = layer.backward(dhs, cache)
    dx_f, grads_f, _ = layer.backward_full(dhs, cache)
    assert np.array_equal(dx, dx_f)
    assert all(np.array_equal(grads[k], grads_f[k]) for k in grads_f)


# -- a hand-computed example -----------------------------------------------------------

def test_one_unit_two_steps_by_hand():
    """D = H = 1, T = 2, N = 1, loss L = h_2 (dhs = [0, 1]).

    w_x = 0.5, w_h = -1.5, b = 0.1, h_0 = 0.2, x = (1, -2):
      a_1 = 0.5*1 - 1.5*0.2 + 0.1 = 0.3,             h_1 = tanh(0.3)
      a_2 = 0.5*(-2) - 1.5*h_1 + 0.1 = -0.9 - 1.5 h_1,  h_2 = tanh(a_2)
      da_2 = 1 - h_2^2;  dh_1 = w_h da_2;  da_1 = dh_1 (1 - h_1^2);  dh_0 = w_h da_1
      dw_x = da_1*1 + da_2*(-2);  dw_h = da_1*h_0 + da_2*h_1;  db = da_1 + da_2
      dx = (w_x da_1, w_x da_2)
    """
    layer = RNN(1, 1, np.random.default_rng(0))
    params = {"W_x": np.array([[0.5]]), "W_h": np.array([[-1.5]]), "b": np.array([0.1])}
    x = np.array([1.0, -2.0]).reshape(2, 1, 1)
    h0 = np.array([[0.2]])
    hs, cache = layer.forward(x, params, h0=h0)

    h1 = np.tanh(0.3)
    h2 = np.tanh(-0.9 - 1.5 * h1)
    assert h1 == pytest.approx(0.291312612451591, abs=1e-15)
    assert h2 == pytest.approx(np.tanh(-1.33696892), abs=1e-9)  # a_2 = -1.33696892
    assert h2 == pytest.approx(-0.87094229, abs=1e-8)
    np.testing.assert_allclose(hs.ravel(), [h1, h2], rtol=1e-14)

    dx, grads, dh0 = layer.backward_full(np.array([0.0, 1.0]).reshape(2, 1, 1), cache)
    da2 = 1 - h2 ** 2
    da1 = -1.5 * da2 * (1 - h1 ** 2)
    np.testing.assert_allclose(dx.ravel(), [0.5 * da1, 0.5 * da2], rtol=1e-13)
    np.testing.assert_allclose(grads["W_x"], [[da1 - 2 * da2]], rtol=1e-13)
    np.testing.assert_allclose(grads["W_h"], [[0.2 * da1 + h1 * da2]], rtol=1e-13)
    np.testing.assert_allclose(grads["b"], [da1 + da2], rtol=1e-13)
    np.testing.assert_allclose(dh0, [[-1.5 * da1]], rtol=1e-13)


# -- initialisation --------------------------------------------------------------------

def test_initialisation(rng):
    layer = RNN(7, 5, rng)
    assert layer.params["W_x"].shape == (5, 7)
    assert layer.params["W_h"].shape == (5, 5)
    assert layer.params["b"].shape == (5,)
    assert all(v.dtype == np.float64 for v in layer.params.values())
    np.testing.assert_allclose(layer.params["W_h"] @ layer.params["W_h"].T, np.eye(5), atol=1e-12)
    assert np.abs(layer.params["W_x"]).max() <= np.sqrt(6 / (5 + 7))
    assert np.array_equal(layer.params["b"], np.zeros(5))
    again = RNN(7, 5, np.random.default_rng(1234))
    assert all(np.array_equal(layer.params[k], again.params[k]) for k in layer.params)


# -- LastStep ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1, 3), (6, 2, 4)])
def test_last_step(rng, shape):
    x = rng.standard_normal(shape)
    y, cache = LastStep().forward(x)
    assert np.array_equal(y, x[-1])
    dy = rng.standard_normal(y.shape)
    dx, grads = LastStep().backward(dy, cache)
    assert grads == {}
    assert np.array_equal(dx[-1], dy)
    assert np.array_equal(dx[:-1], np.zeros((shape[0] - 1,) + shape[1:]))
    assert check_layer(LastStep(), x, rng)["x"] < TOL


# -- the builder -----------------------------------------------------------------------

def test_rnn_classifier_structure(rng):
    last = rnn_classifier(3, 8, 4, rng)
    assert [type(layer) for layer in last.layers] == [RNN, LastStep, Dense]
    assert last.predict(rng.standard_normal((5, 2, 3))).shape == (2, 4)
    every = rnn_classifier(3, 8, 4, rng, readout="all")
    assert [type(layer) for layer in every.layers] == [RNN, Dense]
    assert every.predict(rng.standard_normal((5, 2, 3))).shape == (5, 2, 4)
    assert sorted(every.params()) == ["0.W_h", "0.W_x", "0.b", "1.W", "1.b"]


@pytest.mark.parametrize("readout", ["last", "all"])
def test_rnn_classifier_model_gradient(rng, readout):
    """Whole model + softmax-CE: backprop gradient vs differences of the loss."""
    model = rnn_classifier(2, 5, 3, rng, readout=readout)
    T, N = 4, 3
    x = rng.standard_normal((T, N, 2))
    y = rng.integers(0, 3, size=(N,) if readout == "last" else (T, N))
    out, caches = model.forward(x)
    _, dout = softmax_cross_entropy(out, y)
    dx, grads = model.backward(dout, caches)
    flat = model.flatten(grads)

    def loss_of(key):
        def f(v):
            per_layer = model.unflatten({**model.params(), key: v})
            return np.array(softmax_cross_entropy(model.forward(x, per_layer)[0], y)[0])
        return f

    for key, value in model.params().items():
        num = numerical_vjp(loss_of(key), value.copy(), np.array(1.0))
        assert rel_error(flat[key], num) < TOL, key
    num_x = numerical_vjp(lambda v: np.array(softmax_cross_entropy(model.forward(v)[0], y)[0]),
                          x.copy(), np.array(1.0))
    assert rel_error(dx, num_x) < TOL


# -- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape", [(4, 3), (2, 4, 3, 1), (2, 4, 5), (0, 4, 3), (2, 0, 3)])
def test_bad_x_shape(rng, x_shape):
    with pytest.raises(ValueError, match=r"RNN\.forward: x must have shape \(T, N, 3\).*got"):
        RNN(3, 4, rng).forward(np.zeros(x_shape))


def test_int_x_upcast_exactly(rng):
    layer, x = RNN(3, 4, rng), rng.integers(-2, 2, (2, 4, 3))
    hs, _ = layer.forward(x)
    assert hs.dtype == np.float64
    np.testing.assert_array_equal(hs, layer.forward(x.astype(float))[0])


@pytest.mark.parametrize("h0_shape", [(4,), (3, 4), (2, 5), (1, 2, 4)])
def test_bad_h0_shape(rng, h0_shape):
    with pytest.raises(ValueError, match=r"h0 must have.*\(2, 4\).*got"):
        RNN(3, 4, rng).forward(np.zeros((5, 2, 3)), h0=np.zeros(h0_shape))


def test_bad_dhs_shape(rng):
    layer = RNN(3, 4, rng)
    _, cache = layer.forward(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dhs must have the output's shape \(5, 2, 4\), got \(5, 4\)"):
        layer.backward(np.zeros((5, 4)), cache)


def test_bad_params(rng):
    layer = RNN(3, 4, rng)
    with pytest.raises(ValueError, match="missing keys"):
        layer.forward(np.zeros((5, 2, 3)), {"W_x": np.zeros((4, 3)), "b": np.zeros(4)})
    with pytest.raises(ValueError, match=r"params\['W_h'\] must have shape \(4, 4\), got \(3, 3\)"):
        layer.forward(np.zeros((5, 2, 3)), {**layer.params, "W_h": np.zeros((3, 3))})


@pytest.mark.parametrize("n_in,n_hidden", [(0, 4), (3, -1), (2.0, 4), (3, True)])
def test_bad_sizes(rng, n_in, n_hidden):
    with pytest.raises(ValueError, match=r"RNN: n_(in|hidden) must be (>= 1|an integer)"):
        RNN(n_in, n_hidden, rng)


def test_bad_rng():
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        RNN(3, 4, rng=0)


def test_last_step_bad_input(rng):
    with pytest.raises(ValueError, match=r"LastStep\.forward: x must have 3 dimensions"):
        LastStep().forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at least one time step"):
        LastStep().forward(np.zeros((0, 4, 3)))
    _, cache = LastStep().forward(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(4, 3\)"):
        LastStep().backward(np.zeros((2, 4, 3)), cache)


def test_rnn_classifier_bad_input(rng):
    with pytest.raises(ValueError, match="readout must be 'last' or 'all', got 'first'"):
        rnn_classifier(3, 4, 2, rng, readout="first")
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        rnn_classifier(3, 4, 2, rng=None)
    model = Sequential([RNN(3, 4, rng), LastStep()])
    with pytest.raises(ValueError, match=r"x must have shape \(T, N, 3\)"):
        model.forward(np.zeros((2, 3)))
