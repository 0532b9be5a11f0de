"""FunctionalDense and the F01-F20/LIN catalogue: derivatives, reductions, paths, init."""

import numpy as np
import pytest

from refnets.gradcheck import check_layer, numerical_gradient, numerical_vjp, rel_error
from refnets.layers import Dense, Tanh
from refnets.layers.functional.checks import (function_derivative_errors,
                                               layer_derivative_errors, sample_point)
from refnets.layers.functional.dense import (FUNCTION_NAMES, FUNCTIONS, FunctionalDense,
                                       get_function)
from refnets.losses import softmax_cross_entropy
from refnets.models import Sequential

TOL = 1e-7
FAST = [n for n in FUNCTION_NAMES if FUNCTIONS[n].has_fast_path]


def _layer(function, rng, n_in, n_out, path="auto", **kw):
    """A FunctionalDense at a kink-free point with a non-zero bias; returns (layer, x)."""
    layer = FunctionalDense(n_in, n_out, function, rng, path=path, **kw)
    x, theta, s = sample_point(function, 5, n_out, n_in, rng, theta_scale=5.0)
    layer.params["theta"], layer.signs = theta, s
    layer.params["b"] = rng.standard_normal(n_out)
    return layer, x


# -- finite differences ------------------------------------------------------------------

@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_function_derivatives(rng, name):
    """df/dtheta_q and df/dx of every function, element-wise, against centred differences."""
    errors = function_derivative_errors(name, rng)
    if FUNCTIONS[name].surrogate_gradient:
        errors.pop("theta[0]")          # F07: tested separately (surrogate)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("name,path", [(n, "generic") for n in FUNCTION_NAMES]
                         + [(n, "fast") for n in FAST])
def test_layer_gradcheck(rng, name, path):
    errors = layer_derivative_errors(name, rng, path)
    assert set(errors) == {"x", "theta", "b"}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("x_shape", [(1, 3), (3, 4, 3), (2, 1, 2, 3)])
@pytest.mark.parametrize("name", ["F03", "F12", "F19"])
def test_layer_gradcheck_leading_dims_and_batch_1(rng, name, x_shape):
    layer = FunctionalDense(3, 2, name, rng)
    layer.params["b"] = rng.standard_normal(2)
    errors = check_layer(layer, rng.standard_normal(x_shape), rng)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("name", ["LIN", "F03", "F05", "F12", "F13", "F16", "F20"])
def test_two_layer_softmax_ce_net(rng, name):
    """d(mean CE)/d(every parameter) of FTM -> tanh -> FTM, by backprop vs differences."""
    model = Sequential([FunctionalDense(4, 6, name, rng), Tanh(), FunctionalDense(6, 3, name, rng)])
    for layer in (model[0], model[2]):
        layer.params["theta"] *= 5.0 if name not in ("F05", "F12", "F13") else 1.0
        layer.params["b"] = 0.3 * rng.standard_normal(layer.n_out)
    # x of scale 0.5: with F05's official b ~ U(-4, -2), d^3f/db^3 = a x^3 e^{bx} is large at
    # |x| ~ 2.5 and the O(h^2) truncation error of the differences alone reaches 2e-7 there.
    x, y = 0.5 * rng.standard_normal((5, 4)), rng.integers(0, 3, 5)
    out, caches = model.forward(x)
    _, dout = softmax_cross_entropy(out, y)
    _, grads = model.backward(dout, caches)
    flat = model.flatten(grads)
    for key, value in model.params().items():
        num = numerical_gradient(lambda v: softmax_cross_entropy(model.forward(x)[0], y)[0], value)
        assert rel_error(flat[key], num) < TOL, key


def test_f12_f13_input_gradient_sign_regression(rng):
    """The official F12/F13 send dL/dx down with the wrong sign (ratio -1); ours has ratio +1."""
    for name in ("F12", "F13"):
        layer, x = _layer(name, rng, 4, 3, path="generic")
        a, cache = layer.forward(x)
        dy = rng.standard_normal(a.shape)
        dx, _ = layer.backward(dy, cache)
        num = numerical_vjp(lambda v: layer.forward(v)[0], x.copy(), dy)
        ratio = np.sum(dx * num) / np.sum(num * num)
        assert abs(ratio - 1.0) < 1e-7, (name, ratio)


def test_f07_straight_through_surrogate(rng):
    """F07's dw = s x dy: the true gradient where w > 0, non-zero where w <= 0 (truth: 0)."""
    f06 = FunctionalDense(4, 3, "F06", rng)
    f07 = FunctionalDense(4, 3, "F07", rng)
    w = np.array([[0.3, -0.2, 0.5, -0.4], [0.1, 0.2, -0.3, 0.6], [-0.7, 0.4, 0.2, 0.1]])
    for layer in (f06, f07):
        layer.params["theta"] = w[None].copy()
        layer.signs = f06.signs
    x = rng.standard_normal((5, 4))
    dy = rng.standard_normal((5, 3))
    g06 = f06.backward(dy, f06.forward(x)[1])[1]["theta"][0]
    dx07, g07 = f07.backward(dy, f07.forward(x)[1])
    g07 = g07["theta"][0]
    true = numerical_vjp(lambda v: f07.forward(x, {"theta": v, "b": f07.params["b"]})[0],
                         w[None].copy(), dy)[0]
    pos = w > 0
    assert rel_error(g07[pos], true[pos]) < TOL
    np.testing.assert_array_equal(true[~pos], 0.0)
    np.testing.assert_array_equal(g06[~pos], 0.0)
    np.testing.assert_allclose(g07[~pos], (f06.signs * (dy.T @ x))[~pos], rtol=1e-12)
    assert np.all(g07[~pos] != 0.0)
    np.testing.assert_array_equal(dx07, f06.backward(dy, f06.forward(x)[1])[0])


# -- reductions to Dense and between functions ------------------------------------------

@pytest.mark.parametrize("path", ["fast", "generic"])
def test_lin_equals_dense(rng, path):
    """LIN with theta[0] = W is Dense: output, dx, dW, db (fast path bit-identical)."""
    dense = Dense(6, 4, rng)
    dense.params["b"] = rng.standard_normal(4)
    lin = FunctionalDense(6, 4, "LIN", rng, path=path)
    lin.params["theta"][0] = dense.params["W"]
    lin.params["b"][:] = dense.params["b"]
    x, dy = rng.standard_normal((7, 6)), rng.standard_normal((7, 4))
    z, cz = dense.forward(x)
    a, ca = lin.forward(x)
    dxd, gd = dense.backward(dy, cz)
    dxf, gf = lin.backward(dy, ca)
    check = (np.testing.assert_array_equal if path == "fast" else
             lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12))
    check(a, z)
    check(dxf, dxd)
    check(gf["theta"][0], gd["W"])
    check(gf["b"], gd["b"])


def _forward_backward(layer, x, dy):
    a, cache = layer.forward(x)
    dx, grads = layer.backward(dy, cache)
    return a, dx, grads


def _dense_like(rng, W, b, x, dy):
    dense = Dense(W.shape[1], W.shape[0], rng)
    dense.params["W"], dense.params["b"] = W, b
    return _forward_backward(dense, x, dy)


def test_f06_and_f01_reduce_to_dense(rng):
    """F06 with w = |W|, s = sign(W) and F01 with w = sqrt(W) (W >= 0) compute x W^T + b."""
    W, b = rng.standard_normal((3, 5)), rng.standard_normal(3)
    x, dy = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    a_ref, dx_ref, g_ref = _dense_like(rng, W, b, x, dy)
    for path in ("fast", "generic"):
        f06 = FunctionalDense(5, 3, "F06", rng, path=path)
        f06.params["theta"][0], f06.params["b"][:], f06.signs = np.abs(W), b, np.sign(W)
        a, dx, g = _forward_backward(f06, x, dy)
        np.testing.assert_allclose(a, a_ref, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(g["theta"][0], np.sign(W) * g_ref["W"], rtol=1e-12, atol=1e-13)

        f01 = FunctionalDense(5, 3, "F01", rng, path=path)
        f01.params["theta"][0], f01.params["b"][:] = np.sqrt(np.abs(W)), b
        a, dx, g = _forward_backward(f01, x, dy)
        ref = _dense_like(rng, np.abs(W), b, x, dy)
        np.testing.assert_allclose(a, ref[0], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(dx, ref[1], rtol=1e-12, atol=1e-13)
        # dL/dw = dL/dW_eff * dW_eff/dw = g_W * 2 w
        np.testing.assert_allclose(g["theta"][0], 2 * np.sqrt(np.abs(W)) * ref[2]["W"],
                                   rtol=1e-12, atol=1e-13)


def test_f09_large_offset_is_affine(rng):
    """F09 with w2 >> |w1 x| stays on the linear side: f = w0 w1 x + w0 w2."""
    layer = FunctionalDense(4, 3, "F09", rng)
    w0, w1 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    w2 = np.full((3, 4), 100.0)
    layer.params["theta"] = np.stack([w0, w1, w2])
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    a_ref, dx_ref, _ = _dense_like(rng, w0 * w1, (w0 * w2).sum(axis=1), x, dy)
    a, dx, _ = _forward_backward(layer, x, dy)
    np.testing.assert_allclose(a, a_ref, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shifted,square", [("F19", "F17"), ("F20", "F18")])
@pytest.mark.parametrize("path", ["fast", "generic"])
def test_shifted_square_with_zero_shift(rng, shifted, square, path):
    """F19(w1 = 0) = F17 and F20(w1 = 0) = F18 (same signs), forward and gradients."""
    a_layer = FunctionalDense(4, 3, shifted, rng, path=path)
    b_layer = FunctionalDense(4, 3, square, rng, path=path)
    a_layer.params["theta"][1] = 0.0
    b_layer.params["theta"][0] = a_layer.params["theta"][0]
    b_layer.signs = a_layer.signs
    x, dy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    a1, dx1, g1 = _forward_backward(a_layer, x, dy)
    a2, dx2, g2 = _forward_backward(b_layer, x, dy)
    np.testing.assert_allclose(a1, a2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g1["theta"][0], g2["theta"][0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["F17", "F18"])
def test_even_functions_are_blind_to_the_sign_of_x(rng, name):
    layer = FunctionalDense(4, 3, name, rng)
    x = rng.standard_normal((6, 4))
    np.testing.assert_array_equal(layer.forward(x)[0], layer.forward(-x)[0])


# -- generic path == fast path; chunk invariance -----------------------------------------

@pytest.mark.parametrize("name", FAST)
def test_fast_path_equals_generic_path(rng, name):
    fast, x = _layer(name, rng, 7, 5, path="fast")
    generic = FunctionalDense(7, 5, name, rng, path="generic")
    generic.params["theta"], generic.params["b"], generic.signs = (
        fast.params["theta"], fast.params["b"], fast.signs)
    dy = rng.standard_normal((x.shape[0], 5))
    a1, dx1, g1 = _forward_backward(fast, x, dy)
    a2, dx2, g2 = _forward_backward(generic, x, dy)
    for u, v in ((a1, a2), (dx1, dx2), (g1["theta"], g2["theta"]), (g1["b"], g2["b"])):
        assert rel_error(u, v) < 1e-13


@pytest.mark.parametrize("name", ["F05", "F12", "F16", "F19"])
def test_chunk_size_invariance(rng, name):
    """Results do not depend on the block size, including blocks that split the outputs."""
    ref, x = _layer(name, rng, 6, 5, path="generic")
    dy = rng.standard_normal((x.shape[0], 5))
    a0, dx0, g0 = _forward_backward(ref, x, dy)
    for max_elements in (1, 4, 7, 29, 30, 31, 10 ** 6):   # 1-4: one sample, outputs split
        layer = FunctionalDense(6, 5, name, rng, path="generic", max_elements=max_elements)
        layer.params["theta"], layer.params["b"], layer.signs = (
            ref.params["theta"], ref.params["b"], ref.signs)
        a, dx, g = _forward_backward(layer, x, dy)
        np.testing.assert_allclose(a, a0, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(dx, dx0, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(g["theta"], g0["theta"], rtol=1e-13, atol=1e-15)


def test_blocks_respect_the_memory_bound(rng):
    for n_out, n_in, max_elements in ((5, 6, 7), (5, 6, 30), (5, 6, 65), (3, 10, 4)):
        layer = FunctionalDense(n_in, n_out, "F12", rng, max_elements=max_elements)
        covered = np.zeros((9, n_out), dtype=int)
        for rows, outs in layer._blocks(9):
            n_rows = rows.stop - rows.start
            n_outs = outs.stop - outs.start
            assert n_rows * n_outs * n_in <= max(max_elements, n_in)
            covered[rows, outs] += 1
        np.testing.assert_array_equal(covered, 1)       # every (sample, output) exactly once


# -- hand-worked examples ----------------------------------------------------------------

@pytest.mark.parametrize("path", ["fast", "generic"])
def test_f03_by_hand(rng, path):
    """f = a x^2 + b x, two inputs, one output.

    x = (1, 2), a = (0.5, -1), b = (2, 0.25), bias 0.1:
    out = 0.5*1 + 2*1 + (-1)*4 + 0.25*2 + 0.1 = -0.9.
    With delta = 1: dL/da_i = x_i^2 = (1, 4), dL/db_i = x_i = (1, 2),
    dL/dx_i = 2 a_i x_i + b_i = (2*0.5*1 + 2, 2*(-1)*2 + 0.25) = (3, -3.75).
    """
    layer = FunctionalDense(2, 1, "F03", rng, path=path)
    params = {"theta": np.array([[[0.5, -1.0]], [[2.0, 0.25]]]), "b": np.array([0.1])}
    a, cache = layer.forward(np.array([[1.0, 2.0]]), params)
    np.testing.assert_allclose(a, [[-0.9]], rtol=1e-15)
    dx, g = layer.backward(np.array([[1.0]]), cache)
    np.testing.assert_allclose(g["theta"], [[[1.0, 4.0]], [[1.0, 2.0]]], rtol=1e-15)
    np.testing.assert_allclose(g["b"], [1.0])
    np.testing.assert_allclose(dx, [[3.0, -3.75]], rtol=1e-15)


def test_f12_by_hand(rng):
    """f = w0 sin(w1 x + w2) at w1 x + w2 = pi/2: f = w0, df/dw0 = 1, df/dw1 = df/dw2 = df/dx = 0;
    at w1 x + w2 = 0: f = 0, df/dw0 = 0, df/dw1 = w0 x, df/dw2 = w0, df/dx = w0 w1."""
    layer = FunctionalDense(2, 1, "F12", rng)
    params = {"theta": np.array([[[2.0, 3.0]], [[0.5, 4.0]], [[np.pi / 2 - 0.5, -4.0]]]),
              "b": np.array([0.0])}
    a, cache = layer.forward(np.array([[1.0, 1.0]]), params)
    np.testing.assert_allclose(a, [[2.0]], rtol=1e-15)               # 2 sin(pi/2) + 3 sin(0)
    dx, g = layer.backward(np.array([[1.0]]), cache)
    np.testing.assert_allclose(g["theta"], [[[1.0, 0.0]], [[0.0, 3.0]], [[0.0, 3.0]]],
                               atol=1e-15)
    np.testing.assert_allclose(dx, [[0.0, 12.0]], atol=1e-15)        # (0, w0 w1 = 3*4)


# -- initialisation, signs, arguments ----------------------------------------------------

@pytest.mark.parametrize("name", FUNCTION_NAMES)
@pytest.mark.parametrize("scheme", ["official", "fan_in"])
def test_init_ranges_and_reproducibility(name, scheme):
    fn = get_function(name)
    a = FunctionalDense(50, 40, name, np.random.default_rng(3), init=scheme)
    b = FunctionalDense(50, 40, name, np.random.default_rng(3), init=scheme)
    np.testing.assert_array_equal(a.params["theta"], b.params["theta"])
    ranges = fn.official_ranges if scheme == "official" else fn.fan_in_ranges(50)
    assert a.params["theta"].shape == (fn.k, 40, 50)
    for q, (lo, hi) in enumerate(ranges):
        th = a.params["theta"][q]
        assert lo <= th.min() and th.max() <= hi
        assert th.min() < lo + 0.05 * (hi - lo) and th.max() > hi - 0.05 * (hi - lo)
    np.testing.assert_array_equal(a.params["b"], 0.0)
    assert set(a.params) == {"theta", "b"}               # signs are not trainable
    if fn.uses_sign:
        np.testing.assert_array_equal(a.signs, b.signs)
        assert set(np.unique(a.signs)) == {-1.0, 1.0}
        assert 0.4 < np.mean(a.signs > 0) < 0.6
    else:
        assert a.signs is None


def test_official_special_ranges():
    assert FUNCTIONS["F05"].official_ranges[1] == (-4.0, -2.0)
    assert FUNCTIONS["F06"].official_ranges == ((0.0, 0.2),)
    assert FUNCTIONS["F12"].official_ranges[1:] == ((-10.0, 10.0), (-10.0, 10.0))
    assert FUNCTIONS["F16"].fan_in_ranges(24)[0] == (-0.5, 0.5)        # sqrt(6/24)


def test_default_path_choice(rng):
    assert FunctionalDense(3, 2, "F03", rng).path == "fast"
    assert FunctionalDense(3, 2, "F03", rng, path="generic").path == "generic"
    assert FunctionalDense(3, 2, "F12", rng).path == "generic"
    assert FunctionalDense(3, 2, "lin", rng).function.name == "LIN"


def test_bias_false(rng):
    layer = FunctionalDense(3, 2, "F16", rng, bias=False)
    assert set(layer.params) == {"theta"}
    errors = check_layer(layer, rng.standard_normal((4, 3)), rng)
    assert set(errors) == {"x", "theta"} and max(errors.values()) < TOL


def test_bad_arguments(rng):
    with pytest.raises(ValueError, match="function must be one of"):
        FunctionalDense(3, 2, "F21", rng)
    with pytest.raises(ValueError, match="FunctionalDense: n_in must be >= 1, got 0"):
        FunctionalDense(0, 2, "F03", rng)
    with pytest.raises(ValueError, match="FunctionalDense: n_out must be an integer, got '2'"):
        FunctionalDense(3, "2", "F03", rng)
    with pytest.raises(ValueError, match="max_elements must be an integer, got 2.5"):
        FunctionalDense(3, 2, "F03", rng, max_elements=2.5)
    with pytest.raises(ValueError, match="bias must be True or False, got 'yes'"):
        FunctionalDense(3, 2, "F03", rng, bias="yes")
    with pytest.raises(ValueError, match="path='fast' needs"):
        FunctionalDense(3, 2, "F12", rng, path="fast")
    with pytest.raises(ValueError, match="path must be one of"):
        FunctionalDense(3, 2, "F12", rng, path="gpu")
    with pytest.raises(ValueError, match=r"init must be one of \['official', 'fan_in'\], got 'xavier'"):
        FunctionalDense(3, 2, "F12", rng, init="xavier")
    with pytest.raises(ValueError, match="scheme must be"):
        get_function("F12").init(2, 3, rng, scheme="xavier")
    with pytest.raises(ValueError, match="rng must be"):
        FunctionalDense(3, 2, "F12", 0)
    layer = FunctionalDense(3, 2, "F12", rng)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        layer.forward(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"FunctionalDense.forward: x contains a non-finite value .* at index \(1, 2\)"):
        layer.forward(np.where(np.arange(12).reshape(4, 3) == 5, np.nan, 0.0))
    with pytest.raises(ValueError, match="FunctionalDense.forward: x is an empty batch"):
        layer.forward(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="x must be a real numeric array"):
        layer.forward(np.array([["a", "b", "c"]]))
    with pytest.raises(ValueError, match=r"params\['theta'\] must have shape"):
        layer.forward(np.zeros((4, 3)), {"theta": np.zeros((2, 2, 3)), "b": np.zeros(2)})
    _, cache = layer.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="dy must have the output's shape"):
        layer.backward(np.zeros((4, 3)), cache)
    with pytest.raises(ValueError, match="FunctionalDense.backward: dy contains a non-finite value"):
        layer.backward(np.full((4, 2), np.inf), cache)


@pytest.mark.parametrize("name,path", [("F03", "fast"), ("F12", "generic")])
def test_float32_and_int_inputs_are_upcast_exactly(rng, name, path):
    """Like Dense: float32 and integer x (and dy) give float64 results, equal to the
    float64 run on the same values (before, float32 x came back as a float32 dx)."""
    layer = FunctionalDense(3, 2, name, rng, path=path)
    x64 = rng.integers(-3, 4, size=(5, 3)).astype(np.float64)
    dy64 = rng.standard_normal((5, 2)).astype(np.float32).astype(np.float64)
    a, cache = layer.forward(x64)
    dx, grads = layer.backward(dy64, cache)
    for x in (x64.astype(np.float32), x64.astype(np.int64)):
        a2, cache2 = layer.forward(x)
        dx2, grads2 = layer.backward(dy64.astype(np.float32), cache2)
        assert a2.dtype == dx2.dtype == grads2["theta"].dtype == np.float64
        np.testing.assert_array_equal(a2, a)
        np.testing.assert_array_equal(dx2, dx)
        np.testing.assert_array_equal(grads2["theta"], grads["theta"])


@pytest.mark.parametrize("name", ["F03", "F12", "F20", "LIN"])
def test_given_theta_and_signs(rng, name):
    """Given draws are copied, shape-checked and consume nothing from rng; with every
    draw given, rng may be None, and the layer equals the one whose draws were given."""
    drawn = FunctionalDense(4, 3, name, np.random.default_rng(7))
    state = rng.bit_generator.state
    kw = {"theta": drawn.params["theta"]}
    if drawn.signs is not None:
        kw["signs"] = drawn.signs
    for r in (None, rng):
        given = FunctionalDense(4, 3, name, r, **kw)
        assert rng.bit_generator.state == state
        np.testing.assert_array_equal(given.params["theta"], drawn.params["theta"])
        assert given.params["theta"] is not drawn.params["theta"]
        x = rng.standard_normal((5, 4))
        np.testing.assert_array_equal(given.forward(x)[0], drawn.forward(x)[0])
        state = rng.bit_generator.state
    with pytest.raises(ValueError, match=r"given theta must have shape \(\d, 3, 4\)"):
        FunctionalDense(4, 3, name, None, theta=drawn.params["theta"][:, :2])
    if drawn.signs is not None:   # theta given but signs not: the sign draw needs rng
        with pytest.raises(ValueError, match="rng must be a numpy.random.Generator to draw signs"):
            FunctionalDense(4, 3, name, None, theta=drawn.params["theta"])
        with pytest.raises(ValueError, match="given signs must hold only"):
            FunctionalDense(4, 3, name, None, theta=drawn.params["theta"], signs=0.5 * drawn.signs)
    else:
        with pytest.raises(ValueError, match="signs must be None"):
            FunctionalDense(4, 3, name, None, theta=drawn.params["theta"], signs=np.ones((3, 4)))


def test_edges_are_the_per_edge_values_and_derivatives(rng):
    """edges(cache): f sums over inputs to a - b (FTM-2); df_dx contracts with dy to the
    backward dx (FTM-5) and df_dtheta to dtheta (FTM-4), on both paths."""
    for name, path in (("F19", "fast"), ("F12", "generic")):
        layer, x = _layer(name, rng, 4, 3, path=path)
        a, cache = layer.forward(x)
        e = layer.edges(cache)
        assert e["f"].shape == e["df_dx"].shape == (5, 3, 4)
        assert e["df_dtheta"].shape == (layer.function.k, 5, 3, 4)
        np.testing.assert_allclose(e["f"].sum(axis=2) + layer.params["b"], a, rtol=1e-12)
        dy = rng.standard_normal(a.shape)
        dx, grads = layer.backward(dy, cache)
        np.testing.assert_allclose(np.einsum("no,noi->ni", dy, e["df_dx"]), dx, rtol=1e-12)
        np.testing.assert_allclose(np.einsum("no,qnoi->qoi", dy, e["df_dtheta"]),
                                   grads["theta"], rtol=1e-12)


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_generic_path_memory_bound(rng, name):
    """Peak extra memory (tracemalloc sees numpy's buffers) stays below the stated bound
    MEMORY_BLOCKS * 8 * max_elements bytes, for a batch whose full (N, n_out, n_in)
    broadcast alone would be ~6 times larger (and an unchunked backward ~50 times)."""
    import tracemalloc

    from refnets.layers.functional.dense import MEMORY_BLOCKS
    max_elements = 2 ** 12
    layer = FunctionalDense(40, 30, name, rng, path="generic", max_elements=max_elements)
    x, dy = rng.standard_normal((200, 40)), rng.standard_normal((200, 30))
    bound = MEMORY_BLOCKS * 8 * max_elements
    assert x.shape[0] * 30 * 40 * 8 > 5 * bound
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        a, cache = layer.forward(x)
        _, peak = tracemalloc.get_traced_memory()
        assert peak - a.nbytes <= bound, (peak - a.nbytes) / (8 * max_elements)
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dx, grads = layer.backward(dy, cache)
        _, peak = tracemalloc.get_traced_memory()
        outputs = dx.nbytes + grads["theta"].nbytes + grads["b"].nbytes
        assert peak - current - outputs <= bound, (peak - current - outputs) / (8 * max_elements)
    finally:
        tracemalloc.stop()
