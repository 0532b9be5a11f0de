"""Cross-checking contract of the HSIC package: trace, replay, given values, key scheme,
the switch that follows the authors' code, and input validation."""

import copy

import numpy as np
import pytest

from refnets.algorithms.base import Recorder
from refnets.algorithms.hsic import kernels as hk
from refnets.algorithms.hsic.algorithm import FOLLOW, HSICBottleneck
from refnets.algorithms.hsic.format import HSICSigmaCombined, format_setup
from refnets.algorithms.hsic.models import (backward_layers, block_keys, forward_layers,
                                            hsic_mlp, hsic_resconv, init_running_stats,
                                            split_blocks, update_running_stats)
from tests.helpers import assert_same


def params_of(model):
    if isinstance(model, list):
        return [m.copy_params() for m in model]
    return model.copy_params()


# ----------------------------------------------------------------------------
# the cases: every algorithm class of the package, and the modes of HSICBottleneck
# ----------------------------------------------------------------------------
def _dense(rng, **kw):
    model = hsic_mlp([6, 5, 4, 3], rng)
    algo = HSICBottleneck(n_classes=3, sigma=2.0, beta=10.0, lr=0.05, **kw)
    x, y = rng.standard_normal((12, 6)), np.arange(12) % 3
    return model, algo, x, y


def _resconv(rng):
    model = hsic_resconv((1, 5, 5), rng, channels=2, n_blocks=1, width=3, kernel_size=3)
    algo = HSICBottleneck(n_classes=3, sigma=2.0, beta=10.0, lr=0.05)
    return model, algo, rng.standard_normal((6, 1, 5, 5)), np.arange(6) % 3


def _format(rng):
    model, algo, x, y = _dense(rng)
    state = algo.init_state(model, rng)
    algo.step(model, state, x, y, rng)
    setup = format_setup(model, algo, state, 3, rng, lr=0.1)
    return setup.model, setup.algorithm, x, y


def _combined(rng):
    models = [hsic_mlp([6, 5, 4], rng), hsic_mlp([6, 5, 4], rng)]
    algo = HSICSigmaCombined([HSICBottleneck(4, sigma=1.0, beta=10.0, lr=0.05),
                              HSICBottleneck(4, sigma=5.0, beta=10.0, lr=0.05)])
    return models, algo, rng.standard_normal((16, 6)), np.arange(16) % 4


CASES = {
    "sequential": lambda rng: _dense(rng),
    "parallel": lambda rng: _dense(rng, parallel=True),
    "follow-authors": lambda rng: _dense(rng, follow="choasma/HSIC-bottleneck"),
    "resconv": _resconv,
    "format": _format,
    "sigma-combined": _combined,
}


@pytest.fixture(params=sorted(CASES))
def case(request):
    rng = np.random.default_rng(11)
    model, algo, x, y = CASES[request.param](rng)
    state = algo.init_state(model, rng)
    algo.step(model, state, x, y, rng)            # a non-trivial state (running stats, means)
    return model, algo, state, x, y


def test_trace_leaves_model_state_and_rng_untouched(case):
    model, algo, state, x, y = case
    rng = np.random.default_rng(3)
    before = (params_of(model), copy.deepcopy(state), rng.bit_generator.state)
    algo.trace(model, state, x, y, rng)
    assert_same(params_of(model), before[0], "params")
    assert_same(state, before[1])
    assert rng.bit_generator.state == before[2]


def test_trace_equals_step_bit_for_bit(case):
    model, algo, state, x, y = case
    tr = algo.trace(model, state, x, y, np.random.default_rng(3))
    res = algo.step(model, state, x, y, np.random.default_rng(3))
    assert tr["loss"] == res.loss
    assert_same(tr["grads"], res.grads, "grads")
    assert_same(tr["info"], res.info, "info")
    assert_same(tr["after"], state, "after")
    if isinstance(algo, HSICBottleneck) and not algo.parallel:     # the blocks after their update
        for key, value in model.params().items():
            np.testing.assert_array_equal(tr["values"][f"{key}_after"], value)


def test_step_with_rng_none_replays_the_trace(case):
    model, algo, state, x, y = case
    tr = algo.trace(model, state, x, y, np.random.default_rng(3))
    assert tr["given"] == {}                      # the HSIC bottleneck draws nothing
    res = algo.step(model, state, x, y, None, **tr["given"])
    assert res.loss == tr["loss"]
    assert_same(res.grads, tr["grads"], "grads")
    assert_same(state, tr["after"])


def test_unknown_keyword_lists_the_accepted_ones(case):
    model, algo, state, x, y = case
    with pytest.raises(ValueError, match=r"step: unknown keyword 'B'; the given values this "
                                         r"method accepts are \[\]"):
        algo.step(model, state, x, y, None, B={"0.B": np.zeros(3)})
    with pytest.raises(ValueError, match=r"init_state: unknown keyword 'noise'"):
        algo.init_state(model, None, noise={})


def test_nothing_is_drawn(rng):
    """With rng=None init_state and step run: there is no random quantity to give."""
    model, algo, x, y = _dense(rng)
    ref_model = copy.deepcopy(model)
    state = algo.init_state(model, None)
    ref_state = algo.init_state(ref_model, rng)
    algo.step(model, state, x, y, None)
    algo.step(ref_model, ref_state, x, y, rng)
    assert_same(params_of(model), params_of(ref_model), "params")


# ----------------------------------------------------------------------------
# trace keys: what they hold
# ----------------------------------------------------------------------------
def test_trace_keys_hold_the_readme_quantities(rng):
    model, algo, x, y = _dense(rng, parallel=True)
    state = algo.init_state(model, rng)
    tr = algo.trace(model, state, x, y)
    v = tr["values"]
    assert block_keys(model) == [2, 5, 8]         # blocks keyed by their last layer
    Y = np.eye(3)[y]
    KX, KY = hk.gaussian_kernel(x, 2.0), hk.gaussian_kernel(Y, 2.0)
    RX, RY = hk.nocco(KX)[0], hk.nocco(KY)[0]
    np.testing.assert_array_equal(v["Y"], Y)
    np.testing.assert_allclose(v["K_X"], KX, rtol=1e-15)
    np.testing.assert_allclose(v["R_Y"], RY, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(v["T"], v["R_X"] - 10.0 * v["R_Y"], rtol=0, atol=0)
    h = x
    for b, ((lo, hi), k) in enumerate(zip(split_blocks(model), block_keys(model))):
        z, caches = forward_layers(model, lo, hi, h)
        np.testing.assert_array_equal(v[f"{k}.Z"], z)
        K = hk.gaussian_kernel(z, 2.0)
        np.testing.assert_allclose(v[f"{k}.K_Z"], K, rtol=1e-15)
        RZ, M = hk.nocco(K)
        np.testing.assert_allclose(v[f"{k}.R_Z"], RZ, rtol=1e-12, atol=1e-12)
        assert v[f"{k}.nhsic_x"] == pytest.approx(np.trace(RZ @ RX), rel=1e-9)
        assert v[f"{k}.nhsic_y"] == pytest.approx(np.trace(RZ @ RY), rel=1e-9)
        assert v[f"{k}.J"] == tr["info"]["objective"][b]
        G = hk.nhsic_grad_kernel(M, RX - 10.0 * RY)
        dZ = hk.gaussian_kernel_backward(G, K, z, hk.kernel_scale(2.0, z.shape[1]))
        np.testing.assert_allclose(v[f"{k}.dZ"], dZ, rtol=1e-9, atol=1e-9 * np.abs(dZ).max())
        _, grads = backward_layers(model, lo, hi, v[f"{k}.dZ"], caches)
        for key, g in grads.items():
            np.testing.assert_array_equal(v[f"{key}_grad"], g)
            np.testing.assert_array_equal(tr["grads"][key], g)
        h = z
    for k in (1, 4, 7):                           # the BatchNorms' running statistics after
        np.testing.assert_array_equal(v[f"{k}.running_mean"], tr["after"]["running_stats"][k]["mean"])
        np.testing.assert_array_equal(v[f"{k}.running_var"], tr["after"]["running_stats"][k]["var"])


def test_trace_keys_of_a_residual_net(rng):
    model, algo, x, y = _resconv(rng)
    tr = algo.trace(model, algo.init_state(model, rng), x, y)
    v = tr["values"]
    keys = block_keys(model)                     # conv block, residual block, dense block
    assert keys == [2, 3, 7]
    assert v["3.Z"].shape == (6, 2 * 2 * 2)      # NCHW maps flattened to (m, C*H*W)
    assert v["3.dZ"].shape == v["3.Z"].shape
    assert "3.1.running_mean" in v and "3.4.running_var" in v   # BN inside the residual branch
    assert "3.0.W_after" in v and "3.3.W_grad" in v


def test_combined_trace_prefixes_member_keys(rng):
    models, algo, x, y = _combined(rng)
    tr = algo.trace(models, algo.init_state(models, rng), x, y)
    assert {"member0/K_X", "member1/K_X", "member0/2.K_Z", "member1/5.Z_after"} <= set(tr["values"])
    assert not np.array_equal(tr["values"]["member0/K_X"], tr["values"]["member1/K_X"])  # sigma


def test_format_trace_holds_features_and_logits(rng):
    head, algo, x, y = _format(rng)
    tr = algo.trace(head, {}, x, y)
    np.testing.assert_array_equal(tr["values"]["F"], algo.features(x))
    np.testing.assert_array_equal(tr["values"]["logits"], head.forward(algo.features(x))[0])


# ----------------------------------------------------------------------------
# follow the authors' code: running statistics at every full forward
# ----------------------------------------------------------------------------
def test_follow_sets_the_switch_and_an_explicit_switch_wins():
    assert FOLLOW == {"choasma/HSIC-bottleneck": {"running_stats_updates": "every_forward"}}
    assert HSICBottleneck(3).running_stats_updates == "per_block"
    assert HSICBottleneck(3, follow="choasma/HSIC-bottleneck").running_stats_updates == "every_forward"
    assert HSICBottleneck(3, follow="choasma/HSIC-bottleneck",
                          running_stats_updates="per_block").running_stats_updates == "per_block"
    with pytest.raises(ValueError, match=r"HSICBottleneck: follow must be one of "
                                         r"\['choasma/HSIC-bottleneck'\], got 'authors'"):
        HSICBottleneck(3, follow="authors")


def test_every_forward_running_mean_hand_formula(rng):
    """First batch norm of a 3-block net, one step, 'every_forward'.

    Its input x W0^T sees the old W0 in the authors' first two forwards (the one
    before the block loop and the one before block 0's update) and the updated W0
    in the other L - 1 = 2. With momentum 0.1 from 0 after n = L + 1 = 4 updates,
    mean = sum_t 0.1 * 0.9^(n-1-t) mu_t:
        0.1 (0.9^3 + 0.9^2) mu_old + 0.1 (0.9 + 1) mu_new.
    The variance starts at 1: var = 0.9^4 + the same weights on the unbiased variances.
    """
    model, algo, x, y = _dense(rng, follow="choasma/HSIC-bottleneck")
    state = algo.init_state(model, rng)
    a_old = x @ model.layers[0].params["W"].T
    algo.step(model, state, x, y, rng)
    a_new = x @ model.layers[0].params["W"].T
    w_old, w_new = 0.1 * (0.9 ** 3 + 0.9 ** 2), 0.1 * (0.9 + 1.0)
    stats = state["running_stats"][1]
    np.testing.assert_allclose(stats["mean"], w_old * a_old.mean(0) + w_new * a_new.mean(0),
                               rtol=1e-12)
    np.testing.assert_allclose(stats["var"], 0.9 ** 4 + w_old * a_old.var(0, ddof=1)
                               + w_new * a_new.var(0, ddof=1), rtol=1e-12)
    # refnets' default: one update from the updated block's forward
    model, algo, x, y = _dense(np.random.default_rng(11))
    state = algo.init_state(model, rng)
    algo.step(model, state, x, y, rng)
    a_new = x @ model.layers[0].params["W"].T
    np.testing.assert_allclose(state["running_stats"][1]["mean"], 0.1 * a_new.mean(0), rtol=1e-12)


def test_every_forward_equals_the_authors_loop(rng):
    """Two steps of 'every_forward' = the authors' hsic_train written out: a full forward
    (statistics updated) before the loop, then per block a full forward (statistics
    updated), that block's J gradient and plain SGD + decay."""
    model, algo, x, y = _dense(rng, follow="choasma/HSIC-bottleneck")
    ref = copy.deepcopy(model)
    state = algo.init_state(model, rng)
    ref_params, ref_running = ref.params(), init_running_stats(ref)
    RX, RY = algo._nocco_of(x), algo._nocco_of(np.eye(3)[y])
    blocks, L = split_blocks(ref), len(ref.layers)
    for _ in range(2):
        algo.step(model, state, x, y, rng)
        _, caches = forward_layers(ref, 0, L, x)
        ref_running = update_running_stats(ref, 0, L, ref_running, caches)
        for lo, hi in blocks:
            h, zc = x, None
            for a, c in blocks:                          # the whole net, as model(data)
                out, cs = forward_layers(ref, a, c, h)
                if (a, c) == (lo, hi):
                    z, zc = out, cs
                h = out
            all_caches = forward_layers(ref, 0, L, x)[1]
            ref_running = update_running_stats(ref, 0, L, ref_running, all_caches)
            dz = algo.block_objective(z, RX, RY)[3]
            _, grads = backward_layers(ref, lo, hi, dz, zc)
            for key, g in grads.items():
                ref_params[key] -= 0.05 * (g + 1e-3 * ref_params[key])
    for key, value in model.params().items():
        np.testing.assert_allclose(value, ref_params[key], rtol=1e-12, atol=1e-15)
    for k in ref_running:
        for s in ("mean", "var"):
            np.testing.assert_allclose(state["running_stats"][k][s], ref_running[k][s],
                                       rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------
# validation of what the user hands in
# ----------------------------------------------------------------------------
def test_float32_and_int_inputs_are_upcast_exactly(rng):
    model, algo, x, y = _dense(rng)
    x32 = x.astype(np.float32)
    m1, m2 = copy.deepcopy(model), copy.deepcopy(model)
    s1, s2 = algo.init_state(m1, None), algo.init_state(m2, None)
    r1 = algo.step(m1, s1, x32, y, None)
    r2 = algo.step(m2, s2, x32.astype(np.float64), y, None)
    assert r1.loss == r2.loss
    assert_same(params_of(m1), params_of(m2), "params")
    xi = np.round(3 * x).astype(np.int64)
    assert algo.trace(model, s1, xi, y)["loss"] == algo.trace(model, s1, xi.astype(float), y)["loss"]
    assert algo.predict(m1, s1, x32).dtype == np.float64


@pytest.mark.parametrize("bad, match", [
    (lambda x: x[:, 0], r"HSICBottleneck.step: x must have 2 or 3 or 4 dimensions, got shape \(12,\)"),
    (lambda x: x[:0], r"HSICBottleneck.step: x is an empty batch"),
    (lambda x: np.where(x > 1.5, np.nan, x), r"HSICBottleneck.step: x contains a non-finite"),
    (lambda x: x.astype(str), r"HSICBottleneck.step: x must be a real numeric array"),
])
def test_bad_x_is_named(rng, bad, match):
    model, algo, x, y = _dense(rng)
    state = algo.init_state(model, None)
    with pytest.raises(ValueError, match=match):
        algo.step(model, state, bad(x), y, None)


def test_bad_x_in_predict_is_named(rng):
    model, algo, x, y = _dense(rng)
    state = algo.init_state(model, None)
    with pytest.raises(ValueError, match=r"HSICBottleneck.predict: x contains a non-finite"):
        algo.predict(model, state, np.full_like(x, np.inf))


@pytest.mark.parametrize("kwargs, match", [
    (dict(mapping_momentum="a"), r"mapping_momentum must be a real number, got 'a' \(str\)"),
    (dict(mapping_momentum=0.0), r"mapping_momentum must be > 0 and <= 1, got 0.0"),
    (dict(sigma="6"), r"sigma must be a real number"),
    (dict(sigma=np.inf), r"sigma must be finite"),
    (dict(beta=-1.0), r"beta must be >= 0"),
    (dict(lr=0.0), r"lr must be > 0"),
    (dict(weight_decay=None), r"weight_decay must be a real number"),
    (dict(eps=0), r"eps must be > 0"),
    (dict(parallel="yes"), r"parallel must be True or False"),
    (dict(scale_by_dim=1), r"scale_by_dim must be True or False"),
    (dict(readout="argmax"), r"readout must be one of \['hungarian', 'centroid'\]"),
    (dict(running_stats_updates="never"), r"running_stats_updates must be one of"),
    (dict(n_classes=2.5), r"n_classes must be an integer"),
    (dict(n_classes=1), r"n_classes must be >= 2"),
])
def test_bad_hyperparameters_are_named(kwargs, match):
    kwargs = {"n_classes": 3, **kwargs}
    with pytest.raises(ValueError, match="HSICBottleneck: " + match):
        HSICBottleneck(**kwargs)


def test_recorder_is_optional_and_records_nothing_by_default(rng):
    model, algo, x, y = _dense(rng)
    rec = Recorder()
    state = algo.init_state(model, None)
    algo.step(copy.deepcopy(model), copy.deepcopy(state), x, y, None, record=rec)
    assert rec.values and rec.draws == {}


def test_follow_builds_the_authors_biases_which_only_decay(rng):
    """hsic_mlp(follow=...) keeps the Linear bias, as the authors' ModelLinear. Under batch
    norm it gets no gradient (HSIC-8a), so one step of SGD with decay gives exactly
    b (1 - lr wd): b = 0.3 -> 0.3 (1 - 0.05 * 1e-3) = 0.299985."""
    model = hsic_mlp([6, 5, 4, 3], rng, follow="choasma/HSIC-bottleneck")
    assert set(model.params()) == {"0.W", "0.b", "3.W", "3.b", "6.W", "6.b"}
    assert set(hsic_mlp([6, 5, 3], rng).params()) == {"0.W", "3.W"}          # refnets' default
    assert set(hsic_mlp([6, 5, 3], rng, follow="choasma/HSIC-bottleneck", bias=False).params()) \
        == {"0.W", "3.W"}                                                      # explicit wins
    conv = hsic_resconv((1, 5, 5), rng, channels=2, n_blocks=1, width=3, kernel_size=3,
                        follow="choasma/HSIC-bottleneck")
    assert "0.b" in conv.params() and "3.0.b" in conv.params()
    for key, value in model.params().items():
        if key.endswith(".b"):
            value[...] = 0.3
    algo = HSICBottleneck(n_classes=3, sigma=2.0, beta=10.0, lr=0.05, follow="choasma/HSIC-bottleneck")
    x, y = rng.standard_normal((12, 6)), np.arange(12) % 3
    tr = algo.trace(model, algo.init_state(model, None), x, y)
    for k in (0, 3, 6):
        np.testing.assert_allclose(tr["values"][f"{k}.b_grad"], 0.0, atol=1e-12)
        np.testing.assert_allclose(tr["values"][f"{k}.b_after"], 0.299985, rtol=1e-10)
    with pytest.raises(ValueError, match=r"hsic_mlp: follow must be one of"):
        hsic_mlp([6, 3], rng, follow="theirs")
