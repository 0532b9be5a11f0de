"""Cross-checking FunctionalTransfer: given draws, trace keys, the follow= switch, validation."""

import copy

import numpy as np
import pytest

from refnets.algorithms.functional_transfer import FOLLOW, FunctionalTransfer, ftnn
from refnets.layers import Dense, FunctionalDense
from refnets.losses import softmax_cross_entropy


def _case(rng, function="F20", output="functional"):
    """A small net with signs (F20) or without, a dense output if asked, and a batch."""
    net = ftnn([3, 4, 3], function, "tanh", rng, output=output)
    for layer in net.layers:
        if layer.params:
            layer.params["b"][...] = 0.3 * rng.standard_normal(layer.params["b"].shape)
    return net, rng.standard_normal((5, 3)), rng.integers(0, 3, 5)


def _snapshot(net):
    return copy.deepcopy([(layer.params, getattr(layer, "signs", None)) for layer in net.layers])


def _assert_same_net(net, snap):
    for layer, (params, signs) in zip(net.layers, snap):
        for key, value in params.items():
            np.testing.assert_array_equal(layer.params[key], value)
        np.testing.assert_array_equal(getattr(layer, "signs", None), signs)


@pytest.mark.parametrize("function,output,kwargs", [
    ("F20", "functional", {}), ("F12", "dense", {}),
    ("F19", "functional", {"follow": "cai-mlpractical", "grad_clip": 0.05})])
def test_trace_is_step_recorded_on_copies(rng, function, output, kwargs):
    """trace leaves model, state and the caller's rng untouched; its loss, grads, info and
    after-state equal step's bit for bit; step(rng=None, **given) replays it."""
    net, x, y = _case(rng, function, output)
    algo = FunctionalTransfer(**kwargs)
    state = algo.init_state(net, rng)
    snap, rng_state = _snapshot(net), copy.deepcopy(rng.bit_generator.state)
    tr = algo.trace(net, state, x, y, rng)
    _assert_same_net(net, snap)
    assert rng.bit_generator.state == rng_state and state == {} and tr["after"] == {}
    assert tr["given"] == {}                                # nothing is drawn per step
    res = algo.step(net, state, x, y, rng)
    replay = algo.step(net, state, x, y, None, **tr["given"])
    for r in (res, replay):
        assert r.loss == tr["loss"] and r.info == tr["info"]
        assert set(r.grads) == set(tr["grads"])
        for key, g in r.grads.items():
            np.testing.assert_array_equal(g, tr["grads"][key])
    _assert_same_net(net, snap)


def test_trace_keys_and_their_meaning(rng):
    """The README's trace keys: per-edge values f and derivatives of every functional
    layer, its input x, output a, delta = dE/da and dx; y and dy of the activations."""
    net, x, y = _case(rng, "F20")
    v = FunctionalTransfer().trace(net, {}, x, y)["values"]
    assert set(v) == {"0.x", "0.f", "0.df_dx", "0.df_dtheta", "0.a", "0.delta", "0.dx",
                      "1.y", "1.dy", "1.dx",
                      "2.x", "2.f", "2.df_dx", "2.df_dtheta", "2.a", "2.delta", "2.dx"}
    assert v["0.f"].shape == v["0.df_dx"].shape == (5, 4, 3)
    assert v["0.df_dtheta"].shape == (2, 5, 4, 3) and v["2.f"].shape == (5, 3, 4)
    np.testing.assert_array_equal(v["0.x"], x)
    np.testing.assert_array_equal(v["2.x"], v["1.y"])             # h = tanh(a) feeds layer 2
    np.testing.assert_array_equal(v["1.y"], np.tanh(v["0.a"]))
    np.testing.assert_allclose(v["0.f"].sum(axis=2) + net[0].params["b"], v["0.a"], rtol=1e-12)
    _, dlogits = softmax_cross_entropy(v["2.a"], y)
    np.testing.assert_array_equal(v["2.delta"], dlogits)
    # FTM-5 through layer 2, then phi' = 1 - tanh^2 gives layer 0's delta
    np.testing.assert_allclose(v["2.dx"], np.einsum("no,noi->ni", v["2.delta"], v["2.df_dx"]),
                               rtol=1e-12)
    np.testing.assert_array_equal(v["1.dy"], v["2.dx"])
    np.testing.assert_allclose(v["0.delta"], v["1.dy"] * (1 - v["1.y"] ** 2), rtol=1e-12)
    # FTM-4: dE/dtheta from the recorded delta and df/dtheta
    grads = FunctionalTransfer().step(net, {}, x, y, None).grads
    np.testing.assert_allclose(np.einsum("no,qnoi->qoi", v["0.delta"], v["0.df_dtheta"]),
                               grads["0.theta"], rtol=1e-12)


def test_trace_of_a_functional_convolution(rng):
    """FunctionalConv2D in a model: per-edge values over the patch rows sum to its output."""
    from refnets.layers import Flatten, FunctionalConv2D, Tanh
    from refnets.models import Sequential
    net = Sequential([FunctionalConv2D(2, 3, 3, "F12", rng, padding=1), Tanh(), Flatten(),
                      FunctionalDense(3 * 4 * 4, 2, "F03", rng)])
    x, y = rng.standard_normal((2, 2, 4, 4)), np.array([0, 1])
    tr = FunctionalTransfer().trace(net, {}, x, y)
    v = tr["values"]
    assert v["0.cols"].shape == (2 * 4 * 4, 2 * 3 * 3) and v["0.f"].shape == (32, 3, 18)
    a = v["0.f"].sum(axis=2) + net[0].params["b"]                 # rows (n, i, j), columns o
    np.testing.assert_allclose(a.reshape(2, 4, 4, 3).transpose(0, 3, 1, 2), v["0.a"], rtol=1e-12)
    assert v["0.delta"].shape == (2, 3, 4, 4) and "0.dx" in v and "2.dy" in v
    res = FunctionalTransfer().step(net, {}, x, y, None)
    for key, g in res.grads.items():
        np.testing.assert_array_equal(g, tr["grads"][key])


def test_unknown_keywords_are_refused(rng):
    net, x, y = _case(rng)
    algo = FunctionalTransfer()
    with pytest.raises(ValueError, match=r"FunctionalTransfer.step: unknown keyword 'noise'; "
                                         r"the given values this method accepts are \[\]"):
        algo.step(net, {}, x, y, None, noise={"0.noise": np.zeros(3)})
    with pytest.raises(ValueError, match="FunctionalTransfer.init_state: unknown keyword 'signs'"):
        algo.init_state(net, None, signs={})


def test_ftnn_given_draws(rng):
    """theta, signs and W given: no rng needed; the net equals the drawn one; a given
    value consumes nothing from rng; a needed draw with rng=None is named."""
    drawn = ftnn([3, 4, 5, 2], "F18", "relu", np.random.default_rng(11), output="dense")
    theta = {f"{k}.theta": drawn[k].params["theta"] for k in (0, 2)}
    signs = {f"{k}.signs": drawn[k].signs for k in (0, 2)}
    W = {"4.W": drawn[4].params["W"]}
    state = rng.bit_generator.state
    for r in (None, rng):
        given = ftnn([3, 4, 5, 2], "F18", "relu", r, output="dense", theta=theta, signs=signs,
                     W=W)
        assert rng.bit_generator.state == state
        x = rng.standard_normal((6, 3))
        np.testing.assert_array_equal(given.forward(x)[0], drawn.forward(x)[0])
        state = rng.bit_generator.state
    with pytest.raises(ValueError, match=r"rng is None and signs\['2.signs'\] was not given"):
        ftnn([3, 4, 5, 2], "F18", "relu", None, output="dense", theta=theta,
             signs={"0.signs": signs["0.signs"]}, W=W)
    with pytest.raises(ValueError, match=r"rng is None and W\['4.W'\] was not given"):
        ftnn([3, 4, 5, 2], "F18", "relu", None, output="dense", theta=theta, signs=signs)
    with pytest.raises(ValueError, match=r"theta has keys \['1.theta'\] that no layer draws; the "
                                         r"keys this network accepts are \['0.theta', '2.theta'\]"):
        ftnn([3, 4, 5, 2], "F18", "relu", rng, output="dense", theta={"1.theta": 0})
    with pytest.raises(ValueError, match="signs has keys"):      # F03 has no signs
        ftnn([3, 4, 2], "F03", "relu", rng, signs={"0.signs": np.ones((4, 3))})


def _hand_f03_case():
    """One F03 layer 1 -> 2, a = (1e-3, 0), b = (0, 0), bias 0; x = (30, 25), labels 1."""
    net = ftnn([1, 2], "F03", rng=None, theta={"0.theta": [[[1e-3], [0.0]], [[0.0], [0.0]]]})
    return net, np.array([[30.0], [25.0]]), np.array([1, 1])


def test_clip_on_sum_follows_the_authors_pgrads():
    """The authors' pgrads clips the batch SUM of the gradients at +-1000 and their SGD
    divides by the batch size. Re-derived by hand: logits_n = (a_0 x_n^2, 0),
    delta_n = (softmax_n - onehot(1)) / N, S_a = N * sum_n delta_n x_n^2; the direction is
    clip(S, -1000, 1000) / N. Here S_a0 ~ 1040 is clipped while the mean (~520) is not."""
    net, x, y = _hand_f03_case()
    N = x.shape[0]
    logits = np.stack([1e-3 * x[:, 0] ** 2, np.zeros(N)], axis=1)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    delta = (p - np.eye(2)[y]) / N
    g_theta = np.stack([delta.T @ x ** 2, delta.T @ x])              # (2 params, 2 out, 1 in)
    g_b = delta.sum(axis=0)
    S = N * g_theta
    assert S[0, 0, 0] > 1000.0 > g_theta[0, 0, 0]                    # the case this test is for
    follow = FunctionalTransfer(follow="cai-mlpractical").step(net, {}, x, y, None)
    np.testing.assert_allclose(follow.grads["0.theta"], np.clip(S, -1000, 1000) / N, rtol=1e-13)
    np.testing.assert_allclose(follow.grads["0.b"], np.clip(N * g_b, -1000, 1000) / N, rtol=1e-13)
    assert follow.info["clipped_fraction"] == 2 / 6      # S_a for both outputs (opposite deltas)
    default = FunctionalTransfer(grad_clip=1000.0).step(net, {}, x, y, None)   # clip_on='mean'
    np.testing.assert_allclose(default.grads["0.theta"], g_theta, rtol=1e-13)
    assert default.info["clipped_fraction"] == 0.0


def test_clip_layers_functional_leaves_ordinary_layers_unclipped(rng):
    """The authors' ordinary layers do not clip: with clip_layers='functional' the dense
    output layer's gradient is exact while the functional layer's is clipped."""
    net, x, y = _case(rng, "F03", output="dense")
    exact = FunctionalTransfer().step(net, {}, x, y, None).grads
    res = FunctionalTransfer(follow="cai-mlpractical", grad_clip=0.01).step(net, {}, x, y, None)
    bound = 0.01 / x.shape[0]
    for key in ("0.theta", "0.b"):
        np.testing.assert_array_equal(res.grads[key], np.clip(exact[key], -bound, bound))
    assert np.any(np.abs(exact["0.theta"]) > bound)
    for key in ("2.W", "2.b"):
        np.testing.assert_array_equal(res.grads[key], exact[key])
    assert np.any(np.abs(exact["2.W"]) > bound)
    everything = FunctionalTransfer(grad_clip=bound).step(net, {}, x, y, None).grads
    np.testing.assert_array_equal(everything["2.W"], np.clip(exact["2.W"], -bound, bound))


def test_follow_preset_and_explicit_keywords():
    algo = FunctionalTransfer(follow="cai-mlpractical")
    assert (algo.grad_clip, algo.clip_on, algo.clip_layers) == (1000.0, "sum", "functional")
    assert FOLLOW["cai-mlpractical"] == {"grad_clip": 1000.0, "clip_on": "sum",
                                         "clip_layers": "functional"}
    assert FunctionalTransfer(follow="cai-mlpractical", clip_on="mean").clip_on == "mean"
    assert FunctionalTransfer(follow="cai-mlpractical", grad_clip=None).grad_clip is None
    default = FunctionalTransfer()
    assert (default.grad_clip, default.clip_on, default.clip_layers) == (None, "mean", "all")


@pytest.mark.parametrize("kwargs,message", [
    ({"grad_clip": "1000"}, "grad_clip must be a real number, got '1000'"),
    ({"grad_clip": float("inf")}, "grad_clip must be finite"),
    ({"clip_on": "max"}, r"clip_on must be one of \['mean', 'sum'\], got 'max'"),
    ({"clip_layers": "dense"}, r"clip_layers must be one of \['all', 'functional'\]"),
    ({"follow": "cai"}, r"follow must be one of \[None, 'cai-mlpractical'\], got 'cai'"),
])
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match="FunctionalTransfer: " + message):
        FunctionalTransfer(**kwargs)


def test_step_input_validation(rng):
    net, x, y = _case(rng, "F12")
    algo = FunctionalTransfer()
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"x contains a non-finite value .* at index \(2, 1\)"):
        algo.step(net, {}, bad, y, None)
    with pytest.raises(ValueError, match="x is an empty batch"):
        algo.step(net, {}, x[:0], y[:0], None)
    ref = algo.step(net, {}, x.astype(np.float32).astype(np.float64), y, None)
    res = algo.step(net, {}, x.astype(np.float32), y, None)
    assert res.loss == ref.loss
    for key, g in ref.grads.items():
        assert res.grads[key].dtype == np.float64
        np.testing.assert_array_equal(res.grads[key], g)


def test_predict_and_train_ftnn_validation(rng):
    net, x, _ = _case(rng, "F03")
    algo = FunctionalTransfer()
    out = algo.predict(net, {}, x.astype(np.float32))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, algo.predict(net, {}, x.astype(np.float32).astype(float)))
    with pytest.raises(ValueError, match=r"x contains a non-finite value \(inf\) at index \(0, 0\)"):
        algo.predict(net, {}, np.full((2, 3), np.inf))
    from refnets.algorithms.functional_transfer import train_ftnn
    data = (x, np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="train_ftnn: epochs must be an integer, got '3'"):
        train_ftnn([3, 2], data, rng, epochs="3")
    with pytest.raises(ValueError, match="train_ftnn: batch_size must be >= 1, got 0"):
        train_ftnn([3, 2], data, rng, batch_size=0)
    with pytest.raises(ValueError, match="train_ftnn: layerwise must be True or False, got 1"):
        train_ftnn([3, 2], data, rng, layerwise=1)


def test_ftnn_names_itself_in_argument_errors(rng):
    with pytest.raises(ValueError, match="ftnn: function must be one of .* got 'F99'"):
        ftnn([2, 3, 2], "F99", "tanh", rng)
    with pytest.raises(ValueError, match="ftnn: activation must be one of .* got 'foo'"):
        ftnn([2, 3, 2], "F03", "foo", rng)
    with pytest.raises(ValueError, match="ftnn: activation must be a name or an Activation "
                                         "instance, got 5"):
        ftnn([2, 3, 2], "F03", 5, rng)
    with pytest.raises(ValueError, match="FunctionalDense: function must be one of"):
        FunctionalDense(2, 3, "F99", rng)


def test_layer_types_in_a_model_are_functional_or_dense(rng):
    net, _, _ = _case(rng, "F03", output="dense")
    assert isinstance(net[0], FunctionalDense) and isinstance(net[2], Dense)


def test_authors_layout_gives_the_same_layer(rng):
    """The authors' arrays, W (k, n_in, n_out) and signs (n_in, n_out) with row-vector
    products, given as theta = W.transpose(0, 2, 1) and signs = U.T (README section 6),
    give their forward pass, their summed parameter gradients (transposed) and their
    input gradient, re-derived here from the formulas in their layout."""
    n_in, n_out, N = 4, 3, 5
    x, delta = rng.standard_normal((N, n_in)), rng.standard_normal((N, n_out))
    # F03: a = x^2 W0 + x W1 + b
    W, b = rng.uniform(-0.1, 0.1, (2, n_in, n_out)), rng.standard_normal(n_out)
    layer = FunctionalDense(n_in, n_out, "F03", None, theta=W.transpose(0, 2, 1))
    layer.params["b"][...] = b
    a, cache = layer.forward(x)
    np.testing.assert_allclose(a, (x * x) @ W[0] + x @ W[1] + b, rtol=1e-13)
    dx, g = layer.backward(delta, cache)
    np.testing.assert_allclose(g["theta"][0], ((x * x).T @ delta).T, rtol=1e-13)
    np.testing.assert_allclose(g["theta"][1], (x.T @ delta).T, rtol=1e-13)
    np.testing.assert_allclose(dx, 2 * x * (delta @ W[0].T) + delta @ W[1].T, rtol=1e-13)
    # F07: a = x (relu(W) * U) + b, one parameter stored as (n_in, n_out); signs U
    W7 = rng.uniform(-0.1, 0.2, (n_in, n_out))
    U = np.where(rng.uniform(-0.1, 0.1, (n_in, n_out)) >= 0, 1.0, -1.0)
    layer = FunctionalDense(n_in, n_out, "F07", None, theta=W7.T[None], signs=U.T)
    a, cache = layer.forward(x)
    np.testing.assert_allclose(a, x @ (np.maximum(W7, 0) * U), rtol=1e-13)
    dx, g = layer.backward(delta, cache)
    np.testing.assert_allclose(g["theta"][0], ((x.T @ delta) * U).T, rtol=1e-13)   # no gate
    np.testing.assert_allclose(dx, delta @ (np.maximum(W7, 0) * U).T, rtol=1e-13)
