"""FunctionalTransfer algorithm, ftnn builder, layer-wise training and the registry entry."""

import numpy as np
import pytest

from refnets.algorithms.backprop import Backprop
from refnets.algorithms.functional_transfer.algorithm import (DEFAULT_FUNCTION, FunctionalTransfer, _build,
                                                    ftnn, train_ftnn, train_layerwise)
from refnets.datasets import load_fashion_mnist_small, two_spirals
from refnets.layers import Dense, FunctionalDense, Tanh
from refnets.losses import accuracy
from refnets.models import mlp
from refnets.optim import Adam


def test_lin_network_step_equals_backprop_on_an_mlp(rng):
    """Degenerate case: with f = w x the FTNN update is the MLP's backprop gradient."""
    net = ftnn([5, 7, 6, 3], "LIN", "tanh", rng)
    ref = mlp([5, 7, 6, 3], "tanh", rng)
    for k in (0, 2, 4):
        ref[k].params["W"][...] = net[k].params["theta"][0]
        net[k].params["b"][...] = ref[k].params["b"][...] = rng.standard_normal(ref[k].n_out)
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    mine = FunctionalTransfer().step(net, {}, x, y, rng)
    bp = Backprop().step(ref, {}, x, y, rng)
    assert mine.loss == bp.loss
    for k in (0, 2, 4):
        np.testing.assert_array_equal(mine.grads[f"{k}.theta"][0], bp.grads[f"{k}.W"])
        np.testing.assert_array_equal(mine.grads[f"{k}.b"], bp.grads[f"{k}.b"])
    assert mine.info["cosine_to_backprop"] == 1.0


def test_step_by_hand(rng):
    """One F03 layer, 1 input -> 2 logits, x = 2, a = (0.5, 0), b = (0, 1), bias 0.

    logits = a x^2 + b x = (0.5*4 + 0, 0 + 1*2) = (2, 2) -> p = (1/2, 1/2), loss = ln 2 for y = 0;
    delta = p - onehot(0) = (-1/2, 1/2) (batch of one); dL/da = delta x^2 = (-2, 2),
    dL/db = delta x = (-1, 1), dL/dbias = (-1/2, 1/2).
    """
    net = ftnn([1, 2], "F03", rng=rng)
    net[0].params["theta"][...] = [[[0.5], [0.0]], [[0.0], [1.0]]]
    res = FunctionalTransfer().step(net, {}, np.array([[2.0]]), np.array([0]), rng)
    assert res.loss == pytest.approx(np.log(2.0), rel=1e-15)
    np.testing.assert_allclose(res.grads["0.theta"], [[[-2.0], [2.0]], [[-1.0], [1.0]]], rtol=1e-15)
    np.testing.assert_allclose(res.grads["0.b"], [-0.5, 0.5], rtol=1e-15)


def test_grad_clip(rng):
    net = ftnn([4, 5, 3], "F19", "tanh", rng)
    net[0].params["theta"] *= 30.0
    x, y = 3.0 * rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    exact = FunctionalTransfer().step(net, {}, x, y, rng)
    bound = 0.5 * max(float(np.abs(g).max()) for g in exact.grads.values())
    clipped = FunctionalTransfer(grad_clip=bound).step(net, {}, x, y, rng)
    assert clipped.loss == exact.loss
    for key, g in exact.grads.items():
        np.testing.assert_array_equal(clipped.grads[key], np.clip(g, -bound, bound))
    assert 0.0 < clipped.info["clipped_fraction"] < 1.0
    assert clipped.info["cosine_to_backprop"] < 1.0
    with pytest.raises(ValueError, match="FunctionalTransfer: grad_clip must be > 0.0, got -1.0"):
        FunctionalTransfer(grad_clip=-1.0)


def test_ftnn_builder(rng):
    net = ftnn([4, 6, 3], "F12", "relu", rng)
    assert [type(layer).__name__ for layer in net.layers] == ["FunctionalDense", "ReLU",
                                                              "FunctionalDense"]
    assert net[0].function.name == "F12" and net[0].path == "generic"
    dense_out = ftnn([4, 6, 3], "F03", "tanh", rng, output="dense", init="fan_in")
    assert isinstance(dense_out[2], Dense) and dense_out[0].init_scheme == "fan_in"
    with pytest.raises(ValueError, match=r"ftnn: output must be one of \['functional', 'dense'\], got 'conv'"):
        ftnn([4, 3], "F03", rng=rng, output="conv")
    with pytest.raises(ValueError, match="sizes must be"):
        ftnn([4], "F03", rng=rng)
    with pytest.raises(ValueError, match=r"rng is None and theta\['0.theta'\] was not given"):
        ftnn([4, 3], "F03")
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator or None, got int"):
        ftnn([4, 3], "F03", rng=0)


def test_same_seed_same_run():
    d = two_spirals()
    runs = [train_ftnn([2, 6, 2], (d.x_train / 6.5, d.y_train), np.random.default_rng(5),
                       function="F12", epochs=3, batch_size=50)[0] for _ in range(2)]
    for key, value in runs[0].params().items():
        np.testing.assert_array_equal(value, runs[1].params()[key])


def test_layerwise_training_freezes_lower_layers_and_learns():
    """Stage 2 must not change layer 1; the assembled net is [F1, phi, F2, phi, G2]."""
    data = load_fashion_mnist_small(n_train=600, n_test=300, rng=np.random.default_rng(0))
    rng = np.random.default_rng(0)
    snapshots = []

    class Recorder(FunctionalTransfer):
        def init_state(self, model, rng):
            snapshots.append([layer for layer in model.layers])
            return {}

    model, histories = train_layerwise([784, 32, 24, 10], (data.x_train, data.y_train), rng,
                                       function="F03", epochs_per_layer=6, finetune_epochs=0,
                                       algorithm=Recorder())
    assert len(histories) == 2 and len(snapshots) == 2
    stage1, stage2 = snapshots
    assert stage1[0] is model[0]                      # F1 trained in stage 1, kept
    assert stage2[0] is model[2] and stage2[2] is model[4]
    assert [layer.n_out for layer in model.layers if isinstance(layer, FunctionalDense)] == [32, 24, 10]
    assert isinstance(model[1], Tanh) and isinstance(model[3], Tanh)
    # stage 2 trained on features of the frozen F1: its first layer reads 32 inputs
    assert stage2[0].n_in == 32
    acc = accuracy(model.forward(data.x_test)[0], data.y_test)
    assert acc > 0.6, acc


def test_layerwise_stage_does_not_touch_frozen_params():
    data = load_fashion_mnist_small(n_train=300, n_test=100, rng=np.random.default_rng(1))
    rng = np.random.default_rng(1)
    model, _ = train_layerwise([784, 16, 16, 10], (data.x_train, data.y_train), rng,
                               function="F03", epochs_per_layer=1, finetune_epochs=0)
    # replay stage 1 with the same seed: layer 1 after stage 1 == layer 1 of the final model
    rng = np.random.default_rng(1)
    model1, _ = train_layerwise([784, 16, 10], (data.x_train, data.y_train), rng,
                                function="F03", epochs_per_layer=1, finetune_epochs=0)
    np.testing.assert_array_equal(model[0].params["theta"], model1[0].params["theta"])


def test_layerwise_bad_arguments(rng):
    with pytest.raises(ValueError, match="at least one hidden layer"):
        train_layerwise([4, 3], (np.zeros((2, 4)), np.zeros(2, int)), rng)
    with pytest.raises(ValueError, match="train_layerwise: epochs_per_layer must be >= 1, got 0"):
        train_layerwise([4, 5, 3], (np.zeros((2, 4)), np.zeros(2, int)), rng, epochs_per_layer=0)


def test_registry_build_learns_on_spirals_and_fashion_subset():
    """The registry default (F03, Adam 2e-3) makes visible progress within a few seconds."""
    d = two_spirals()
    rng = np.random.default_rng(0)
    setup = _build([2, 32, 32, 2], "tanh", rng)
    assert setup.model[0].function.name == DEFAULT_FUNCTION
    for _ in range(300):
        res = setup.algorithm.step(setup.model, {}, d.x_train, d.y_train, rng)
        setup.optimizer.update(setup.algorithm.variables(setup.model, {}), res.grads)
    assert accuracy(setup.model.forward(d.x_train)[0], d.y_train) > 0.8

    f = load_fashion_mnist_small(n_train=1000, n_test=500, rng=np.random.default_rng(0))
    setup = _build([784, 64, 10], "tanh", rng)
    for start in range(0, 1000, 50):
        res = setup.algorithm.step(setup.model, {}, f.x_train[start:start + 50],
                                   f.y_train[start:start + 50], rng)
        setup.optimizer.update(setup.algorithm.variables(setup.model, {}), res.grads)
    assert accuracy(setup.model.forward(f.x_test)[0], f.y_test) > 0.6


def test_train_ftnn_end_to_end_and_layerwise_options():
    d = two_spirals()
    data = (d.x_train / 6.5, d.y_train)
    model, hist = train_ftnn([2, 8, 2], data, np.random.default_rng(0), function="F19",
                             epochs=2, batch_size=97, make_optimizer=lambda: Adam(lr=1e-2))
    assert len(hist) == 1 and len(model) == 3
    model, hist = train_ftnn([2, 8, 8, 2], data, np.random.default_rng(0), function="F19",
                             epochs=2, epochs_per_layer=1, batch_size=97, layerwise=True)
    assert len(hist) == 3 and len(model) == 5 and hist[-1].epochs == 2


def test_registered_as_ftm():
    from refnets.algorithms import available_methods, get_method
    assert "ftm" in available_methods()
    method = get_method("ftm")
    setup = method.build([4, 5, 3], "tanh", np.random.default_rng(0))
    assert isinstance(setup.algorithm, FunctionalTransfer) and isinstance(setup.optimizer, Adam)
    assert setup.model[0].function.name == DEFAULT_FUNCTION


@pytest.mark.slow
def test_spirals_reproduction():
    """README section 8 (tutorial 50): 2-20-2, full-batch Adam 0.01, 3000 epochs, spirals in [-1, 1]:
    F03, F12 and F19 reach 100% train accuracy, the same-size tanh MLP (LIN) stays < 0.7."""
    d = two_spirals()
    x = d.x_train / np.abs(d.x_train).max()
    for function in ("F03", "F12", "F19", "LIN"):
        rng = np.random.default_rng(0)
        model = ftnn([2, 20, 2], function, "tanh", rng)
        algo, opt = FunctionalTransfer(), Adam(lr=0.01)
        for _ in range(3000):
            opt.update(model.params(), algo.step(model, {}, x, d.y_train, rng).grads)
        acc = accuracy(model.forward(x)[0], d.y_train)
        if function == "LIN":
            assert acc < 0.7, acc
        else:
            assert acc == 1.0, (function, acc)


@pytest.mark.slow
def test_pi_memorisation(tmp_path):
    """README section 8 via tutorial 51 (400 digits): with per-edge memory the recall
    reaches >= 0.9 (full BPTT per chunk, 500 passes); without recurrence it stays < 0.25."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "tutorials/51_functional_transfer_memory.py",
                           "--passes", "500", "--out-dir", str(tmp_path)], cwd=root,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg"),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1][len("SUMMARY "):])
    assert summary["digits"] == 400
    assert summary["recall_acc_bptt"] >= 0.9, summary
    assert summary["recall_acc_no_recurrence"] < 0.25, summary


@pytest.mark.slow
def test_depth_needs_fan_in_init_or_layerwise_training():
    """README section 8 (depth): with the official init a 5-hidden-layer F16 net does not train end to end
    (chance), while the fan-in-scaled init or greedy layer-wise training make it learn."""
    d = load_fashion_mnist_small(n_train=2000, n_test=500, rng=np.random.default_rng(0))

    def pool(x):
        return x.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(-1, 196)

    data, x_test = (pool(d.x_train), d.y_train), pool(d.x_test)
    sizes = [196] + [32] * 5 + [10]
    acc = {}
    for label, kwargs in (("official", {}), ("fan_in", {"init": "fan_in"}),
                          ("layerwise", {"layerwise": True, "epochs_per_layer": 4})):
        model, _ = train_ftnn(sizes, data, np.random.default_rng(0), function="F16",
                              activation="relu", epochs=8, batch_size=50, **kwargs)
        acc[label] = accuracy(model.forward(x_test)[0], d.y_test)
    assert acc["official"] < 0.15, acc
    assert acc["fan_in"] > 0.6, acc
    assert acc["layerwise"] > 0.45, acc
