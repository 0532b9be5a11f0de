"""BatchNorm: forward statistics, explicit backward (gradcheck), running statistics, torch."""

import numpy as np
import pytest

from refnets.gradcheck import check_layer
from refnets.layers import Dense
from refnets.layers.normalization import BatchNorm

# Not n = 2 values per channel: then x_hat = +-sqrt(v / (v + eps)) is constant
# up to eps, dx is O(eps) ~ 1e-7 and a relative finite-difference error is round-off.
SHAPES = [(5, 4), (3, 3), (4, 3, 5), (3, 2, 4, 5), (3, 3, 1, 1)]


def stats_of(x):
    axes = (0,) + tuple(range(2, x.ndim))
    return x.mean(axis=axes), x.var(axis=axes)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
def test_gradcheck_training_mode(rng, shape, affine):
    bn = BatchNorm(shape[1], affine=affine)
    if affine:   # non-trivial gamma/beta
        bn.params["gamma"][...] = rng.uniform(0.5, 1.5, shape[1])
        bn.params["beta"][...] = rng.standard_normal(shape[1])
    x = 2.0 * rng.standard_normal(shape) + 1.0
    check_layer(bn, x, rng, tol=1e-7)


@pytest.mark.parametrize("shape", [(5, 4), (3, 2, 4, 5)])
@pytest.mark.parametrize("affine", [False, True])
def test_gradcheck_evaluation_mode(rng, shape, affine):
    bn = BatchNorm(shape[1], affine=affine)
    stats = {"mean": rng.standard_normal(shape[1]), "var": rng.uniform(0.5, 2.0, shape[1])}

    class Eval:   # the layer with its statistics bound, for check_layer
        params = bn.params

        def forward(self, x, params=None):
            return bn.forward(x, params, running_stats=stats)

        def backward(self, dy, cache):
            return bn.backward(dy, cache)

    check_layer(Eval(), rng.standard_normal(shape), rng, tol=1e-7)


def test_training_forward_normalises(rng):
    x = 3.0 * rng.standard_normal((4, 3, 5, 6)) - 2.0
    y, _ = BatchNorm(3).forward(x)
    mean, var = stats_of(y)
    np.testing.assert_allclose(mean, 0.0, atol=1e-14)
    # eps = 1e-5 in the denominator: var(y) = v / (v + eps)
    np.testing.assert_allclose(var, stats_of(x)[1] / (stats_of(x)[1] + 1e-5), rtol=1e-12)


def test_hand_example():
    # one feature, batch [1, 3]: mu = 2, v = 1, eps = 1e-5 -> x_hat = [-1, 1] / sqrt(1 + 1e-5)
    bn = BatchNorm(1, affine=True)
    bn.params["gamma"][...] = 2.0
    bn.params["beta"][...] = 0.5
    x = np.array([[1.0], [3.0]])
    y, cache = bn.forward(x)
    r = 1.0 / np.sqrt(1.0 + 1e-5)
    np.testing.assert_allclose(y[:, 0], [0.5 - 2 * r, 0.5 + 2 * r], rtol=1e-15)
    # dy = [1, 0]: dx_hat = gamma dy = [2, 0]; mean = 1; mean(dx_hat x_hat) = -r;
    # dx = r ([2, 0] - 1 - x_hat * (-r)) = r ([1, -1] + r^2 [-1, 1]) = r (1 - r^2) [1, -1]
    dx, grads = bn.backward(np.array([[1.0], [0.0]]), cache)
    np.testing.assert_allclose(dx[:, 0], r * (1 - r * r) * np.array([1.0, -1.0]), rtol=1e-9)
    np.testing.assert_allclose(grads["gamma"], [-r], rtol=1e-15)
    np.testing.assert_allclose(grads["beta"], [1.0], rtol=1e-15)
    # running statistics: unbiased batch variance 2, momentum 0.1
    new = bn.update_running_stats(bn.init_running_stats(), cache)
    np.testing.assert_allclose(new["mean"], [0.1 * 2.0])
    np.testing.assert_allclose(new["var"], [0.9 * 1.0 + 0.1 * 2.0])


def test_bias_before_batchnorm_gets_zero_gradient(rng):
    """The Dense bias is dead under BN: BN subtracts the batch mean, so db = 1^T dA = 0."""
    dense, bn = Dense(4, 3, rng), BatchNorm(3)
    x = rng.standard_normal((6, 4))
    a, c1 = dense.forward(x)
    y, c2 = bn.forward(a)
    da, _ = bn.backward(rng.standard_normal(y.shape), c2)
    _, grads = dense.backward(da, c1)
    np.testing.assert_allclose(grads["b"], 0.0, atol=1e-14)
    assert np.abs(grads["W"]).max() > 1e-3


def test_running_stats_are_not_layer_state(rng):
    bn = BatchNorm(3)
    x = rng.standard_normal((8, 3))
    stats = bn.init_running_stats()
    before = {k: v.copy() for k, v in stats.items()}
    _, cache = bn.forward(x)
    new = bn.update_running_stats(stats, cache)
    for k in stats:                                   # the argument is untouched
        np.testing.assert_array_equal(stats[k], before[k])
    assert not np.allclose(new["mean"], before["mean"])
    assert bn.params == {}
    y1, _ = bn.forward(x, running_stats=new)
    y2, _ = bn.forward(x, running_stats=new)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(y1, (x - new["mean"]) / np.sqrt(new["var"] + 1e-5), rtol=1e-14)
    with pytest.raises(ValueError, match="training-mode"):
        bn.update_running_stats(new, bn.forward(x, running_stats=new)[1])


def test_bad_input():
    bn = BatchNorm(3)
    with pytest.raises(ValueError, match="3 channels"):
        bn.forward(np.ones((4, 2)))
    with pytest.raises(ValueError, match="more than one value"):
        bn.forward(np.ones((1, 3)))
    with pytest.raises(ValueError, match="running_stats"):
        bn.forward(np.ones((4, 3)), running_stats={"mean": np.zeros(2), "var": np.ones(2)})
    with pytest.raises(ValueError, match="n_features"):
        BatchNorm(0)
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(3, momentum=0.0)


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 4, 5)])
@pytest.mark.parametrize("affine", [False, True])
def test_matches_torch(rng, shape, affine):
    torch = pytest.importorskip("torch")
    bn = BatchNorm(shape[1], affine=affine)
    if affine:
        bn.params["gamma"][...] = rng.uniform(0.5, 1.5, shape[1])
        bn.params["beta"][...] = rng.standard_normal(shape[1])
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    cls = torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d
    tbn = cls(shape[1], affine=affine).double()
    if affine:
        with torch.no_grad():
            tbn.weight.copy_(torch.from_numpy(bn.params["gamma"]))
            tbn.bias.copy_(torch.from_numpy(bn.params["beta"]))
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = tbn(tx)                                   # training mode: batch statistics
    ty.backward(torch.from_numpy(dy))
    y, cache = bn.forward(x)
    dx, grads = bn.backward(dy, cache)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    if affine:
        np.testing.assert_allclose(grads["gamma"], tbn.weight.grad.numpy(), rtol=1e-12)
        np.testing.assert_allclose(grads["beta"], tbn.bias.grad.numpy(), rtol=1e-12)
    new = bn.update_running_stats(bn.init_running_stats(), cache)
    np.testing.assert_allclose(new["mean"], tbn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(new["var"], tbn.running_var.numpy(), rtol=1e-12)
    tbn.eval()
    np.testing.assert_allclose(bn.forward(x, running_stats=new)[0],
                               tbn(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
