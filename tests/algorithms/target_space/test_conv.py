"""Target Space on conv nets: targets per (image, pixel), im2col solve, col2im backward."""

import numpy as np
import pytest

from refnets.algorithms.target_space.algorithm import TargetSpace, tf1_weight_init
from refnets.algorithms.target_space.checks import pipeline_gradient_error
from refnets.algorithms.target_space.conv import ConvRealiser, nchw_to_rows, rows_to_nchw
from refnets.gradcheck import directional_check, numerical_gradient, rel_error
from refnets.layers.conv import Conv2D, conv2d_naive
from refnets.layers.dense import Dense
from refnets.models import Sequential, convnet


def _conv_setup(rng, c_in=1, c_out=2, n=2, hw=5, k=3):
    layer = Conv2D(c_in, c_out, k, padding="same", rng=rng)
    x = rng.standard_normal((n, c_in, hw, hw))
    return layer, ConvRealiser(layer), x


def test_row_layout_round_trip(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    rows = nchw_to_rows(x)
    assert rows.shape == (2 * 4 * 5, 3)
    np.testing.assert_array_equal(rows[7], x[0, :, 1, 2])          # row (n, y, x) = (0, 1, 2)
    np.testing.assert_array_equal(rows_to_nchw(rows, 2, 4, 5), x)


@pytest.mark.parametrize("k,c_in", [(3, 1), (3, 2), (5, 2)])
def test_solve_equals_a_real_convolution(rng, k, c_in):
    """(TS-10): A_bar W_full (the realised sums) = conv2d_naive(X_bar, K) + b."""
    layer, r, x = _conv_setup(rng, c_in=c_in, k=k)
    T = rng.standard_normal(r.target_shape(x.shape))
    params, out, rec = r.realise(x, T, 0.1, scu=True)
    ref = conv2d_naive(x, params["W"], params["b"], 1, "same")
    assert rel_error(out, ref) < 1e-13
    assert rel_error(rows_to_nchw(rec["S"], *x.shape[:1], *x.shape[2:]), ref) < 1e-13
    assert rel_error(layer.forward(x, params)[0], ref) < 1e-13


def test_exact_recovery_of_a_kernel(rng):
    """lam = 0, T = the sums of a chosen kernel W* on X_bar (n_bar*H*W >= 1 + C kh kw)
    -> the solve returns W* and b*."""
    layer, r, x = _conv_setup(rng, c_in=2, c_out=3)
    W_star = rng.standard_normal(layer.params["W"].shape)
    b_star = rng.standard_normal(3)
    T = nchw_to_rows(conv2d_naive(x, W_star, b_star, 1, "same"))
    params, _, rec = r.realise(x, T, 0.0, scu=True)
    assert rel_error(params["W"], W_star) < 1e-12 and rel_error(params["b"], b_star) < 1e-12
    assert np.abs(rec["S"] - T).max() < 1e-12


def test_realiser_backward_matches_differences(rng):
    """L = <dS, S_bar(x, T)> + <G, W(x, T)> for one conv solve: dL/dT element-wise and
    dL/dx (the col2im path) along random directions."""
    layer, r, x = _conv_setup(rng, c_in=2, n=2, hw=4)
    T = rng.standard_normal(r.target_shape(x.shape))
    dS = rng.standard_normal((2, 2, 4, 4))
    G = {"W": rng.standard_normal(layer.params["W"].shape), "b": rng.standard_normal(2)}

    def loss(x_in, t):
        params, out, _ = r.realise(x_in, t, 0.1, scu=True)
        return np.sum(dS * out) + np.sum(G["W"] * params["W"]) + np.sum(G["b"] * params["b"])

    _, _, rec = r.realise(x, T, 0.1, scu=True)
    dT, dx = r.backward(rec, G, dS, need_dx=True)
    assert rel_error(dT, numerical_gradient(lambda t: loss(x, t), T.copy())) < 1e-7
    err, _, _ = directional_check(lambda v: np.array(loss(v, T)), x, np.array(1.0), dx, rng,
                                  n_directions=6)
    assert err < 1e-7


@pytest.mark.parametrize("realisation,pool", [("scu", None), ("ocu", "max"), ("scu", "avg")])
def test_pipeline_gradient_small_conv_net(rng, realisation, pool):
    """(TS-10a) in the whole pipeline: n_bar = 2, 5x5 images, k = 3, 2 channels, dense read-out
    (underdetermined kernel-form solve after the flatten)."""
    model = convnet((1, 5, 5), [2], 3, 2, rng, activation="tanh",
                    pool=None if pool is None else 2, pool_type=pool or "max")
    xs = rng.standard_normal((2, 1, 5, 5))
    x, y = rng.standard_normal((3, 1, 5, 5)), rng.integers(0, 2, 3)
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, realisation=realisation,
                       target_init_std=1.0, projection=None, diagnostics=False)
    assert pipeline_gradient_error(model, algo, x, y, rng) < 1e-7


def test_pipeline_gradient_two_conv_layers(rng):
    """The second conv's input gradient reaches the first conv's targets through col2im."""
    model = convnet((1, 3, 3), [2, 2], 3, 2, rng, activation="tanh", pool=None)
    xs = rng.standard_normal((2, 1, 3, 3))
    x, y = rng.standard_normal((2, 1, 3, 3)), rng.integers(0, 2, 2)
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1, target_init_std=1.0,
                       projection=None, diagnostics=False)
    assert pipeline_gradient_error(model, algo, x, y, rng) < 1e-7


def test_targets_shapes_and_default_init(rng):
    model = convnet((1, 6, 6), [3], 3, 4, rng, hidden=(5,), pool=2)
    xs = rng.standard_normal((10, 1, 6, 6))
    state = TargetSpace(xs, projection=None).init_state(model, rng)
    T = state["targets"]
    assert T["0.T"].shape == (10 * 6 * 6, 3)          # one row per (image, y, x)
    assert T["4.T"].shape == (10, 5) and T["6.T"].shape == (10, 4)
    for key in ("0.T", "4.T", "6.T"):                # sigma_T = 0.1 in conv models (TF1 --ti)
        assert np.abs(T[key]).max() <= 0.2 and T[key].std() > 0.05


def test_scu_conv_target_gradient_in_column_space(rng):
    model = convnet((1, 5, 5), [2], 3, 2, rng, activation="tanh", pool=None)
    xs = rng.standard_normal((2, 1, 5, 5))
    algo = TargetSpace(xs, pseudoinverse_l2_regularisation=0.1)
    state = algo.init_state(model, rng)
    x, y = rng.standard_normal((3, 1, 5, 5)), rng.integers(0, 2, 3)
    g = algo.step(model, state, x, y, rng).grads["0.T"]
    _, recs = algo.realise(model, state)
    A = recs[0]["solve"]["A"]
    off = g - A @ np.linalg.lstsq(A, g, rcond=None)[0]
    assert np.linalg.norm(off) < 1e-12 * np.linalg.norm(g)


def test_learns_a_toy_image_task(rng):
    """Bright top half vs bright bottom half: a few steps separate the classes."""
    n = 40
    x = 0.1 * rng.standard_normal((n, 1, 6, 6))
    y = rng.integers(0, 2, n)
    x[y == 0, :, :3] += 1.0
    x[y == 1, :, 3:] += 1.0
    model = convnet((1, 6, 6), [2], 3, 2, rng, pool=2)
    algo = TargetSpace(x, realisation_batch_size=10, pseudoinverse_l2_regularisation=0.1)
    state = algo.init_state(model, rng)
    from refnets.optim import Adam
    opt = Adam(0.01)
    for _ in range(30):
        opt.update(algo.variables(model, state), algo.step(model, state, x, y, rng).grads)
    assert np.mean(np.argmax(algo.predict(model, state, x), 1) == y) > 0.9


@pytest.mark.parametrize("kwargs", [{"stride": 2, "padding": 1}, {"padding": 0},
                                    {"padding": 2}])
def test_rejects_non_same_convolutions(rng, kwargs):
    layer = Conv2D(1, 2, 3, rng=rng, **kwargs)
    with pytest.raises(ValueError, match="stride-1 'same'"):
        ConvRealiser(layer)


def test_rejects_even_kernel_and_wrong_input(rng):
    with pytest.raises(ValueError, match="stride-1 'same'"):
        ConvRealiser(Conv2D(1, 2, 2, padding=1, rng=rng))
    model = convnet((2, 5, 5), [2], 3, 3, rng, pool=None)
    with pytest.raises(ValueError, match=r"shape \(n_bar, 2, H, W\)"):
        TargetSpace(rng.standard_normal((4, 1, 5, 5))).init_state(model, rng)


def test_tf1_cnn_baseline_init_counts_the_bias(rng):
    """TF1 CNN: plain normal, sigma = sqrt(2 / (1 + k^2 C_in)) for relu (He with the bias)."""
    model = Sequential([Conv2D(8, 64, 3, padding="same", rng=rng), Dense(10, 2, rng)])
    tf1_weight_init(model, rng, "he", truncated=False)
    w = np.concatenate([model.layers[0].params["W"].ravel(), model.layers[0].params["b"]])
    assert abs(w.std() / np.sqrt(2.0 / (1 + 9 * 8)) - 1) < 0.03
