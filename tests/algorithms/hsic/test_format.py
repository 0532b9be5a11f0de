"""Format layer on a frozen HSIC net, and the sigma-combined network."""

import numpy as np
import pytest

from refnets.algorithms import backprop_gradients
from refnets.algorithms.hsic.algorithm import HSICBottleneck
from refnets.algorithms.hsic.format import (HSICFormat, HSICSigmaCombined, combined_format_setup,
                                            format_setup, train_format)
from refnets.algorithms.hsic.models import hsic_mlp
from refnets.gradcheck import assert_close, numerical_gradient
from refnets.layers import Dense
from refnets.losses import softmax_cross_entropy
from refnets.models import Sequential


def trained_hsic(rng, sizes=(6, 5, 4), steps=3):
    model = hsic_mlp(list(sizes), rng)
    algo = HSICBottleneck(n_classes=sizes[-1], sigma=2.0, beta=10.0, lr=0.05)
    state = algo.init_state(model, rng)
    x, y = rng.standard_normal((20, sizes[0])), np.arange(20) % sizes[-1]
    for _ in range(steps):
        algo.step(model, state, x, y, rng)
    return model, algo, state, x, y


def test_format_with_identity_features_is_backprop(rng):
    """Degenerate case: frozen net = identity -> the format step is backprop of a Dense layer."""
    head = Sequential([Dense(3, 2, rng)])
    x, y = rng.standard_normal((5, 3)), np.array([0, 1, 1, 0, 1])
    res = HSICFormat(lambda v: v).step(head, {}, x, y, rng)
    loss, grads, _ = backprop_gradients(head, x, y)
    assert res.loss == loss
    for key in grads:
        np.testing.assert_array_equal(res.grads[key], grads[key])


def test_format_gradient_fd_and_frozen_net(rng):
    model, algo, state, x, y = trained_hsic(rng)
    setup = format_setup(model, algo, state, 4, rng, lr=0.1)
    frozen = model.copy_params()
    fst = setup.algorithm.init_state(setup.model, rng)
    res = setup.algorithm.step(setup.model, fst, x, y, rng)
    feats = algo.features(model, state, x)
    W = setup.model.params()["0.W"]
    num = numerical_gradient(lambda w: softmax_cross_entropy(
        setup.model.forward(feats, [{"W": w, "b": setup.model.params()["0.b"]}])[0], y)[0], W.copy())
    assert_close(res.grads["0.W"], num, "format dW", tol=1e-7)
    losses = []
    for _ in range(30):
        res = setup.algorithm.step(setup.model, fst, x, y, rng)
        setup.optimizer.update(setup.algorithm.variables(setup.model, fst), res.grads)
        losses.append(res.loss)
    assert losses[-1] < losses[0]
    for key, value in model.params().items():        # no gradient reached the HSIC net
        np.testing.assert_array_equal(value, frozen[key])
    assert setup.algorithm.predict(setup.model, fst, x).shape == (20, 4)


@pytest.mark.parametrize("combine, width", [("mean", 4), ("concat", 8)])
def test_sigma_combined(rng, combine, width):
    sizes = [6, 5, 4]
    models = [hsic_mlp(sizes, rng), hsic_mlp(sizes, rng)]
    combo = HSICSigmaCombined([HSICBottleneck(4, sigma=1.0, beta=10.0, lr=0.05),
                               HSICBottleneck(4, sigma=5.0, beta=10.0, lr=0.05)], combine=combine)
    state = combo.init_state(models, rng)
    x, y = rng.standard_normal((20, 6)), np.arange(20) % 4
    before = [m.copy_params() for m in models]
    res = combo.step(models, state, x, y, rng)
    assert sorted(res.info) == sorted(f"{k}_sigma{s}" for k in ("nhsic_x", "nhsic_y", "objective")
                                      for s in ("1", "5"))
    for m, b in zip(models, before):                 # both members trained
        assert not np.allclose(m.params()["0.W"], b["0.W"])
    f = combo.features(models, state, x)
    assert f.shape == (20, width)
    outs = [a.features(m, st, x) for a, m, st in zip(combo.members, models, state["members"])]
    expected = np.mean(outs, axis=0) if combine == "mean" else np.hstack(outs)
    np.testing.assert_array_equal(f, expected)
    setup = combined_format_setup(models, combo, state, 4, rng)
    fres = setup.algorithm.step(setup.model, {}, x, y, rng)
    assert set(fres.grads) == {"1.W", "1.b"}         # BatchNorm(affine=False) has no parameters
    assert combo.predict(models, state, x).shape == (20, 4)


def test_bad_input(rng):
    with pytest.raises(ValueError, match="callable"):
        HSICFormat(3)
    with pytest.raises(ValueError, match="non-empty list"):
        HSICSigmaCombined([])
    with pytest.raises(ValueError, match="sequential"):
        HSICSigmaCombined([HSICBottleneck(3, parallel=True)])
    combo = HSICSigmaCombined([HSICBottleneck(3)])
    with pytest.raises(ValueError, match="list of 1 networks"):
        combo.init_state(hsic_mlp([4, 3], rng), rng)


class _CountingFormat:
    """A stand-in format stage that counts SGD steps and batch sizes."""

    def __init__(self):
        from refnets.algorithms.base import StepResult
        self.sizes, self._res = [], StepResult(0.0, {}, {})
        self.model, self.optimizer, self.algorithm = None, self, self

    def init_state(self, model, rng):
        return {}

    def variables(self, model, state):
        return {}

    def step(self, model, state, x, y, rng):
        self.sizes.append(len(x))
        return self._res

    def update(self, params, grads):
        pass


@pytest.mark.parametrize("n, epochs, steps", [(60000, 2, 470), (5000, 20, 400), (4000, 25, 400),
                                              (100, 400, 400)])
def test_train_format_default_is_400_steps_rounded_up_to_epochs(rng, n, epochs, steps):
    """FORMAT_MIN_STEPS = 400: ceil(400 / ceil(n / 256)) epochs of ceil(n / 256) steps."""
    from refnets.algorithms.hsic.format import FORMAT_MIN_STEPS, train_format
    assert FORMAT_MIN_STEPS == 400
    stub = _CountingFormat()
    train_format(stub, np.zeros((n, 1)), np.zeros(n, dtype=int), rng)
    assert len(stub.sizes) == steps
    assert sum(stub.sizes) == epochs * n
    stub = _CountingFormat()
    train_format(stub, np.zeros((n, 1)), np.zeros(n, dtype=int), rng, epochs=3, batch_size=n)
    assert stub.sizes == [n, n, n]


def test_train_format_trains_the_output_layer(rng):
    model, algo, state, x, y = trained_hsic(rng)
    setup = format_setup(model, algo, state, 4, rng, lr=0.1)
    before = setup.model.copy_params()
    fst = train_format(setup, x, y, rng, epochs=5, batch_size=10)
    assert not np.allclose(setup.model.params()["0.W"], before["0.W"])
    assert setup.algorithm.predict(setup.model, fst, x).shape == (20, 4)
