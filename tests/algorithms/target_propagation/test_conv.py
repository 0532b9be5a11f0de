"""Conv DTP with reversed-block feedback (ConvT after unpooling): invariants and gradients."""

import numpy as np
import pytest

from refnets.algorithms.base import backprop_gradients
from refnets.algorithms.target_propagation.conv import (
    ConvDifferenceTargetPropagation, conv_blocks, conv_dtp_feedback_loss, conv_ldrl_feedback_loss)
from refnets.gradcheck import numerical_gradient, rel_error
from refnets.models import Sequential, convnet, mlp
from refnets.layers.pooling import MaxPool2D
from refnets.optim import Adam


def _net(rng, activation="tanh", pool=2, **kw):
    model = convnet((2, 6, 6), [3, 4], 3, 5, rng, activation=activation, pool=pool)
    algo = ConvDifferenceTargetPropagation(**kw)
    return model, algo, algo.init_state(model, rng)


def test_blocks_and_feedback_shapes(rng):
    model, algo, state = _net(rng)
    f = conv_blocks(model)
    assert [type(b.main).__name__ for b in f[1:]] == ["Conv2D", "Conv2D", "Dense"]
    assert [type(layer).__name__ for layer in f[2].free] == ["Tanh", "MaxPool2D", "Flatten"]
    k2 = f[2].k                                                   # model index of the 2nd conv
    assert sorted(state["feedback"]) == [f"{k2}.V", f"{k2}.c"]   # no inverse into the image
    assert state["feedback"][f"{k2}.V"].shape == f[2].main.params["W"].shape  # (C_2, C_1, kh, kw)
    out = ConvDifferenceTargetPropagation(first_target="output_grad").init_state(model, rng)
    assert out["feedback"][f"{f[3].k}.V"].shape == (4 * 1 * 1, 5)      # dense g_3: logits -> flat h_2
    x = rng.standard_normal((2, 2, 6, 6))
    h, caches = algo.forward(f, x)
    fb, params = algo.feedback_of(f, state, 2, h[1].shape)
    assert fb.apply(h[2], caches[2], params)[0].shape == h[1].shape          # (2, 3, 3, 3)
    with pytest.raises(ValueError, match="Dense layer producing logits"):
        conv_blocks(Sequential(model.layers[:-1]))
    with pytest.raises(ValueError, match="feedback_loss"):
        ConvDifferenceTargetPropagation(feedback_loss="drl")


def test_unpooling_uses_the_forward_argmax():
    """G's unpool is MaxPool2D.backward: values go to each window's forward maximum."""
    pool = MaxPool2D(2)
    x = np.array([[[[1.0, 5.0], [2.0, 3.0]]]])
    _, cache = pool.forward(x)
    np.testing.assert_array_equal(pool.backward(np.array([[[[7.0]]]]), cache)[0],
                                  [[[[0.0, 7.0], [0.0, 0.0]]]])


def test_fixed_point_and_scaled_backprop_on_top(rng):
    """ĥ_top = h_top leaves every target at h; the top conv block gets 2η̂ x backprop."""
    model, algo, state = _net(rng, target_step=0.01)
    x, y = rng.standard_normal((4, 2, 6, 6)), rng.integers(0, 5, 4)
    f = algo.blocks(model)
    h, caches = algo.forward(f, x)
    targets = algo.propagate_targets(f, state, h, 2, h[2].copy(), caches)
    np.testing.assert_allclose(targets[1], h[1], rtol=0, atol=1e-15)
    res = algo.step(model, state, x, y, rng)
    _, bp, _ = backprop_gradients(model, x, y)
    k2, kl = f[2].k, f[3].k
    for name in ("W", "b"):
        assert rel_error(res.grads[f"{k2}.{name}"], 2 * 0.01 * bp[f"{k2}.{name}"]) < 1e-12
        assert rel_error(res.grads[f"{kl}.{name}"], bp[f"{kl}.{name}"]) < 1e-13
    assert res.info["angle_per_layer"].shape == (3,)


def _check(loss_fn, params, zero_keys=()):
    """Relative error < 1e-7; keys whose gradient is exactly zero by algebra are checked absolutely."""
    _, grads = loss_fn(params)
    for key in params:
        num = numerical_gradient(lambda v, key=key: loss_fn({**params, key: v})[0],
                                 params[key].copy())
        if key in zero_keys:
            assert np.max(np.abs(grads[key])) < 1e-14 and np.max(np.abs(num)) < 1e-8, key
        else:
            assert rel_error(grads[key], num) < 1e-7, key


def test_conv_losses_match_finite_differences(rng):
    """Local loss through tanh + max-pool + flatten; the inverse and L-DRL losses through ConvT."""
    model, algo, state = _net(rng)
    f = algo.blocks(model)
    x = rng.standard_normal((2, 2, 6, 6))
    h, caches = algo.forward(f, x)
    target = h[2] + 0.1 * rng.standard_normal(h[2].shape)

    def local(p):
        out, c = f[2].forward(h[1], p)
        loss = np.sum((out - target) ** 2) / len(out)
        return loss, f[2].param_grads(c, 2 * (out - target) / len(out))

    _check(local, {k: v.copy() for k, v in f[2].main.params.items()})
    fb, params = algo.feedback_of(f, state, 2, h[1].shape)
    params = {k: v.copy() for k, v in params.items()}
    noise, noise_out = 0.3 * rng.standard_normal(h[1].shape), 0.3 * rng.standard_normal(h[2].shape)
    _check(lambda p: conv_dtp_feedback_loss(f[2], fb, h[1], noise, p), params)
    # a ConvT is linear, so its bias cancels in both L-DRL differences (DTP-10a)
    _check(lambda p: conv_ldrl_feedback_loss(f[2], fb, h[1], noise, noise_out, p), params,
           zero_keys=("b",))


def test_ldrl_on_a_linear_conv_block_learns_the_same_kernel(rng):
    """(DTP-10a), (DTP-13a) in conv form: J_g -> J_fᵀ, and ConvT with V = W *is* the conv's transpose."""
    model = convnet((3, 5, 5), [3, 3], 3, 4, rng, activation="identity", pool=None)
    algo = ConvDifferenceTargetPropagation(feedback_loss="ldrl")
    state = algo.init_state(model, rng)
    f = algo.blocks(model)
    W = f[2].main.params["W"]
    fb, _ = algo.feedback_of(f, state, 2, (128, 3, 5, 5))
    p = {"W": np.zeros_like(W), "b": np.zeros(3)}
    for it in range(100):
        x = rng.standard_normal((128, 3, 5, 5))
        _, grads = conv_ldrl_feedback_loss(f[2], fb, x, 0.5 * rng.standard_normal(x.shape),
                                           0.5 * rng.standard_normal((128, 75)), p)
        for k in p:
            p[k] -= (0.03 if it < 70 else 0.006) * grads[k]
    assert np.linalg.norm(p["W"] - W) / np.linalg.norm(W) < 0.05      # measured 0.03
    np.testing.assert_allclose(p["b"], 0.0, atol=1e-12)                 # linear: bias cancels


def test_conv_dtp_learns_a_fashion_mnist_subset():
    from refnets.datasets import load_fashion_mnist_small
    from refnets.training import train
    data = load_fashion_mnist_small(n_train=300, n_test=200, rng=np.random.default_rng(0),
                                    flatten=False)
    rng = np.random.default_rng(0)
    model = convnet((1, 28, 28), [4], 5, 10, rng, activation="tanh", pool=4, hidden=(32,))
    algo = ConvDifferenceTargetPropagation(feedback_loss="ldrl", target_step=0.01, sigma=0.2,
                                           feedback_optimizer="sgd", feedback_lr=0.05)
    hist = train(model, algo, Adam(3e-3), (data.x_train, data.y_train), 2, 30, rng,
                 eval_data=(data.x_test, data.y_test), progress=False)
    assert hist.test_acc[-1] > 0.4                                       # chance 0.1
    assert np.all(np.isfinite(hist.info["reconstruction_error"][-1]))


def test_dense_model_is_accepted_too(rng):
    """An MLP is a conv net without convs: ConvDTP reduces to dense DTP's targets."""
    from refnets.algorithms.target_propagation.algorithm import DifferenceTargetPropagation
    import copy
    model = mlp([5, 4, 4, 3], "tanh", rng)
    conv, dense = ConvDifferenceTargetPropagation(), DifferenceTargetPropagation()
    state = dense.init_state(model, rng)
    x, y = rng.standard_normal((3, 5)), rng.integers(0, 3, 3)
    r1 = dense.step(model, copy.deepcopy(state), x, y, np.random.default_rng(1))
    r2 = conv.step(model, state, x, y, np.random.default_rng(1))
    for key in r1.grads:
        np.testing.assert_allclose(r2.grads[key], r1.grads[key], rtol=1e-13, atol=1e-15)
