"""Decorrelation (Ahmad 2024): the rules, the layer maths and backprop through R.

The invariants of the package README's equations (DEC-1 to DEC-21), a
hand-worked vector of the authors' ``Decorrelator`` (orientation, sub-batch,
gain) and the guard against zero-variance inputs.
"""

import numpy as np
import pytest

from refnets.algorithms import backprop_gradients
from refnets.algorithms.decorrelation import rules
from refnets.algorithms.decorrelation.net import backward_net, forward_net, layer_state
from refnets.algorithms.decorrelation.algorithm import DecorrelatedBackprop, Decorrelation
from refnets.gradcheck import assert_close, numerical_vjp
from refnets.layers import Conv2D, Dense, conv2d_naive
from refnets.layers import Flatten, Tanh
from refnets.losses import mse, softmax_cross_entropy
from refnets.models import Sequential, mlp
from refnets.optim import Adam

# A hand-worked vector for the authors' Decorrelator: 10 samples of 2 features, eta = 0.1.
X_OFFICIAL = np.array([[2, 1], [1, 2], [0, -1], [-1, 0], [3, 1],
                       [1, 1], [0, 0], [-2, -1], [1, -1], [2, 2]], dtype=np.float64)


def _dense_decor(d, n_out=3, seed=0, **kw):
    layer = Dense(d, n_out, np.random.default_rng(seed))
    dec = Decorrelation(**kw)
    return layer, dec, dec.init_layer(layer)


def _correlated(rng, n, d, lam_max=4.0, lam_min=4e-3):
    """Zero-mean Gaussian samples with log-spaced covariance eigenvalues (4 to 4e-3)."""
    lam = np.logspace(np.log10(lam_max), np.log10(lam_min), d)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    cov = (q * lam) @ q.T
    root = q * np.sqrt(lam)                                  # root @ root.T = cov
    return lambda m: rng.standard_normal((m, d)) @ root.T, cov


def _corr_rms(C):
    s = np.sqrt(np.diag(C))
    corr = C / np.outer(s, s)
    off = corr[~np.eye(len(C), dtype=bool)]
    return float(np.sqrt(np.mean(off ** 2)))


# ----------------------------------------------------------------------------
# the official vector, worked by hand
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True])
def test_official_decorrelator_vector(legacy):
    """(DEC-13)-(DEC-16) by hand: C, s, R1, running mean, z; R2 after the reversed batch."""
    layer, dec, st = _dense_decor(2, lr=0.1, legacy_head_dense=legacy)
    _, cache = dec.forward(layer, X_OFFICIAL, st)
    # k = floor(0.1 * 10) + 1 = 2 (= d); the batch mean is (0.7, 0.4), so with R = I
    # z_1 = (2 - 0.7, 1 - 0.4) = (1.3, 0.6) and z_2 = (0.3, 1.6).
    np.testing.assert_allclose(cache["z"][:2], [[1.3, 0.6], [0.3, 1.6]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(st["running_mean"], [0.07, 0.04], rtol=0, atol=1e-16)
    # C = (z_1 z_1^T + z_2 z_2^T) / 2 = [[0.89, 0.63], [0.63, 1.46]]
    np.testing.assert_allclose(rules.second_moment(cache["z"][:2]), [[0.89, 0.63], [0.63, 1.46]],
                               atol=1e-15)
    # s = (sqrt(5)/sqrt(2.05 + 1e-8) + sqrt(5)/sqrt(2.65 + 1e-8)) / 2 = 1.46767163
    info = dec.update(layer, st, cache)
    assert info["gain"] == pytest.approx(1.46767163, abs=5e-9)
    R1 = [[1.33704885, -0.09246331], [-0.09246331, 1.25339157]]
    np.testing.assert_allclose(st["R"], R1, atol=5e-9)
    _, cache2 = dec.forward(layer, X_OFFICIAL[::-1].copy(), st)
    dec.update(layer, st, cache2)
    R2 = np.array([[1.10491623, -0.19842963], [-0.18932884, 0.80201833]])
    np.testing.assert_allclose(st["R"], R2, atol=5e-9)
    # the orientation trap: the same matrix, applied as R (standard) or R^T (HEAD)
    _, cache3 = dec.forward(layer, X_OFFICIAL, st, train=False)
    hc = X_OFFICIAL - st["running_mean"]
    expected = hc @ R2 if legacy else hc @ R2.T
    np.testing.assert_allclose(cache3["z"], expected, atol=1e-12)
    assert np.abs(hc @ R2 - hc @ R2.T).max() > 0.02      # the two orientations differ


def test_sub_batch_size_rule():
    """k = min(N, max(floor(f N) + 1, d)): the authors' k, but never fewer rows than d."""
    for n, d, k in [(10, 2, 2), (100, 2, 11), (8, 30, 8), (256, 30, 30), (1000, 30, 101)]:
        layer, dec, st = _dense_decor(d)
        _, cache = dec.forward(layer, np.random.default_rng(0).standard_normal((n, d)), st)
        Z, H, Hc = dec._sub_batch(layer, cache)
        assert Z.shape == H.shape == Hc.shape == (k, d)


# ----------------------------------------------------------------------------
# identity start (DEC-2), gain (DEC-15), fixed points (DEC-18), C R as Z^T (Z R) / k (DEC-17)
# ----------------------------------------------------------------------------
def test_identity_R_dense_is_pure_centering(rng):
    layer, dec, st = _dense_decor(4)
    h = rng.standard_normal((6, 4)) + 3.0
    a, cache = dec.forward(layer, h, st)
    np.testing.assert_array_equal(cache["z"], h - h.mean(axis=0))
    np.testing.assert_allclose(a, layer.forward(h - h.mean(axis=0))[0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (1, "same")])
def test_identity_R_conv_equals_naive_conv(rng, stride, padding):
    """R = I, then the 1x1 conv on the patches = the original conv (naive loops)."""
    layer = Conv2D(2, 3, 3, stride=stride, padding=padding, rng=rng)
    layer.params["b"][:] = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 6, 5)) + 1.0
    dec = Decorrelation(center=False)
    a, _ = dec.forward(layer, x, dec.init_layer(layer))
    ref = conv2d_naive(x, layer.params["W"], layer.params["b"], layer.stride, layer.padding)
    np.testing.assert_allclose(a, ref, rtol=0, atol=1e-13)
    # with centring: the conv of the per-channel centred image (zero padding stays zero)
    dec = Decorrelation(center=True)
    a, _ = dec.forward(layer, x, dec.init_layer(layer))
    xc = x - x.mean(axis=(0, 2, 3), keepdims=True)
    ref = conv2d_naive(xc, layer.params["W"], layer.params["b"], layer.stride, layer.padding)
    np.testing.assert_allclose(a, ref, rtol=0, atol=1e-13)


def test_gain_matches_norms(rng):
    """After R <- s R the mean norm ratio ||h_i|| / ||z_i|| on the same rows is 1."""
    H = rng.standard_normal((20, 5)) + 1.0
    R = np.eye(5) + 0.3 * rng.standard_normal((5, 5))
    Hc = H - H.mean(axis=0)
    s = rules.norm_gain(H, Hc @ R.T)
    Z = Hc @ (s * R).T
    ratio = np.mean(np.linalg.norm(H, axis=1) / np.linalg.norm(Z, axis=1))
    assert ratio == pytest.approx(1.0, abs=1e-8)        # only the 1e-8 under the root differs
    assert abs(s - 1) > 0.1                              # the gain did something


def _white_rows(rng, k, d, c):
    """k x d rows with (1/k) Z^T Z = c I exactly."""
    q, _ = np.linalg.qr(rng.standard_normal((k, d)))
    return q * np.sqrt(c * k)


def test_fixed_points(rng):
    d, k, lr, c = 4, 12, 0.05, 2.0
    R = np.eye(d) + 0.2 * rng.standard_normal((d, d))
    Z = _white_rows(rng, k, d, c)
    # scaled: C = cI gives s (1 - eta c) R; with s = 1/(1 - eta c) (raw norms = ||z||/(1 - eta c)) R is fixed
    R_new, s = rules.scaled_update(R, Z, Z / (1 - lr * c), lr)
    assert s == pytest.approx(1 / (1 - lr * c), rel=1e-8)
    np.testing.assert_allclose(R_new, R, rtol=0, atol=1e-8 * np.abs(R).max())
    R_new, s = rules.scaled_update(R, Z, 2 * Z, lr)       # other gain: parallel to R
    np.testing.assert_allclose(R_new, s * (1 - lr * c) * R, atol=1e-13)
    # offdiag: any diagonal C is stationary
    Zd = _white_rows(rng, k, d, 1.0) * np.array([0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(rules.offdiag_update(R, Zd, lr), R, atol=1e-14)
    assert np.abs(rules.offdiag_update(R, Z @ R.T, lr) - R).max() > 1e-3    # correlated: moves
    # whiten: C = I is stationary
    np.testing.assert_allclose(rules.whiten_update(R, _white_rows(rng, k, d, 1.0), lr), R,
                               atol=1e-14)
    # Foldiak: diagonal C leaves M (hence R) unchanged
    M = 0.1 * (rng.standard_normal((d, d)))
    np.fill_diagonal(M, 0)
    M_new, R_f = rules.foldiak_update(M, Zd, lr)
    np.testing.assert_allclose(M_new, M, atol=1e-14)
    np.testing.assert_allclose(R_f @ (np.eye(d) + M), np.eye(d), atol=1e-12)


@pytest.mark.parametrize("k", [5, 40])
def test_c_times_r_k_trick(rng, k):
    """Z^T (Z R) / k = C R, whichever branch c_times_r takes."""
    Z, R = rng.standard_normal((k, 12)), rng.standard_normal((12, 12))
    np.testing.assert_allclose(rules.c_times_r(Z, R), rules.second_moment(Z) @ R, atol=1e-12)


# ----------------------------------------------------------------------------
# convergence of the rules (DEC-16, DEC-16a, DEC-16b)
# ----------------------------------------------------------------------------
def _run_rule(mode, rng, steps=3000, d=30, lr=0.01, n=256):
    draw, cov = _correlated(rng, n, d)
    layer = Dense(d, 1, rng)
    dec = Decorrelation(mode=mode, lr=lr, center=False, sample_frac=1.0)
    st = dec.init_layer(layer)
    for _ in range(steps):
        _, cache = dec.forward(layer, draw(n), st)
        dec.update(layer, st, cache)
    Cz = st["R"] @ cov @ st["R"].T                        # the exact C_z of the final R
    x = draw(4000)
    ratio = np.mean(np.linalg.norm(x @ st["R"].T, axis=1)) / np.mean(np.linalg.norm(x, axis=1))
    return cov, Cz, ratio


def test_scaled_rule_whitens_up_to_a_scalar():
    rng = np.random.default_rng(4)
    cov, Cz, ratio = _run_rule("scaled", rng, steps=1000)       # converged by then (measured)
    assert _corr_rms(cov) > 0.2 and rules.whiteness(cov) > 1.0       # start: 0.28 and 1.6
    assert _corr_rms(Cz) < 0.01
    assert rules.whiteness(Cz) < 0.05
    assert ratio == pytest.approx(1.0, abs=0.03)


def test_offdiag_decorrelates_without_whitening():
    # eta = 0.01 needs ~3000 steps here; 3x the rate for 1/3 of the steps reaches the same
    # state (measured: correlation RMS 0.006, whiteness 0.65, norm ratio 0.50 either way)
    _, Cz, ratio = _run_rule("offdiag", np.random.default_rng(5), steps=1000, lr=0.03)
    assert _corr_rms(Cz) < 0.01
    assert rules.whiteness(Cz) > 0.4           # variances are left unequal
    assert ratio == pytest.approx(0.5, abs=0.1)   # and the norm drifts (to about half)


def test_whiten_rule_reaches_identity():
    _, Cz, _ = _run_rule("whiten", np.random.default_rng(6), steps=1000)
    assert np.abs(Cz - np.eye(30)).max() < 0.05


def test_foldiak_reduces_correlations():
    rng = np.random.default_rng(7)
    cov, Cz, _ = _run_rule("foldiak", rng, steps=1000, d=8, lr=0.05)
    assert _corr_rms(Cz) < 0.1 * _corr_rms(cov)


def test_zca_oracle_whitens_the_batch(rng):
    layer, dec, st = _dense_decor(6, mode="zca", lr=0.0, mean_momentum=1.0, zca_eps=0.0)  # lr unused
    h = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6)) + 2.0
    _, cache = dec.forward(layer, h, st)
    dec.update(layer, st, cache)
    _, cache = dec.forward(layer, h, st)
    np.testing.assert_allclose(rules.second_moment(cache["z"]), np.eye(6), atol=1e-10)
    np.testing.assert_allclose(st["R"], st["R"].T, atol=1e-12)       # ZCA is symmetric


# ----------------------------------------------------------------------------
# natural gradient (DEC-19)
# ----------------------------------------------------------------------------
def test_whitened_gradient_descent_is_natural_gradient(rng):
    """W = V R with R C R^T = c I: dV R = c dW C^-1, and one step with lr 1/(2c) solves MSE."""
    n, d, m, c = 400, 5, 3, 2.5
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    t = rng.standard_normal((n, m))
    C = x.T @ x / n
    R = np.sqrt(c) * rules.zca_matrix(C, eps=0.0)
    np.testing.assert_allclose(R @ C @ R.T, c * np.eye(d), atol=1e-10)
    np.testing.assert_allclose(R.T @ R, c * np.linalg.inv(C), atol=1e-10)
    layer = Dense(d, m, rng, bias=False)
    dec = Decorrelation(center=False, lr=0.0)
    st = dec.init_layer(layer)
    st["R"] = R
    V = layer.params["W"].copy()
    W = V @ R                                              # the effective weights
    out, cache = dec.forward(layer, x, st)
    _, dout = mse(out, t)
    dV = dec.backward_params(layer, dout, cache)["W"]
    dW = Dense(d, m, rng, bias=False).backward_params(dout, Dense(d, m, rng, bias=False).forward(
        x, {"W": W})[1])["W"]
    np.testing.assert_allclose(dV @ R, c * dW @ np.linalg.inv(C), atol=1e-12 * np.abs(dV).max())
    # mse = (1/n) sum ||W x - t||^2 has Hessian 2C (input factor): the step lr = 1/(2c) on V is Newton
    V_new = V - dV / (2 * c)
    W_star = np.linalg.lstsq(x, t, rcond=None)[0].T
    np.testing.assert_allclose(V_new @ R, W_star, atol=1e-10)


# ----------------------------------------------------------------------------
# finite differences through R and the mean subtraction (DEC-4, DEC-5)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_gradcheck_dense(rng, legacy, train):
    layer, dec, st = _dense_decor(4, legacy_head_dense=legacy)
    st["R"] = np.eye(4) + 0.3 * rng.standard_normal((4, 4))      # not symmetric
    st["running_mean"] = rng.standard_normal(4)
    h = rng.standard_normal((5, 4)) + 2.0
    a, cache = dec.forward(layer, h, dict(st), train=train)
    assert cache["mean_grad"] is train
    da = rng.standard_normal(a.shape)
    num = numerical_vjp(lambda v: dec.forward(layer, v, dict(st), train=train)[0], h.copy(), da)
    assert_close(dec.backward_input(layer, da, cache), num, "dL/dh through R and the mean")
    num_W = numerical_vjp(lambda w: dec.forward(layer, h, dict(st), train=train,
                                                params={"W": w, "b": layer.params["b"]})[0],
                          layer.params["W"].copy(), da)
    assert_close(dec.backward_params(layer, da, cache)["W"], num_W, "dL/dW of a decorrelated Dense")


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_gradcheck_conv(rng, stride, padding):
    layer = Conv2D(2, 3, 3, stride=stride, padding=padding, rng=rng)
    dec = Decorrelation()
    st = dec.init_layer(layer)
    st["R"] = np.eye(18) + 0.2 * rng.standard_normal((18, 18))
    h = rng.standard_normal((3, 2, 6, 6)) + 1.0
    a, cache = dec.forward(layer, h, dict(st))
    da = rng.standard_normal(a.shape)
    num = numerical_vjp(lambda v: dec.forward(layer, v, dict(st))[0], h.copy(), da)
    assert_close(dec.backward_input(layer, da, cache), num, "dL/dh of a patch-decorrelated conv")
    for key in ("W", "b"):
        def f(v, key=key):
            p = dict(layer.params)
            p[key] = v
            return dec.forward(layer, h, dict(st), params=p)[0]
        num = numerical_vjp(f, layer.params[key].copy(), da)
        assert_close(dec.backward_params(layer, da, cache)[key], num, f"d{key} of decorrelated conv")


def test_gradcheck_whole_network(rng):
    """backward_net = finite differences of the training-mode loss (batch means inside)."""
    model = mlp([4, 5, 3], "tanh", rng)
    dec = Decorrelation()
    dstate = dec.init_state(model)
    for key in ("0.R", "2.R"):
        dstate[key] = dstate[key] + 0.2 * rng.standard_normal(dstate[key].shape)
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)

    def fresh():
        return dict(dstate)

    def loss_of(v):
        return np.array(softmax_cross_entropy(forward_net(model, dec, fresh(), v)[0], y)[0])

    out, caches = forward_net(model, dec, fresh(), x)
    _, dout = softmax_cross_entropy(out, y)
    dx, _ = backward_net(model, dec, dout, caches, input_grad=True)
    assert_close(dx, numerical_vjp(loss_of, x.copy(), np.array(1.0)), "dL/dx through two R's")


# ----------------------------------------------------------------------------
# degenerate case, eval mode (DEC-1), scale invariance (DEC-21)
# ----------------------------------------------------------------------------
def test_identity_and_zero_rate_is_backprop(rng):
    model = mlp([6, 5, 4, 3], "tanh", rng)
    x, y = rng.standard_normal((7, 6)), rng.integers(0, 3, 7)
    loss_bp, g_bp, _ = backprop_gradients(model, x, y)
    for decorrelate in (False, Decorrelation(lr=0.0, center=False)):
        alg = DecorrelatedBackprop(decorrelate)
        state = alg.init_state(model)
        for _ in range(2):                              # R stays I at rate 0
            res = alg.step(model, state, x, y)
        assert res.loss == loss_bp
        for key in g_bp:
            np.testing.assert_array_equal(res.grads[key], g_bp[key])


def test_eval_mode_uses_running_mean_and_leaves_state(rng):
    model = mlp([4, 5, 3], "tanh", rng)
    alg = DecorrelatedBackprop(Decorrelation(lr=0.05))
    state = alg.init_state(model)
    x, y = rng.standard_normal((32, 4)) + 1.0, rng.integers(0, 3, 32)
    for _ in range(3):
        alg.step(model, state, x, y)
    snap = {key: np.copy(v) for key, v in state["decor"].items()}
    xe = rng.standard_normal((5, 4))
    out = alg.predict(model, state, xe)
    assert set(state["decor"]) == set(snap)
    for key, before in snap.items():
        np.testing.assert_array_equal(state["decor"][key], before)
    st0, st2 = layer_state(state["decor"], 0), layer_state(state["decor"], 2)
    h1 = np.tanh((xe - st0["running_mean"]) @ st0["R"].T @ model.layers[0].params["W"].T
                 + model.layers[0].params["b"])
    ref = (h1 - st2["running_mean"]) @ st2["R"].T @ model.layers[2].params["W"].T \
        + model.layers[2].params["b"]
    np.testing.assert_allclose(out, ref, atol=1e-13)
    assert np.abs(st0["running_mean"]).max() > 0.1       # the running mean did move


def test_scale_invariance_of_the_scaled_rule(rng):
    """(alpha h, eta/alpha^2) and (h, eta) give the same R iterates (up to the 1e-8 in s)."""
    alpha, lr, d = 10.0, 0.02, 5
    mix = rng.standard_normal((d, d))
    batches = [rng.standard_normal((64, d)) @ mix + 0.5 for _ in range(40)]
    Rs = []
    for scale, rate in ((1.0, lr), (alpha, lr / alpha ** 2)):
        layer, dec, st = _dense_decor(d, lr=rate)
        for b in batches:
            _, cache = dec.forward(layer, scale * b, st)
            dec.update(layer, st, cache)
        Rs.append(st["R"])
    np.testing.assert_allclose(Rs[1], Rs[0], rtol=1e-7)
    assert np.abs(Rs[0] - np.eye(d)).max() > 0.1          # R moved a lot
    # and the C_z seen by the rule scales by alpha^2, so eta * c is invariant
    layer, dec, st = _dense_decor(d, lr=lr)
    _, c1 = dec.forward(layer, batches[0], st)
    _, c2 = dec.forward(layer, alpha * batches[0], st)
    np.testing.assert_allclose(rules.second_moment(c2["z"]), alpha ** 2 * rules.second_moment(c1["z"]),
                               rtol=1e-12)


# ----------------------------------------------------------------------------
# the guard against zero-variance inputs
# ----------------------------------------------------------------------------
def _constant_feature_run(guard, lr=0.02, steps=2000, max_norm=None):
    rng = np.random.default_rng(11)
    layer, dec, st = _dense_decor(4, lr=lr, guard=guard, max_norm=max_norm)
    info = None
    for _ in range(steps):
        h = rng.standard_normal((32, 4))
        h[:, 2] = 1.0                                     # a constant input (a dead pixel)
        _, cache = dec.forward(layer, h, st)
        info = dec.update(layer, st, cache)
    return st, info


def test_guard_keeps_R_bounded_with_a_constant_input():
    st, info = _constant_feature_run(guard=True, steps=400)
    assert info["dead_inputs"] == 1.0
    assert np.linalg.norm(st["R"]) < 10
    np.testing.assert_array_equal(st["R"][:, 2], np.eye(4)[:, 2])   # the dead column is frozen


def test_without_guard_R_grows_along_the_dead_input():
    st, _ = _constant_feature_run(guard=False, steps=200)
    assert np.abs(st["R"][:, 2]).max() > 1e3              # grows like s^t (DEC-20)


def test_diverging_R_raises_naming_the_step(rng):
    model = mlp([4, 3, 2], "tanh", rng)
    alg = DecorrelatedBackprop(Decorrelation(lr=0.02, guard=False, max_norm=100.0))
    state = alg.init_state(model)
    x, y = rng.standard_normal((32, 4)), rng.integers(0, 2, 32)
    x[:, 2] = 1.0
    with pytest.raises(FloatingPointError, match=r"layer 0 at step \d+"):
        for _ in range(2000):
            alg.step(model, state, x, y)


# ----------------------------------------------------------------------------
# training, conv, reproducibility, bad input
# ----------------------------------------------------------------------------
def test_decorrelated_convnet_trains(rng):
    model = Sequential([Conv2D(1, 4, 3, padding=1, rng=rng), Tanh(), Flatten(),
                        Dense(4 * 6 * 6, 3, rng)])
    alg = DecorrelatedBackprop(Decorrelation(lr=0.01))
    state = alg.init_state(model)
    assert state["decor"]["0.R"].shape == (9, 9)
    x, y = rng.standard_normal((16, 1, 6, 6)), rng.integers(0, 3, 16)
    opt = Adam(1e-2)
    losses = []
    for _ in range(30):
        res = alg.step(model, state, x, y)
        opt.update(alg.variables(model, state), res.grads)
        losses.append(res.loss)
    assert losses[-1] < 0.5 * losses[0]
    assert res.info["decor_whiteness"].shape == (2,)
    assert np.abs(state["decor"]["0.R"] - np.eye(9)).max() > 1e-3


def test_info_and_determinism(rng):
    def run(seed):
        r = np.random.default_rng(seed)
        model = mlp([5, 6, 3], "relu", r)
        alg = DecorrelatedBackprop(Decorrelation(lr=0.01))
        state = alg.init_state(model)
        x, y = r.standard_normal((20, 5)), r.integers(0, 3, 20)
        res = [alg.step(model, state, x, y) for _ in range(3)][-1]
        return res, state

    (r1, s1), (r2, s2) = run(3), run(3)
    for key in r1.grads:
        np.testing.assert_array_equal(r1.grads[key], r2.grads[key])
    np.testing.assert_array_equal(s1["decor"]["0.R"], s2["decor"]["0.R"])
    for key in ("decor_offdiag_power", "decor_diag_power", "decor_R_norm", "decor_whiteness"):
        assert r1.info[key].shape == (2,) and np.all(np.isfinite(r1.info[key]))


def test_powers_from_gram_match_full_C(rng):
    """When d > k the update reports C's powers from the k x k Gram matrix: same numbers."""
    layer, dec, st = _dense_decor(50, sample_frac=0.1)
    st["R"] = np.eye(50) + 0.1 * rng.standard_normal((50, 50))
    _, cache = dec.forward(layer, rng.standard_normal((8, 50)), st)
    info = dec.update(layer, dict(st), cache)                    # k = 8 < d = 50
    C = rules.second_moment(cache["z"][:8])
    assert info["offdiag_power"] == pytest.approx(rules.offdiag_power(C), rel=1e-10)
    assert info["diag_power"] == pytest.approx(rules.diag_power(C), rel=1e-10)
    assert info["whiteness"] == pytest.approx(rules.whiteness(C), rel=1e-8)


def test_suggest_decor_lr(rng):
    h = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6))
    lam = np.linalg.eigvalsh(np.cov(h.T, bias=True)).max()
    assert rules.suggest_decor_lr(h, target=0.1) == pytest.approx(0.1 / lam, rel=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "pca"}, "mode"), ({"lr": -1.0}, "lr"), ({"sample_frac": 0.0}, "sample_frac"),
    ({"mean_momentum": 2.0}, "mean_momentum"), ({"max_norm": 0.0}, "max_norm")])
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Decorrelation(**kwargs)


def test_bad_shapes(rng):
    layer, dec, st = _dense_decor(4)
    with pytest.raises(ValueError, match=r"h must have shape \(N, 4\)"):
        dec.forward(layer, rng.standard_normal((3, 5)), st)
    with pytest.raises(ValueError, match="decorrelate"):
        DecorrelatedBackprop(decorrelate="yes")
