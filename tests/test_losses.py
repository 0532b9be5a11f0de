"""Losses: softmax cross-entropy and MSE, values by hand, gradient checks, bad input."""

import numpy as np
import pytest

from refnets.gradcheck import numerical_gradient, rel_error
from refnets.losses import (accuracy, log_softmax, masked_softmax_cross_entropy, mse, one_hot,
                            softmax, softmax_cross_entropy)
from refnets.validation import DivergenceError

TOL = 1e-7


# -- softmax cross-entropy -----------------------------------------------------------------

def test_cross_entropy_by_hand():
    """Row 1: logits (0, 0), label 0 -> p = (1/2, 1/2), loss ln 2.
    Row 2: logits (0, ln 3), label 1 -> p = (1/4, 3/4), loss -ln(3/4).
    Mean over the batch of 2; dlogits = (p - onehot) / 2."""
    logits = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])
    loss, d = softmax_cross_entropy(logits, np.array([0, 1]))
    assert loss == pytest.approx((np.log(2) - np.log(0.75)) / 2, rel=1e-15)
    np.testing.assert_allclose(d, [[-0.25, 0.25], [0.125, -0.125]], rtol=1e-14)


def test_int_labels_equal_one_hot(rng):
    logits = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, size=6)
    loss_i, d_i = softmax_cross_entropy(logits, y)
    loss_o, d_o = softmax_cross_entropy(logits, one_hot(y, 4))
    assert loss_i == loss_o
    np.testing.assert_array_equal(d_i, d_o)


@pytest.mark.parametrize("targets", ["int", "soft"])
@pytest.mark.parametrize("shape", [(1, 3), (5, 4), (3, 2, 4)])
def test_dlogits_gradcheck(rng, targets, shape):
    logits = 2 * rng.standard_normal(shape)
    if targets == "int":
        y = rng.integers(0, shape[-1], size=shape[:-1])
    else:
        y = softmax(rng.standard_normal(shape))  # probability targets
    _, d = softmax_cross_entropy(logits, y)
    num = numerical_gradient(lambda z: softmax_cross_entropy(z, y)[0], logits.copy())
    assert rel_error(d, num) < TOL


def test_sequence_logits_average_over_all_positions(rng):
    """(T, N, C) logits with (T, N) labels = the flat (T*N, C) problem."""
    logits = rng.standard_normal((3, 4, 5))
    y = rng.integers(0, 5, size=(3, 4))
    loss, d = softmax_cross_entropy(logits, y)
    loss_flat, d_flat = softmax_cross_entropy(logits.reshape(12, 5), y.reshape(12))
    assert loss == pytest.approx(loss_flat, rel=1e-15)
    np.testing.assert_allclose(d, d_flat.reshape(3, 4, 5), rtol=1e-15)


def test_stable_at_large_logits():
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4]])
    loss, d = softmax_cross_entropy(logits, np.array([0, 1]))
    # row 1: -log p_0 = log(1 + e^-1e4 + e^-2e4) = 0; row 2: -log p_1 = 1e4 (+ ~0)
    assert loss == pytest.approx(1e4 / 2, rel=1e-15)
    np.testing.assert_allclose(d, [[0.0, 0.0, 0.0], [0.5, -0.5, 0.0]], atol=1e-300)
    # shifting every logit of a row leaves the loss unchanged
    loss_shift, d_shift = softmax_cross_entropy(logits + 1e4, np.array([0, 1]))
    assert loss_shift == pytest.approx(loss, rel=1e-12)
    np.testing.assert_array_equal(d_shift, d)


def test_softmax_and_log_softmax():
    z = np.array([[1000.0, 1000.0], [-1000.0, 0.0]])
    np.testing.assert_allclose(softmax(z), [[0.5, 0.5], [0.0, 1.0]], atol=1e-300)
    np.testing.assert_allclose(log_softmax(z), [[-np.log(2), -np.log(2)], [-1000.0, 0.0]],
                               rtol=1e-15)


def test_log_softmax_keeps_precision_at_large_logits():
    """log softmax(1e4, 1e4 - 1) = (-log(1 + e^-1), -1 - log(1 + e^-1)) to full precision;
    the form z - logsumexp(z) has an absolute error ~ 1e4 * eps ~ 1e-12 here."""
    c = np.log1p(np.exp(-1.0))
    np.testing.assert_allclose(log_softmax(np.array([[1e4, 1e4 - 1]])), [[-c, -1 - c]], rtol=1e-15)
    loss, _ = softmax_cross_entropy(np.array([[1e4, 1e4 - 1]]), np.array([0]))
    assert loss == pytest.approx(c, rel=1e-15)


def test_one_hot_and_accuracy():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(logits, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert accuracy(logits, one_hot(np.array([1, 0, 0]), 2)) == pytest.approx(2 / 3)


@pytest.mark.parametrize("logits,y,match", [
    (np.zeros(3), np.array([0]), r"logits must have shape \(N, C\), got \(3,\)"),
    (np.zeros((4, 3)), np.array([0, 1, 2]), r"integer labels y must have shape \(4,\).*got \(3,\)"),
    (np.zeros((4, 3)), np.zeros((4, 1), dtype=int), r"labels y must have shape \(4,\)"),
    (np.zeros((2, 3)), np.array([0, 3]), r"labels must lie in \[0, 3\), got range \[0, 3\]"),
    (np.zeros((2, 3)), np.array([-1, 0]), r"labels must lie in \[0, 3\)"),
    (np.zeros((2, 3)), np.zeros((2, 4)), r"targets y must have the logits' shape \(2, 3\), got \(2, 4\)"),
    (np.zeros((2, 3), dtype=bool), np.array([0, 1]), "logits must be a real numeric array"),
    (np.zeros((0, 3)), np.zeros(0, int), r"softmax_cross_entropy: logits is an empty batch"),
    (np.zeros((2, 0, 3)), np.zeros((2, 0), int), r"logits is an empty batch"),
    (np.zeros((2, 3)), np.array([[0.0, 1, 0], [np.nan, 0, 1]]),
     r"y contains a non-finite value \(nan\) at index \(1, 0\)"),
])
def test_cross_entropy_bad_input(logits, y, match):
    with pytest.raises(ValueError, match=match):
        softmax_cross_entropy(logits, y)


@pytest.mark.parametrize("loss", [softmax_cross_entropy, masked_softmax_cross_entropy])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_logits_are_divergence_not_bad_data(loss, bad):
    logits = np.zeros((2, 3))
    logits[1, 2] = bad
    with pytest.raises(DivergenceError, match=rf"{loss.__name__}: logits has the value {bad} at index "
                                              rf"\(1, 2\) \(the network diverged; try a smaller "
                                              rf"learning rate\)") as info:
        loss(logits, np.array([0, 1]))
    assert isinstance(info.value, FloatingPointError) and not isinstance(info.value, ValueError)
    assert info.value.quantity == "logits"
    assert np.isnan(mse(np.array([[np.nan]]), np.zeros((1, 1)))[0])   # callers name the layer


# -- mean squared error --------------------------------------------------------------------

def test_mse_by_hand():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    target = np.zeros((2, 2))
    loss, d = mse(pred, target)                       # (1+4+9+16) / N=2
    assert loss == 15.0
    np.testing.assert_array_equal(d, pred)            # 2 (pred - target) / 2
    loss, d = mse(pred, target, reduction="elements")  # (1+4+9+16) / 4 elements
    assert loss == 7.5
    np.testing.assert_array_equal(d, pred / 2)


@pytest.mark.parametrize("reduction", ["batch", "elements"])
@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (2, 3, 5), (6,)])
def test_mse_gradcheck(rng, reduction, shape):
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    loss, d = mse(pred, target, reduction=reduction)
    num = numerical_gradient(lambda p: mse(p, target, reduction=reduction)[0], pred.copy())
    assert rel_error(d, num) < TOL
    n_features = int(np.prod(shape[1:]))
    assert mse(pred, target, "elements")[0] == pytest.approx(mse(pred, target)[0] / n_features)


@pytest.mark.parametrize("pred,target,kwargs,match", [
    (np.zeros((3, 2)), np.zeros((3, 1)), {}, r"target must have pred's shape \(3, 2\), got \(3, 1\)"),
    (np.zeros((3, 2)), np.zeros((2, 3)), {}, r"target must have pred's shape"),
    (np.array(1.0), np.array(1.0), {}, "pred must have a batch dimension"),
    (np.zeros((3, 2)), np.zeros((3, 2)), {"reduction": "mean"},
     r"reduction must be one of \['batch', 'elements'\], got 'mean'"),
    (np.zeros((3, 2), dtype=bool), np.zeros((3, 2)), {}, "pred must be a real numeric array"),
    (np.zeros((0, 2)), np.zeros((0, 2)), {}, "mse: pred is an empty batch"),
    (np.zeros((3, 2)), np.array([[0, 1], [2, np.inf], [0, 0]]), {},
     r"mse: target contains a non-finite value \(inf\) at index \(1, 1\)"),
])
def test_mse_bad_input(pred, target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mse(pred, target, **kwargs)


def test_masked_cross_entropy_ignores_unlabelled_positions(rng):
    """Labels < 0 contribute neither loss nor gradient; the mean is over labelled positions."""
    from refnets.losses import masked_softmax_cross_entropy
    logits = rng.standard_normal((4, 3, 2))
    y = np.array([[-1, -1, -1], [0, 1, -1], [1, 1, 0], [0, -1, 1]])
    loss, d = masked_softmax_cross_entropy(logits, y)
    keep = y >= 0
    ref, _ = softmax_cross_entropy(logits[keep], y[keep])
    assert loss == pytest.approx(ref, rel=1e-14)
    assert np.all(d[~keep] == 0.0)
    num = numerical_gradient(lambda z: masked_softmax_cross_entropy(z, y)[0], logits.copy())
    assert rel_error(d, num) < TOL
    assert masked_softmax_cross_entropy(logits, -np.ones((4, 3), dtype=int))[0] == 0.0
    with pytest.raises(ValueError, match="integer labels"):
        masked_softmax_cross_entropy(logits, y.astype(float))
    with pytest.raises(ValueError, match=r"y must have shape \(4, 3\)"):
        masked_softmax_cross_entropy(logits, y[:2])


def test_helpers_check_their_arguments():
    with pytest.raises(ValueError, match=r"one_hot: n_classes must be an integer, got '3'"):
        one_hot(np.array([0, 1]), "3")
    with pytest.raises(ValueError, match=r"log_softmax: logits must be a real numeric array"):
        log_softmax(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"accuracy: logits is an empty batch"):
        accuracy(np.zeros((0, 3)), np.zeros(0, int))
    z = np.array([[1, 2, 4]])
    np.testing.assert_array_equal(log_softmax(z), log_softmax(z.astype(float)))   # ints upcast
