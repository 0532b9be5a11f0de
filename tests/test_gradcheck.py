"""The gradient checker itself: it must catch wrong derivatives and say where."""

import re

import numpy as np
import pytest

from refnets.gradcheck import (assert_close, check_layer, directional_check, numerical_gradient,
                               numerical_vjp, rel_error)
from refnets.layers import Dense, Layer, Tanh


class Square(Layer):
    """y = x^2 with an optional deliberate error at one index of dx."""

    def __init__(self, wrong_at=None, factor=1.5):
        super().__init__()
        self.wrong_at, self.factor = wrong_at, factor

    def forward(self, x, params=None):
        return x * x, {"x": x}

    def backward(self, dy, cache):
        dx = 2 * cache["x"] * dy
        if self.wrong_at is not None:
            dx[self.wrong_at] *= self.factor
        return dx, {}

    def __repr__(self):
        return "Square()"


class WrongDW(Dense):
    """Dense whose weight gradient is off by 1 %."""

    def backward_params(self, dz, cache):
        grads = super().backward_params(dz, cache)
        grads["W"] = 1.01 * grads["W"]
        return grads


# -- wrong derivatives are caught, with a useful message ---------------------------------

def test_wrong_dx_is_caught_with_worst_index(rng):
    x = rng.uniform(1.0, 2.0, size=(3, 4))
    errors = check_layer(Square(), x, rng)
    assert errors["x"] < 1e-9
    with pytest.raises(AssertionError) as info:
        check_layer(Square(wrong_at=(1, 2)), x, np.random.default_rng(5), tol=1e-7)
    msg = str(info.value)
    assert "gradient check failed for check_layer(Square()) dx" in msg
    assert "worst index (1, 2)" in msg
    # the reported values are the wrong analytic entry and the true derivative
    dy = np.random.default_rng(5).standard_normal((3, 4))
    true = 2 * x[1, 2] * dy[1, 2]
    analytic, numerical = (float(v) for v in
                           re.search(r"analytic (\S+), numerical (\S+)", msg).groups())
    assert analytic == pytest.approx(1.5 * true, rel=1e-12)
    assert numerical == pytest.approx(true, rel=1e-8)


def test_wrong_parameter_gradient_is_caught(rng):
    layer = WrongDW(4, 3, rng)
    x = rng.standard_normal((5, 4))
    errors = check_layer(layer, x, rng)
    assert errors["x"] < 1e-7 and errors["b"] < 1e-7
    assert errors["W"] == pytest.approx(0.01 / 1.01, rel=1e-5)
    with pytest.raises(AssertionError, match=r"check_layer\(Dense\(4, 3\)\) dW: relative error"):
        check_layer(layer, x, rng, tol=1e-7)


def test_wrong_gradient_caught_by_directional_path(rng):
    """A W too large for element-wise differences goes through random directions."""
    layer = WrongDW(70, 50, rng)
    with pytest.raises(AssertionError, match=r"dW \(directional, 6 directions\).*analytic <J\^T dy, v>"):
        check_layer(layer, rng.standard_normal((3, 70)), rng, tol=1e-7)
    errors = check_layer(Dense(70, 50, rng), rng.standard_normal((3, 70)), rng, tol=1e-7)
    assert max(errors.values()) < 1e-7


def test_mismatched_grad_keys_are_reported(rng):
    class NoBias(Dense):
        def backward(self, dz, cache):
            dx, grads = super().backward(dz, cache)
            del grads["b"]
            return dx, grads

    with pytest.raises(AssertionError, match=r"grads keys \['W'\] != params keys \['W', 'b'\]"):
        check_layer(NoBias(2, 2, rng), rng.standard_normal((3, 2)), rng)


def test_check_layer_leaves_layer_and_input_untouched(rng):
    layer = Dense(3, 2, rng)
    own = {k: v.copy() for k, v in layer.params.items()}
    x = rng.standard_normal((4, 3))
    x0 = x.copy()
    check_layer(layer, x, rng)
    assert np.array_equal(x, x0)
    assert all(np.array_equal(layer.params[k], own[k]) for k in own)


# -- the numerical derivatives -------------------------------------------------------------

def test_numerical_gradient_of_known_function(rng):
    x = rng.standard_normal((3, 2))
    x0 = x.copy()
    g = numerical_gradient(lambda v: np.sum(v ** 3), x)
    assert rel_error(g, 3 * x0 ** 2) < 1e-9
    assert np.array_equal(x, x0)  # perturbed in place, restored bit for bit


def test_numerical_vjp_of_linear_map(rng):
    A = rng.standard_normal((4, 3))
    x, dy = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    assert rel_error(numerical_vjp(lambda v: v @ A.T, x, dy), dy @ A) < 1e-9
    with pytest.raises(ValueError, match=r"f\(x\) has shape \(2, 4\), dy has \(4, 2\)"):
        numerical_vjp(lambda v: v @ A.T, x, dy.T.copy())


def test_directional_check_agrees_with_elementwise(rng):
    layer = Tanh()
    x, dy = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    f = lambda v: layer.forward(v)[0]  # noqa: E731
    jt_dy = layer.backward(dy, layer.forward(x)[1])[0]
    err, num, ana = directional_check(f, x, dy, jt_dy, np.random.default_rng(3))
    assert err < 1e-7
    # the same directions against the element-wise numerical VJP
    vjp = numerical_vjp(f, x.copy(), dy)
    r = np.random.default_rng(3)
    for k in range(4):
        v = r.standard_normal(x.shape)
        v /= np.linalg.norm(v)
        assert np.sum(vjp * v) == pytest.approx(num[k], rel=1e-7, abs=1e-12)
        assert np.sum(jt_dy * v) == pytest.approx(ana[k], rel=1e-14)
    # and both flag the same wrong derivative
    wrong = 1.02 * jt_dy
    assert directional_check(f, x, dy, wrong, rng)[0] > 1e-3
    assert rel_error(wrong, vjp) > 1e-3


# -- rel_error -----------------------------------------------------------------------------

def test_rel_error_semantics():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.zeros(0), np.zeros(0)) == 0.0
    # max|a-b| / max(max|a|, max|b|): scale-free, max-norm
    assert rel_error([1.0, 0.0], [1.0, 1e-3]) == pytest.approx(1e-3)
    assert rel_error([2.0, 0.0], [1.0, 0.0]) == pytest.approx(0.5)
    assert rel_error([1.0, 0.0], [2.0, 0.0]) == rel_error([2.0, 0.0], [1.0, 0.0])
    assert rel_error([1e-20, 0.0], [2e-20, 0.0]) == pytest.approx(0.5)
    # an entry that is ~0 in both does not blow the error up
    assert rel_error([1.0, 1e-30], [1.0, -1e-30]) == pytest.approx(2e-30)
    assert rel_error([0.0], [1.0]) == 1.0
    with pytest.raises(ValueError, match=r"shapes differ, \(2,\) vs \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rel_error_of_non_finite_is_inf_and_survives_max(bad):
    err = rel_error([1.0, bad], [1.0, 1.0])
    assert err == np.inf
    assert rel_error([1.0, 1.0], [bad, 1.0]) == np.inf
    assert max([1e-12, err]) == np.inf and not max([1e-12, err]) < 1e-7


def test_assert_close(rng):
    a = rng.standard_normal(4)
    assert assert_close(a, a + 1e-12, "d") < 1e-7
    with pytest.raises(AssertionError, match=r"gradient check failed for dthing.*worst index \(2,\)"):
        assert_close(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.5]), "dthing")


# -- refusing inputs a finite-difference check cannot handle -------------------------------

def test_float32_rejected(rng):
    x32 = rng.standard_normal((2, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 3))
    with pytest.raises(ValueError, match="numerical_gradient: x must be float64.*got float32"):
        numerical_gradient(lambda v: float(np.sum(v)), x32)
    with pytest.raises(ValueError, match="numerical_vjp: dy must be float64.*got float32"):
        numerical_vjp(lambda v: v, dy, dy.astype(np.float32))
    with pytest.raises(ValueError, match="directional_check: x must be float64"):
        directional_check(lambda v: v, x32, dy, dy, rng)
    with pytest.raises(ValueError, match=r"check_layer\(Tanh\(\)\): x must be float64"):
        check_layer(Tanh(), x32, rng)
    layer = Dense(3, 2, rng)
    with pytest.raises(ValueError, match=r"params\['W'\] must be float64.*got float32"):
        check_layer(layer, x32.astype(np.float64),
                    rng, params={"W": layer.params["W"].astype(np.float32), "b": layer.params["b"]})
    with pytest.raises(ValueError, match="must be a numpy array, got list"):
        numerical_gradient(lambda v: 0.0, [1.0, 2.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_rejected(rng, bad):
    x = rng.standard_normal((2, 3))
    x[0, 1] = bad
    with pytest.raises(ValueError, match="numerical_gradient: x contains NaN or inf"):
        numerical_gradient(lambda v: float(np.sum(v)), x)
    with pytest.raises(ValueError, match="numerical_vjp: dy contains NaN or inf"):
        numerical_vjp(lambda v: v, np.zeros((2, 3)), x)
    with pytest.raises(ValueError, match="directional_check: dy contains NaN or inf"):
        directional_check(lambda v: v, np.zeros((2, 3)), x, x, rng)
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        check_layer(Tanh(), x, rng)


def test_directional_check_bad_arguments(rng):
    x = rng.standard_normal(3)
    with pytest.raises(ValueError, match="n_directions must be a positive int, got 0"):
        directional_check(lambda v: v, x, x, x, rng, n_directions=0)
    with pytest.raises(ValueError, match=r"jt_dy must have x's shape \(3,\), got \(2,\)"):
        directional_check(lambda v: v, x, x, x[:2], rng)


def test_check_loss_passes_the_losses_and_catches_a_wrong_derivative():
    from refnets.gradcheck import check_loss
    from refnets.losses import mse, softmax_cross_entropy

    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((4, 3)), np.array([0, 2, 1, 2])
    assert check_loss(softmax_cross_entropy, z, y) < 1e-9
    assert check_loss(mse, z, rng.standard_normal((4, 3)), reduction="elements") < 1e-9

    def ce_without_mean(logits, labels):       # the classic slip: forgetting the 1/N
        loss, d = softmax_cross_entropy(logits, labels)
        return loss, d * len(labels)
    assert check_loss(ce_without_mean, z, y) > 0.5
    with pytest.raises(ValueError, match="float64"):
        check_loss(mse, z.astype(np.float32), z)
