"""Self-checks of the functional transfer layers, registered for ``refnets gradcheck``.

For every function (F01-F20, LIN): the function-level derivatives
df/dtheta_q and df/dx against centred differences (FTM-3), and the layer-level
backward of :class:`~refnets.layers.functional.dense.FunctionalDense` (generic path,
FTM-4/FTM-5, and fast path where there is one, FTM-6) via
:func:`refnets.gradcheck.check_layer`; the memory function (FTM-9), the FTM
Elman RNN (FTM-10) and the functional convolution (FTM-11).

Also home of :func:`sample_point`, the kink-free random point the tests use.
"""

from __future__ import annotations

import numpy as np

from ...gradcheck import DEFAULT_H, check_layer, rel_error
from ...selfcheck import register_check
from .dense import FUNCTION_NAMES, FunctionalDense, draw_signs, get_function

#: Finite differences stay this far from kinks (|kink argument| > KINK_MARGIN);
#: a step h = 1e-5 moves a kink argument by at most ~h * |x| << 1e-3.
KINK_MARGIN = 1e-3


def sample_point(function, n_samples, n_out, n_in, rng, theta_scale=1.0, max_tries=1000):
    """A random (x, theta, signs) at which f is differentiable everywhere.

    x ~ N(0, 1) of shape (n_samples, n_in); theta from the official init times
    ``theta_scale`` (theta of F05's b and F12/F13 are left unscaled);
    points closer than KINK_MARGIN to a kink are redrawn.

    Returns
    -------
    x : (n_samples, n_in), theta : (k, n_out, n_in), signs : (n_out, n_in) or None
    """
    fn = get_function(function)
    for _ in range(max_tries):
        theta = fn.init(n_out, n_in, rng)
        if fn.name not in ("F05", "F12", "F13"):
            theta = theta * theta_scale
        x = rng.standard_normal((n_samples, n_in))
        signs = draw_signs((n_out, n_in), rng) if fn.uses_sign else None
        kink = fn.kink_argument(x[:, None, :], theta)
        if kink is None or np.min(np.abs(kink)) > KINK_MARGIN:
            return x, theta, signs
    raise RuntimeError(f"sample_point: no kink-free point for {fn.name} in {max_tries} tries")


def function_derivative_errors(function, rng, n_samples=4, n_out=3, n_in=5, h=DEFAULT_H):
    """Relative errors of df/dtheta_q and df/dx against centred differences.

    Each f_ij depends on its own theta_qij and x_ni only, so shifting a whole
    theta[q] (or x) by +-h gives every element-wise partial derivative at once.

    Returns
    -------
    dict ``{'theta[0]': err, ..., 'x': err}``
    """
    fn = get_function(function)
    x, theta, s = sample_point(fn, n_samples, n_out, n_in, rng, theta_scale=5.0)
    xb = x[:, None, :]
    full = (n_samples, n_out, n_in)
    dtheta, dx = fn.derivatives(xb, theta, s)
    errors = {}
    for q in range(fn.k):
        shift = np.zeros_like(theta)
        shift[q] = h
        num = (fn.value(xb, theta + shift, s) - fn.value(xb, theta - shift, s)) / (2 * h)
        errors[f"theta[{q}]"] = rel_error(np.broadcast_to(dtheta[q], full), num)
    num = (fn.value(xb + h, theta, s) - fn.value(xb - h, theta, s)) / (2 * h)
    errors["x"] = rel_error(np.broadcast_to(dx, full), num)
    return errors


def layer_derivative_errors(function, rng, path, n_samples=4, n_out=3, n_in=5):
    """check_layer errors (dx, dtheta, db) of a FunctionalDense at a kink-free point."""
    layer = FunctionalDense(n_in, n_out, function, rng, path=path)
    x, theta, s = sample_point(layer.function, n_samples, n_out, n_in, rng, theta_scale=5.0)
    layer.params["theta"] = theta
    layer.params["b"] = rng.standard_normal(n_out)
    layer.signs = s
    return check_layer(layer, x, rng)


def _register(name):
    fn = get_function(name)

    @register_check(f"FTM {name} f = {fn.formula}: df/dtheta, df/dx", group="functional")
    def _function_check(rng):
        if fn.surrogate_gradient:   # F07: only df/dx is a true derivative (w > 0 at the point)
            return function_derivative_errors(fn, rng)["x"]
        return max(function_derivative_errors(fn, rng).values())
    _function_check.__qualname__ = f"_function_check_{name}"

    paths = ("generic", "fast") if fn.has_fast_path else ("generic",)
    for path in paths:
        def _make(path):
            @register_check(f"FTM {name} FunctionalDense {path} path (N=4, 5 -> 3)",
                            group="functional")
            def _layer_check(rng):
                return max(layer_derivative_errors(fn, rng, path).values())
            _layer_check.__qualname__ = f"_layer_check_{name}_{path}"
        _make(path)


for _name in FUNCTION_NAMES:
    _register(_name)


# -- recurrent extensions ------------------------------------------------------------------

def _vjp_worst(forward, values, analytic, dy):
    """Worst rel. error of analytic VJPs against numerical ones, one entry per input."""
    from ...gradcheck import numerical_vjp
    errs = []
    for key, value in values.items():
        def f(v, key=key):
            return forward({**values, key: v})
        errs.append(rel_error(analytic[key], numerical_vjp(f, value.copy(), dy)))
    return max(errs)


def _memory_check(rng, gradient, T):
    from .recurrent import MemoryFunctional
    layer = MemoryFunctional(3, 2, rng, gradient=gradient)
    theta, b = rng.uniform(-1, 1, (3, 2, 3)), rng.standard_normal(2)
    x, m0 = rng.standard_normal((T, 2, 3)), rng.uniform(-1, 1, (2, 2, 3))
    a, cache = layer.forward(x, {"theta": theta, "b": b}, m0=m0)
    dy = rng.standard_normal(a.shape)
    dx, grads, dm0 = layer.backward_full(dy, cache)
    values = {"x": x, "theta": theta, "b": b, "m0": m0}
    analytic = {"x": dx, **grads, "m0": dm0}
    if gradient == "truncated":          # dm0 is not computed by the truncated gradient
        values.pop("m0")

    def forward(v):
        return layer.forward(v["x"], {"theta": v["theta"], "b": v["b"]},
                             m0=v.get("m0", m0))[0]
    return _vjp_worst(forward, values, analytic, dy)


@register_check("FTM memory function, one step (T=1, truncated = exact): dx, dtheta, db",
                group="functional")
def _memory_one_step(rng):
    return _memory_check(rng, "truncated", 1)


@register_check("FTM memory function, full BPTT (T=5): dx, dtheta, db, dm0", group="functional")
def _memory_bptt(rng):
    return _memory_check(rng, "bptt", 5)


@register_check("FTM Elman RNN (F12 input, F19 recurrent), BPTT (T=4): dx, dtheta_x, dtheta_h, "
                "db, dh0", group="functional")
def _functional_rnn(rng):
    from .recurrent import FunctionalRNN
    layer = FunctionalRNN(3, 4, "F12", rng, recurrent_function="F19")
    layer.params["theta_h"] *= 5.0
    p = {k: v.copy() for k, v in layer.params.items()}
    p["b"] = 0.3 * rng.standard_normal(4)
    x, h0 = rng.standard_normal((4, 2, 3)), 0.5 * rng.standard_normal((2, 4))
    hs, cache = layer.forward(x, p, h0=h0)
    dy = rng.standard_normal(hs.shape)
    dx, grads, dh0 = layer.backward_full(dy, cache)

    def forward(v):
        return layer.forward(v["x"], {k: v[k] for k in p}, h0=v["h0"])[0]
    return _vjp_worst(forward, {"x": x, **p, "h0": h0}, {"x": dx, **grads, "h0": dh0}, dy)


# -- functional convolution ------------------------------------------------------------------

def _conv_check(rng, function, path, **geometry):
    from .conv import FunctionalConv2D
    layer = FunctionalConv2D(2, 2, 3, function, rng, path=path, **geometry)
    if function not in ("F12", "F13"):
        layer.params["theta"] *= 5.0
    layer.params["b"][:] = rng.standard_normal(2)
    return max(check_layer(layer, rng.standard_normal((2, 2, 4, 4)), rng).values())


@register_check("FTM FunctionalConv2D F19 fast path (2 -> 2, 4x4, k3 stride 2 padding 1)",
                group="functional")
def _conv_fast(rng):
    return _conv_check(rng, "F19", "fast", stride=2, padding=1)


@register_check("FTM FunctionalConv2D F12 generic path (2 -> 2, 4x4, k3 padding 'same')",
                group="functional")
def _conv_generic(rng):
    return _conv_check(rng, "F12", "generic", padding="same")
