"""HSICBottleneck: hand-worked step, block gradients, locality, official-loop equivalence."""

import numpy as np
import pytest

from refnets.algorithms import get_method
from refnets.algorithms.hsic.algorithm import HSICBottleneck
from refnets.algorithms.hsic.models import (backward_layers, forward_layers, hsic_mlp,
                                            split_blocks)
from refnets.gradcheck import assert_close, numerical_gradient
from refnets.layers import Dense, Identity
from refnets.models import Sequential
from refnets.optim import SGD
from refnets.validation import DivergenceError


def tiny_problem(rng, sizes=(6, 5, 4, 3), m=12):
    model = hsic_mlp(list(sizes), rng)
    x = rng.standard_normal((m, sizes[0]))
    y = np.arange(m) % sizes[-1]
    return model, x, y


# ----------------------------------------------------------------------------
# the hand-worked example
# ----------------------------------------------------------------------------
def test_hand_worked_step():
    """m = 2, one block z = w x (no BN), x = [0, 1], classes [0, 1], sigma = 1, eps = 1/4.

    Every kernel has a single off-diagonal value k: X (d = 1, s = 2):
    exp(-1/2); Y (one-hot, d = 2, distance^2 2, s = 4): exp(-1/2); Z with w = 1
    (d = 1, s = 2): exp(-1/2). For m = 2, K H = (1 - k) H and H has
    eigenvalues {0, 1}, so R = r(k) H with r(k) = (1-k) / ((1-k) + 2 eps),
    tr(H H) = 1 and

        nHSIC(Z, X) = nHSIC(Z, Y) = r^2,   J = r^2 - beta r^2 = -r^2 (beta = 2)
        dJ/dw = r'(k_Z) dk_Z/dw (r_X - beta r_Y)
              = [-2 eps / ((1-k) + 2 eps)^2] [-(2 w / s) k] [-r]
              = -0.5 k r / ((1-k) + 0.5)^2   (w = 1, s = 2, eps = 1/4)

    With k = 0.60653066: r = 0.39346934 / 0.89346934 = 0.44038371,
    dJ/dw = -0.5 * 0.60653066 * 0.44038371 / 0.79828746 = -0.16730; one SGD step
    (lr 0.1, no decay): w = 1 + 0.016730.
    """
    rng = np.random.default_rng(0)
    dense = Dense(1, 1, rng, bias=False)
    dense.params["W"][...] = 1.0
    model = Sequential([dense, Identity()])
    algo = HSICBottleneck(n_classes=2, sigma=1.0, beta=2.0, eps=0.25,
                          optimizer=SGD(0.1))
    state = algo.init_state(model, rng)
    res = algo.step(model, state, np.array([[0.0], [1.0]]), np.array([0, 1]), rng)
    k = np.exp(-0.5)
    r = (1 - k) / ((1 - k) + 0.5)
    assert r == pytest.approx(0.44038371, rel=1e-7)
    dJdw = -0.5 * k * r / ((1 - k) + 0.5) ** 2
    assert dJdw == pytest.approx(-0.16730, abs=1e-5)
    assert res.info["nhsic_x"][0] == pytest.approx(r * r, rel=1e-12)
    assert res.info["nhsic_y"][0] == pytest.approx(r * r, rel=1e-12)
    assert res.loss == pytest.approx(-r * r, rel=1e-12)
    assert dense.params["W"][0, 0] == pytest.approx(1.0 - 0.1 * dJdw, rel=1e-12)
    assert res.grads == {} and algo.variables(model, state) == {}


# ----------------------------------------------------------------------------
# block gradients (finite differences) and locality
# ----------------------------------------------------------------------------
def block_J(algo, model, x, y, b):
    """J_b evaluated from scratch with the model's current parameters."""
    blocks = split_blocks(model)
    RX, RY = algo._nocco_of(x), algo._nocco_of(np.eye(algo.n_classes)[y])
    h = x
    for lo, hi in blocks[:b + 1]:
        h, _ = forward_layers(model, lo, hi, h)
    return algo.block_objective(h, RX, RY)[0]


def away_from_kinks(model, x, margin=1e-3):
    """Smallest |pre-ReLU value| over all blocks (finite differences need > h)."""
    h, worst = x, np.inf
    for k, layer in enumerate(model.layers):
        if type(layer).__name__ == "ReLU":
            worst = min(worst, float(np.abs(h).min()))
        h, _ = layer.forward(h)
    return worst > margin


@pytest.mark.parametrize("affine", [False, True])
def test_parallel_grads_are_exact_block_gradients(affine):
    """grads of block b = dJ_b/dtheta_b (Dense + BatchNorm + ReLU), for every block.

    eps = 1e-2 keeps the NOCCO solve well conditioned so the refnets bound 1e-7
    applies (see tests/algorithms/hsic/test_kernels.py for the default eps).
    """
    rng = np.random.default_rng(5)
    model = hsic_mlp([6, 5, 4, 3], rng, affine=affine)
    x, y = rng.standard_normal((12, 6)), np.arange(12) % 3
    assert away_from_kinks(model, x)
    algo = HSICBottleneck(n_classes=3, sigma=1.0, beta=3.0, eps=1e-2, parallel=True)
    state = algo.init_state(model, rng)
    before = model.copy_params()
    res = algo.step(model, state, x, y, rng)
    for key, value in model.params().items():           # parallel: nothing applied yet
        np.testing.assert_array_equal(value, before[key])
    assert set(res.grads) == set(model.params())
    for b, (lo, hi) in enumerate(split_blocks(model)):
        for key in [key for key in res.grads if lo <= int(key.split(".")[0]) < hi]:
            p = model.params()[key]
            num = numerical_gradient(lambda v: block_J(algo, model, x, y, b), p)
            assert_close(res.grads[key], num, f"dJ_{b}/d{key}", tol=1e-7)


def test_block_gradient_ignores_later_blocks(rng):
    """Locality: block 0's gradient does not depend on later blocks' weights."""
    model, x, y = tiny_problem(rng)
    algo = HSICBottleneck(n_classes=3, sigma=2.0, beta=10.0, parallel=True)
    g1 = algo.step(model, algo.init_state(model, rng), x, y, rng).grads
    for key, value in model.params().items():
        if not key.startswith("0."):
            value += rng.standard_normal(value.shape)
    g2 = algo.step(model, algo.init_state(model, rng), x, y, rng).grads
    np.testing.assert_array_equal(g1["0.W"], g2["0.W"])
    assert not np.allclose(g1["3.W"], g2["3.W"])


def test_sequential_equals_official_loop(rng):
    """HSIC-9: the O(L) loop = the authors' loop (full forward per layer, SGD + decay)."""
    model, x, y = tiny_problem(rng)
    ref = hsic_mlp([6, 5, 4, 3], np.random.default_rng(99))
    ref_params = ref.params()
    for key, value in model.params().items():
        ref_params[key][...] = value
    lr, wd = 0.05, 1e-3
    algo = HSICBottleneck(n_classes=3, sigma=2.0, beta=10.0, lr=lr, weight_decay=wd)
    algo.step(model, algo.init_state(model, rng), x, y, rng)

    # reference: for each block i, a full forward from x, J_i's gradient, plain SGD + decay
    ref_algo = HSICBottleneck(n_classes=3, sigma=2.0, beta=10.0)
    RX, RY = ref_algo._nocco_of(x), ref_algo._nocco_of(np.eye(3)[y])
    blocks = split_blocks(ref)
    for lo, hi in blocks:
        h = x
        for a, c in blocks:                 # the whole net, as the authors' model(data)
            out, caches = forward_layers(ref, a, c, h)
            if (a, c) == (lo, hi):
                z, zc = out, caches
            h = out
        _, _, _, dz = ref_algo.block_objective(z, RX, RY)
        _, grads = backward_layers(ref, lo, hi, dz, zc)
        for key, g in grads.items():
            ref_params[key] -= lr * (g + wd * ref_params[key])
    for key, value in model.params().items():
        np.testing.assert_allclose(value, ref_params[key], rtol=1e-12, atol=1e-15)


def test_sequential_first_block_is_plain_sgd_with_decay(rng):
    """HSIC-9: theta <- theta - lr (g + wd theta), momentum inert."""
    model, x, y = tiny_problem(rng)
    g = HSICBottleneck(n_classes=3, sigma=2.0, beta=10.0, parallel=True).step(
        model, {"blocks": split_blocks(model), "running_stats": {}, "class_means": None,
                "class_seen": np.zeros(3, bool), "steps": 0}, x, y, rng).grads["0.W"]
    W0 = model.params()["0.W"].copy()
    algo = HSICBottleneck(n_classes=3, sigma=2.0, beta=10.0, lr=0.01, weight_decay=1e-3)
    algo.step(model, algo.init_state(model, rng), x, y, rng)
    np.testing.assert_allclose(model.params()["0.W"], W0 - 0.01 * (g + 1e-3 * W0), rtol=1e-13)


def test_running_stats_live_in_state(rng):
    model, x, y = tiny_problem(rng)
    algo = HSICBottleneck(n_classes=3, sigma=2.0, beta=10.0, lr=0.01)
    state = algo.init_state(model, rng)
    assert sorted(state["running_stats"]) == [1, 4, 7]
    algo.step(model, state, x, y, rng)
    # after the step: 0.1 * the batch mean of the *updated* first Dense's output
    a = x @ model.layers[0].params["W"].T
    np.testing.assert_allclose(state["running_stats"][1]["mean"], 0.1 * a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(state["running_stats"][1]["var"],
                               0.9 + 0.1 * a.var(0, ddof=1), rtol=1e-12)
    assert all(layer.params == {} for layer in model.layers if type(layer).__name__ == "BatchNorm")


# ----------------------------------------------------------------------------
# prediction, registry, reproducibility, errors
# ----------------------------------------------------------------------------
def test_unit_mapping_and_predict(rng):
    model, x, y = tiny_problem(rng)
    algo = HSICBottleneck(n_classes=3)
    state = algo.init_state(model, rng)
    np.testing.assert_array_equal(algo.unit_mapping(state), [0, 1, 2])   # before training
    state["class_means"] = np.array([[0.1, 0.2, 0.9], [0.8, 0.1, 0.0], [0.0, 0.7, 0.1]])
    np.testing.assert_array_equal(algo.unit_mapping(state), [2, 0, 1])
    out = algo.features(model, state, x)
    np.testing.assert_array_equal(algo.predict(model, state, x), out[:, [2, 0, 1]])
    assert algo.predict(model, state, x[:1]).shape == (1, 3)         # running stats: any N
    with pytest.raises(ValueError, match="bn"):
        algo.features(model, state, x, bn="train")


def test_class_means_track_training_outputs(rng):
    model, x, y = tiny_problem(rng)
    algo = HSICBottleneck(n_classes=3, lr=0.01, mapping_momentum=0.5)
    state = algo.init_state(model, rng)
    algo.step(model, state, x, y, rng)
    out1 = forward_layers(model, 0, len(model.layers), x)[0]
    means1 = np.stack([out1[y == c].mean(0) for c in range(3)])
    np.testing.assert_allclose(state["class_means"], means1, rtol=1e-12)   # first batch: set
    algo.step(model, state, x, y, rng)
    out2 = forward_layers(model, 0, len(model.layers), x)[0]
    means2 = np.stack([out2[y == c].mean(0) for c in range(3)])
    np.testing.assert_allclose(state["class_means"], 0.5 * means1 + 0.5 * means2, rtol=1e-12)


def test_registered_build_predicts_class_scores(rng):
    setup = get_method("hsic").build([20, 8, 4], "tanh", rng)
    x, y = rng.standard_normal((16, 20)), np.arange(16) % 4
    state = setup.algorithm.init_state(setup.model, rng)
    res = setup.algorithm.step(setup.model, state, x, y, rng)
    setup.optimizer.update(setup.algorithm.variables(setup.model, state), res.grads)
    assert setup.algorithm.predict(setup.model, state, x).shape == (16, 4)
    assert res.info["nhsic_x"].shape == (2,)


def test_same_seed_is_bit_identical():
    def run():
        rng = np.random.default_rng(3)
        model, x, y = tiny_problem(rng)
        algo = HSICBottleneck(n_classes=3, lr=0.05)
        state = algo.init_state(model, rng)
        for _ in range(3):
            algo.step(model, state, x, y, rng)
        return model.copy_params()
    a, b = run(), run()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_bad_input(rng):
    model, x, y = tiny_problem(rng)
    with pytest.raises(ValueError, match="n_classes"):
        HSICBottleneck(n_classes=1)
    with pytest.raises(ValueError, match="sigma"):
        HSICBottleneck(n_classes=3, sigma=0.0)
    with pytest.raises(ValueError, match="beta"):
        HSICBottleneck(n_classes=3, beta=-1.0)
    algo = HSICBottleneck(n_classes=3)
    state = algo.init_state(model, rng)
    with pytest.raises(ValueError, match="at least 2 samples"):
        algo.step(model, state, x[:1], y[:1], rng)
    with pytest.raises(ValueError, match=r"shape \(12,\)"):
        algo.step(model, state, x, y[:5], rng)
    with pytest.raises(ValueError, match="end with a nonlinearity"):
        algo.init_state(Sequential([Dense(3, 2, rng)]), rng)


def test_divergence_names_the_step(rng):
    """A non-finite weight (a diverged run) is a DivergenceError naming step and block."""
    model, x, y = tiny_problem(rng)
    algo = HSICBottleneck(n_classes=3)
    state = algo.init_state(model, rng)
    algo.step(model, state, x, y, rng)
    model.params()["3.W"][0, 0] = np.nan
    with pytest.raises(DivergenceError, match=r"step 2 \(block 1, layer 5\)"):
        algo.step(model, state, x, y, rng)


def test_non_finite_data_is_bad_input_not_divergence(rng):
    model, x, y = tiny_problem(rng)
    algo = HSICBottleneck(n_classes=3)
    state = algo.init_state(model, rng)
    x[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"HSICBottleneck.step: x contains a non-finite value "
                                         r"\(inf\) at index \(2, 1\)"):
        algo.step(model, state, x, y, rng)
    assert state["steps"] == 0


def test_nhsic_plane_moves_on_fashion_mnist():
    """Smoke test: w64, 2 middle blocks, one pass over the embedded subset, m = 256.

    Train-fitted accuracy >= 65% (measured 0.76), nHSIC(Y, Z_L) rising, nHSIC(X, Z_L)
    < 10 (the label term wins, the input term stays small).
    """
    from refnets.datasets import load_fashion_mnist_small
    data = load_fashion_mnist_small()
    rng = np.random.default_rng(0)
    model = hsic_mlp([784, 64, 64, 64, 10], rng)
    algo = HSICBottleneck(n_classes=10, sigma=6.0, beta=1000.0, lr=1e-3)
    state = algo.init_state(model, rng)
    ny = []
    for start in range(0, 4864, 256):
        res = algo.step(model, state, data.x_train[start:start + 256],
                        data.y_train[start:start + 256], rng)
        ny.append(res.info["nhsic_y"][-1])
    assert np.mean(ny[-5:]) > np.mean(ny[:3]) + 0.5
    assert res.info["nhsic_x"][-1] < 10
    pred = algo.predict(model, state, data.x_test)
    acc = np.mean(np.argmax(pred, axis=1) == data.y_test)
    assert acc >= 0.65, acc


@pytest.mark.parametrize("seed", [0, 1])
def test_conv_block_gradients_relu(seed):
    """HSIC-8 for the ResConv net with the authors' ReLU (inputs checked away from kinks)."""
    from refnets.algorithms.hsic.checks import _block_check
    from refnets.algorithms.hsic.models import hsic_resconv
    rng = np.random.default_rng(seed)
    model = hsic_resconv((1, 5, 5), rng, channels=2, n_blocks=1, width=3, kernel_size=3)
    x, y = rng.standard_normal((6, 1, 5, 5)), np.arange(6) % 3
    h, smallest = x, np.inf
    for layer in model.layers:      # every pre-ReLU value, incl. inside the residual block
        if type(layer).__name__ == "Residual":
            u = h
            for inner in layer.branch:
                if type(inner).__name__ == "ReLU":
                    smallest = min(smallest, np.abs(u).min())
                u, _ = inner.forward(u)
            smallest = min(smallest, np.abs(u + h).min())
        elif type(layer).__name__ == "ReLU":
            smallest = min(smallest, np.abs(h).min())
        h, _ = layer.forward(h)
    assert smallest > 1e-3     # 4x-scaled weights leave BN outputs unchanged
    assert _block_check(model, x, y, 3, rng) < 1e-7


def test_centroid_readout_hand_example(rng):
    """scores_c = -||out - mu_c||^2 with mu_0 = (0, 0, 0), mu_1 = (1, 1, 0), mu_2 = (2, 0, 0)
    and out = (1, 0.2, 0): squared distances 1 + 0.04, 0 + 0.64, 1 + 0.04
    -> scores (-1.04, -0.64, -1.04), class 1."""
    model, x, y = tiny_problem(rng)
    algo = HSICBottleneck(n_classes=3, readout="centroid")
    state = algo.init_state(model, rng)
    with pytest.raises(ValueError, match="at least one"):
        algo.predict(model, state, x)
    state["class_means"] = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    algo.features = lambda model, state, x, bn="running": np.array([[1.0, 0.2, 0.0]])
    np.testing.assert_allclose(algo.predict(model, state, x), [[-1.04, -0.64, -1.04]], rtol=1e-14)
    with pytest.raises(ValueError, match="readout"):
        HSICBottleneck(n_classes=3, readout="argmax")


def test_calibrate_batchnorm_gives_population_statistics(rng):
    model, x, y = tiny_problem(rng, m=40)
    algo = HSICBottleneck(n_classes=3)
    state = algo.init_state(model, rng)
    algo.calibrate_batchnorm(model, state, x, batch_size=20)
    # first BN: cumulative average of the two batch means = the mean of all 40 samples,
    # and of the two unbiased batch variances
    a = x @ model.layers[0].params["W"].T
    np.testing.assert_allclose(state["running_stats"][1]["mean"], a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(state["running_stats"][1]["var"],
                               0.5 * (a[:20].var(0, ddof=1) + a[20:].var(0, ddof=1)), rtol=1e-12)
    # one full batch: eval-mode features = training-mode features on that batch
    algo.calibrate_batchnorm(model, state, x, batch_size=40)
    bn_eval = algo.features(model, state, x)
    bn_batch = algo.features(model, state, x, bn="batch")
    # differ only by the unbiased (n/(n-1)) running variance vs the biased batch variance
    assert np.abs(bn_eval - bn_batch).max() < 0.05 * np.abs(bn_batch).max()


@pytest.mark.slow
def test_resconv_learns_on_fashion_mnist():
    """Conv blocks (Conv+BN+ReLU, one residual block, dense output) trained by HSIC alone.

    One pass of 20 batches (m = 256) over the embedded subset; measured 0.38
    train-fitted test accuracy (chance 0.10), ~20-40 s on a 2-core machine.
    """
    from refnets.algorithms.hsic.models import hsic_resconv
    from refnets.datasets import load_fashion_mnist_small
    data = load_fashion_mnist_small(flatten=False)
    rng = np.random.default_rng(0)
    model = hsic_resconv((1, 28, 28), rng, channels=8, n_blocks=1, width=10, kernel_size=5)
    algo = HSICBottleneck(n_classes=10, sigma=6.0, beta=1000.0, lr=1e-2)
    state = algo.init_state(model, rng)
    for start in range(0, 5000 - 255, 256):
        algo.step(model, state, data.x_train[start:start + 256], data.y_train[start:start + 256],
                  rng)
    algo.calibrate_batchnorm(model, state, data.x_train)
    acc = np.mean(np.argmax(algo.predict(model, state, data.x_test), axis=1) == data.y_test)
    assert acc > 0.25, acc
