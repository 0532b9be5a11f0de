"""Target propagation through time (Manchev & Spratling 2020) on the core Elman RNN."""

import numpy as np
import pytest

from refnets.algorithms.base import backprop_gradients
from refnets.algorithms.target_propagation.rnn import (
    TargetPropagationThroughTime, tptt_feedback_loss, tptt_local_loss)
from refnets.gradcheck import numerical_gradient, rel_error
from refnets.losses import mse
from refnets.models import mlp, rnn_classifier
from refnets.optim import Adam


def _setup(rng, T=4, N=3, D=2, H=5, C=3, **kw):
    model = rnn_classifier(D, H, C, rng)
    algo = TargetPropagationThroughTime(**kw)
    x = rng.standard_normal((T, N, D))
    return model, algo, algo.init_state(model, rng), x, rng.integers(0, C, N)


def test_hand_worked_two_steps():
    """H = D = 1, W_x = 1, W_h = 0.5, b = 0, read-out w = 2 (MSE to y = 0), V = 0.8, c = 0, η̂ = 0.1.

    x = (0.5, -0.5):  h1 = tanh(0.5),  h2 = tanh(0.5 h1 - 0.5),  out = 2 h2, L = (2 h2)^2
    dL/dout = 2 * 2 h2 = 4 h2,  dL/dw = 4 h2 * h2,  dL/dh2 = 4 h2 * 2 = 8 h2
    (DTP-14a) ĥ2 = h2 - 0.1 * 8 h2 = 0.2 h2
    (DTP-14a) ĥ1 = h1 - g(x2, h2) + g(x2, ĥ2),  g(x, h) = tanh(0.8 h + x)
    (DTP-14b) dW_h = 2 (h1 - ĥ1) (1 - h1^2) * h0 + 2 (h2 - ĥ2) (1 - h2^2) * h1,  h0 = 0
    """
    rng = np.random.default_rng(0)
    model = rnn_classifier(1, 1, 1, rng)
    model[0].params["W_x"][...] = 1.0
    model[0].params["W_h"][...] = 0.5
    model[2].params["W"][...] = 2.0
    algo = TargetPropagationThroughTime(target_step=0.1, loss=mse, compare_to_backprop=False,
                                        feedback_lr=1e-12)
    state = algo.init_state(model, rng)
    state["feedback"]["0.V"][...] = 0.8
    x, y = np.array([0.5, -0.5]).reshape(2, 1, 1), np.zeros((1, 1))
    h1 = np.tanh(0.5)
    h2 = np.tanh(0.5 * h1 - 0.5)
    h2_hat = 0.2 * h2
    h1_hat = h1 - np.tanh(0.8 * h2 - 0.5) + np.tanh(0.8 * h2_hat - 0.5)
    hs = model[0].forward(x)[0]
    targets = algo.propagate_targets(model[0], state, x, hs, np.array([[h2_hat]]))
    assert targets[0, 0, 0] == pytest.approx(h1_hat, abs=1e-15)
    res = algo.step(model, state, x, y, rng)
    assert res.loss == pytest.approx((2 * h2) ** 2)
    dW_h = 2 * (h2 - h2_hat) * (1 - h2 ** 2) * h1
    dW_x = 2 * (h1 - h1_hat) * (1 - h1 ** 2) * 0.5 + 2 * (h2 - h2_hat) * (1 - h2 ** 2) * (-0.5)
    assert res.grads["0.W_h"][0, 0] == pytest.approx(dW_h, rel=1e-9)
    assert res.grads["0.W_x"][0, 0] == pytest.approx(dW_x, rel=1e-9)
    assert res.grads["2.W"][0, 0] == pytest.approx(4 * h2 * h2)      # dL/dout * h2 = 4 h2 * h2


def test_one_step_sequence_is_scaled_backprop(rng):
    """T = 1: the only target is the first one (DTP-14a), so the RNN update is 2η̂ x BPTT, the read-out is BPTT."""
    model, algo, state, x, y = _setup(rng, T=1, target_step=0.03)
    res = algo.step(model, state, x, y, rng)
    _, bp, _ = backprop_gradients(model, x, y)
    for k in ("W_x", "W_h", "b"):
        assert rel_error(res.grads[f"0.{k}"], 2 * 0.03 * bp[f"0.{k}"]) < 1e-12
    for k in ("W", "b"):
        assert rel_error(res.grads[f"2.{k}"], bp[f"2.{k}"]) < 1e-13
    assert res.info["cosine_to_backprop"] < 1.0                       # different scales per layer


def test_fixed_point_in_time(rng):
    """ĥ_T = h_T propagates back unchanged, whatever V and c."""
    model, algo, state, x, y = _setup(rng, T=6)
    state["feedback"]["0.c"][...] = rng.standard_normal(5)
    hs = model[0].forward(x)[0]
    np.testing.assert_allclose(algo.propagate_targets(model[0], state, x, hs, hs[-1]), hs,
                               rtol=0, atol=1e-15)


def test_local_and_inverse_losses_match_finite_differences(rng):
    model, algo, state, x, y = _setup(rng, T=4)
    rnn = model[0]
    hs = rnn.forward(x)[0]
    targets = hs + 0.1 * rng.standard_normal(hs.shape)
    params = {k: v.copy() for k, v in rnn.params.items()}
    _, grads = tptt_local_loss(rnn, x, hs, targets, params)
    for key in params:
        num = numerical_gradient(lambda v, key=key: tptt_local_loss(rnn, x, hs, targets,
                                                                    {**params, key: v})[0],
                                 params[key].copy())
        assert rel_error(grads[key], num) < 1e-7, key
    noise = 0.2 * rng.standard_normal(hs[:-1].shape)
    fb = {"V": state["feedback"]["0.V"].copy(), "c": 0.1 * rng.standard_normal(5)}
    _, grads = tptt_feedback_loss(rnn, x, hs, noise, rnn.params["W_x"], None, None, fb)
    for key in fb:
        num = numerical_gradient(lambda v, key=key: tptt_feedback_loss(
            rnn, x, hs, noise, rnn.params["W_x"], None, None, {**fb, key: v})[0], fb[key].copy())
        assert rel_error(grads[key], num) < 1e-7, key


def test_inverse_training_only_touches_v_and_c(rng):
    model, algo, state, x, y = _setup(rng, T=5, feedback_lr=0.05)
    before = model.copy_params()
    hs = model[0].forward(x)[0]
    losses = [algo.train_feedback(model[0], state, x, hs, rng) for _ in range(200)]
    assert losses[-1] < 0.5 * losses[0]
    for k, v in model.params().items():
        np.testing.assert_array_equal(v, before[k])


def _first_bit_task(T, n, rng):
    bits = rng.integers(0, 2, (T, n))
    return (2.0 * bits - 1.0)[..., None], bits[0]


def test_tptt_learns_to_remember_the_first_bit():
    from refnets.training import train
    rng = np.random.default_rng(0)
    (x, y), (xt, yt) = _first_bit_task(8, 600, rng), _first_bit_task(8, 300, rng)
    r = np.random.default_rng(1)
    model = rnn_classifier(1, 16, 2, r)
    algo = TargetPropagationThroughTime(target_step=0.01, feedback_lr=0.01)
    hist = train(model, algo, Adam(3e-3), (x, y), 3, 20, r, eval_data=(xt, yt), progress=False,
                 batch_axis=1)
    assert hist.test_acc[-1] > 0.9
    assert hist.info["cosine_per_layer"][-1][0] > 0.2                  # aligned with BPTT


def test_bad_model_and_arguments(rng):
    with pytest.raises(ValueError, match="RNN, LastStep, Dense"):
        TargetPropagationThroughTime().init_state(mlp([3, 4, 2], "tanh", rng), rng)
    with pytest.raises(ValueError, match="target_step"):
        TargetPropagationThroughTime(target_step=0.0)
    with pytest.raises(ValueError, match="momentum"):
        TargetPropagationThroughTime(feedback_momentum=1.5)
    model, algo, state, x, y = _setup(rng)
    with pytest.raises(ValueError, match="time-major"):
        algo.step(model, state, x[0], y, rng)
