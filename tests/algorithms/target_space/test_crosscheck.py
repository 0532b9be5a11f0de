"""Cross-checking Target Space: given draws, the trace, the codebase switches, input checks.

The trace keys and given-value keywords are listed in the package README's section 2;
the switches (``follow=``) in its section 6.
"""

import copy
import warnings

import numpy as np
import pytest

from refnets.algorithms.base import Recorder
from refnets.algorithms.target_space import FOLLOW, TargetSpace, ridge_solve, shortcut_mlp
from refnets.algorithms.target_space.init import truncated_normal
from refnets.algorithms.target_space.solve import RidgeSolveWarning, design_matrix
from refnets.losses import masked_softmax_cross_entropy
from refnets.models import convnet, mlp, rnn_classifier
from tests.helpers import assert_same


# --------------------------------------------------------------------------- cases
def _dense(rng, **kw):
    model = mlp([3, 5, 4, 2], "tanh", rng)
    xs, x, y = rng.standard_normal((20, 3)), rng.standard_normal((7, 3)), rng.integers(0, 2, 7)
    return model, TargetSpace(xs, realisation_batch_size=12, pseudoinverse_l2_regularisation=0.1,
                              **kw), x, y


def _shortcut_ocu(rng):
    model = shortcut_mlp([3, 4, 3, 2], "tanh", rng)
    xs, x, y = rng.standard_normal((10, 3)), rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    return model, TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, realisation="ocu"), x, y


def _conv(rng):
    model = convnet((1, 5, 5), [2], 3, 3, rng, activation="tanh", pool=2)
    xs, x = rng.standard_normal((6, 1, 5, 5)), rng.standard_normal((4, 1, 5, 5))
    return model, TargetSpace(xs, realisation_batch_size=4, pseudoinverse_l2_regularisation=0.1,
                              diagnostics=False), x, rng.integers(0, 3, 4)


def _rnn(rng, realisation="scu"):
    model = rnn_classifier(2, 3, 2, rng, readout="all")
    xs, x = rng.standard_normal((6, 8, 2)), rng.standard_normal((5, 4, 2))
    y = rng.integers(0, 2, (5, 4))
    y[0] = -1
    return model, TargetSpace(xs, realisation_batch_size=5, pseudoinverse_l2_regularisation=0.1,
                              realisation=realisation, loss=masked_softmax_cross_entropy), x, y


def _rnn_last(rng):
    model = rnn_classifier(2, 3, 2, rng, readout="last")
    xs, x = rng.standard_normal((6, 8, 2)), rng.standard_normal((5, 4, 2))
    return model, TargetSpace(xs, realisation_batch_size=5, pseudoinverse_l2_regularisation=0.1),\
        x, rng.integers(0, 2, 4)


CASES = {"dense": _dense, "shortcut-ocu": _shortcut_ocu, "conv": _conv,
         "rnn-hybrid": lambda r: _rnn(r, "scu"), "rnn-ocu": lambda r: _rnn(r, "ocu"),
         "rnn-last": _rnn_last}


# --------------------------------------------------------------------------- trace
@pytest.mark.parametrize("case", sorted(CASES))
def test_trace_leaves_everything_untouched_and_equals_step(rng, case):
    model, algo, x, y = CASES[case](rng)
    state = algo.init_state(model, rng)
    model0, state0, rng0 = copy.deepcopy(model), copy.deepcopy(state), copy.deepcopy(rng)
    tr = algo.trace(model, state, x, y, rng)
    assert_same(state, state0)                                   # state untouched
    assert_same(model.params(), model0.params())                 # model untouched
    assert rng.bit_generator.state == rng0.bit_generator.state   # caller's rng untouched
    res = algo.step(model, state, x, y, rng)
    assert tr["loss"] == res.loss
    assert_same(tr["grads"], res.grads)                          # bit for bit
    assert_same(tr["after"], state)
    assert tr["given"] == {}                                     # a step draws nothing
    replay = algo.step(model0, state0, x, y, None, **tr["given"])
    assert_same(replay.grads, res.grads)


@pytest.mark.parametrize("case", sorted(CASES))
def test_trace_keys_shapes_and_consistency(rng, case):
    model, algo, x, y = CASES[case](rng)
    state = algo.init_state(model, rng)
    tr = algo.trace(model, state, x, y, rng)
    v = tr["values"]
    np.testing.assert_array_equal(v["xbar"], state["xbar"])
    assert v["output"].shape[-1] == 2 or v["output"].shape[-1] == 3
    for key, T in state["targets"].items():
        k = key.split(".")[0]
        A, W, S = v[f"{k}.A_bar"], v[f"{k}.W_full"], v[f"{k}.S_bar"]
        np.testing.assert_array_equal(v[f"{k}.T"], T)
        np.testing.assert_array_equal(v[f"{k}.dT"], tr["grads"][key])
        assert A.shape == (T.size // T.shape[-1], W.shape[0]) and np.all(A[:, 0] == 1.0)
        assert W.shape[1] == T.shape[-1]
        np.testing.assert_allclose(S.reshape(-1, W.shape[1]), A @ W, rtol=1e-12, atol=1e-12)
        assert v[f"{k}.dW_mb"].shape == W.shape and v[f"{k}.dW_hat"].shape == W.shape
        assert v[f"{k}.dT"].shape == T.shape
    last = max(int(key.split(".")[0]) for key in state["targets"])
    # nothing reads the last layer's realised output: its total gradient is the minibatch one
    np.testing.assert_array_equal(v[f"{last}.dW_hat"], v[f"{last}.dW_mb"])


def test_trace_realised_weights_are_the_models_after_step(rng):
    """k.W_full in the solve layout is [b; W^T] of what step writes into the model (TS-3)."""
    model, algo, x, y = _dense(rng)
    state = algo.init_state(model, rng)
    tr = algo.trace(model, state, x, y, rng)
    algo.step(model, state, x, y, rng)
    for k in (0, 2, 4):
        p = model.layers[k].params
        np.testing.assert_array_equal(tr["values"][f"{k}.W_full"], np.vstack([p["b"], p["W"].T]))


@pytest.mark.parametrize("realisation", ["scu", "ocu"])
def test_trace_rnn_preactivations(rng, realisation):
    """0.a and 0.a_bar are the pre-activations of the minibatch run and of the run on X_bar
    with the realised W_h: tanh of them gives the states 0.h, 0.h_bar."""
    model, algo, x, y = _rnn(rng, realisation)
    state = algo.init_state(model, rng)
    v = algo.trace(model, state, x, y, rng)["values"]
    algo.step(model, state, x, y, rng)                         # writes the realised weights
    hs = model.layers[0].forward(x)[0]
    np.testing.assert_allclose(np.tanh(v["0.a"]), hs, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(v["0.h"], hs)
    hbar = model.layers[0].forward(state["xbar"])[0]
    np.testing.assert_allclose(v["0.h_bar"], hbar, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.tanh(v["0.a_bar"]), hbar, rtol=0, atol=1e-14)
    if realisation == "scu":      # hybrid: the read-out solve reads [1, h_bar_t]
        np.testing.assert_array_equal(v["1.A_bar"][:, 1:], v["0.h_bar"].reshape(-1, 3))


# --------------------------------------------------------------------------- given values
@pytest.mark.parametrize("case", sorted(CASES))
def test_init_state_replays_recorded_draws_without_rng(rng, case):
    model, algo, _, _ = CASES[case](rng)
    rec = Recorder()
    state = algo.init_state(model, np.random.default_rng(3), record=rec)
    assert set(rec.draws) == {"realisation_rows", "targets"}
    assert set(rec.draws["targets"]) == set(state["targets"])
    again = algo.init_state(model, None, **rec.draws)
    assert_same(again, state)


def test_given_targets_and_rows_are_used_and_consume_no_rng(rng):
    model, _, x, y = _dense(rng)
    xs = rng.standard_normal((20, 3))
    algo = TargetSpace(xs, realisation_batch_size=12, projection=None)
    rows = np.arange(12)[::-1] + 3
    T = {"0.T": rng.standard_normal((12, 5)), "2.T": rng.standard_normal((12, 4)),
         "4.T": rng.standard_normal((12, 2))}
    g = np.random.default_rng(9)
    before = copy.deepcopy(g.bit_generator.state)
    state = algo.init_state(model, g, realisation_rows={"rows": rows}, targets=T)
    assert g.bit_generator.state == before
    np.testing.assert_array_equal(state["xbar"], xs[rows])
    for key in T:
        np.testing.assert_array_equal(state["targets"][key], T[key])
        assert state["targets"][key] is not T[key]                 # copied
    # some given, the rest drawn: the given ones are used, the others come from the rng
    part = algo.init_state(model, np.random.default_rng(9), targets={"2.T": T["2.T"]})
    np.testing.assert_array_equal(part["targets"]["2.T"], T["2.T"])


def test_given_value_errors(rng):
    model, algo, x, y = _dense(rng)
    with pytest.raises(ValueError, match=r"unknown keyword 'B'.*\['realisation_rows', 'targets'\]"):
        algo.init_state(model, rng, B={"0.B": np.zeros(3)})
    with pytest.raises(ValueError, match=r"rng is None and realisation_rows\['rows'\]"):
        algo.init_state(model, None)
    rows = {"rows": np.arange(12)}
    with pytest.raises(ValueError, match=r"rng is None and targets\['0.T'\]"):
        algo.init_state(model, None, realisation_rows=rows)
    with pytest.raises(ValueError, match=r"targets\['2.T'\] must have shape \(12, 4\)"):
        algo.init_state(model, rng, targets={"2.T": np.zeros((12, 5))})
    with pytest.raises(ValueError, match=r"targets for \['1.T'\]"):
        algo.init_state(model, rng, targets={"1.T": np.zeros((12, 5))})
    with pytest.raises(ValueError, match="distinct indices"):
        algo.init_state(model, rng, realisation_rows={"rows": np.full(12, 2)})
    with pytest.raises(ValueError, match=r"distinct indices in \[0, 20\)"):
        algo.init_state(model, rng, realisation_rows={"rows": np.arange(12) + 10})
    state = algo.init_state(model, rng)
    with pytest.raises(ValueError, match=r"unknown keyword 'noise'.*\[\]"):
        algo.step(model, state, x, y, rng, noise={"0.n": np.zeros(2)})


def test_first_rows_need_no_rng(rng):
    """realisation_selection='first' draws nothing for X_bar; with given targets rng=None works."""
    xs = rng.standard_normal((20, 3))
    model = mlp([3, 4, 2], "tanh", rng)
    algo = TargetSpace(xs, realisation_batch_size=6, realisation_selection="first")
    T = {"0.T": rng.standard_normal((6, 4)), "2.T": rng.standard_normal((6, 2))}
    state = algo.init_state(model, None, targets=T)
    np.testing.assert_array_equal(state["xbar"], xs[:6])


# --------------------------------------------------------------------------- RNN projection
def _hand_run(x, W_x, W_h, b):
    """a_t = x_t W_x^T + h_{t-1} W_h^T + b, h_t = tanh(a_t), h_0 = 0, one step at a time."""
    h, a_all = np.zeros((x.shape[1], W_h.shape[0])), []
    for t in range(x.shape[0]):
        a = x[t] @ W_x.T + h @ W_h.T + b
        h = np.tanh(a)
        a_all.append(a)
    return np.array(a_all)


@pytest.mark.parametrize("projection", ["layer", "simultaneous"])
@pytest.mark.parametrize("realisation", ["scu", "ocu"])
def test_rnn_projection_assigns_preactivations_of_a_run(rng, projection, realisation):
    """(TS-14) for the Elman layer: T_h <- the pre-activations of the network run on X_bar
    with the W_h solved from the raw targets (as the authors' TF2 TSRNNDense), computed
    here by a hand-written loop; not the OCU solve's fitted values A_h W_h."""
    model = rnn_classifier(2, 3, 2, rng, readout="all")
    xs = rng.standard_normal((5, 4, 2))
    raw = {"0.T": rng.standard_normal((5, 4, 3)), "1.T": rng.standard_normal((5, 4, 2))}
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, realisation=realisation,
                       projection=projection)
    state = algo.init_state(model, None, targets=raw)
    # by hand: A_h = [1, x_t, tanh(T_raw[t-1])], W_h = ridge solve, then run the net
    h_prev = np.concatenate([np.zeros((1, 4, 3)), np.tanh(raw["0.T"][:-1])])
    A = design_matrix(np.concatenate([xs, h_prev], axis=-1).reshape(20, 5))
    W, _ = ridge_solve(A, raw["0.T"].reshape(20, 3), 0.1)
    a = _hand_run(xs, W[1:3].T, W[3:].T, W[0])
    np.testing.assert_allclose(state["targets"]["0.T"], a, rtol=0, atol=1e-13)
    fitted = (A @ W).reshape(5, 4, 3)                  # what the projection used to assign
    assert np.abs(state["targets"]["0.T"] - fitted).max() > 1e-3


def test_rnn_projection_is_a_fixed_point_at_lam_zero(rng):
    """(TS-14a) for the RNN: after the projection (lam = 0, T_bar n_bar >= 1 + D + H) the
    hybrid realisation reproduces the targets: S_bar_h = T_h, S_bar_o = T_o."""
    model = rnn_classifier(2, 3, 2, rng, readout="all")
    xs = rng.standard_normal((5, 4, 2))
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.0)
    state = algo.init_state(model, rng)
    _, recs = algo.realise(model, state)
    assert np.abs(recs[0]["S"] - state["targets"]["0.T"]).max() < 1e-11
    assert np.abs(recs[1]["S"] - state["targets"]["1.T"]).max() < 1e-11


# --------------------------------------------------------------------------- switches
def test_cholesky_branch_at_lam_zero_hand_worked():
    """zero_lam='cholesky' (TF's lstsq fast=True) at lam = 0.

    Normal form: A = [[1, 0], [1, 1], [1, 2]], T = [0, 1, 3]^T: A^T A = [[3, 3], [3, 5]],
    A^T T = [4, 7], W = (1/6) [[5, -3], [-3, 3]] [4, 7] = [-1/6, 3/2].
    Kernel form: A = [[1, 1, 0], [1, 0, 1]], T = [1, 2]^T: A A^T = [[2, 1], [1, 2]],
    Y = (1/3) [[2, -1], [-1, 2]] [1, 2] = [0, 1], W = A^T Y = [1, 0, 1].
    """
    W, cache = ridge_solve(np.array([[1.0, 0], [1, 1], [1, 2]]), np.array([[0.0], [1], [3]]),
                           0.0, zero_lam="cholesky")
    assert cache["branch"] == "normal"
    np.testing.assert_allclose(W.ravel(), [-1 / 6, 1.5], rtol=0, atol=1e-14)
    W, cache = ridge_solve(np.array([[1.0, 1, 0], [1, 0, 1]]), np.array([[1.0], [2]]), 0.0,
                           zero_lam="cholesky")
    assert cache["branch"] == "kernel"
    np.testing.assert_allclose(W.ravel(), [1.0, 0.0, 1.0], rtol=0, atol=1e-14)
    _, cache = ridge_solve(np.array([[1.0, 1, 0], [1, 0, 1]]), np.array([[1.0], [2]]), 0.0)
    assert cache["branch"] == "min-norm"                       # the default


def test_cholesky_branch_singular_gram_falls_back_with_warning(rng):
    A = np.ones((5, 3))                                        # rank 1
    with pytest.warns(RidgeSolveWarning, match="singular"):
        W, cache = ridge_solve(A, rng.standard_normal((5, 2)), 0.0, zero_lam="cholesky")
    assert cache["branch"] == "min-norm"


def test_zero_lam_solver_reaches_every_solve(rng):
    model = mlp([3, 4, 2], "tanh", rng)
    xs = rng.standard_normal((12, 3))
    for solver, branch in (("min-norm", "min-norm"), ("cholesky", "normal")):
        algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.0, zero_lam_solver=solver)
        _, recs = algo.realise(model, algo.init_state(model, rng))
        assert [recs[k]["solve"]["branch"] for k in (0, 2)] == [branch, branch]


def test_shared_initial_targets(rng):
    """shared_initial_targets=True: layers of one kind and target shape start from one draw
    (the authors' Keras layers share one initialiser object); re-derived with the rng."""
    xs = rng.standard_normal((10, 3))
    model = mlp([3, 4, 4, 4, 2], "tanh", rng)                  # three (10, 4) target matrices
    algo = TargetSpace(xs, projection=None, shared_initial_targets=True)
    state = algo.init_state(model, np.random.default_rng(5))
    g = np.random.default_rng(5)                               # n_bar = N: rows need no draw
    t4, t2 = truncated_normal((10, 4), 1.0, g), truncated_normal((10, 2), 1.0, g)
    for key in ("0.T", "2.T", "4.T"):
        np.testing.assert_array_equal(state["targets"][key], t4)
    np.testing.assert_array_equal(state["targets"]["6.T"], t2)
    own = TargetSpace(xs, projection=None).init_state(model, np.random.default_rng(5))
    assert not np.array_equal(own["targets"]["0.T"], own["targets"]["2.T"])


def test_target_init_std_per_kind(rng):
    """target_init_std={'conv': 0.1, 'dense': 1.0} (the authors' TF2 layers): re-derived."""
    model = convnet((1, 4, 4), [2], 3, 3, rng, activation="tanh", pool=None)
    xs = rng.standard_normal((3, 1, 4, 4))
    algo = TargetSpace(xs, projection=None, target_init_std={"conv": 0.1, "dense": 1.0})
    state = algo.init_state(model, np.random.default_rng(2))
    g = np.random.default_rng(2)
    np.testing.assert_array_equal(state["targets"]["0.T"], truncated_normal((48, 2), 0.1, g))
    np.testing.assert_array_equal(state["targets"]["3.T"], truncated_normal((3, 3), 1.0, g))
    auto = TargetSpace(xs, projection=None).init_state(model, np.random.default_rng(2))
    g = np.random.default_rng(2)
    truncated_normal((48, 2), 0.1, g)
    np.testing.assert_array_equal(auto["targets"]["3.T"], truncated_normal((3, 3), 0.1, g))


def test_follow_presets(rng):
    xs = rng.standard_normal((10, 3))
    default = TargetSpace(xs)
    assert (default.projection, default.realisation_selection, default.shared_initial_targets,
            default.zero_lam_solver, default.target_init_std) == (
        "layer", "random", False, "min-norm", None)
    for name, preset in FOLLOW.items():
        algo = TargetSpace(xs, follow=name)
        for key, value in preset.items():
            assert getattr(algo, key) == value, (name, key)
    tf2 = TargetSpace(xs, follow="dlts-tf2", zero_lam_solver="min-norm")   # explicit wins
    assert tf2.zero_lam_solver == "min-norm" and tf2.shared_initial_targets
    assert TargetSpace(xs, follow="dlts-tf1", realisation="ocu").projection is None
    assert TargetSpace(xs, follow="dlts-tf1", realisation="ocu",
                       projection="simultaneous").projection == "simultaneous"


def test_follow_tf1_ocu_keeps_the_raw_targets(rng):
    """TF1's OCU "layer sums" are the targets, so its projection changes nothing: under
    follow='dlts-tf1' with OCU the initial targets are the raw draws."""
    xs = rng.standard_normal((10, 3))
    model = mlp([3, 4, 2], "tanh", rng)
    state = TargetSpace(xs, follow="dlts-tf1", realisation="ocu").init_state(
        model, np.random.default_rng(4))
    g = np.random.default_rng(4)
    np.testing.assert_array_equal(state["targets"]["0.T"], truncated_normal((10, 4), 1.0, g))
    np.testing.assert_array_equal(state["targets"]["2.T"], truncated_normal((10, 2), 1.0, g))


# --------------------------------------------------------------------------- input checks
def test_step_and_predict_check_x(rng):
    model, algo, x, y = _dense(rng)
    state = algo.init_state(model, rng)
    s32, s64 = copy.deepcopy(state), copy.deepcopy(state)
    r32 = algo.step(copy.deepcopy(model), s32, x.astype(np.float32), y, rng)
    r64 = algo.step(copy.deepcopy(model), s64, x.astype(np.float32).astype(np.float64), y, rng)
    assert_same(r32.grads, r64.grads)                         # float32 upcast exactly
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"TargetSpace.step: x contains a non-finite .* \(2, 1\)"):
        algo.step(model, state, bad, y, rng)
    with pytest.raises(ValueError, match="TargetSpace.step: x is an empty batch"):
        algo.step(model, state, x[:0], y[:0], rng)
    with pytest.raises(ValueError, match="TargetSpace.predict: x contains a non-finite"):
        algo.predict(model, state, bad)


def test_rnn_step_checks_the_batch_axis(rng):
    model, algo, x, y = _rnn(rng)
    state = algo.init_state(model, rng)
    with pytest.raises(ValueError, match=r"x is an empty batch .* along axis 1"):
        algo.step(model, state, x[:, :0], y[:, :0], rng)


@pytest.mark.parametrize("kwargs,match", [
    ({"pseudoinverse_l2_regularisation": "0.1"}, "pseudoinverse_l2_regularisation must be a real"),
    ({"pseudoinverse_l2_regularisation": np.inf}, "pseudoinverse_l2_regularisation must be finite"),
    ({"realisation_batch_size": 2.5}, "realisation_batch_size must be an integer"),
    ({"diagnostics_every": 0}, "diagnostics_every must be >= 1"),
    ({"through_inputs": "yes"}, "through_inputs must be True or False"),
    ({"follow": "dlts-tf3"}, "follow must be one of"),
    ({"zero_lam_solver": "qr"}, "zero_lam_solver must be one of"),
    ({"shared_initial_targets": 1}, "shared_initial_targets must be True or False"),
    ({"target_init_std": {"lstm": 1.0}}, "target_init_std keys must be among"),
    ({"target_init_std": {"conv": -1.0}}, r"target_init_std\['conv'\] must be > 0"),
    ({"target_init_std": "1"}, "target_init_std must be a real"),
])
def test_bad_hyperparameters_are_named(rng, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TargetSpace(rng.standard_normal((10, 3)), **kwargs)


def test_bad_x_source(rng):
    xs = rng.standard_normal((10, 3))
    xs[4, 0] = np.inf
    with pytest.raises(ValueError, match="TargetSpace: x_source contains a non-finite"):
        TargetSpace(xs)


def test_no_warnings_in_a_traced_step(rng):
    model, algo, x, y = _rnn(rng)
    state = algo.init_state(model, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        algo.trace(model, state, x, y, rng)


@pytest.mark.parametrize("n_bar", [12, 4])                # normal and kernel form at lam = 0
def test_cholesky_solver_gradient_at_lam_zero(rng, n_bar):
    """zero_lam_solver='cholesky' at lam = 0: dL/dT through the unregularised normal or
    kernel form (TS-7, TS-7a with lam = 0) matches centred differences."""
    from refnets.algorithms.target_space.checks import pipeline_gradient_error
    model = mlp([3, 4, 2], "tanh", rng)
    xs = rng.standard_normal((n_bar, 3))
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.0, zero_lam_solver="cholesky",
                       projection=None, diagnostics=False)
    assert pipeline_gradient_error(model, algo, x, y, rng) < 1e-7


@pytest.mark.parametrize("follow", sorted(FOLLOW))
@pytest.mark.parametrize("case", ["conv", "rnn-hybrid"])
def test_presets_run_on_conv_and_rnn(rng, follow, case):
    model, algo, x, y = CASES[case](rng)
    algo = TargetSpace(algo.x_source, realisation_batch_size=algo.realisation_batch_size,
                       pseudoinverse_l2_regularisation=0.1, loss=algo.loss, follow=follow,
                       diagnostics=False)
    state = algo.init_state(model, rng)
    res = algo.step(model, state, x, y, rng)
    assert np.isfinite(res.loss) and set(res.grads) == set(state["targets"])


def test_huge_targets_diverge_without_a_conditioning_warning(rng):
    """Targets blown up by a huge learning rate: the step names the realised weights that
    went non-finite (DivergenceError) instead of first warning about conditioning."""
    from refnets.validation import DivergenceError
    from refnets.optim import Adam
    model, algo, x, y = _dense(rng)
    state = algo.init_state(model, rng)
    opt = Adam(lr=1e308)
    opt.update(algo.variables(model, state), algo.step(model, state, x, y, rng).grads)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("error")
        with pytest.raises(DivergenceError, match=r"weights realised from targets '\d.T'"):
            algo.step(model, state, x, y, rng)
