"""The cross-checking contract for every rule of the package: given values, trace, keys.

For each algorithm class: ``trace`` leaves model, state and the caller's rng
bit-identical; its grads and after-state are ``step``'s bit for bit;
``step(..., rng=None, **trace["given"])`` replays the traced step exactly;
``init_state(model, None, **given)`` rebuilds the initial state; unknown
keywords and missing draws raise naming them. Then each given-value keyword is
shown to be used, and bad inputs and hyperparameters are refused by name.
"""

import copy

import numpy as np
import pytest

from refnets.algorithms.base import Recorder
from refnets.algorithms.decorrelation import (DecorrelatedBackprop, Decorrelation,
                                              DirectFeedbackAlignment, FAStraightThrough,
                                              FeedbackAlignment, NodePerturbation,
                                              WeightPerturbation, rules)
from refnets.layers import Dense
from refnets.losses import mse
from refnets.models import Sequential, convnet, mlp
from tests.helpers import assert_same


def _dec():
    return Decorrelation(lr=0.01)


# name -> (factory, conv model?)
CASES = {
    "decor-bp": (lambda: DecorrelatedBackprop(_dec()), False),
    "decor-bp-conv": (lambda: DecorrelatedBackprop(_dec()), True),
    "bp-plain": (lambda: DecorrelatedBackprop(False), False),
    "fa": (lambda: FeedbackAlignment(decorrelate=_dec()), False),
    "fa-conv": (lambda: FeedbackAlignment(decorrelate=_dec()), True),
    "fa-straight-through": (lambda: FAStraightThrough(decorrelate=_dec()), False),
    "dfa": (lambda: DirectFeedbackAlignment(decorrelate=_dec()), False),
    "np": (lambda: NodePerturbation(decorrelate=_dec()), False),
    "np-doubled": (lambda: NodePerturbation(decorrelate=_dec(), noisy_mean="doubled"), False),
    "np-conv": (lambda: NodePerturbation(decorrelate=_dec()), True),
    "wp": (lambda: WeightPerturbation(n_draws=2, decorrelate=_dec()), False),
    "wp-plain": (lambda: WeightPerturbation(), False),
}


def _setup(name, seed=0):
    make, conv = CASES[name]
    rng = np.random.default_rng(seed)
    if conv:
        model = convnet((1, 6, 6), [2], 3, 3, rng, activation="leaky_relu")
        x = rng.standard_normal((10, 1, 6, 6))
    else:
        model = mlp([5, 6, 4, 3], "leaky_relu", rng)
        x = rng.standard_normal((10, 5)) + 0.5
    y = rng.integers(0, 3, 10)
    alg = make()
    state = alg.init_state(model, rng)
    for _ in range(2):                      # move R and the running means off their defaults
        alg.step(model, state, x, y, rng)
    return alg, model, state, x, y, rng


@pytest.mark.parametrize("name", sorted(CASES))
def test_trace_leaves_model_state_and_rng_untouched(name):
    alg, model, state, x, y, rng = _setup(name)
    params, st, rng_state = model.copy_params(), copy.deepcopy(state), copy.deepcopy(
        rng.bit_generator.state)
    alg.trace(model, state, x, y, rng)
    assert_same(model.copy_params(), params, "params")
    assert_same(state, st, "state")
    assert rng.bit_generator.state == rng_state


@pytest.mark.parametrize("name", sorted(CASES))
def test_trace_is_the_step_and_its_given_values_replay_it(name):
    alg, model, state, x, y, rng = _setup(name)
    tr = alg.trace(model, state, x, y, rng)
    model2, state2 = copy.deepcopy(model), copy.deepcopy(state)
    res = alg.step(model, state, x, y, rng)
    assert tr["loss"] == res.loss
    assert_same(tr["grads"], res.grads, "grads")
    assert_same(tr["after"], state, "after")
    # the replay draws nothing: every random quantity comes from trace["given"]
    res2 = alg.step(model2, state2, x, y, None, **tr["given"])
    assert_same(res2.grads, res.grads, "replayed grads")
    assert_same(state2, state, "replayed state")
    if alg.decor is not None:
        for k in (0,) if name.endswith("conv") else (0, 2, 4):
            for key in ("h", "mu", "R", "z", "rows", "C_z", "R_after"):
                assert f"{k}.{key}" in tr["values"], f"{k}.{key}"
            np.testing.assert_array_equal(tr["values"][f"{k}.R_after"], state[f"decor"][f"{k}.R"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_init_state_rebuilds_from_its_given_values(name):
    make, conv = CASES[name]
    rng = np.random.default_rng(1)
    model = (convnet((1, 6, 6), [2], 3, 3, rng, activation="leaky_relu") if conv
             else mlp([5, 6, 4, 3], "leaky_relu", rng))
    alg, rec = make(), Recorder()
    state = alg.init_state(model, rng, record=rec)
    assert_same(alg.init_state(model, None, **rec.draws), state, "init_state")
    assert set(rec.draws) == set(alg.init_given())


@pytest.mark.parametrize("name", sorted(CASES))
def test_unknown_keyword_lists_the_accepted_ones(name):
    alg, model, state, x, y, rng = _setup(name)
    accepted = "|".join(sorted(alg.step_given())) or "\\[\\]"
    with pytest.raises(ValueError, match=rf"unknown keyword 'noise'.*({accepted})"):
        alg.step(model, state, x, y, rng, noise={})
    with pytest.raises(ValueError, match="unknown keyword 'Q'"):
        alg.init_state(model, rng, Q={})


def test_missing_draws_with_rng_none_are_named():
    rng = np.random.default_rng(0)
    model = mlp([3, 4, 4, 2], "tanh", rng)
    x, y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    with pytest.raises(ValueError, match=r"rng is None and B\['2.B'\] was not given"):
        FeedbackAlignment().init_state(model, None)
    with pytest.raises(ValueError, match=r"rng is None and D\['0.D'\] was not given"):
        DirectFeedbackAlignment().init_state(model, None)
    alg = NodePerturbation()
    with pytest.raises(ValueError, match=r"rng is None and eps\['0.eps'\] was not given"):
        alg.step(model, alg.init_state(model, None), x, y, None)
    alg = WeightPerturbation()
    with pytest.raises(ValueError, match=r"rng is None and eps\['0.eps_W.0'\] was not given"):
        alg.step(model, alg.init_state(model, None), x, y, None)
    # nothing random in decorrelated backprop: R = I, running mean 0, the first rows
    alg = DecorrelatedBackprop(_dec())
    alg.step(model, alg.init_state(model, None), x, y, None)


# ----------------------------------------------------------------------------
# each given-value keyword is used
# ----------------------------------------------------------------------------
def test_given_B_and_D_are_used(rng):
    model = mlp([3, 4, 4, 2], "tanh", rng)
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    bp = DecorrelatedBackprop(False)
    ref = bp.step(model, bp.init_state(model), x, y).grads
    fa = FeedbackAlignment()
    B = {f"{k}.B": model.layers[k].params["W"] for k in (2, 4)}
    state = fa.init_state(model, None, B=B)                # B = W: FA is backprop
    tr = fa.trace(model, state, x, y)
    assert_same(tr["grads"], ref, "FA with B = W")
    np.testing.assert_array_equal(tr["values"]["4.B"], B["4.B"])
    np.testing.assert_array_equal(tr["values"]["2.delta"], tr["values"]["4.delta"] @ B["4.B"]
                                  * (1 - np.tanh(model.forward(x)[1][3]["z"]) ** 2))
    assert state["B"]["2.B"] is not B["2.B"]               # copied
    dfa = DirectFeedbackAlignment()
    D = {"0.D": rng.standard_normal((4, 2)), "2.D": rng.standard_normal((4, 2))}
    tr = dfa.trace(model, dfa.init_state(model, None, D=D), x, y)
    e = tr["values"]["e"]
    a0 = model.forward(x)[1][1]["z"]                       # layer 0's output a_0
    np.testing.assert_allclose(tr["values"]["0.delta"], (e @ D["0.D"].T) * (1 - np.tanh(a0) ** 2),
                               rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"given B\['2.B'\] must have shape \(4, 4\)"):
        fa.init_state(model, None, B={"2.B": np.zeros((4, 3)), "4.B": B["4.B"]})


def test_given_R_and_running_mean_are_used(rng):
    model = mlp([3, 4, 2], "tanh", rng)
    R0, m0 = np.eye(3) + 0.2 * rng.standard_normal((3, 3)), rng.standard_normal(3)
    alg = DecorrelatedBackprop(Decorrelation(lr=0.0))
    state = alg.init_state(model, None, R={"0.R": R0}, running_mean={"0.running_mean": m0})
    np.testing.assert_array_equal(state["decor"]["0.R"], R0)
    np.testing.assert_array_equal(state["decor"]["2.R"], np.eye(4))     # not given: I
    xe = rng.standard_normal((5, 3))
    out = alg.predict(model, state, xe)                    # eval: z = R (x - running mean)
    h = np.tanh((xe - m0) @ R0.T @ model.layers[0].params["W"].T + model.layers[0].params["b"])
    np.testing.assert_allclose(out, h @ model.layers[2].params["W"].T + model.layers[2].params["b"],
                               rtol=0, atol=1e-14)


def test_given_rows_choose_the_sub_batch(rng):
    model = Sequential([Dense(3, 2, rng)])
    alg = DecorrelatedBackprop(Decorrelation(lr=0.05, sample_frac=0.1))
    x, y = rng.standard_normal((20, 3)) + 1.0, rng.integers(0, 2, 20)
    state = alg.init_state(model)
    tr = alg.trace(model, state, x, y)
    np.testing.assert_array_equal(tr["values"]["0.rows"], [0, 1, 2])   # k_S = max(3, d = 3)
    rows = np.array([19, 4, 7])
    tr = alg.trace(model, state, x, y, rows={"0.rows": rows})
    np.testing.assert_array_equal(tr["given"]["rows"]["0.rows"], rows)
    Z, H = tr["values"]["0.z"][rows], x[rows]
    C = Z.T @ Z / 3
    np.testing.assert_allclose(tr["values"]["0.C_z"], C, rtol=0, atol=1e-15)
    s = np.mean(np.linalg.norm(H, axis=1) / np.sqrt(np.sum(Z * Z, axis=1) + 1e-8))
    np.testing.assert_allclose(tr["after"]["decor"]["0.R"], s * (np.eye(3) - 0.05 * C),
                               rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match=r"rows\['0.rows'\] must index the batch of 20"):
        alg.step(model, state, x, y, rows={"0.rows": np.array([0, 1, 20])})
    with pytest.raises(ValueError, match=r"given rows\['0.rows'\] must have shape \(3,\)"):
        alg.step(model, state, x, y, rows={"0.rows": np.array([0, 1])})


def test_given_rows_of_a_conv_layer_pick_images(rng):
    model = convnet((1, 5, 5), [2], 3, 2, rng)
    alg = DecorrelatedBackprop(_dec())
    x, y = rng.standard_normal((8, 1, 5, 5)), rng.integers(0, 2, 8)
    tr = alg.trace(model, alg.init_state(model), x, y, rows={"0.rows": np.array([5])})
    z = tr["values"]["0.z"].reshape(8, 25, 9)[5]           # every position of image 5
    np.testing.assert_allclose(tr["values"]["0.C_z"], z.T @ z / 25, rtol=0, atol=1e-15)


def test_given_eps_drives_node_perturbation(rng):
    """sigma = 0.1, one Dense layer, given noise: the update is dL eps z^T / (sigma^2 N)."""
    model = Sequential([Dense(2, 2, rng)])
    x, t = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    alg = NodePerturbation(sigma=0.1, loss=mse)
    eps = rng.standard_normal((3, 2)) * 0.1
    tr = alg.trace(model, alg.init_state(model), x, t, eps={"0.eps": eps})
    W, b = model.layers[0].params["W"], model.layers[0].params["b"]
    a = x @ W.T + b
    dL = np.sum((a + eps - t) ** 2, axis=1) - np.sum((a - t) ** 2, axis=1)
    np.testing.assert_allclose(tr["values"]["dL"], dL, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(tr["values"]["0.eps"], eps)
    g_a = dL[:, None] * eps / (0.01 * 3)
    np.testing.assert_allclose(tr["grads"]["0.W"], g_a.T @ x, rtol=0, atol=1e-13)
    np.testing.assert_allclose(tr["grads"]["0.b"], g_a.sum(axis=0), rtol=0, atol=1e-13)


def test_given_eps_drives_weight_perturbation(rng):
    model = Sequential([Dense(2, 1, rng)])
    x, t = rng.standard_normal((4, 2)), rng.standard_normal((4, 1))
    alg = WeightPerturbation(sigma=0.1, n_draws=2, loss=mse)
    eps = {f"0.eps_{n}.{m}": rng.standard_normal(s) * 0.1
           for m in range(2) for n, s in (("W", (1, 2)), ("b", (1,)))}
    tr = alg.trace(model, alg.init_state(model), x, t, eps=eps)
    W, b = model.layers[0].params["W"], model.layers[0].params["b"]
    L = np.mean(np.sum((x @ W.T + b - t) ** 2, axis=1))
    dL = [np.mean(np.sum((x @ (W + eps[f"0.eps_W.{m}"]).T + b + eps[f"0.eps_b.{m}"] - t) ** 2,
                         axis=1)) - L for m in range(2)]
    np.testing.assert_allclose(tr["values"]["dL"], dL, rtol=0, atol=1e-14)
    gW = sum(dL[m] * eps[f"0.eps_W.{m}"] for m in range(2)) / (0.01 * 2)
    np.testing.assert_allclose(tr["grads"]["0.W"], gW, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------
# switches that follow the authors' code
# ----------------------------------------------------------------------------
X10 = np.array([[2, 1], [1, 2], [0, -1], [-1, 0], [3, 1],
                [1, 1], [0, 0], [-2, -1], [1, -1], [2, 2]], dtype=np.float64)


def test_sub_batch_fraction_takes_the_authors_rows():
    """N = 10, d = 4, f = 0.2: the authors' k_S = 3 rows; refnets' default takes d = 4."""
    rng = np.random.default_rng(0)
    h = np.hstack([X10, rng.standard_normal((10, 2))])
    layer = Dense(4, 1, rng)
    for sub_batch, k in (("at-least-d", 4), ("fraction", 3)):
        dec = Decorrelation(lr=0.1, sample_frac=0.2, sub_batch=sub_batch)
        st = dec.init_layer(layer)
        _, cache = dec.forward(layer, h, st)
        dec.update(layer, st, cache)
        Z, H = h[:k] - h.mean(axis=0), h[:k]                 # R = I: z = h - mu
        C = Z.T @ Z / k
        s = np.mean(np.linalg.norm(H, axis=1) / np.sqrt(np.sum(Z * Z, axis=1) + 1e-8))
        np.testing.assert_allclose(st["R"], s * (np.eye(4) - 0.1 * C), rtol=0, atol=1e-14)


def test_follow_iclr_does_not_centre():
    """crgd-iclr: z = R h (no mean), C from the first floor(0.1 N) + 1 = 2 raw rows."""
    dec = Decorrelation(lr=0.1, follow="crgd-iclr")
    assert (dec.center, dec.sub_batch, dec.legacy_head_dense) == (False, "fraction", False)
    layer = Dense(2, 1, np.random.default_rng(0))
    st = dec.init_layer(layer)
    _, cache = dec.forward(layer, X10, st)
    np.testing.assert_array_equal(cache["z"], X10)
    dec.update(layer, st, cache)
    C = np.array([[2.5, 2.0], [2.0, 2.5]])                   # ([2,1][2,1]^T + [1,2][1,2]^T) / 2
    s = np.mean(np.sqrt([5.0, 5.0]) / np.sqrt(np.array([5.0, 5.0]) + 1e-8))
    np.testing.assert_allclose(st["R"], s * (np.eye(2) - 0.1 * C), rtol=0, atol=1e-15)


def test_follow_head_is_transposed_and_fraction():
    dec = Decorrelation(lr=0.1, follow="crgd-head")
    assert (dec.center, dec.sub_batch, dec.legacy_head_dense) == (True, "fraction", True)
    assert Decorrelation(follow="crgd-head", center=False).center is False   # explicit wins
    # two different batches: HEAD applies the same R2 as z = R2^T (h - mu) (README section 6)
    layer = Dense(2, 1, np.random.default_rng(0))
    st = dec.init_layer(layer)
    for batch in (X10, X10[::-1].copy()):
        _, cache = dec.forward(layer, batch, st)
        dec.update(layer, st, cache)
    R2 = np.array([[1.10491623, -0.19842963], [-0.18932884, 0.80201833]])
    np.testing.assert_allclose(st["R"], R2, atol=5e-9)
    _, cache = dec.forward(layer, X10, st, train=False)
    np.testing.assert_allclose(cache["z"], (X10 - st["running_mean"]) @ R2, atol=1e-8)


@pytest.mark.parametrize("noisy_mean", ["clean", "doubled"])
def test_np_noisy_mean(noisy_mean):
    """Two Dense layers, R = I, given noise: the doubled batch shifts layer 2's mean by
    mean(eps_0) / 2, for the clean rows too; the clean-mean form leaves the clean pass alone."""
    rng = np.random.default_rng(3)
    model = Sequential([Dense(2, 3, rng), Dense(3, 2, rng)])
    x, t = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    sigma = 0.1
    eps = {"0.eps": sigma * rng.standard_normal((4, 3)),
           "1.eps": sigma * rng.standard_normal((4, 2))}
    alg = NodePerturbation(sigma=sigma, loss=mse, decorrelate=Decorrelation(lr=0.0),
                           noisy_mean=noisy_mean)
    tr = alg.trace(model, alg.init_state(model), x, t, eps=eps)
    (W0, b0), (W1, b1) = [(lay.params["W"], lay.params["b"]) for lay in model.layers]
    z0 = x - x.mean(axis=0)
    a0 = z0 @ W0.T + b0
    a0n = a0 + eps["0.eps"]
    mu1 = a0.mean(axis=0) if noisy_mean == "clean" else (a0.mean(axis=0) + a0n.mean(axis=0)) / 2
    z1, z1n = a0 - mu1, a0n - mu1
    out, out_n = z1 @ W1.T + b1, z1n @ W1.T + b1 + eps["1.eps"]
    dL = np.sum((out_n - t) ** 2, axis=1) - np.sum((out - t) ** 2, axis=1)
    np.testing.assert_allclose(tr["loss"], np.mean(np.sum((out - t) ** 2, axis=1)), rtol=1e-14)
    np.testing.assert_allclose(tr["values"]["dL"], dL, rtol=0, atol=1e-13)
    g1 = dL[:, None] * eps["1.eps"] / (sigma ** 2 * 4)
    g0 = dL[:, None] * eps["0.eps"] / (sigma ** 2 * 4)
    np.testing.assert_allclose(tr["grads"]["1.W"], g1.T @ z1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tr["grads"]["0.W"], g0.T @ z0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tr["after"]["decor"]["1.running_mean"], 0.1 * mu1, rtol=0,
                               atol=1e-15)


def test_np_follow_preset():
    alg = NodePerturbation(decorrelate=True, follow="crgd-head")
    assert alg.noisy_mean == "doubled" and alg.decor.follow == "crgd-head"
    assert NodePerturbation(follow="crgd-iclr", noisy_mean="clean").noisy_mean == "clean"


# ----------------------------------------------------------------------------
# validation of inputs and hyperparameters
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["decor-bp", "fa", "dfa", "np", "wp"])
def test_bad_x_is_refused_naming_it(name):
    alg, model, state, x, y, rng = _setup(name)
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"\.step: x contains a non-finite value .* \(1, 2\)"):
        alg.step(model, state, bad, y, rng)
    with pytest.raises(ValueError, match=r"\.step: x is an empty batch"):
        alg.step(model, state, x[:0], y[:0], rng)
    with pytest.raises(ValueError, match=r"\.predict: x contains a non-finite value"):
        alg.predict(model, state, bad)


def test_float32_x_is_upcast_exactly():
    alg, model, state, x, y, rng = _setup("fa")
    x32 = x.astype(np.float32)
    r64 = alg.trace(model, state, x32.astype(np.float64), y, rng)
    r32 = alg.trace(model, state, x32, y, rng)
    assert_same(r32["grads"], r64["grads"], "grads")


@pytest.mark.parametrize("make,match", [
    (lambda: Decorrelation(lr="1e-3"), r"Decorrelation: lr must be a real number"),
    (lambda: Decorrelation(lr=float("nan")), r"Decorrelation: lr must be finite"),
    (lambda: Decorrelation(var_tol="x"), r"Decorrelation: var_tol must be a real number"),
    (lambda: Decorrelation(center="yes"), r"Decorrelation: center must be True or False"),
    (lambda: Decorrelation(follow="head"), r"Decorrelation: follow must be one of"),
    (lambda: Decorrelation(sub_batch="all"), r"Decorrelation: sub_batch must be one of"),
    (lambda: NodePerturbation(sigma="1e-4"), r"NodePerturbation: sigma must be a real number"),
    (lambda: NodePerturbation(noisy_mean="noisy"), r"NodePerturbation: noisy_mean must be one of"),
    (lambda: WeightPerturbation(n_draws=1.5), r"WeightPerturbation: n_draws must be an integer"),
    (lambda: FeedbackAlignment(track_backprop=1), r"FeedbackAlignment: track_backprop must be"),
    (lambda: FeedbackAlignment(straight_through="no"), r"straight_through must be True or False"),
])
def test_bad_hyperparameters_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_second_moment_recorded_even_when_d_exceeds_the_rows(rng):
    """k_S < d (the Gram-matrix path): C_z is still recorded, equal to Z^T Z / k."""
    model = Sequential([Dense(6, 2, rng)])
    alg = DecorrelatedBackprop(_dec())
    x, y = rng.standard_normal((4, 6)), rng.integers(0, 2, 4)
    tr = alg.trace(model, alg.init_state(model), x, y)
    Z = tr["values"]["0.z"]
    np.testing.assert_allclose(tr["values"]["0.C_z"], rules.second_moment(Z), rtol=0, atol=0)
