"""Backprop: exact gradients, learning toy problems, and its registry entry."""

import numpy as np
import pytest

from refnets.algorithms import Setup, StepResult, available_methods, get_method
from refnets.algorithms.backprop import Backprop
from refnets.gradcheck import numerical_gradient, rel_error
from refnets.losses import accuracy, mse, softmax_cross_entropy
from refnets.models import mlp, rnn_classifier
from refnets.optim import SGD, Adam
from refnets.validation import DivergenceError


def _xor_blobs(n, rng):
    """Four Gaussian blobs at (+-1, +-1), std 0.25; label = XOR of the signs."""
    centres = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    k = rng.integers(0, 4, size=n)
    return centres[k] + 0.25 * rng.standard_normal((n, 2)), (k >= 2).astype(int)


def _two_spirals(n_per_class, rng, noise=0.05):
    """Two interleaved spirals (1.5 turns), radius growing with the angle."""
    t = np.sqrt(rng.uniform(0.0, 1.0, n_per_class)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * np.pi)
    x = np.concatenate([arm, -arm]) + noise * rng.standard_normal((2 * n_per_class, 2))
    return x, np.repeat([0, 1], n_per_class)


def _train(model, algo, opt, x, y, rng, steps, batch_size=None):
    state = algo.init_state(model, rng)
    losses = []
    for _ in range(steps):
        idx = slice(None) if batch_size is None else rng.choice(len(x), batch_size, replace=False)
        res = algo.step(model, state, x[idx], y[idx], rng)
        assert isinstance(res, StepResult) and np.isfinite(res.info["grad_norm"])
        opt.update(algo.variables(model, state), res.grads)
        losses.append(res.loss)
    return losses


def test_fits_xor(rng):
    x, y = _xor_blobs(200, rng)
    x_test, y_test = _xor_blobs(400, rng)
    model = mlp([2, 16, 16, 2], "tanh", rng)
    losses = _train(model, Backprop(), Adam(lr=0.02), x, y, rng, steps=300, batch_size=32)
    assert np.mean(losses[-20:]) < 0.2 * losses[0]
    assert accuracy(model.predict(x), y) >= 0.97
    assert accuracy(model.predict(x_test), y_test) >= 0.95


def test_fits_two_spirals(rng):
    x, y = _two_spirals(100, rng)
    x_test, y_test = _two_spirals(200, rng)
    model = mlp([2, 16, 16, 2], "tanh", rng)
    start = accuracy(model.predict(x), y)
    _train(model, Backprop(), Adam(lr=0.05), x, y, rng, steps=400)
    assert start < 0.8
    assert accuracy(model.predict(x), y) >= 0.97
    assert accuracy(model.predict(x_test), y_test) >= 0.9


def test_gradient_equals_finite_differences_of_the_model_loss(rng):
    model = mlp([2, 16, 16, 2], "tanh", rng)
    for layer in model.layers[::2]:
        layer.params["b"] = 0.3 * rng.standard_normal(layer.params["b"].shape)
    x, y = _xor_blobs(8, rng)
    before = model.copy_params()
    res = Backprop().step(model, {}, x, y, rng)
    assert all(np.array_equal(v, before[k]) for k, v in model.params().items())  # step only computes
    assert res.loss == softmax_cross_entropy(model.predict(x), y)[0]
    assert sorted(res.grads) == sorted(model.params())
    for key, value in model.params().items():
        def loss(v, key=key):
            return softmax_cross_entropy(model.forward(x, model.unflatten({**model.params(), key: v}))[0],
                                         y)[0]
        assert rel_error(res.grads[key], numerical_gradient(loss, value.copy())) < 1e-7, key
    norm = np.sqrt(sum(np.sum(g * g) for g in res.grads.values()))
    assert res.info["grad_norm"] == pytest.approx(norm, rel=1e-12)


def test_gradient_of_a_recurrent_model_with_another_loss(rng):
    """The same algorithm on an RNN read out at every step, with MSE on one-hot targets."""
    model = rnn_classifier(2, 4, 3, rng, readout="all")
    x = rng.standard_normal((5, 3, 2))
    target = np.eye(3)[rng.integers(0, 3, size=(5, 3))]
    res = Backprop(loss=mse).step(model, {}, x, target, rng)
    for key, value in model.params().items():
        def loss(v, key=key):
            return mse(model.forward(x, model.unflatten({**model.params(), key: v}))[0], target)[0]
        assert rel_error(res.grads[key], numerical_gradient(loss, value.copy())) < 1e-7, key


def test_same_seed_same_run():
    def run(seed):
        rng = np.random.default_rng(seed)
        x, y = _xor_blobs(64, rng)
        model = mlp([2, 16, 16, 2], "tanh", rng)
        _train(model, Backprop(), SGD(lr=0.1), x, y, rng, steps=20, batch_size=16)
        return model.params()

    a, b = run(3), run(3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.W"], run(4)["0.W"])


def test_diverged_loss_raises_naming_the_step(rng):
    model = mlp([2, 3, 2], "tanh", rng)
    x, y = _xor_blobs(4, rng)

    def nan_loss(out, y):
        return float("nan"), np.zeros_like(out)

    with pytest.raises(FloatingPointError, match=r"Backprop\.step: loss is nan"):
        Backprop(loss=nan_loss).step(model, {}, x, y, rng)
    x_bad = x.copy()
    x_bad[0, 0] = np.nan                                  # bad data: a ValueError naming x
    with pytest.raises(ValueError, match=r"Backprop.step: x contains a non-finite value \(nan\) "
                                         r"at index \(0, 0\)"):
        Backprop().step(model, {}, x_bad, y, rng)
    model.layers[0].params["W"][0, 0] = np.nan            # a diverged weight: DivergenceError
    with pytest.raises(DivergenceError, match=r"softmax_cross_entropy: logits has the value nan"):
        Backprop().step(model, {}, x, y, rng)
    with pytest.raises(ValueError, match="loss must be callable"):
        Backprop(loss="ce")


def test_registry_build_returns_a_working_setup(rng):
    assert "backprop" in available_methods()
    method = get_method("backprop")
    assert method.name == "backprop" and method.summary and method.paper
    x, y = _xor_blobs(128, rng)
    setup = method.build([2, 16, 16, 2], "tanh", rng, x, y)
    assert isinstance(setup, Setup) and isinstance(setup.algorithm, Backprop)
    assert [(layer.n_in, layer.n_out) for layer in setup.model.layers[::2]] == [(2, 16), (16, 16), (16, 2)]
    losses = _train(setup.model, setup.algorithm, setup.optimizer, x, y, rng, steps=50)
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="unknown method 'backpropagation'"):
        get_method("backpropagation")


def test_trace_records_every_layer_and_equals_step_and_backprop_gradients(rng):
    """trace = step on copies: grads bit-identical to step and to backprop_gradients."""
    from refnets.algorithms.base import backprop_gradients
    from refnets.models import convnet

    model = convnet((1, 6, 6), [2], 3, 3, rng, hidden=(4,))
    x, y = rng.standard_normal((5, 1, 6, 6)), rng.integers(0, 3, 5)
    algo = Backprop()
    before = model.copy_params()
    tr = algo.trace(model, {}, x, y)
    for key, value in before.items():
        assert np.array_equal(model.params()[key], value)
    assert tr["given"] == {} and tr["after"] == {}
    n = len(model.layers)
    assert sorted(tr["values"]) == sorted([f"{k}.y" for k in range(n)] + [f"{k}.dy" for k in range(n)])
    out = model.forward(x)[0]
    assert np.array_equal(tr["values"][f"{n - 1}.y"], out)
    _, dout = softmax_cross_entropy(out, y)
    assert np.array_equal(tr["values"][f"{n - 1}.dy"], dout)
    res = algo.step(model, {}, x, y, None)
    loss, ref, _ = backprop_gradients(model, x, y)
    assert tr["loss"] == res.loss == loss
    for key in ref:
        assert np.array_equal(tr["grads"][key], res.grads[key])
        assert np.array_equal(res.grads[key], ref[key])
    # dL/dy_k = dL/dy_{k+1} pulled back through layer k+1 (here: the last Dense)
    dy_prev, _ = model.layers[-1].backward(dout, model.forward(x)[1][-1])
    assert np.array_equal(tr["values"][f"{n - 2}.dy"], dy_prev)
    with pytest.raises(ValueError, match="Backprop.step: unknown keyword 'noise'"):
        algo.step(model, {}, x, y, None, noise={})
    with pytest.raises(ValueError, match="Backprop.init_state: unknown keyword 'B'"):
        algo.init_state(model, None, B={})


def test_trace_of_a_model_with_its_own_wiring_records_output_and_its_gradient(rng):
    """A Sequential subclass with its own forward/backward (shortcut net) keeps its chain rule."""
    from refnets.algorithms.base import backprop_gradients
    from refnets.algorithms.target_space import ShortcutMLP
    from refnets.layers import Dense, Tanh

    model = ShortcutMLP([Dense(2, 3, rng), Tanh(), Dense(5, 2, rng)])
    x, y = rng.standard_normal((4, 2)), rng.integers(0, 2, 4)
    tr = Backprop().trace(model, {}, x, y)
    loss, ref, out = backprop_gradients(model, x, y)
    assert sorted(tr["values"]) == ["dout", "out"] and np.array_equal(tr["values"]["out"], out)
    assert tr["loss"] == loss
    for key in ref:
        assert np.array_equal(tr["grads"][key], ref[key])


def test_default_init_state_takes_no_given_values(rng):
    model = mlp([3, 4, 2], "tanh", rng)
    assert Backprop().init_state(model, None) == {}
    with pytest.raises(ValueError, match=r"Backprop.init_state: unknown keyword 'B'.*accepts are \[\]"):
        Backprop().init_state(model, rng, B={"0.B": np.zeros((2, 2))})
