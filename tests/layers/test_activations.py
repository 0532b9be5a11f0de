"""Activation layers: values, derivatives, gradient checks, stability, bad input.

pytest turns RuntimeWarnings into errors (setup.cfg), so the +-1000 tests also
prove that no overflow warning is raised.
"""

import numpy as np
import pytest

from refnets.gradcheck import check_layer, numerical_vjp, rel_error
from refnets.layers import (Activation, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh,
                            get_activation)
from refnets.layers._checks import _away_from_zero  # |x| >= 0.1: no difference straddles a kink

TOL = 1e-7
ALL = [Identity, Tanh, ReLU, LeakyReLU, Sigmoid, Softplus]


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 7), (3, 2, 5)])
def test_check_layer(rng, cls, shape):
    errors = check_layer(cls(), 2 * _away_from_zero(rng, shape), rng)
    assert set(errors) == {"x"}
    assert errors["x"] < TOL


@pytest.mark.parametrize("cls", ALL)
def test_derivative_matches_differences_and_backward(rng, cls):
    """derivative(z) (used by algorithms directly) equals the numerical derivative and
    the cached form used by backward."""
    act = cls()
    z = 3 * _away_from_zero(rng, (5, 4))
    num = numerical_vjp(act.apply, z.copy(), np.ones_like(z))
    assert rel_error(act.derivative(z), num) < TOL
    _, cache = act.forward(z)
    dy = rng.standard_normal(z.shape)
    np.testing.assert_allclose(act.backward(dy, cache)[0], dy * act.derivative(z), rtol=1e-14)


def test_values():
    z = np.array([[-2.0, -0.5, 0.0, 0.5, 2.0]])
    np.testing.assert_array_equal(Identity().apply(z), z)
    np.testing.assert_array_equal(ReLU().apply(z), [[0, 0, 0, 0.5, 2.0]])
    np.testing.assert_allclose(LeakyReLU(0.1).apply(z), [[-0.2, -0.05, 0, 0.5, 2.0]], rtol=1e-15)
    np.testing.assert_allclose(Tanh().apply(z), np.tanh(z), rtol=1e-15)
    np.testing.assert_allclose(Sigmoid().apply(z), 1 / (1 + np.exp(-z)), rtol=1e-15)
    np.testing.assert_allclose(Softplus().apply(z), np.log1p(np.exp(z)), rtol=1e-15)
    assert Sigmoid().apply(np.array([0.0]))[0] == 0.5
    assert Softplus().apply(np.array([0.0]))[0] == pytest.approx(np.log(2), rel=1e-15)


def test_derivative_at_kink_is_the_documented_subgradient():
    z = np.array([[0.0]])
    assert ReLU().derivative(z)[0, 0] == 0.0
    assert LeakyReLU(0.2).derivative(z)[0, 0] == 0.2
    np.testing.assert_array_equal(LeakyReLU(0.2).derivative(np.array([[-3.0, 3.0]])), [[0.2, 1.0]])


@pytest.mark.parametrize("cls", [Sigmoid, Softplus, Tanh])
def test_stable_at_plus_minus_1000(cls):
    act = cls()
    z = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]])
    y, cache = act.forward(z)
    dz, _ = act.backward(np.ones_like(z), cache)
    for arr in (y, dz, act.derivative(z)):
        assert np.all(np.isfinite(arr))
    if cls is Sigmoid:
        assert y[0, 0] == 0.0 and y[0, -1] == 1.0
        np.testing.assert_array_equal(dz[0, [0, -1]], [0.0, 0.0])
    if cls is Softplus:
        assert y[0, 0] == 0.0 and y[0, -1] == 1000.0
        np.testing.assert_array_equal(dz[0, [0, -1]], [0.0, 1.0])


def test_sigmoid_derivative_keeps_precision_for_large_z():
    """g'(z) = e^-z / (1+e^-z)^2; the form g(1-g) loses it to cancellation
    (relative error 1e-3 at z = 30, 0 instead of 4e-18 at z = 40)."""
    z = np.array([[20.0, 30.0, 40.0, -30.0, -40.0]])
    exact = np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))) ** 2
    np.testing.assert_allclose(Sigmoid().derivative(z), exact, rtol=1e-14)
    _, cache = Sigmoid().forward(z)
    np.testing.assert_allclose(Sigmoid().backward(np.ones_like(z), cache)[0], exact, rtol=1e-14)


def test_get_activation():
    for name, cls in [("identity", Identity), ("tanh", Tanh), ("relu", ReLU),
                      ("leaky_relu", LeakyReLU), ("sigmoid", Sigmoid), ("softplus", Softplus)]:
        act = get_activation(name)
        assert type(act) is cls and isinstance(act, Activation)
    inst = LeakyReLU(0.3)
    assert get_activation(inst) is inst
    with pytest.raises(ValueError, match=r"activation must be one of \[.*'tanh'.*\].*got 'gelu'"):
        get_activation("gelu")
    with pytest.raises(ValueError, match="got None"):
        get_activation(None)


@pytest.mark.parametrize("alpha", [-0.1, np.nan, np.inf])
def test_leaky_relu_bad_alpha(alpha):
    with pytest.raises(ValueError, match="LeakyReLU: alpha must be (>= 0|finite)"):
        LeakyReLU(alpha)


@pytest.mark.parametrize("cls", ALL)
def test_bad_input(cls):
    act = cls()
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.forward: x must be a real numeric "
                                         rf"array, got dtype object"):
        act.forward(np.array([[1, None]]))
    _, cache = act.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(2, 3\), got \(3, 2\)"):
        act.backward(np.ones((3, 2)), cache)
