"""Dense difference target propagation (Lee et al. 2015): equations DTP-1 to DTP-8 of the package README."""

import numpy as np
import pytest

from refnets.algorithms.target_propagation.algorithm import (
    LEE_HYPERPARAMETERS, Block, DifferenceTargetPropagation, apply_block, dense_blocks,
    difference_target, dtp_feedback_loss, local_loss, train_epoch_alternating)
from refnets.algorithms.base import backprop_gradients
from refnets.checkpoint import load_checkpoint, save_checkpoint
from refnets.gradcheck import numerical_gradient, rel_error
from refnets.layers.activations import Tanh
from refnets.layers.dense import Dense
from refnets.losses import mse, softmax_cross_entropy
from refnets.models import mlp
from refnets.optim import SGD, LeeRMSprop


def _net(sizes, rng, activation="tanh", **kw):
    model = mlp(sizes, activation, rng, init="orthogonal")
    algo = DifferenceTargetPropagation(**kw)
    return model, algo, algo.init_state(model, rng)


def _targets(algo, model, state, x, y):
    f = algo.blocks(model)
    h, caches = algo.forward(f, x)
    _, _, top, target, _ = algo.first_target_and_top_grads(f, h, caches, y)
    return f, h, algo.propagate_targets(f, state, h, top, target)


# --------------------------------------------------------------------------- hand-worked

def test_hand_worked_scalar_chain():
    """1-1-1-1 linear chain, MSE loss, linear inverse g_2(h) = 0.4 h + 0.1, B = 1.

    h1 = 2x = 2, h2 = 3 h1 = 6, out = 0.5 h2 = 3; L = (3 - 1)^2 = 4
    dL/dout = 2 (3 - 1) = 4, dL/dh2 = 4 * 0.5 = 2
    (DTP-3)  ĥ2 = 6 - 0.1 * 2 = 5.8
    (DTP-4)  ĥ1 = h1 + g(ĥ2) - g(h2) = 2 + 2.42 - 2.5 = 1.92;   plain TP: g(5.8) = 2.42
    (DTP-5)  layer 1: dW1 = 2 (2 - 1.92) * 1 = 0.16;  layer 2: dW2 = 2 (6 - 5.8) * 2 = 0.8
          layer 3 (true gradient): dW3 = 4 * 6 = 24, db3 = 4
    (DTP-2)  noise 0.5: h~ = 2.5, f2(h~) = 7.5, g = 3.1, loss = 0.6^2 = 0.36,
          dV = 2 * 0.6 * 7.5 = 9, dc = 1.2
    """
    rng = np.random.default_rng(0)
    model, algo, state = _net([1, 1, 1, 1], rng, activation="identity", loss=mse,
                              target_step=0.1, feedback_activation="identity")
    for k, w in ((0, 2.0), (2, 3.0), (4, 0.5)):
        model.layers[k].params["W"][...] = w
    state["feedback"]["2.V"][...] = 0.4
    state["feedback"]["2.c"][...] = 0.1
    x, y = np.array([[1.0]]), np.array([[1.0]])
    f, h, targets = _targets(algo, model, state, x, y)
    assert targets[2][0, 0] == pytest.approx(5.8, abs=1e-14)
    assert targets[1][0, 0] == pytest.approx(1.92, abs=1e-14)
    tp = DifferenceTargetPropagation(loss=mse, target_step=0.1, difference=False,
                                     feedback_activation="identity")
    assert _targets(tp, model, state, x, y)[2][1][0, 0] == pytest.approx(2.42, abs=1e-14)

    res = algo.step(model, state, x, y, rng)   # sigma > 0 changes g first: recompute by hand
    assert res.loss == pytest.approx(4.0)
    state["feedback"]["2.V"][...] = 0.4
    state["feedback"]["2.c"][...] = 0.1
    algo0 = DifferenceTargetPropagation(loss=mse, target_step=0.1, feedback_activation="identity",
                                        schedule="epoch")
    res = algo0.step(model, state, x, y, rng)  # 'epoch' schedule: no inverse update in step
    expected = {"0.W": 0.16, "0.b": 0.16, "2.W": 0.8, "2.b": 0.4, "4.W": 24.0, "4.b": 4.0}
    for key, value in expected.items():
        got = res.grads[key].ravel()[0]
        assert got == pytest.approx(value, abs=1e-13), key

    g2, g2_params = algo.feedback_map(state, 2)      # keyed by the model index of f_2's Dense
    loss, grads = dtp_feedback_loss(f[2], g2, h[1], np.array([[0.5]]), g2_params)
    assert loss == pytest.approx(0.36, abs=1e-14)
    assert grads["W"][0, 0] == pytest.approx(9.0, abs=1e-13)
    assert grads["b"][0] == pytest.approx(1.2, abs=1e-13)


# --------------------------------------------------------------------------- invariants

def test_fixed_point_difference_vs_plain(rng):
    """(DTP-7) ĥ_i = h_i gives ĥ_{i-1} = h_{i-1} for any g; plain TP moves it."""
    model, algo, state = _net([6, 5, 4, 3, 2], rng)
    x = rng.standard_normal((7, 6))
    f = algo.blocks(model)
    h, _ = algo.forward(f, x)
    targets = algo.propagate_targets(f, state, h, 3, h[3].copy())
    for i in (1, 2):
        np.testing.assert_allclose(targets[i], h[i], rtol=0, atol=1e-15)
    tp = DifferenceTargetPropagation(difference=False)
    moved = tp.propagate_targets(f, state, h, 3, h[3].copy())
    assert np.max(np.abs(moved[2] - h[2])) > 0.1


def test_perfect_inverse_difference_equals_plain_target(rng):
    """(DTP-7) g = f^-1 of an invertible tanh layer makes DTP's target g(ĥ)."""
    f = Block(0, Dense(4, 4, rng, init="orthogonal"), Tanh())
    W, b = f.dense.params["W"], f.dense.params["b"]
    b[...] = 0.1 * rng.standard_normal(4)

    def g_exact(h):
        return np.linalg.solve(W, (np.arctanh(h) - b).T).T

    h_prev = 0.5 * rng.standard_normal((5, 4))
    h = apply_block(f, h_prev)[0]
    h_hat = h - 0.05 * rng.standard_normal(h.shape)
    dtp = difference_target(g_exact, h_prev, h, h_hat)
    plain = difference_target(g_exact, h_prev, h, h_hat, difference=False)
    np.testing.assert_allclose(dtp, plain, rtol=0, atol=1e-13)


def test_offset_invariance_and_first_order_jacobian(rng):
    """(DTP-7) linear g -> independent of c; tanh g -> ĥ_{i-1} - h_{i-1} = J_g Δ + O(Δ²)."""
    model, algo, state = _net([5, 6, 6, 3], rng, feedback_activation="identity")
    x = rng.standard_normal((4, 5))
    f = algo.blocks(model)
    h, _ = algo.forward(f, x)
    target = h[2] + 0.1 * rng.standard_normal(h[2].shape)
    t0 = algo.propagate_targets(f, state, h, 2, target)[1]
    state["feedback"]["2.c"][...] = 5.0 * rng.standard_normal(6)
    np.testing.assert_allclose(algo.propagate_targets(f, state, h, 2, target)[1], t0,
                               rtol=0, atol=1e-13)

    model, algo, state = _net([5, 6, 6, 3], rng)            # tanh inverse
    state["feedback"]["2.c"][...] = 0.3 * rng.standard_normal(6)
    h, _ = algo.forward(algo.blocks(model), x)
    V, c = state["feedback"]["2.V"], state["feedback"]["2.c"]
    jac_g = 1.0 - np.tanh(h[2] @ V.T + c) ** 2                  # diag(t'(V h + c)) per example
    d = rng.standard_normal(h[2].shape)
    residuals = []
    for s in (1e-2, 5e-3):
        shift = algo.propagate_targets(algo.blocks(model), state, h, 2, h[2] + s * d)[1] - h[1]
        residuals.append(np.max(np.abs(shift - jac_g * ((s * d) @ V.T))))
    assert residuals[0] / residuals[1] == pytest.approx(4.0, rel=0.05)   # second-order remainder


def test_penultimate_and_top_layers_are_scaled_backprop(rng):
    """(DTP-6) (DTP-3) + (DTP-5) give 2η̂ x backprop for W_{L-1}; W_L gets backprop itself."""
    model, algo, state = _net([6, 5, 5, 4], rng, target_step=0.01, schedule="epoch")
    x, y = rng.standard_normal((8, 6)), rng.integers(0, 4, 8)
    res = algo.step(model, state, x, y, rng)
    _, bp, _ = backprop_gradients(model, x, y)
    for key in ("2.W", "2.b"):
        assert rel_error(res.grads[key], 2 * 0.01 * bp[key]) < 1e-13
    for key in ("4.W", "4.b"):
        assert rel_error(res.grads[key], bp[key]) < 1e-14
    assert res.info["cosine_per_layer"][1:] == pytest.approx([1.0, 1.0], abs=1e-12)
    assert res.info["cosine_per_layer"][0] < 0.999          # layer 1 depends on the inverse

    out = DifferenceTargetPropagation(first_target="output_grad", target_step=0.01,
                                      schedule="epoch")
    st = out.init_state(model, rng)
    res = out.step(model, st, x, y, rng)
    for key in ("4.W", "4.b"):                               # output layer: 2η̂ x backprop
        assert rel_error(res.grads[key], 2 * 0.01 * bp[key]) < 1e-13


def test_gauss_newton_targets_with_exact_linear_inverses(rng):
    """(DTP-8) invertible linear chain + exact inverses: ĥ_i - h_i = -η̂ J_i^-1 e."""
    model, algo, state = _net([3, 3, 3, 3], rng, activation="identity", loss=mse,
                              first_target="output_grad", target_step=0.05,
                              feedback_activation="identity", schedule="epoch")
    for layer in model.layers[::2]:            # generic (non-orthogonal) invertible weights
        layer.params["W"][...] += 0.5 * rng.standard_normal((3, 3))
        layer.params["b"][...] = rng.standard_normal(3)
    f = algo.blocks(model)
    for i in (2, 3):                                            # g_i = f_i^-1
        W, b = f[i].dense.params["W"], f[i].dense.params["b"]
        state["feedback"][f"{f[i].k}.V"][...] = np.linalg.inv(W)
        state["feedback"][f"{f[i].k}.c"][...] = -np.linalg.solve(W, b)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    _, h, targets = _targets(algo, model, state, x, y)
    e = 2.0 * (h[3] - y)                                        # ∂ℓ_n/∂h_L of the summed loss
    J = np.eye(3)
    for i in (2, 1):
        J = J @ f[i + 1].dense.params["W"]                       # J_i = W_L ... W_{i+1}
        expected = -0.05 * np.linalg.solve(J, e.T).T
        np.testing.assert_allclose(targets[i] - h[i], expected, rtol=1e-12, atol=1e-14)
    res = algo.step(model, state, x, y, rng)
    assert res.info["cosine_per_layer"][0] < 0.99       # a GN step is not the gradient direction


def test_targets_do_not_depend_on_batch_size_or_loss_reduction(rng):
    """(DTP-3) η̂ is per example: a sum-reduced loss with η̂/B gives the same targets."""
    model, algo, state = _net([6, 5, 5, 4], rng, target_step=0.02)
    x, y = rng.standard_normal((8, 6)), rng.integers(0, 4, 8)
    t_full = _targets(algo, model, state, x, y)[2]
    t_half = _targets(algo, model, state, x[:4], y[:4])[2]
    for i in (1, 2):
        np.testing.assert_allclose(t_half[i], t_full[i][:4], rtol=0, atol=1e-15)

    def summed_ce(logits, labels):
        loss, d = softmax_cross_entropy(logits, labels)
        return loss * len(labels), d * len(labels)

    algo_sum = DifferenceTargetPropagation(loss=summed_ce, target_step=0.02 / 8)
    t_sum = _targets(algo_sum, model, state, x, y)[2]
    for i in (1, 2):
        np.testing.assert_allclose(t_sum[i], t_full[i], rtol=1e-13, atol=1e-15)


def test_inverse_training_reduces_reconstruction_error(rng):
    """(DTP-2) trains the inverses: f frozen; the inverse loss falls > 2x; smaller σ, smaller final error."""
    finals = {}
    for sigma in (0.3, 0.03):
        r = np.random.default_rng(5)
        model, algo, state = _net([8, 10, 10, 3], r, sigma=sigma, feedback_optimizer="sgd",
                                  feedback_lr=0.2)
        frozen = model.copy_params()
        x = r.standard_normal((64, 8))
        losses = np.array([algo.train_feedback(model, state, x, r)[0] for _ in range(1000)])
        assert losses[:50].mean() > 2 * losses[-50:].mean()
        f = algo.blocks(model)
        finals[sigma] = algo.reconstruction_errors(f, state, algo.forward(f, x)[0])[0]
        for k, v in model.params().items():
            np.testing.assert_array_equal(v, frozen[k])           # forward weights untouched
    assert finals[0.03] < 0.9 * finals[0.3]   # measured 0.072 vs 0.091


def test_local_loss_gradients_match_finite_differences(rng):
    """(DTP-5), (DTP-2) and their VJP (DTP-2a) against finite differences (also in `refnets gradcheck`)."""
    f = Block(0, Dense(5, 3, rng), Tanh())
    g = Block(None, Dense(3, 5, rng), Tanh())
    h_prev, target = rng.standard_normal((4, 5)), 0.5 * rng.standard_normal((4, 3))
    noise = 0.2 * rng.standard_normal((4, 5))
    for fn, block in ((lambda p: local_loss(f, h_prev, target, p), f),
                      (lambda p: dtp_feedback_loss(f, g, h_prev, noise, p), g)):
        params = {k: v.copy() for k, v in block.dense.params.items()}
        _, grads = fn(params)
        for key in params:
            num = numerical_gradient(lambda v, key=key: fn({**params, key: v})[0], params[key].copy())
            assert rel_error(grads[key], num) < 1e-7


# --------------------------------------------------------------------------- plumbing

def test_plumbing_shapes_and_locality(rng):
    """(DTP-1) g_i maps n_i -> n_{i-1}, none into the input; local losses stay local."""
    model, algo, state = _net([7, 6, 5, 4, 3], rng)
    assert sorted(state["feedback"]) == ["2.V", "2.c", "4.V", "4.c"]    # keyed by model index
    assert algo.block_to_layer(model) == {1: 0, 2: 2, 3: 4, 4: 6}
    assert state["feedback"]["2.V"].shape == (6, 5) and state["feedback"]["4.V"].shape == (5, 4)
    x, y = rng.standard_normal((5, 7)), rng.integers(0, 3, 5)
    f, h, targets = _targets(algo, model, state, x, y)
    # block 1's gradient is a function of (x, ĥ_1) only: perturbing W_3 after the targets
    # were formed does not change it
    g1 = local_loss(f[1], h[0], targets[1])[1]
    model.layers[4].params["W"] += 1.0
    np.testing.assert_array_equal(local_loss(f[1], h[0], targets[1])[1]["W"], g1["W"])
    assert set(DifferenceTargetPropagation(first_target="output_grad").init_state(
        model, rng)["feedback"]) == {"2.V", "2.c", "4.V", "4.c", "6.V", "6.c"}


def test_bad_arguments_raise_value_error(rng):
    with pytest.raises(ValueError, match="target_step"):
        DifferenceTargetPropagation(target_step=0)
    with pytest.raises(ValueError, match="sigma"):
        DifferenceTargetPropagation(sigma=-1)
    with pytest.raises(ValueError, match="first_target"):
        DifferenceTargetPropagation(first_target="top")
    with pytest.raises(ValueError, match="schedule"):
        DifferenceTargetPropagation(schedule="sometimes")
    with pytest.raises(ValueError, match="feedback_iterations"):
        DifferenceTargetPropagation(feedback_iterations=0)
    with pytest.raises(ValueError, match="feedback_optimizer"):
        DifferenceTargetPropagation(feedback_optimizer="adagrad")
    with pytest.raises(ValueError, match="feedback_init"):
        DifferenceTargetPropagation(feedback_init="uniformish")
    with pytest.raises(ValueError, match="feedback_activation"):
        DifferenceTargetPropagation(feedback_activation="softsign")
    with pytest.raises(ValueError, match="at least one hidden layer"):
        dense_blocks(mlp([3, 2], "tanh", rng))
    with pytest.raises(ValueError, match="logits"):
        dense_blocks(mlp([3, 4, 2], "tanh", rng, output_activation="tanh"))
    model, algo, state = _net([3, 4, 4, 2], rng)
    with pytest.raises(ValueError, match="x must have shape"):
        algo.step(model, state, rng.standard_normal((2, 5)), np.array([0, 1]), rng)


def test_divergence_names_the_step(rng):
    model, algo, state = _net([3, 4, 4, 2], rng)
    model.layers[2].params["W"][0, 0] = np.nan
    with pytest.raises(FloatingPointError, match="step 0"):
        algo.step(model, state, rng.standard_normal((2, 3)), np.array([0, 1]), rng)


def test_seeded_runs_are_bit_identical_and_state_checkpoints(tmp_path):
    def run():
        r = np.random.default_rng(3)
        model, algo, state = _net([6, 5, 5, 3], r)
        opt = LeeRMSprop(lr=0.01)
        for _ in range(3):
            res = algo.step(model, state, r.standard_normal((4, 6)), r.integers(0, 3, 4), r)
            opt.update(algo.variables(model, state), res.grads)
        return model, state
    (m1, s1), (m2, s2) = run(), run()
    for k, v in m1.params().items():
        np.testing.assert_array_equal(v, m2.params()[k])
    np.testing.assert_array_equal(s1["feedback"]["2.V"], s2["feedback"]["2.V"])
    save_checkpoint(tmp_path / "dtp.npz", m1, s1)
    _, loaded = load_checkpoint(tmp_path / "dtp.npz")
    np.testing.assert_array_equal(loaded["feedback"]["2.V"], s1["feedback"]["2.V"])
    assert loaded["feedback_optimizer"]["t"] == 3


def test_epoch_schedule_alternates_sweeps(rng):
    """Lee's schedule: the inverse sweep leaves f alone; the forward sweep leaves g alone."""
    model, algo, state = _net([6, 5, 5, 3], rng, schedule="epoch")
    x, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    w0, v0 = model.copy_params(), state["feedback"]["2.V"].copy()
    algo.train_feedback(model, state, x[:10], rng)
    assert not np.array_equal(state["feedback"]["2.V"], v0)
    for k, v in model.params().items():
        np.testing.assert_array_equal(v, w0[k])
    v1 = state["feedback"]["2.V"].copy()
    res = algo.step(model, state, x[:10], y[:10], rng)
    np.testing.assert_array_equal(state["feedback"]["2.V"], v1)
    assert res.info["feedback_loss"].shape == (1,)
    out = train_epoch_alternating(model, algo, state, SGD(lr=0.1), x, y, 10, rng)
    assert np.isfinite(out["loss"]) and out["feedback_loss"].shape == (1,)
    with pytest.raises(ValueError, match="schedule='epoch'"):
        train_epoch_alternating(model, DifferenceTargetPropagation(), state, SGD(lr=0.1), x, y, 10, rng)


def test_label_first_target_sdtp(rng):
    """SDTP: ĥ_L = one-hot label in probability space; g_L maps probabilities to h_{L-1}."""
    model, algo, state = _net([6, 5, 5, 3], rng, first_target="label")
    assert state["feedback"]["4.V"].shape == (5, 3)
    x, y = rng.standard_normal((4, 6)), np.array([0, 1, 2, 1])
    f, h, targets = _targets(algo, model, state, x, y)
    np.testing.assert_allclose(h[3].sum(axis=1), 1.0)                 # probabilities
    np.testing.assert_array_equal(targets[3], np.eye(3)[y])
    res = algo.step(model, state, x, y, rng)
    _, bp, _ = backprop_gradients(model, x, y)
    assert rel_error(res.grads["4.W"], bp["4.W"]) < 1e-14             # output layer: CE gradient


def test_lee_hyperparameters_convert_lr0_to_per_example():
    assert LEE_HYPERPARAMETERS["target_step"] == pytest.approx(0.327736332653 / 100)


def test_registered_build_learns_fashion_mnist_subset():
    from refnets.algorithms import get_method
    from refnets.datasets import load_fashion_mnist_small
    from refnets.training import train
    data = load_fashion_mnist_small(n_train=1000, n_test=500, rng=np.random.default_rng(0))
    rng = np.random.default_rng(0)
    setup = get_method("dtp").build([784, 64, 64, 10], "tanh", rng)
    hist = train(setup.model, setup.algorithm, setup.optimizer, (data.x_train, data.y_train), 2,
                 50, rng, eval_data=(data.x_test, data.y_test), progress=False)
    assert hist.test_acc[-1] > 0.6                          # chance is 0.1
    cos = hist.info["cosine_to_backprop_propagated"]       # inverses improve: alignment rises
    assert cos[-1] > max(cos[0], 0.2)                       # measured 0.15 -> 0.36


@pytest.mark.slow
def test_synthetic_teacher_dtp_matches_backprop_plain_tp_fails():
    """100-d inputs, labels from a random tanh teacher; 4x64 tanh student, 20k/5k samples,
    15 epochs, Lee's hyperparameters and optimiser: DTP within 5 points of backprop, plain
    TP (DTP-4a) at chance.

    Measured (seed 0): test error BP 44.9%, DTP 43.7%, plain TP 90.6% (chance 90%).
    """
    from refnets.algorithms.backprop import Backprop
    from refnets.training import train
    rng = np.random.default_rng(0)
    teacher = mlp([100, 64, 64, 10], "tanh", rng, init="orthogonal")
    for layer in teacher.layers[::2]:
        layer.params["W"] *= 1.5                                     # a non-trivial teacher
    x = rng.standard_normal((25000, 100))
    y = np.argmax(teacher.predict(x), axis=1)
    data, test = (x[:20000], y[:20000]), (x[20000:], y[20000:])
    hp = LEE_HYPERPARAMETERS
    errors = {}
    for name in ("bp", "dtp", "tp"):
        r = np.random.default_rng(1)
        model = mlp([100, 64, 64, 64, 64, 10], "tanh", r, init="orthogonal")
        if name == "bp":
            algo, opt = Backprop(), LeeRMSprop(lr=hp["backprop_lr"])
        else:
            algo = DifferenceTargetPropagation(target_step=hp["target_step"], sigma=hp["sigma"],
                                               feedback_lr=hp["feedback_lr"],
                                               difference=name == "dtp", compare_to_backprop=False)
            opt = LeeRMSprop(lr=hp["forward_lr"])
        hist = train(model, algo, opt, data, 15, 100, r, eval_data=test, progress=False)
        errors[name] = 1.0 - hist.test_acc[-1]
    assert abs(errors["dtp"] - errors["bp"]) < 0.05, errors
    assert errors["tp"] > errors["bp"] + 0.3, errors
