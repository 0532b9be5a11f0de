"""Format layer on a frozen HSIC net, and the sigma-combined network."""

import numpy as np
import pytest

from refnets.algorithms import backprop_gradients
from refnets.algorithms.hsic.algorithm import HSICBottleneck
from refnets.algorithms.hsic.format import (HSICFormat, HSICSigmaCombined, combined_format_setup,
                                            format_setup)
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
