"""Feedback alignment, FA-straight-through and direct feedback alignment (DEC-6 to DEC-8)."""

import numpy as np
import pytest

from refnets.algorithms import backprop_gradients
from refnets.algorithms.decorrelation.algorithm import DecorrelatedBackprop, Decorrelation
from refnets.algorithms.decorrelation.feedback_alignment import (DirectFeedbackAlignment, FAStraightThrough,
                                                   FeedbackAlignment)
from refnets.layers import Conv2D, Dense, Flatten, Identity, LeakyReLU, MaxPool2D, Tanh
from refnets.losses import mse
from refnets.models import Sequential, mlp
from refnets.optim import Adam


def _data(rng, n=8, d=5, c=3):
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


def _assert_grads_equal(g1, g2):
    assert set(g1) == set(g2)
    for key in g1:
        np.testing.assert_allclose(g1[key], g2[key], rtol=0, atol=1e-15 * max(1, np.abs(g2[key]).max()))


@pytest.mark.parametrize("decorrelate", [False, True])
def test_fa_with_B_equal_W_is_backprop(rng, decorrelate):
    """B_k = W_k (row layout: dh = delta @ B) makes FA exact, with or without decorrelators."""
    model = mlp([5, 6, 4, 3], "tanh", rng)
    x, y = _data(rng)
    dec = Decorrelation(lr=0.05) if decorrelate else False
    fa, bp = FeedbackAlignment(decorrelate=dec), DecorrelatedBackprop(dec)
    s_fa, s_bp = fa.init_state(model, rng), bp.init_state(model)
    s_fa["B"] = {k: model.layers[int(k.split(".")[0])].params["W"].copy() for k in s_fa["B"]}
    for _ in range(2):                                  # also after one R update
        r_fa, r_bp = fa.step(model, s_fa, x, y), bp.step(model, s_bp, x, y)
        _assert_grads_equal(r_fa.grads, r_bp.grads)
    assert r_fa.info["cosine_to_backprop"] == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(r_fa.info["alignment_angle"], 0.0, atol=1e-5)


def test_fa_conv_with_B_equal_W_is_backprop(rng):
    model = Sequential([Conv2D(1, 3, 3, padding=1, rng=rng), LeakyReLU(), MaxPool2D(2),
                        Conv2D(3, 2, 3, padding=1, rng=rng), Tanh(), Flatten(), Dense(2 * 9, 3, rng)])
    x, y = rng.standard_normal((4, 1, 6, 6)), rng.integers(0, 3, 4)
    for dec in (False, Decorrelation(lr=0.01)):
        fa, bp = FeedbackAlignment(decorrelate=dec), DecorrelatedBackprop(dec)
        s_fa, s_bp = fa.init_state(model, rng), bp.init_state(model)
        s_fa["B"] = {k: model.layers[int(k.split(".")[0])].params["W"].copy() for k in s_fa["B"]}
        _assert_grads_equal(fa.step(model, s_fa, x, y).grads, bp.step(model, s_bp, x, y).grads)


def test_fa_last_layer_gradient_is_backprop_and_hidden_is_not(rng):
    model = mlp([5, 6, 4, 3], "tanh", rng)
    x, y = _data(rng)
    fa = FeedbackAlignment()
    res = fa.step(model, fa.init_state(model, rng), x, y)
    _, g_bp, _ = backprop_gradients(model, x, y)
    for key in ("4.W", "4.b"):
        np.testing.assert_array_equal(res.grads[key], g_bp[key])
    assert res.info["cosine_to_backprop_layers"][0] < 0.99
    assert res.info["cosine_to_backprop_layers"][2] == pytest.approx(1.0)
    assert res.info["alignment_angle"].shape == (2,)    # layers 2 and 4 have a B


def test_fa_hand_worked_example():
    """1-1-1 linear net, x = 1, W1 = 2, W2 = 3, target 5, B2 = -1.

    a1 = 2, a2 = 6, L = (6 - 5)^2 = 1, e = dL/da2 = 2.
    BP: dW2 = e a1 = 4, dW1 = (W2 e) x = 6.   FA: dW2 = 4, dW1 = (B2 e) x = -2.
    """
    rng = np.random.default_rng(0)
    model = Sequential([Dense(1, 1, rng), Identity(), Dense(1, 1, rng)])
    model.layers[0].params["W"][:] = 2.0
    model.layers[2].params["W"][:] = 3.0
    fa = FeedbackAlignment(loss=mse)
    state = fa.init_state(model, rng)
    state["B"]["2.B"] = np.array([[-1.0]])
    res = fa.step(model, state, np.array([[1.0]]), np.array([[5.0]]))
    assert res.loss == 1.0
    assert res.grads["2.W"][0, 0] == 4.0 and res.grads["2.b"][0] == 2.0
    assert res.grads["0.W"][0, 0] == -2.0 and res.grads["0.b"][0] == -2.0
    assert res.info["cosine_to_backprop_layers"][0] == -1.0       # opposite to BP's +6


def test_dfa_hand_worked_example():
    """1-2-1 net, identity activation, x = 1, W1 = (1, 2)^T, W2 = (3, -1), target 0.

    h = (1, 2), a2 = 3 - 2 = 1, L = 1, e = 2. DFA with D_0 = (0.5, -1)^T:
    delta_0 = D_0 e = (1, -2), so dW1 = (1, -2)^T, db1 = (1, -2); dW2 = e h = (2, 4).
    (BP would send W2^T e = (6, -2).)
    """
    rng = np.random.default_rng(0)
    model = Sequential([Dense(1, 2, rng), Identity(), Dense(2, 1, rng)])
    model.layers[0].params["W"][:] = [[1.0], [2.0]]
    model.layers[2].params["W"][:] = [[3.0, -1.0]]
    dfa = DirectFeedbackAlignment(loss=mse)
    state = dfa.init_state(model, rng)
    state["D"]["0.D"] = np.array([[0.5], [-1.0]])
    res = dfa.step(model, state, np.array([[1.0]]), np.array([[0.0]]))
    assert res.loss == 1.0
    np.testing.assert_array_equal(res.grads["0.W"], [[1.0], [-2.0]])
    np.testing.assert_array_equal(res.grads["0.b"], [1.0, -2.0])
    np.testing.assert_array_equal(res.grads["2.W"], [[2.0, 4.0]])


def test_straight_through_is_fa_with_unit_derivatives(rng):
    """The authors' "DFA": delta_{k-1} = delta_k @ B_k, no f' (checked by hand)."""
    model = mlp([5, 6, 4, 3], "tanh", rng)
    x, y = _data(rng)
    fst = FAStraightThrough()
    state = fst.init_state(model, rng)
    res = fst.step(model, state, x, y)
    out, caches = model.forward(x)
    from refnets.losses import softmax_cross_entropy
    _, e = softmax_cross_entropy(out, y)
    d2 = e @ state["B"]["4.B"]                               # no tanh' anywhere
    d0 = d2 @ state["B"]["2.B"]
    np.testing.assert_allclose(res.grads["2.W"], d2.T @ caches[2]["x"], atol=1e-15)
    np.testing.assert_allclose(res.grads["0.W"], d0.T @ x, atol=1e-15)
    # and with activations whose derivative is 1 at the operating point it equals FA
    model2 = mlp([5, 6, 3], "leaky_relu", rng)
    model2.layers[0].params["b"][:] = 100.0              # all pre-activations > 0: f' = 1
    fa, st_fa = FeedbackAlignment(), None
    st_fa = fa.init_state(model2, np.random.default_rng(1))
    st_st = fst.init_state(model2, np.random.default_rng(1))
    _assert_grads_equal(fa.step(model2, st_fa, x, y).grads, fst.step(model2, st_st, x, y).grads)


def test_dfa_one_hidden_layer_with_D_equal_W2T_is_backprop(rng):
    """With one hidden layer, D_1 = W_2^T makes Nøkland's DFA exact.

    (With decorrelation it does not: the direct path skips layer 2's
    decorrelator, whose Jacobian R_2^T and mean subtraction BP includes.)
    """
    model = mlp([5, 6, 3], "tanh", rng)
    x, y = _data(rng)
    dfa, bp = DirectFeedbackAlignment(), DecorrelatedBackprop(False)
    s_dfa, s_bp = dfa.init_state(model, rng), bp.init_state(model)
    s_dfa["D"]["0.D"] = model.layers[2].params["W"].T.copy()
    res = dfa.step(model, s_dfa, x, y)
    _assert_grads_equal(res.grads, bp.step(model, s_bp, x, y).grads)
    assert res.info["cosine_to_backprop"] == pytest.approx(1.0, abs=1e-14)


def test_dfa_is_direct_not_chained(rng):
    """Two hidden layers: delta_0 = (e D_0^T) * f'(a_0), independent of W_2, B or D_2."""
    model = mlp([5, 6, 4, 3], "tanh", rng)
    x, y = _data(rng)
    dfa = DirectFeedbackAlignment()
    state = dfa.init_state(model, rng)
    assert state["D"]["0.D"].shape == (6, 3) and state["D"]["2.D"].shape == (4, 3)
    res = dfa.step(model, state, x, y)
    out, caches = model.forward(x)
    from refnets.losses import softmax_cross_entropy
    _, e = softmax_cross_entropy(out, y)
    a0 = caches[1]["z"]
    delta0 = (e @ state["D"]["0.D"].T) * (1 - np.tanh(a0) ** 2)
    np.testing.assert_allclose(res.grads["0.W"], delta0.T @ x, atol=1e-15)
    state["D"]["2.D"] = -state["D"]["2.D"]                       # layer 2's feedback: no influence on layer 0
    res2 = dfa.step(model, state, x, y)
    np.testing.assert_array_equal(res2.grads["0.W"], res.grads["0.W"])
    assert np.abs(res2.grads["2.W"] + res.grads["2.W"]).max() < 1e-15


def test_dfa_rejects_conv(rng):
    model = Sequential([Conv2D(1, 2, 3, rng=rng), Flatten(), Dense(2 * 16, 3, rng)])
    with pytest.raises(ValueError, match="Dense layers only"):
        DirectFeedbackAlignment().init_state(model, rng)


@pytest.mark.parametrize("cls", [FeedbackAlignment, FAStraightThrough, DirectFeedbackAlignment])
def test_learns_and_reproduces(cls):
    def run(seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((64, 4))
        y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
        model = mlp([4, 16, 16, 3], "leaky_relu", rng)
        alg, opt = cls(decorrelate=Decorrelation(lr=0.01)), Adam(1e-2)
        state = alg.init_state(model, rng)
        losses = []
        for _ in range(60):
            res = alg.step(model, state, x, y)
            opt.update(alg.variables(model, state), res.grads)
            losses.append(res.loss)
        return losses, model.copy_params()

    (l1, p1), (l2, p2) = run(0), run(0)
    assert l1[-1] < 0.5 * l1[0]
    assert l1 == l2
    for key in p1:
        np.testing.assert_array_equal(p1[key], p2[key])


def test_bad_arguments(rng):
    model = mlp([3, 4, 2], "tanh", rng)
    with pytest.raises(ValueError, match="rng"):
        FeedbackAlignment().init_state(model, None)
    with pytest.raises(ValueError, match="init"):
        FeedbackAlignment(feedback_init="nope")
    with pytest.raises(ValueError, match="decorrelate"):
        DirectFeedbackAlignment(decorrelate=1)
