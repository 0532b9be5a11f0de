"""Target Space on dense nets (SCU, OCU, shortcuts): derivatives, invariants and properties
of the package README's equations (TS-n tags)."""

import warnings

import numpy as np
import pytest

from refnets.algorithms import get_method
from refnets.algorithms.base import backprop_gradients
from refnets.algorithms.target_space.algorithm import (ShortcutMLP, TargetSpace, shortcut_mlp,
                                             tf1_weight_init, truncated_normal)
from refnets.algorithms.target_space.solve import RidgeSolveWarning, design_matrix
from refnets.gradcheck import check_layer, numerical_gradient, rel_error
from refnets.layers.activations import Tanh
from refnets.layers.dense import Dense
from refnets.losses import softmax_cross_entropy
from refnets.models import mlp
from refnets.optim import SGD, Adam


def _setup(rng, sizes=(3, 5, 4, 2), n_bar=12, lam=0.1, shortcuts=False, **kw):
    model = (shortcut_mlp if shortcuts else mlp)(list(sizes), "tanh", rng)
    xs = rng.standard_normal((n_bar, sizes[0]))
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=lam, **kw)
    return model, algo, algo.init_state(model, rng)


def _loss_of_targets(algo, model, state, x, y):
    """L(T): realise from state['targets'] (read at call time) and take the minibatch loss."""
    def f(_):
        params, _ = algo.realise(model, state)
        return softmax_cross_entropy(model.forward(x, params)[0], y)[0]
    return f


def _batch(rng, n=9, d=3, classes=2):
    return rng.standard_normal((n, d)), rng.integers(0, classes, n)


def _orth_complement(A):
    """Projector onto the orthogonal complement of col(A)."""
    return np.eye(A.shape[0]) - A @ np.linalg.pinv(A)


# --------------------------------------------------------------------------- hand-worked
def test_hand_worked_single_layer_step():
    """One Dense(1, 2) layer in target space, X_bar = [[0], [1]], lam = 0.

    A = [[1, 0], [1, 1]] is square and invertible, so W = A^-1 T exactly:
    T = [[0, 0], [1, -1]] gives b = [0, 0], w = [1, -1]. The minibatch x = [[1]],
    y = [0] has logits z = [1, -1] = T[1] (x equals the second realisation row),
    p = softmax(z) = [s, 1 - s], s = 1/(1 + e^-2) = 0.880797, dz = [s - 1, 1 - s].
    dW_full = [1, x]^T dz = [[s-1, 1-s], [s-1, 1-s]];
    dT = A^-T dW_full with A^-T = [[1, -1], [0, 1]]: dT = [[0, 0], [s-1, 1-s]]:
    only the realisation example the minibatch coincides with receives a gradient.
    """
    model = mlp([1, 2], "tanh", np.random.default_rng(0))
    algo = TargetSpace(np.array([[0.0], [1.0]]), pseudoinverse_l2_regularisation=0.0,
                       projection=None, diagnostics=False)
    state = algo.init_state(model, np.random.default_rng(0))
    state["targets"]["0.T"][...] = [[0.0, 0.0], [1.0, -1.0]]
    res = algo.step(model, state, np.array([[1.0]]), np.array([0]), None)
    np.testing.assert_allclose(model.layers[0].params["W"], [[1.0], [-1.0]], atol=1e-14)
    np.testing.assert_allclose(model.layers[0].params["b"], [0.0, 0.0], atol=1e-14)
    s = 1.0 / (1.0 + np.exp(-2.0))
    np.testing.assert_allclose(res.grads["0.T"], [[0.0, 0.0], [s - 1, 1 - s]], atol=1e-14)
    assert abs(res.loss - (-np.log(s))) < 1e-14


# --------------------------------------------------------------------------- finite differences
@pytest.mark.parametrize("realisation", ["scu", "ocu"])
@pytest.mark.parametrize("shortcuts", [False, True])
@pytest.mark.parametrize("n_bar", [12, 4])          # normal-form and kernel-form solves
def test_target_gradient_matches_finite_differences(rng, realisation, shortcuts, n_bar):
    """(TS-6)-(TS-8a): dL/dT of the whole pipeline (every solve, A-path included) vs
    centred differences."""
    model, algo, state = _setup(rng, n_bar=n_bar, shortcuts=shortcuts, realisation=realisation)
    x, y = _batch(rng)
    res = algo.step(model, state, x, y, rng)
    for key, T in state["targets"].items():
        num = numerical_gradient(_loss_of_targets(algo, model, state, x, y), T)
        assert rel_error(res.grads[key], num) < 1e-7, key


def test_target_gradient_small_lambda(rng):
    """lam = 1e-3 (the TF1 spirals value): Grams are worse conditioned (cond ~1e4 here),
    which amplifies the round-off of the differences (measured 4e-9 - 3e-8 relative error
    here, against ~3e-9 at lam = 0.1); the bound is 1e-6."""
    model, algo, state = _setup(rng, lam=1e-3, shortcuts=True)
    x, y = _batch(rng)
    res = algo.step(model, state, x, y, rng)
    for key, T in state["targets"].items():
        num = numerical_gradient(_loss_of_targets(algo, model, state, x, y), T)
        assert rel_error(res.grads[key], num) < 1e-6, key


def test_ablation_drops_the_input_path(rng):
    """through_inputs=False: the last layer's gradient is unchanged, hidden ones differ,
    and the ablated gradient is what differences give with A_bar frozen."""
    model, algo, state = _setup(rng)
    ablated = TargetSpace(algo.x_source, pseudoinverse_l2_regularisation=0.1,
                          through_inputs=False)
    x, y = _batch(rng)
    full = algo.step(model, state, x, y, rng).grads
    part = ablated.step(model, state, x, y, rng).grads
    assert rel_error(full["4.T"], part["4.T"]) < 1e-14
    assert rel_error(full["0.T"], part["0.T"]) > 1e-3
    assert rel_error(full["2.T"], part["2.T"]) > 1e-3


# --------------------------------------------------------------------------- invariants
def test_exact_recovery_scu():
    """(TS-4): lam = 0, T_k = the sums of chosen weights W* on X_bar (n_bar >= c_k)
    -> SCU recovers W* in every layer and S_bar_k = T_k."""
    rng = np.random.default_rng(3)
    teacher = mlp([3, 5, 4, 2], "tanh", rng)
    for layer in teacher.layers[0::2]:
        layer.params["b"][...] = rng.standard_normal(layer.params["b"].shape)
    xs = rng.standard_normal((20, 3))
    _, caches = teacher.forward(xs)
    model = mlp([3, 5, 4, 2], "tanh", rng)
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.0, projection=None)
    state = algo.init_state(model, rng)
    sums = {0: caches[1]["z"], 2: caches[3]["z"], 4: teacher.forward(xs)[0]}
    for k, z in sums.items():
        state["targets"][f"{k}.T"][...] = z
    params, recs = algo.realise(model, state)
    for k in sums:
        for name in ("W", "b"):
            assert rel_error(params[k][name], teacher.layers[k].params[name]) < 1e-12
        assert np.abs(recs[k]["S"] - sums[k]).max() < 1e-12
    # lam > 0 biases the solve: the realised sums miss the targets
    biased = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, projection=None)
    _, recs = biased.realise(model, state)
    assert np.abs(recs[4]["S"] - sums[4]).max() > 1e-4


def test_projection_is_a_fixed_point_at_lam_zero(rng):
    """(TS-14a): after the initial projection (lam = 0, n_bar >= c_k), realising the
    targets reproduces them: S_bar_k = T_k, for both projection modes."""
    for projection in ("layer", "simultaneous"):
        model, algo, state = _setup(rng, n_bar=20, lam=0.0, projection=projection)
        _, recs = algo.realise(model, state)
        for key, T in state["targets"].items():
            assert np.abs(recs[int(key.split(".")[0])]["S"] - T).max() < 1e-11


def test_simultaneous_projection_targets_are_realised_sums(rng):
    """TF1 projection: all T_k <- S_bar_k of one SCU pass of the initial random targets."""
    model = mlp([3, 5, 4, 2], "tanh", np.random.default_rng(1))
    xs = rng.standard_normal((12, 3))
    a_sim = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, projection="simultaneous")
    a_raw = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, projection=None)
    s_sim = a_sim.init_state(model, np.random.default_rng(7))
    s_raw = a_raw.init_state(model, np.random.default_rng(7))
    _, recs = a_raw.realise(model, s_raw)
    for key in s_sim["targets"]:
        np.testing.assert_array_equal(s_sim["targets"][key], recs[int(key.split(".")[0])]["S"])


@pytest.mark.parametrize("shortcuts", [False, True])
def test_scu_gradient_lies_in_column_space(rng, shortcuts):
    """(TS-15): under SCU dL/dT_k = A_bar G^-1 dW in col(A_bar_{k-1}) for every k;
    under OCU the hidden layers' gradients leave it (T_k is also the next input)."""
    x, y = _batch(rng)
    for realisation in ("scu", "ocu"):
        model, algo, state = _setup(np.random.default_rng(5), n_bar=16, shortcuts=shortcuts,
                                    realisation=realisation)
        res = algo.step(model, state, x, y, rng)
        _, recs = algo.realise(model, state)
        for key, g in res.grads.items():
            k = int(key.split(".")[0])
            off = np.linalg.norm(_orth_complement(recs[k]["solve"]["A"]) @ g) / np.linalg.norm(g)
            if realisation == "scu" or k == 4:
                assert off < 1e-12, (realisation, key, off)
            else:
                assert off > 0.1, (realisation, key, off)


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_null_space_invariance(rng, lam):
    """(TS-15): n_bar > c_k and A_bar_{k-1}^T N = 0 -> T_k + N gives identical W and loss."""
    model, algo, state = _setup(rng, n_bar=16, lam=lam)
    x, y = _batch(rng)
    params, recs = algo.realise(model, state)
    loss = softmax_cross_entropy(model.forward(x, params)[0], y)[0]
    N = _orth_complement(recs[2]["solve"]["A"]) @ rng.standard_normal(state["targets"]["2.T"].shape)
    assert np.linalg.norm(N) > 1.0
    state["targets"]["2.T"] += N
    params2, _ = algo.realise(model, state)
    for k in (0, 2, 4):
        for name in ("W", "b"):
            assert rel_error(params2[k][name], params[k][name]) < 1e-10
    assert abs(softmax_cross_entropy(model.forward(x, params2)[0], y)[0] - loss) < 1e-12


def test_last_layer_step_is_preconditioned_weight_step(rng):
    """(TS-16): SGD on T_L alone moves W_L by exactly -eta G^-1 A^T A G^-1 dL/dW_L
    (the solve is linear in T_L and A_bar_{L-1} does not depend on T_L)."""
    model, algo, state = _setup(rng, n_bar=16, lam=0.1)
    x, y = _batch(rng)
    res = algo.step(model, state, x, y, rng)
    params, recs = algo.realise(model, state)
    A = recs[4]["solve"]["A"]
    W_old = np.vstack([params[4]["b"][None], params[4]["W"].T])
    _, grads, _ = backprop_gradients(model, x, y)
    dW = np.vstack([grads["4.b"][None], grads["4.W"].T])
    eta = 0.3
    SGD(eta).update({"4.T": state["targets"]["4.T"]}, {"4.T": res.grads["4.T"]})
    params_new, _ = algo.realise(model, state)
    W_new = np.vstack([params_new[4]["b"][None], params_new[4]["W"].T])
    G_inv = np.linalg.inv(A.T @ A + 0.1 * np.eye(A.shape[1]))
    expected = -eta * G_inv @ A.T @ A @ G_inv @ dW
    assert rel_error(W_new - W_old, expected) < 1e-10
    for k in (0, 2):                              # earlier layers unchanged
        assert rel_error(params_new[k]["W"], params[k]["W"]) == 0.0


def test_minibatch_equal_to_realisation_batch_shares_sums(rng):
    """(TS-4), (TS-5): with X = X_bar under SCU the minibatch pass computes exactly S_bar_k."""
    for shortcuts in (False, True):
        model, algo, state = _setup(rng, shortcuts=shortcuts)
        params, recs = algo.realise(model, state)
        out, caches = model.forward(state["xbar"], params)
        for k in (0, 2):
            assert np.abs(caches[k + 1]["z"] - recs[k]["S"]).max() < 1e-12
        assert np.abs(out - recs[4]["S"]).max() < 1e-12


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_optimiser_treats_targets_like_weights(rng, opt_name):
    """(TS-9): a refnets optimiser on variables() = {T_k} equals the hand-applied update.
    Adam's first step is lr * g / (|g| + eps) (bias-corrected moments m = g, v = g^2)."""
    model, algo, state = _setup(rng)
    x, y = _batch(rng)
    before = {k: v.copy() for k, v in state["targets"].items()}
    res = algo.step(model, state, x, y, rng)
    opt = SGD(0.5) if opt_name == "sgd" else Adam(0.01)
    opt.update(algo.variables(model, state), res.grads)
    for key, g in res.grads.items():
        step = 0.5 * g if opt_name == "sgd" else 0.01 * g / (np.abs(g) + 1e-8)
        assert rel_error(state["targets"][key], before[key] - step) < 1e-14
    assert algo.variables(model, state) is state["targets"]


# --------------------------------------------------------------------------- behaviour
def test_step_writes_realised_weights_and_predict_uses_current_targets(rng):
    model, algo, state = _setup(rng)
    x, y = _batch(rng)
    res = algo.step(model, state, x, y, rng)
    params, _ = algo.realise(model, state)
    assert rel_error(model.layers[0].params["W"], params[0]["W"]) == 0.0
    assert abs(softmax_cross_entropy(model.forward(x)[0], y)[0] - res.loss) < 1e-14
    SGD(1.0).update(algo.variables(model, state), res.grads)
    out = algo.predict(model, state, x)
    new_params, _ = algo.realise(model, state)
    np.testing.assert_array_equal(out, model.forward(x, new_params)[0])
    np.testing.assert_array_equal(model.forward(x)[0], out)        # written into the model


def test_info_reports_residuals_and_cosine(rng):
    model, algo, state = _setup(rng, n_bar=4)
    x, y = _batch(rng)
    info = algo.step(model, state, x, y, rng).info
    assert info["residual"].shape == (3,) and np.all(info["residual"] >= 0)
    assert 0.0 < info["cosine_to_backprop"] <= 1.0                # J J^T is PSD
    assert info["cond_max"] >= 1.0


def test_cosine_is_one_for_a_single_exact_layer(rng):
    """One Dense layer, square invertible A_bar at lam = 0: J J^T dW = A^-1 A^-T dW,
    so the implied update is the gradient preconditioned by (A^T A)^-1; with
    orthogonal equal-norm columns (A^T A = 4 I) it is parallel to the gradient; the
    finite-difference J dT is exact up to round-off because W is linear in T."""
    xs = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])   # A^T A = 4 I
    model = mlp([2, 2], "tanh", rng)
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.0, realisation_batch_size=None)
    state = algo.init_state(model, rng)
    x, y = _batch(rng, d=2)
    assert abs(algo.step(model, state, x, y, rng).info["cosine_to_backprop"] - 1.0) < 1e-8


def test_seeded_runs_are_bit_identical():
    def run(seed):
        rng = np.random.default_rng(seed)
        model, algo, state = _setup(rng, realisation_selection="random",
                                    realisation_batch_size=6)
        opt = Adam(0.01)
        x, y = _batch(rng)
        for _ in range(3):
            opt.update(algo.variables(model, state), algo.step(model, state, x, y, rng).grads)
        return state
    a, b = run(11), run(11)
    np.testing.assert_array_equal(a["xbar"], b["xbar"])
    for key in a["targets"]:
        np.testing.assert_array_equal(a["targets"][key], b["targets"][key])


def test_realisation_batch_is_fixed_and_drawn_once(rng):
    xs = rng.standard_normal((30, 3))
    model = mlp([3, 4, 2], "tanh", rng)
    first = TargetSpace(xs, realisation_batch_size=5, realisation_selection="first")
    np.testing.assert_array_equal(first.init_state(model, rng)["xbar"], xs[:5])
    rand = TargetSpace(xs, realisation_batch_size=5)
    state = rand.init_state(model, rng)
    rows = [int(np.flatnonzero((xs == r).all(axis=1))[0]) for r in state["xbar"]]
    assert len(set(rows)) == 5
    x, y = _batch(rng)
    xbar = state["xbar"].copy()
    rand.step(model, state, x, y, rng)
    np.testing.assert_array_equal(state["xbar"], xbar)


def test_targets_have_documented_shapes_and_init(rng):
    model, algo, state = _setup(rng, sizes=(3, 6, 5, 2), n_bar=40, projection=None)
    assert {k: v.shape for k, v in state["targets"].items()} == {
        "0.T": (40, 6), "2.T": (40, 5), "4.T": (40, 2)}
    allv = np.concatenate([v.ravel() for v in state["targets"].values()])
    assert np.abs(allv).max() <= 2.0 and 0.7 < allv.std() < 1.0   # truncated N(0, 1)


def test_learns_a_separable_problem(rng):
    """A few dozen Adam steps fit a small linearly separable set (sanity, not a benchmark)."""
    x = rng.standard_normal((60, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    model = mlp([2, 8, 2], "tanh", rng)
    algo = TargetSpace(x, realisation_batch_size=30, pseudoinverse_l2_regularisation=1e-3)
    state = algo.init_state(model, rng)
    opt = Adam(0.01)
    losses = []
    for _ in range(100):
        res = algo.step(model, state, x, y, rng)
        losses.append(res.loss)
        opt.update(algo.variables(model, state), res.grads)
    assert losses[-1] < 0.5 * losses[0]
    assert np.mean(np.argmax(algo.predict(model, state, x), 1) == y) > 0.9


def test_divergence_names_the_step(rng):
    model, algo, state = _setup(rng)
    x, y = _batch(rng)
    algo.step(model, state, x, y, rng)
    state["targets"]["2.T"][0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="step 2"):
        algo.step(model, state, x, y, rng)


def test_ill_conditioned_solve_warns_once(rng):
    """Two nearly collinear inputs and a tiny lam: Gram condition ~1e13 (Cholesky still
    succeeds); the warning names the estimate and appears once per run."""
    x1 = rng.standard_normal((20, 1))
    xs = np.hstack([x1, x1 + 1e-7 * rng.standard_normal((20, 1))])
    model = mlp([2, 3, 2], "tanh", rng)
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=1e-12, projection=None)
    state = algo.init_state(model, rng)
    x, y = _batch(rng, d=2)
    with pytest.warns(RidgeSolveWarning, match="condition") as record:
        algo.step(model, state, x, y, rng)
        algo.step(model, state, x, y, rng)
    assert sum("ill-conditioned" in str(w.message) for w in record) == 1


# --------------------------------------------------------------------------- models and init
def test_shortcut_mlp_layout_and_gradients(rng):
    model = shortcut_mlp([2, 5, 5, 5, 2], "tanh", rng)
    assert [layer.n_in for layer in model.layers[0::2]] == [2, 7, 12, 17]
    assert model.widths == [2, 5, 5, 5]
    x, y = _batch(rng, d=2)
    _, grads, _ = backprop_gradients(model, x, y)
    flat = model.params()

    def loss_of(x_in):
        return softmax_cross_entropy(model.forward(x_in)[0], y)[0]

    for key in ("0.W", "2.b", "4.W", "6.W"):           # perturbed in place by the checker
        assert rel_error(grads[key], numerical_gradient(lambda _: loss_of(x), flat[key])) < 1e-7
    out, caches = model.forward(x)
    dx, _ = model.backward(softmax_cross_entropy(out, y)[1], caches)
    assert rel_error(dx, numerical_gradient(loss_of, x.copy())) < 1e-7


def test_shortcut_mlp_rejects_bad_widths(rng):
    with pytest.raises(ValueError, match="n_in"):
        ShortcutMLP([Dense(2, 3, rng), Tanh(), Dense(3, 2, rng)])
    with pytest.raises(ValueError, match="alternate"):
        ShortcutMLP([Dense(2, 3, rng), Dense(5, 2, rng)])


def test_tf1_weight_init_statistics():
    """GlorotNormal6 of the TF1 spirals baseline: truncated N(0, 6/(c + n_out)), c = 1 + fan_in
    counting the bias (and shortcut inputs); biases random, not zero."""
    rng = np.random.default_rng(0)
    model = tf1_weight_init(mlp([300, 200, 2], "tanh", rng), rng, "glorot6")
    W_full = np.vstack([model.layers[0].params["b"][None], model.layers[0].params["W"].T])
    std = np.sqrt(6.0 / (301 + 200))
    assert np.abs(W_full).max() <= 2 * std
    assert abs(W_full.std() / (0.8796 * std) - 1) < 0.02      # sd of N(0,1) truncated at 2
    assert np.abs(model.layers[0].params["b"]).min() > 0
    he = tf1_weight_init(mlp([300, 200, 2], "relu", rng), rng, "he", truncated=False)
    assert abs(he.layers[0].params["W"].std() / np.sqrt(2.0 / 301) - 1) < 0.02


def test_truncated_normal(rng):
    z = truncated_normal((20000,), 0.5, rng)
    assert np.abs(z).max() <= 1.0 and abs(z.std() / (0.5 * 0.8796) - 1) < 0.02


# --------------------------------------------------------------------------- registry and input
def test_registry_build_makes_progress(rng):
    x = rng.standard_normal((80, 4))
    y = (x[:, 0] > 0).astype(np.int64)
    setup = get_method("target-space").build([4, 8, 2], "tanh", rng, x, y)
    state = setup.algorithm.init_state(setup.model, rng)
    first = None
    for _ in range(20):
        res = setup.algorithm.step(setup.model, state, x, y, rng)
        first = res.loss if first is None else first
        setup.optimizer.update(setup.algorithm.variables(setup.model, state), res.grads)
    assert res.loss < first


@pytest.mark.parametrize("kwargs,match", [
    ({"pseudoinverse_l2_regularisation": -0.1}, "pseudoinverse_l2_regularisation"),
    ({"realisation": "tcu"}, "realisation"),
    ({"projection": "both"}, "projection"),
    ({"realisation_batch_size": 0}, "realisation_batch_size"),
    ({"target_init_std": -1.0}, "target_init_std"),
    ({"realisation_selection": "last"}, "realisation_selection"),
])
def test_bad_hyperparameters(rng, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TargetSpace(rng.standard_normal((10, 3)), **kwargs)


def test_bad_realisation_batch(rng):
    model = mlp([3, 4, 5], "tanh", rng)
    with pytest.raises(ValueError, match="<= the number of examples"):
        TargetSpace(rng.standard_normal((10, 3)), realisation_batch_size=11).init_state(model, rng)
    with pytest.raises(ValueError, match="at least the number of output units"):
        TargetSpace(rng.standard_normal((10, 3)), realisation_batch_size=4).init_state(model, rng)
    with pytest.raises(ValueError, match=r"must have shape \(n_bar, 3\)"):
        TargetSpace(rng.standard_normal((10, 2))).init_state(model, rng)


def test_unsupported_layers(rng):
    model = mlp([3, 4, 2], "tanh", rng)
    model.layers[0] = Dense(3, 4, rng, bias=False)
    with pytest.raises(ValueError, match="no bias"):
        TargetSpace(rng.standard_normal((10, 3))).init_state(model, rng)


def test_design_matrix_rows_match_dense_layout(rng):
    """W_full = [b; W^T] reproduces Dense.forward: [1, x] W_full = x W^T + b."""
    layer = Dense(3, 2, rng)
    layer.params["b"][...] = [0.5, -1.0]
    x = rng.standard_normal((4, 3))
    W_full = np.vstack([layer.params["b"][None], layer.params["W"].T])
    assert rel_error(design_matrix(x) @ W_full, layer.forward(x)[0]) < 1e-15
    check_layer(layer, x, rng, tol=1e-7)


def test_no_warning_in_a_regular_step(rng):
    model, algo, state = _setup(rng)
    x, y = _batch(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        algo.step(model, state, x, y, rng)


def test_diagnostics_every(rng):
    model, algo, state = _setup(rng, diagnostics_every=3)
    x, y = _batch(rng)
    has = ["cosine_to_backprop" in algo.step(model, state, x, y, rng).info for _ in range(6)]
    assert has == [False, False, True, False, False, True]
    with pytest.raises(ValueError, match="diagnostics_every"):
        TargetSpace(x, diagnostics_every=0)


def test_state_survives_a_checkpoint(rng, tmp_path):
    """The state holds only arrays and scalars: save, load, and the next step is identical."""
    from refnets.checkpoint import load_checkpoint, save_checkpoint
    model, algo, state = _setup(rng)
    x, y = _batch(rng)
    algo.step(model, state, x, y, rng)
    save_checkpoint(tmp_path / "ts.npz", model, state)
    _, loaded = load_checkpoint(tmp_path / "ts.npz", model)
    a = algo.step(model, state, x, y, rng)
    b = algo.step(model, loaded, x, y, rng)
    for key in a.grads:
        np.testing.assert_array_equal(a.grads[key], b.grads[key])


def test_cosine_diagnostic_matches_explicit_jacobian(rng):
    """J = dW/dT by centred differences (every target entry): dL/dT = J^T dL/dW, and the
    reported cosine is cos(J dL/dT, dL/dW) (the weight change SGD on T implies)."""
    model, algo, state = _setup(rng, n_bar=8)
    x, y = _batch(rng)
    res = algo.step(model, state, x, y, rng)
    keys, T0 = list(state["targets"]), {k: v.copy() for k, v in state["targets"].items()}

    def weights(T):
        params, _ = algo.realise(model, state, T)
        return np.concatenate([np.concatenate([params[k]["W"].ravel(), params[k]["b"]])
                               for k in (0, 2, 4)])

    cols = []
    for key in keys:
        for i in range(T0[key].size):
            plus, minus = ({k: v.copy() for k, v in T0.items()} for _ in range(2))
            plus[key].flat[i] += 1e-5
            minus[key].flat[i] -= 1e-5
            cols.append((weights(plus) - weights(minus)) / 2e-5)
    J = np.array(cols).T
    _, grads, _ = backprop_gradients(model, x, y)
    g = np.concatenate([np.concatenate([grads[f"{k}.W"].ravel(), grads[f"{k}.b"]])
                        for k in (0, 2, 4)])
    dT = np.concatenate([res.grads[k].ravel() for k in keys])
    assert rel_error(J.T @ g, dT) < 1e-7
    Jd = J @ dT
    exact = float(Jd @ g / (np.linalg.norm(Jd) * np.linalg.norm(g)))
    assert abs(res.info["cosine_to_backprop"] - exact) < 1e-6
