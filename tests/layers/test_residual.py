"""Residual block y = g(F(x) + x): gradcheck, hand example, running-statistics protocol."""

import numpy as np
import pytest

from refnets.gradcheck import check_layer
from refnets.layers import Conv2D, Dense, Identity, ReLU, Tanh
from refnets.layers.normalization import BatchNorm
from refnets.layers.residual import Residual


def test_gradcheck_dense_branch_with_batchnorm(rng):
    # no biases before BN: their gradient is exactly 0 (round-off vs round-off)
    block = Residual([Dense(4, 4, rng, bias=False), BatchNorm(4, affine=True), Tanh(),
                      Dense(4, 4, rng, bias=False), BatchNorm(4)], activation="tanh")
    check_layer(block, rng.standard_normal((6, 4)), rng, tol=1e-7)


def test_gradcheck_conv_branch(rng):
    """The HSIC authors' block: act(BN(conv(act(BN(conv x)))) + x), 5x5 'same' convs.

    Tanh instead of ReLU keeps finite differences away from kinks.
    """
    block = Residual([Conv2D(2, 2, 5, padding="same", rng=rng, bias=False), BatchNorm(2), Tanh(),
                      Conv2D(2, 2, 5, padding="same", rng=rng, bias=False), BatchNorm(2)],
                     activation="tanh")
    check_layer(block, rng.standard_normal((2, 2, 5, 5)), rng, tol=1e-7)


def test_hand_example():
    # branch = identity layer: y = relu(x + x) = relu(2x); dy = 1 -> dx = 2 * 1[x > 0]
    block = Residual([Identity()], activation="relu")
    x = np.array([[-1.0, 0.5]])
    y, cache = block.forward(x)
    np.testing.assert_array_equal(y, [[0.0, 1.0]])
    dx, grads = block.backward(np.ones((1, 2)), cache)
    np.testing.assert_array_equal(dx, [[0.0, 2.0]])
    assert grads == {}


def test_params_and_running_stats(rng):
    block = Residual([Dense(3, 3, rng), BatchNorm(3), ReLU(), Dense(3, 3, rng), BatchNorm(3)])
    assert sorted(block.params) == ["0.W", "0.b", "3.W", "3.b"]
    assert block.params["0.W"] is block.branch[0].params["W"]       # the branch's own arrays
    stats = block.init_running_stats()
    assert sorted(stats) == [1, 4]
    x = rng.standard_normal((8, 3))
    y_train, cache = block.forward(x)
    new = block.update_running_stats(stats, cache)
    a = x @ block.branch[0].params["W"].T + block.branch[0].params["b"]
    np.testing.assert_allclose(new[1]["mean"], 0.1 * a.mean(0), rtol=1e-12)
    y_eval, _ = block.forward(x, running_stats=new)
    assert not np.allclose(y_eval, y_train)
    with pytest.raises(ValueError, match="keep the input's shape"):
        Residual([Dense(3, 2, rng)]).forward(x)
    with pytest.raises(ValueError, match="non-empty list"):
        Residual([])


def test_running_stats_must_have_an_entry_per_batch_norm(rng):
    block = Residual([Conv2D(2, 2, 3, padding=1, rng=rng), BatchNorm(2)])
    x = rng.standard_normal((3, 2, 4, 4))
    for bad, got in (({}, r"\[\]"), ({0: block.branch[1].init_running_stats()}, r"\[0\]"),
                     ([1], "list")):
        with pytest.raises(ValueError, match=rf"Residual.forward: running_stats must be a dict "
                                             rf"with one entry per branch layer that has running "
                                             rf"statistics, keys \[1\] .*got {got}"):
            block.forward(x, running_stats=bad)
    y, _ = block.forward(x, running_stats=block.init_running_stats())
    assert y.shape == x.shape
