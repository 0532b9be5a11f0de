"""Node and weight perturbation: unbiasedness (DEC-11), hand-worked steps, decorrelation."""

import numpy as np
import pytest

from refnets.algorithms import backprop_gradients
from refnets.algorithms.decorrelation.algorithm import Decorrelation
from refnets.algorithms.decorrelation.perturbation import NodePerturbation, WeightPerturbation, sample_losses
from refnets.layers import Dense, Identity
from refnets.losses import mse, softmax_cross_entropy
from refnets.models import Sequential, mlp
from refnets.optim import SGD


class FixedNoise(np.random.Generator):
    """A Generator whose standard_normal returns prescribed arrays (hand-worked examples)."""

    def __init__(self, draws):
        super().__init__(np.random.PCG64(0))
        self.draws = list(draws)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return np.broadcast_to(np.asarray(self.draws.pop(0), dtype=np.float64), size).copy()


def test_sample_losses_average_to_the_loss(rng):
    out = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    for y in (labels, np.eye(4)[labels]):
        assert np.mean(sample_losses(softmax_cross_entropy, out, y)) == pytest.approx(
            softmax_cross_entropy(out, y)[0], rel=1e-14)
    t = rng.standard_normal((6, 4))
    assert np.mean(sample_losses(mse, out, t)) == pytest.approx(mse(out, t)[0], rel=1e-14)
    with pytest.raises(ValueError, match="per_sample_loss"):
        sample_losses(lambda o, y: (0.0, o), out, t)


def test_np_hand_worked_step():
    """x = 1, W = 2, b = 0, target 1, sigma = 0.1, noise draw 1.0 (eps = 0.1).

    a = 2, L = 1; noisy a = 2.1, L~ = 1.21, dL = 0.21;
    g^_a = dL eps / sigma^2 = 0.21 * 0.1 / 0.01 = 2.1 (true dL/da = 2(a - t) = 2;
    the extra 0.1 = eps is the second-order term dL = 2 eps + eps^2);
    g^_W = g^_a x = 2.1, g^_b = 2.1.
    """
    model = Sequential([Dense(1, 1, np.random.default_rng(0))])
    model.layers[0].params["W"][:] = 2.0
    alg = NodePerturbation(sigma=0.1, loss=mse)
    state = alg.init_state(model)
    res = alg.step(model, state, np.array([[1.0]]), np.array([[1.0]]), FixedNoise([1.0]))
    assert res.loss == 1.0
    assert res.info["loss_change"] == pytest.approx(0.21, abs=1e-14)
    assert res.grads["0.W"][0, 0] == pytest.approx(2.1, abs=1e-12)
    assert res.grads["0.b"][0] == pytest.approx(2.1, abs=1e-12)


def test_wp_hand_worked_step():
    """Same net, weight noise eps_W = 0.1, eps_b = -0.1 (sigma 0.1): the output is unchanged,
    so dL = 0 and g^ = 0; then eps_W = eps_b = 0.1: a~ = 2.2, L~ = 1.44, dL = 0.44,
    g^ = 0.44 * 0.1 / 0.01 = 4.4 for W and for b (true gradient 2 each)."""
    model = Sequential([Dense(1, 1, np.random.default_rng(0))])
    model.layers[0].params["W"][:] = 2.0
    alg = WeightPerturbation(sigma=0.1, loss=mse)
    state = alg.init_state(model)
    x, t = np.array([[1.0]]), np.array([[1.0]])
    res = alg.step(model, state, x, t, FixedNoise([1.0, -1.0]))      # keys in order W, b
    assert res.grads["0.W"][0, 0] == 0.0 and res.grads["0.b"][0] == 0.0
    res = alg.step(model, state, x, t, FixedNoise([1.0, 1.0]))
    assert res.grads["0.W"][0, 0] == pytest.approx(4.4, abs=1e-12)
    assert res.grads["0.b"][0] == pytest.approx(4.4, abs=1e-12)


def _np_mean_error(m, seed):
    """NP estimate of dL/da for one sample, averaged over m noise draws (m copies of it)."""
    rng = np.random.default_rng(seed)
    model = Sequential([Dense(3, 5, np.random.default_rng(1))])
    x = np.repeat(np.array([[0.5, -1.0, 2.0]]), m, axis=0)
    t = np.repeat(np.array([[1.0, 0.0, -1.0, 2.0, 0.5]]), m, axis=0)
    alg = NodePerturbation(sigma=1e-3, loss=mse, track_backprop=False)
    res = alg.step(model, alg.init_state(model), x, t, rng)
    _, g_bp, _ = backprop_gradients(model, x, t, mse)
    return np.linalg.norm(res.grads["0.b"] - g_bp["0.b"]) / np.linalg.norm(g_bp["0.b"])


def test_np_is_unbiased_with_error_shrinking_like_one_over_sqrt_m():
    """Mean of dL eps / sigma^2 over M draws -> dL/da (5 nodes, sigma 1e-3): error ~ 1/sqrt(M)."""
    err_big = np.mean([_np_mean_error(100_000, s) for s in range(3)])
    err_small = np.mean([_np_mean_error(1_000, s) for s in range(3)])
    assert err_big < 0.01                          # 1/sqrt(M) shrinking: measured 0.4% at M = 1e5
    assert 3 < err_small / err_big < 30            # sqrt(100) = 10


def test_wp_is_unbiased(rng):
    model = mlp([3, 2], "tanh", rng)
    x, t = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    alg = WeightPerturbation(sigma=1e-4, n_draws=5_000, loss=mse, track_backprop=False)
    res = alg.step(model, alg.init_state(model), x, t, np.random.default_rng(0))
    _, g_bp, _ = backprop_gradients(model, x, t, mse)
    err = np.sqrt(sum(np.sum((res.grads[k] - g_bp[k]) ** 2) for k in g_bp)
                  / sum(np.sum(g_bp[k] ** 2) for k in g_bp))
    assert err < 0.08                              # 8 parameters, 5000 draws: measured 0.03-0.05


def test_np_small_step_decreases_the_loss_on_average():
    """(DEC-11): a small SGD step along the NP estimate lowers a linear layer's MSE on average."""
    changes = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        model = Sequential([Dense(4, 3, np.random.default_rng(99))])
        x, t = np.random.default_rng(98).standard_normal((16, 4)), np.ones((16, 3))
        alg = NodePerturbation(sigma=1e-3, loss=mse, track_backprop=False)
        res = alg.step(model, alg.init_state(model), x, t, rng)
        before = res.loss
        SGD(1e-3).update(model.params(), res.grads)
        changes.append(mse(model.forward(x)[0], t)[0] - before)
    assert np.mean(changes) < 0
    assert np.mean(np.array(changes) < 0) > 0.55   # and more often down than up


def test_np_uses_the_decorrelated_input(rng):
    """With decorrelation g^_W = g^_a^T z, z = R(h - mu) of the clean pass."""
    model = Sequential([Dense(4, 3, rng)])
    dec = Decorrelation(lr=0.0)
    alg = NodePerturbation(sigma=1e-3, decorrelate=dec, loss=mse)
    state = alg.init_state(model)
    state["decor"]["0.R"] = np.eye(4) + 0.3 * rng.standard_normal((4, 4))
    x, t = rng.standard_normal((6, 4)) + 1.0, rng.standard_normal((6, 3))
    noise = rng.standard_normal((6, 3))
    res = alg.step(model, state, x, t, FixedNoise([noise]))
    R = state["decor"]["0.R"]
    z = (x - x.mean(axis=0)) @ R.T
    a = z @ model.layers[0].params["W"].T + model.layers[0].params["b"]
    dL = np.sum((a + 1e-3 * noise - t) ** 2, axis=1) - np.sum((a - t) ** 2, axis=1)
    g_a = dL[:, None] * 1e-3 * noise / 1e-6 / 6
    np.testing.assert_allclose(res.grads["0.W"], g_a.T @ z, rtol=1e-9)


@pytest.mark.parametrize("cls", [NodePerturbation, WeightPerturbation])
def test_identity_decorrelator_changes_nothing(rng, cls):
    """decorrelate with R = I, rate 0, no centring: the same update as without."""
    model = mlp([4, 5, 3], "tanh", rng)
    x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    r1 = cls(sigma=1e-4).step(model, {"decor": None, "step": 0}, x, y, np.random.default_rng(5))
    alg = cls(sigma=1e-4, decorrelate=Decorrelation(lr=0.0, center=False))
    r2 = alg.step(model, alg.init_state(model), x, y, np.random.default_rng(5))
    for key in r1.grads:
        np.testing.assert_array_equal(r1.grads[key], r2.grads[key])
    assert r1.info["cosine_to_backprop"] == r2.info["cosine_to_backprop"]


def test_np_learns_with_a_multilayer_net():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4))
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    model = mlp([4, 16, 2], "leaky_relu", rng)
    alg = NodePerturbation(sigma=1e-4, decorrelate=Decorrelation(lr=0.01))
    state = alg.init_state(model)
    from refnets.optim import Adam
    opt, losses = Adam(1e-2), []
    for _ in range(150):
        res = alg.step(model, state, x, y, rng)
        opt.update(alg.variables(model, state), res.grads)
        losses.append(res.loss)
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert 0 < np.mean(res.info["cosine_to_backprop_layers"]) <= 1


def test_bad_arguments(rng):
    model = mlp([3, 2], "tanh", rng)
    with pytest.raises(ValueError, match="sigma"):
        NodePerturbation(sigma=0.0)
    with pytest.raises(ValueError, match="n_draws"):
        WeightPerturbation(n_draws=0)
    alg = NodePerturbation()
    with pytest.raises(ValueError, match="rng"):
        alg.step(model, alg.init_state(model), np.ones((2, 3)), np.array([0, 1]), None)
