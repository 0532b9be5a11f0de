"""Memory-function FTM (truncated and BPTT gradients) and the FTM Elman RNN (BPTT)."""

import numpy as np
import pytest

from refnets.gradcheck import numerical_vjp, rel_error
from refnets.layers import RNN
from refnets.layers.functional.recurrent import FunctionalRNN, MemoryFunctional

TOL = 1e-7


def _memory(rng, n_in, n_out, gradient, scale=1.0):
    layer = MemoryFunctional(n_in, n_out, rng, gradient=gradient)
    layer.params["theta"] = scale * rng.uniform(-1, 1, size=(3, n_out, n_in))
    layer.params["b"] = rng.standard_normal(n_out)
    return layer


def _vjp_errors(layer, x, dy, grads, dx, p, state_kw):
    """Element-wise numerical VJPs of dx and every parameter, state held at state_kw."""
    errors = {"x": rel_error(dx, numerical_vjp(lambda v: layer.forward(v, p, **state_kw)[0],
                                               x.copy(), dy))}
    for key in p:
        def f(v, key=key):
            return layer.forward(x, {**p, key: v}, **state_kw)[0]
        errors[key] = rel_error(grads[key], numerical_vjp(f, p[key].copy(), dy))
    return errors


# -- memory function ---------------------------------------------------------------------

@pytest.mark.parametrize("gradient", ["truncated", "bptt"])
def test_memory_one_step_gradcheck(rng, gradient):
    """T = 1 with a non-zero initial state: both gradients are the exact gradient."""
    layer = _memory(rng, 4, 3, gradient)
    x, m0 = rng.standard_normal((1, 2, 4)), rng.uniform(-1, 1, (2, 3, 4))
    a, cache = layer.forward(x, m0=m0)
    dy = rng.standard_normal(a.shape)
    dx, grads, dm0 = layer.backward_full(dy, cache)
    p = {k: v.copy() for k, v in layer.params.items()}
    errors = _vjp_errors(layer, x, dy, grads, dx, p, {"m0": m0})
    assert max(errors.values()) < TOL, errors
    if gradient == "bptt":
        num = numerical_vjp(lambda v: layer.forward(x, p, m0=v)[0], m0.copy(), dy)
        assert rel_error(dm0, num) < TOL


@pytest.mark.parametrize("T", [1, 2, 7])
def test_memory_bptt_gradcheck(rng, T):
    layer = _memory(rng, 3, 4, "bptt")
    x, m0 = rng.standard_normal((T, 2, 3)), rng.uniform(-1, 1, (2, 4, 3))
    a, cache = layer.forward(x, m0=m0)
    dy = rng.standard_normal(a.shape)
    dx, grads, dm0 = layer.backward_full(dy, cache)
    p = {k: v.copy() for k, v in layer.params.items()}
    errors = _vjp_errors(layer, x, dy, grads, dx, p, {"m0": m0})
    errors["m0"] = rel_error(dm0, numerical_vjp(lambda v: layer.forward(x, p, m0=v)[0],
                                                m0.copy(), dy))
    assert max(errors.values()) < TOL, errors


def test_memory_truncated_is_exact_with_states_held_fixed(rng):
    """Truncated gradient over T steps = exact gradient of sum_t L_t(y_t(theta; m(t-1) fixed))."""
    layer = _memory(rng, 3, 4, "truncated")
    x, m0 = rng.standard_normal((6, 2, 3)), rng.uniform(-1, 1, (2, 4, 3))
    a, cache = layer.forward(x, m0=m0)
    m_prev = np.concatenate([m0[None], cache["ys"][:-1]])       # frozen states
    dy = rng.standard_normal(a.shape)
    dx, grads = layer.backward(dy, cache)

    def frozen(x_, theta, b):
        return np.stack([MemoryFunctional.cell(x_[t], m_prev[t], theta).sum(axis=2)
                         for t in range(len(x_))]) + b

    th, b = layer.params["theta"].copy(), layer.params["b"].copy()
    assert rel_error(grads["theta"], numerical_vjp(lambda v: frozen(x, v, b), th.copy(), dy)) < TOL
    assert rel_error(grads["b"], numerical_vjp(lambda v: frozen(x, th, v), b.copy(), dy)) < TOL
    assert rel_error(dx, numerical_vjp(lambda v: frozen(v, th, b), x.copy(), dy)) < TOL
    # ... and it differs from the true gradient once T > 1 (the truncation is real)
    bptt = MemoryFunctional(3, 4, rng, gradient="bptt")
    _, g_true = bptt.backward(dy, bptt.forward(x, layer.params, m0=m0)[1])
    assert rel_error(grads["theta"], g_true["theta"]) > 1e-3


def test_memory_without_recurrence_is_stateless(rng):
    """rho = 0: y = tanh(alpha x + c) at every step, and both gradients coincide."""
    layer = _memory(rng, 3, 2, "truncated")
    layer.params["theta"][1] = 0.0
    x = rng.standard_normal((5, 4, 3))
    a, cache = layer.forward(x, m0=rng.uniform(-1, 1, (4, 2, 3)))
    alpha, _, c = layer.params["theta"]
    expected = np.tanh(alpha * x[:, :, None, :] + c).sum(axis=3) + layer.params["b"]
    np.testing.assert_allclose(a, expected, rtol=1e-14)
    dy = rng.standard_normal(a.shape)
    bptt = MemoryFunctional(3, 2, rng, gradient="bptt")
    dx1, g1 = layer.backward(dy, cache)
    dx2, g2 = bptt.backward(dy, bptt.forward(x, layer.params, m0=cache["m0"])[1])
    np.testing.assert_allclose(dx1, dx2, rtol=1e-14)
    np.testing.assert_allclose(g1["theta"], g2["theta"], rtol=1e-14, atol=1e-15)


def test_memory_state_carry_and_reset(rng):
    layer = _memory(rng, 3, 2, "truncated")
    x = rng.standard_normal((7, 2, 3))
    a_all, c_all = layer.forward(x)
    a1, c1 = layer.forward(x[:3])
    a2, _ = layer.forward(x[3:], m0=c1["m_last"])            # continue the sequence
    np.testing.assert_array_equal(np.concatenate([a1, a2]), a_all)
    np.testing.assert_array_equal(layer.forward(x)[0], a_all)  # m0=None: fresh zero state
    np.testing.assert_array_equal(c_all["m0"], 0.0)


def test_memory_by_hand(rng):
    """One connection, alpha = 1, rho = 1, c = 0, b = 0.5, x = (1, 0):
    y1 = tanh(1) = 0.76159..., y2 = tanh(0 + y1) = tanh(0.76159...) = 0.64201...;
    a = y + 0.5. Truncated dL/drho with delta = (0, 1): (1 - y2^2) y1."""
    layer = MemoryFunctional(1, 1, rng)
    p = {"theta": np.array([[[1.0]], [[1.0]], [[0.0]]]), "b": np.array([0.5])}
    a, cache = layer.forward(np.array([[[1.0]], [[0.0]]]), p)
    y1 = np.tanh(1.0)
    y2 = np.tanh(y1)
    np.testing.assert_allclose(a[:, 0, 0], [y1 + 0.5, y2 + 0.5], rtol=1e-15)
    assert y1 == pytest.approx(0.7615941559557649) and y2 == pytest.approx(0.6420149920119997)
    _, g = layer.backward(np.array([[[0.0]], [[1.0]]]), cache)
    assert g["theta"][1, 0, 0] == pytest.approx((1 - y2 ** 2) * y1, rel=1e-14)
    assert g["theta"][0, 0, 0] == pytest.approx(0.0, abs=1e-15)   # x2 = 0, y1 held fixed


def test_memory_init_and_errors(rng):
    a = MemoryFunctional(10, 7, np.random.default_rng(2))
    b = MemoryFunctional(10, 7, np.random.default_rng(2))
    np.testing.assert_array_equal(a.params["theta"], b.params["theta"])
    assert a.params["theta"].shape == (3, 7, 10) and np.abs(a.params["theta"]).max() <= 0.1
    with pytest.raises(ValueError, match="gradient must be"):
        MemoryFunctional(3, 2, rng, gradient="rtrl")
    layer = MemoryFunctional(3, 2, rng)
    with pytest.raises(ValueError, match=r"x must have shape \(T, N, 3\)"):
        layer.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="m0 must have shape"):
        layer.forward(np.zeros((4, 1, 3)), m0=np.zeros((1, 3, 2)))


@pytest.mark.parametrize("irange,message", [
    (float("nan"), "MemoryFunctional: irange must be finite, got nan"),   # was "high - low < 0"
    (-0.1, "MemoryFunctional: irange must be > 0.0, got -0.1"),
    ("0.1", "MemoryFunctional: irange must be a real number, got '0.1'"),
])
def test_memory_irange_is_checked(rng, irange, message):
    with pytest.raises(ValueError, match=message):
        MemoryFunctional(3, 2, rng, irange=irange)


def test_memory_sequences_are_validated_and_upcast(rng):
    """Time-major x: the batch axis is 1; float32 gives the float64 result."""
    layer = MemoryFunctional(3, 2, rng, gradient="bptt")
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    a, cache = layer.forward(x)
    a64, cache64 = layer.forward(x.astype(np.float64))
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, a64)
    da = np.ones((4, 2, 2), dtype=np.float32)
    dx, _ = layer.backward(da, cache)
    assert dx.dtype == np.float64
    np.testing.assert_array_equal(dx, layer.backward(da.astype(np.float64), cache64)[0])
    with pytest.raises(ValueError, match="MemoryFunctional.forward: x is an empty batch .* axis 1"):
        layer.forward(np.zeros((4, 0, 3)))
    with pytest.raises(ValueError, match="MemoryFunctional.forward: m0 contains a non-finite"):
        layer.forward(x, m0=np.full((2, 2, 3), np.nan))
    with pytest.raises(ValueError, match="MemoryFunctional.backward: da contains a non-finite"):
        layer.backward(np.full((4, 2, 2), np.inf), cache)


def test_memory_given_theta(rng):
    theta = rng.uniform(-1, 1, (3, 2, 3))
    state = rng.bit_generator.state
    layer = MemoryFunctional(3, 2, None, theta=theta)
    assert rng.bit_generator.state == state
    np.testing.assert_array_equal(layer.params["theta"], theta)
    assert layer.params["theta"] is not theta
    with pytest.raises(ValueError, match=r"MemoryFunctional: rng must be a numpy.random.Generator "
                                         r"to draw theta \(or give theta="):
        MemoryFunctional(3, 2, None)
    with pytest.raises(ValueError, match=r"given theta must have shape \(3, 2, 3\), got \(3, 3, 2\)"):
        MemoryFunctional(3, 2, None, theta=theta.transpose(0, 2, 1))


# -- FTM Elman RNN -----------------------------------------------------------------------

def test_functional_rnn_given_draws(rng):
    """All four draws given: no rng needed, and the layer equals one built from an rng
    whose draws are given back to it."""
    drawn = FunctionalRNN(3, 4, "F20", np.random.default_rng(3), recurrent_function="F18")
    given = FunctionalRNN(3, 4, "F20", None, recurrent_function="F18",
                          theta_x=drawn.params["theta_x"], theta_h=drawn.params["theta_h"],
                          signs_x=drawn.input_ftm.signs, signs_h=drawn.recurrent_ftm.signs)
    x = rng.standard_normal((3, 2, 3))
    np.testing.assert_array_equal(given.forward(x)[0], drawn.forward(x)[0])
    with pytest.raises(ValueError, match="to draw signs"):
        FunctionalRNN(3, 4, "F20", None, theta_x=drawn.params["theta_x"],
                      theta_h=drawn.params["theta_h"])


@pytest.mark.parametrize("function,recurrent,T", [("F03", None, 1), ("F03", None, 4),
                                                  ("F12", None, 4), ("F16", "F19", 4),
                                                  ("LIN", "F13", 4)])
def test_functional_rnn_bptt_gradcheck(rng, function, recurrent, T):
    layer = FunctionalRNN(3, 4, function, rng, recurrent_function=recurrent)
    for key, ftm in (("theta_x", layer.input_ftm), ("theta_h", layer.recurrent_ftm)):
        if ftm.function.name not in ("F12", "F13"):   # sin/cos: official w1 ~ U(-10, 10) already
            layer.params[key] *= 5.0                  # in place: the FTMs share these arrays
    layer.params["b"] = 0.3 * rng.standard_normal(4)
    x, h0 = rng.standard_normal((T, 2, 3)), 0.5 * rng.standard_normal((2, 4))
    hs, cache = layer.forward(x, h0=h0)
    dy = rng.standard_normal(hs.shape)
    dx, grads, dh0 = layer.backward_full(dy, cache)
    p = {k: v.copy() for k, v in layer.params.items()}
    errors = _vjp_errors(layer, x, dy, grads, dx, p, {"h0": h0})
    errors["h0"] = rel_error(dh0, numerical_vjp(lambda v: layer.forward(x, p, h0=v)[0],
                                                h0.copy(), dy))
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("path", ["fast", "generic"])
def test_functional_rnn_with_lin_is_the_elman_rnn(rng, path):
    ref = RNN(3, 4, rng)
    ref.params["b"] = rng.standard_normal(4)
    layer = FunctionalRNN(3, 4, "LIN", rng, path=path)
    layer.params["theta_x"][0] = ref.params["W_x"]
    layer.params["theta_h"][0] = ref.params["W_h"]
    layer.params["b"][:] = ref.params["b"]
    x, h0, dy = (rng.standard_normal((6, 2, 3)), rng.standard_normal((2, 4)),
                 rng.standard_normal((6, 2, 4)))
    hs_ref, c_ref = ref.forward(x, h0=h0)
    hs, c = layer.forward(x, h0=h0)
    dx_ref, g_ref, dh0_ref = ref.backward_full(dy, c_ref)
    dx, g, dh0 = layer.backward_full(dy, c)
    for u, v in ((hs, hs_ref), (dx, dx_ref), (g["theta_x"][0], g_ref["W_x"]),
                 (g["theta_h"][0], g_ref["W_h"]), (g["b"], g_ref["b"]), (dh0, dh0_ref)):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)


def test_functional_rnn_params_are_the_ftm_arrays(rng):
    layer = FunctionalRNN(3, 4, "F20", rng)
    assert layer.params["theta_x"] is layer.input_ftm.params["theta"]
    assert layer.params["theta_h"] is layer.recurrent_ftm.params["theta"]
    assert layer.input_ftm.signs is not None and set(layer.params) == {"theta_x", "theta_h", "b"}
    with pytest.raises(ValueError, match=r"x must have shape \(T, N, 3\)"):
        layer.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="FunctionalRNN: n_hidden must be >= 1, got 0"):
        FunctionalRNN(3, 0, "F03", rng)


def test_memory_matches_the_authors_layout_step_by_step(rng):
    """The authors' memory block, re-derived in their layout (W (3, n_in, n_out), batch 1,
    one step per call, state X (n_out, n_in) carried between calls): given theta =
    W.transpose(0, 2, 1) and m0 = the carried state, each one-step call gives their a,
    their (truncated) parameter gradients transposed and their input gradient (FTM-8, FTM-9)."""
    n_in, n_out = 3, 2
    W = rng.uniform(-0.5, 0.5, (3, n_in, n_out))
    layer = MemoryFunctional(n_in, n_out, None, theta=W.transpose(0, 2, 1))
    X = np.zeros((n_out, n_in))                                  # their state, reset
    m = None
    for _ in range(3):
        x, delta = rng.standard_normal(n_in), rng.standard_normal((1, n_out))
        C = X
        X = np.tanh(x * W[0].T + C * W[1].T + W[2].T)
        DX = 1 - X * X
        a, cache = layer.forward(x[None, None], m0=m)
        np.testing.assert_allclose(a[0], X.sum(axis=1)[None], rtol=1e-13)
        dx, g = layer.backward(delta[None], cache)
        np.testing.assert_allclose(g["theta"][0], ((x[:, None] @ delta) * DX.T).T, rtol=1e-13)
        np.testing.assert_allclose(g["theta"][1], (delta[0] * C.T * DX.T).T, rtol=1e-13)
        np.testing.assert_allclose(g["theta"][2], (delta[0] * DX.T).T, rtol=1e-13)
        np.testing.assert_allclose(dx[0], delta @ (W[0].T * DX), rtol=1e-13)
        m = cache["m_last"]
