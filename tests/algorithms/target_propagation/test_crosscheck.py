"""Cross-checking contract of every DTP-family algorithm: given values, trace, one key scheme,
the codebase switches (``follow=``) and input validation."""

import copy

import numpy as np
import pytest

from refnets.algorithms.target_propagation import (
    ConvDifferenceTargetPropagation, DifferenceReconstructionLoss, DifferenceTargetPropagation,
    DirectDTP, FixedWeightDTP, LocalDifferenceReconstructionLoss, TargetPropagationThroughTime)
from refnets.losses import mse
from refnets.models import convnet, mlp, rnn_classifier
from tests.helpers import assert_same


def _dense(rng):
    return mlp([5, 4, 4, 3], "tanh", rng, init="orthogonal"), rng.standard_normal((6, 5)), \
        rng.integers(0, 3, 6)


def _conv(rng):
    return (convnet((2, 6, 6), [3, 4], 3, 5, rng, activation="tanh", pool=2),
            rng.standard_normal((4, 2, 6, 6)), rng.integers(0, 5, 4))


def _rnn(rng):
    return rnn_classifier(2, 5, 3, rng), rng.standard_normal((4, 3, 2)), rng.integers(0, 3, 3)


#: (id, algorithm factory, problem factory)
CASES = [
    ("dtp", lambda: DifferenceTargetPropagation(feedback_optimizer="adam", feedback_lr=0.01),
     _dense),
    ("dtp-2iter", lambda: DifferenceTargetPropagation(feedback_iterations=2), _dense),
    ("dtp-output", lambda: DifferenceTargetPropagation(first_target="output_grad"), _dense),
    ("dtp-label", lambda: DifferenceTargetPropagation(first_target="label"), _dense),
    ("tp", lambda: DifferenceTargetPropagation(difference=False), _dense),
    ("dtp-epoch", lambda: DifferenceTargetPropagation(schedule="epoch"), _dense),
    ("dtp-meulemans", lambda: DifferenceTargetPropagation(follow="meulemans"), _dense),
    ("drl", lambda: DifferenceReconstructionLoss(first_target="output_grad"), _dense),
    ("ldrl", lambda: LocalDifferenceReconstructionLoss(feedback_optimizer="sgd"), _dense),
    ("ldrl-shibuya", lambda: LocalDifferenceReconstructionLoss(follow="shibuya"), _dense),
    ("fw-dtp", lambda: FixedWeightDTP(), _dense),
    ("ddtp", lambda: DirectDTP(), _dense),
    ("conv-dtp", lambda: ConvDifferenceTargetPropagation(), _conv),
    ("conv-ldrl", lambda: ConvDifferenceTargetPropagation(feedback_loss="ldrl",
                                                          first_target="output_grad"), _conv),
    ("tptt", lambda: TargetPropagationThroughTime(sigma=0.1), _rnn),
]
IDS = [c[0] for c in CASES]


def _setup(case, seed=0):
    _, make_algo, make_problem = case
    rng = np.random.default_rng(seed)
    model, x, y = make_problem(rng)
    algo = make_algo()
    return algo, model, algo.init_state(model, rng), x, y, rng


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_trace_changes_nothing_and_equals_step(case):
    algo, model, state, x, y, rng = _setup(case)
    params0, state0, rng0 = model.copy_params(), copy.deepcopy(state), copy.deepcopy(rng)
    tr = algo.trace(model, state, x, y, rng)
    assert_same(model.params(), params0, "model")                 # nothing changed
    assert_same(state, state0)
    assert rng.bit_generator.state == rng0.bit_generator.state      # nor the caller's rng
    res = algo.step(model, state, x, y, rng)                        # the same step for real
    assert_same(tr["grads"], res.grads, "grads")
    assert_same(tr["after"], state, "after")
    assert tr["loss"] == res.loss
    assert_same(tr["info"], res.info, "info")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_given_draws_replay_the_traced_step_without_an_rng(case):
    algo, model, state, x, y, rng = _setup(case)
    tr = algo.trace(model, state, x, y, rng)
    assert set(tr["given"]) <= set(algo.GIVEN_STEP)
    res = algo.step(model, state, x, y, None, **tr["given"])
    assert_same(tr["grads"], res.grads, "grads")
    assert_same(tr["after"], state, "after")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_init_state_with_given_feedback_and_no_rng(case):
    algo, model, state, x, y, rng = _setup(case)
    name = algo.GIVEN_INIT[0]
    given = {key: value + 1.0 for key, value in state["feedback"].items()
             if key.endswith(f".{name}")}
    assert given
    rebuilt = algo.init_state(model, None, **{name: given})
    for key, value in given.items():
        np.testing.assert_array_equal(rebuilt["feedback"][key], value)
        assert rebuilt["feedback"][key] is not given[key]            # copied
    with pytest.raises(ValueError, match=rf"rng is None and {name}\["):
        algo.init_state(model, None)
    key = next(iter(given))
    with pytest.raises(ValueError, match="must have shape"):
        algo.init_state(model, None, **{name: {**given, key: given[key][..., :1]}})


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_unknown_keyword_and_missing_draw_raise(case):
    algo, model, state, x, y, rng = _setup(case)
    with pytest.raises(ValueError, match="unknown keyword 'noise'.*accepts"):
        algo.step(model, state, x, y, rng, noise={})
    with pytest.raises(ValueError, match="unknown keyword 'B'"):
        algo.init_state(model, rng, B={})
    if algo.GIVEN_STEP:
        with pytest.raises(ValueError, match=r"rng is None and eps\["):
            algo.step(model, state, x, y, None)
    else:                                                   # FW-DTP draws nothing per step
        algo.step(model, state, x, y, None)


def test_trace_keys_use_the_model_index_and_given_eps_is_used():
    """Keys are "k.name" with k the Dense layer's model index; a given ε enters (DTP-2)."""
    rng = np.random.default_rng(1)
    model, x, y = _dense(rng)
    algo = DifferenceTargetPropagation(first_target="output_grad", feedback_iterations=2)
    state = algo.init_state(model, rng)
    eps = {f"{k}.eps.{j}": 0.1 * rng.standard_normal((6, 4)) for k in (2,) for j in (0, 1)}
    eps["4.eps.0"] = eps["4.eps.1"] = np.zeros((6, 4))
    tr = algo.trace(model, state, x, y, None, eps=eps)
    assert_same(tr["given"]["eps"], eps, "eps")
    for k in (0, 2, 4):
        assert tr["values"][f"{k}.h"].shape == (6, 4 if k < 4 else 3)
        assert f"{k}.h_hat" in tr["values"] and f"{k}.L_local" in tr["values"]
    for k in (2, 4):
        for name in ("g_h", "g_h_hat", "L_inv.0", "L_inv.1", "dV.0", "dc.1"):
            assert f"{k}.{name}" in tr["values"]
    # iteration 0 of g for layer 2 by hand: (DTP-2) with the given ε, the initial V, c
    from refnets.algorithms.target_propagation import dtp_feedback_loss
    f = algo.blocks(model)
    g, params = algo.feedback_map(state, 2)
    loss, grads = dtp_feedback_loss(f[2], g, tr["values"]["0.h"], eps["2.eps.0"], params)
    assert tr["values"]["2.L_inv.0"] == loss
    np.testing.assert_array_equal(tr["values"]["2.dV.0"], grads["W"])
    # (DTP-4) from the recorded pieces
    np.testing.assert_array_equal(tr["values"]["0.h_hat"], tr["values"]["0.h"]
                                  + tr["values"]["2.g_h_hat"] - tr["values"]["2.g_h"])


def test_old_block_keyed_state_is_refused(rng):
    model, x, y = _dense(rng)
    algo = DifferenceTargetPropagation()
    state = algo.init_state(model, rng)
    state["feedback"] = {2: {"W": state["feedback"]["2.V"], "b": state["feedback"]["2.c"]}}
    with pytest.raises(ValueError, match="rebuild it with init_state"):
        algo.step(model, state, x, y, rng)


# --------------------------------------------------------------------------- switches

def _scalar_chain(algo, batch=1):
    """1-1-1-1 linear chain W = 2, 3, 0.5 (no activation), g_2(h) = 0.4 h + 0.1."""
    rng = np.random.default_rng(0)
    model = mlp([1, 1, 1, 1], "identity", rng)
    for k, w in ((0, 2.0), (2, 3.0), (4, 0.5)):
        model.layers[k].params["W"][...] = w
    state = algo.init_state(model, rng)
    state["feedback"]["2.V"][...] = 0.4
    state["feedback"]["2.c"][...] = 0.1
    return model, state


def test_target_step_reduction_mean_hand_worked():
    """B = 2, x = (1, 2), MSE to y = 1: out = 3x = (3, 6), dL/dout = 2 (out - y) / B = (2, 5),
    dL/dh2 = 0.5 dL/dout = (1, 2.5), h2 = (6, 12).
    'mean', η̂ = 0.1: ĥ2 = h2 - 0.1 (1, 2.5) = (5.9, 11.75);  'sum': ĥ2 = h2 - 0.2 (1, 2.5)."""
    x, y = np.array([[1.0], [2.0]]), np.ones((2, 1))
    expected = {"mean": [5.9, 11.75], "sum": [5.8, 11.5]}
    for reduction, values in expected.items():
        algo = DifferenceTargetPropagation(loss=mse, target_step=0.1, schedule="epoch",
                                           feedback_activation="identity",
                                           target_step_reduction=reduction)
        model, state = _scalar_chain(algo)
        tr = algo.trace(model, state, x, y, None, eps={"2.eps.0": np.zeros((2, 1))})
        np.testing.assert_allclose(tr["values"]["2.h_hat"].ravel(), values, rtol=0, atol=1e-14)


def test_feedback_loss_scale_meulemans_hand_worked():
    """The hand-worked (DTP-2) case (ε = 0.5: loss 0.36, dV 9, dc 1.2; n = 1 unit), scaled by
    1 / max(σ, 0.02)²: σ = 0.5 -> x4; σ = 0.01 is floored to 0.02 -> x2500."""
    x, y = np.array([[1.0]]), np.array([[1.0]])
    for sigma, factor in ((0.5, 4.0), (0.01, 2500.0)):
        algo = DifferenceTargetPropagation(follow="meulemans", loss=mse, sigma=sigma,
                                           first_target="penultimate_grad",
                                           feedback_activation="identity", schedule="epoch")
        assert algo.feedback_sigma_floor == 0.02 and algo.target_step_reduction == "mean"
        model, state = _scalar_chain(algo)
        tr = algo.trace(model, state, x, y, None, eps={"2.eps.0": np.array([[0.5]])})
        assert tr["values"]["2.L_inv.0"] == pytest.approx(0.36 * factor, rel=1e-13)
        assert tr["values"]["2.dV.0"][0, 0] == pytest.approx(9.0 * factor, rel=1e-13)
        assert tr["values"]["2.dc.0"][0] == pytest.approx(1.2 * factor, rel=1e-13)


def test_feedback_loss_scale_divides_by_the_units_per_example(rng):
    """'mean_over_sigma2' = 'sum' / (σ² n), n = n_{i-1} units reconstructed (DRL: no floor)."""
    model, x, y = _dense(rng)
    plain = DifferenceReconstructionLoss(sigma=0.3, schedule="epoch")
    scaled = DifferenceReconstructionLoss(follow="meulemans", sigma=0.3, schedule="epoch",
                                          first_target="penultimate_grad",
                                          target_step_reduction="sum")
    assert scaled.feedback_sigma_floor == 0.0
    state = plain.init_state(model, rng)
    t1 = plain.trace(model, state, x, y, rng)
    t2 = scaled.trace(model, state, x, y, None, **t1["given"])
    n = 4                                                           # h_1 has 4 units
    assert t2["values"]["2.L_inv.0"] == pytest.approx(t1["values"]["2.L_inv.0"] / (0.09 * n),
                                                      rel=1e-13)
    np.testing.assert_allclose(t2["values"]["2.dV.0"], t1["values"]["2.dV.0"] / (0.09 * n),
                               rtol=1e-13)
    with pytest.raises(ValueError, match="max\\(sigma, feedback_sigma_floor\\)"):
        DifferenceReconstructionLoss(follow="meulemans", sigma=0.0)


def test_shibuya_ldrl_is_half_the_loss_without_feedback_bias():
    """Hand-worked L-DRL (DTP-10): f(x) = 2x, g(u) = 0.3u, x = 1, ε = 0.1, η = 0.2:
    L = -0.0084, dL/dV = -0.016; Shibuya's code: half of both, and no c."""
    rng = np.random.default_rng(0)
    model = mlp([1, 1, 1], "identity", rng)
    model.layers[0].params["W"][...] = 1.0
    model.layers[2].params["W"][...] = 2.0
    for layer in model.layers[::2]:
        layer.params["b"][...] = 0.0
    for follow, factor in ((None, 1.0), ("shibuya", 0.5)):
        algo = LocalDifferenceReconstructionLoss(follow=follow, loss=mse,
                                                 feedback_activation="identity",
                                                 feedback_bias=False if follow is None else None)
        state = algo.init_state(model, rng)
        assert set(state["feedback"]) == {"2.V"}
        state["feedback"]["2.V"][...] = 0.3
        tr = algo.trace(model, state, np.array([[1.0]]), np.array([[2.0]]), None,
                        eps={"2.eps.0": np.array([[0.1]])}, eta={"2.eta.0": np.array([[0.2]])})
        assert tr["values"]["2.L_inv.0"] == pytest.approx(-0.0084 * factor, abs=1e-15)
        assert tr["values"]["2.dV.0"][0, 0] == pytest.approx(-0.016 * factor, abs=1e-15)


def test_local_loss_half_sum_hand_worked():
    """The hand-worked chain (DTP-5): dW1 = 0.16, dW2 = 0.8 with ‖·‖²; ½‖·‖² (Ernoult's
    convention) halves the local-loss blocks; the top block keeps its true gradient 24."""
    x, y = np.array([[1.0]]), np.array([[1.0]])
    for scale, factor in (("sum", 1.0), ("half_sum", 0.5)):
        algo = DifferenceTargetPropagation(loss=mse, target_step=0.1, schedule="epoch",
                                           feedback_activation="identity",
                                           local_loss_scale=scale)
        model, state = _scalar_chain(algo)
        res = algo.step(model, state, x, y, None, eps={"2.eps.0": np.zeros((1, 1))})
        assert res.grads["0.W"][0, 0] == pytest.approx(0.16 * factor, abs=1e-13)
        assert res.grads["2.W"][0, 0] == pytest.approx(0.8 * factor, abs=1e-13)
        assert res.grads["4.W"][0, 0] == pytest.approx(24.0, abs=1e-13)
    assert LocalDifferenceReconstructionLoss(follow="ernoult").local_loss_scale == "half_sum"


def test_follow_presets_and_explicit_overrides(rng):
    lee = DifferenceTargetPropagation(follow="lee-theano")
    assert (lee.schedule, lee.target_step_reduction, lee.first_target) == \
        ("epoch", "mean", "penultimate_grad")
    assert lee.target_step == pytest.approx(0.327736332653)      # lr0 on the mean loss
    model = mlp([5, 4, 4, 3], "tanh", rng)
    x, y = rng.standard_normal((100, 5)), rng.integers(0, 3, 100)   # B = 100: lr0 / B per example
    ours = DifferenceTargetPropagation(schedule="epoch")
    state = ours.init_state(model, rng)
    t_lee = lee.trace(model, state, x, y, rng)["values"]["0.h_hat"]
    t_ours = ours.trace(model, state, x, y, rng)["values"]["0.h_hat"]
    np.testing.assert_allclose(t_lee, t_ours, rtol=1e-13, atol=1e-15)
    meu = DifferenceTargetPropagation(follow="meulemans", first_target="penultimate_grad")
    assert meu.first_target == "penultimate_grad" and meu.feedback_loss_scale == "mean_over_sigma2"
    assert DifferenceTargetPropagation().feedback_loss_scale == "sum"          # defaults unchanged
    with pytest.raises(ValueError, match="follow must be one of"):
        DifferenceTargetPropagation(follow="ernoult")
    assert "shibuya" in FixedWeightDTP.FOLLOW and "meulemans" in DirectDTP.FOLLOW


# --------------------------------------------------------------------------- validation

def test_bad_inputs_and_hyperparameters_name_the_argument(rng):
    model, x, y = _dense(rng)
    algo = DifferenceTargetPropagation()
    state = algo.init_state(model, rng)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"step: x contains a non-finite value.*\(2, 1\)"):
        algo.step(model, state, bad, y, rng)
    with pytest.raises(ValueError, match="x is an empty batch"):
        algo.step(model, state, x[:0], y[:0], rng)
    with pytest.raises(ValueError, match="predict: x contains a non-finite"):
        algo.predict(model, state, bad)
    r1, r2 = copy.deepcopy(rng), copy.deepcopy(rng)
    g64 = algo.trace(model, state, x, y, r1)["grads"]
    g32 = algo.trace(model, state, x.astype(np.float32).astype(np.float64), y, r2)["grads"]
    g32b = algo.trace(model, state, x.astype(np.float32), y, copy.deepcopy(rng))["grads"]
    assert_same(g32, g32b, "float32 upcast")
    assert all(v.dtype == np.float64 for v in g64.values())
    for kwargs, name in (({"sigma": "0.3"}, "sigma"), ({"target_step": np.inf}, "target_step"),
                         ({"feedback_iterations": 1.5}, "feedback_iterations"),
                         ({"difference": "yes"}, "difference"),
                         ({"feedback_loss_scale": "mean"}, "feedback_loss_scale"),
                         ({"feedback_sigma_floor": -1}, "feedback_sigma_floor")):
        with pytest.raises(ValueError, match=f"DifferenceTargetPropagation: {name}"):
            DifferenceTargetPropagation(**kwargs)
    with pytest.raises(ValueError, match="FixedWeightDTP: feedback_scale"):
        FixedWeightDTP(feedback_scale="1")
    tptt = TargetPropagationThroughTime()
    with pytest.raises(ValueError, match="TargetPropagationThroughTime: sigma"):
        TargetPropagationThroughTime(sigma="0")
    rmodel, xs, ys = _rnn(rng)
    rstate = tptt.init_state(rmodel, rng)
    with pytest.raises(ValueError, match="x is an empty batch.*axis 1"):
        tptt.step(rmodel, rstate, xs[:, :0], ys[:0], rng)
    xs_bad = xs.copy()
    xs_bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="x contains a non-finite"):
        tptt.predict(rmodel, rstate, xs_bad)
