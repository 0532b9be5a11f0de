"""Finite-difference gradient checking (float64 only).

Two checkers, both with centred differences, step h = 1e-5:

* **element-wise VJP** for small tensors: for every entry x_i,
  (sum(dy * f(x + h e_i)) - sum(dy * f(x - h e_i))) / 2h  vs  (J^T dy)_i;
* **directional** for large tensors: for a few random unit directions v,
  <dy, (f(x + h v) - f(x - h v)) / 2h>  vs  <J^T dy, v>.

Truncation error is O(h^2 f''') ~ 1e-10 and round-off O(eps |f| / h) ~ 1e-11,
so a correct float64 derivative passes at relative error < 1e-7 (the refnets
bound). Near kinks (ReLU at 0, max-pool ties) the difference quotient
straddles the kink; tests build inputs away from kinks instead of loosening.

Relative error (``rel_error``) is the largest absolute difference divided by
the largest magnitude of either array, ``max|a-b| / max(max|a|, max|b|)``: a
scale-free, max-norm measure that does not blow up on entries that are ~0.

Use it to cross-check your own implementation::

    from refnets.gradcheck import numerical_vjp, rel_error
    num = numerical_vjp(lambda x: my_forward(x), x, dy)
    assert rel_error(my_backward(dy), num) < 1e-7
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_H", "DEFAULT_TOL", "rel_error", "numerical_gradient", "numerical_vjp",
           "directional_check", "check_layer", "check_loss", "assert_close"]

DEFAULT_H = 1e-5
DEFAULT_TOL = 1e-7


def _require_float64(x, name, where):
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{where}: {name} must be a numpy array, got {type(x).__name__}")
    if x.dtype != np.float64:
        raise ValueError(f"{where}: {name} must be float64 for a finite-difference check "
                         f"(float32 differences at h=1e-5 are mostly round-off), got {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{where}: {name} contains NaN or inf")
    return x


def rel_error(a, b):
    """max|a-b| / max(max|a|, max|b|); 0.0 when both are all zeros.

    ``inf`` when either array holds NaN or inf, so a broken derivative fails
    every ``err < tol`` test and survives ``max()`` over several errors (a NaN
    would not: ``max([1e-12, nan])`` is 1e-12).

    Parameters
    ----------
    a, b : array_like of the same shape
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("inf")
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)))
    if scale == 0.0:
        return 0.0
    return float(np.max(np.abs(a - b)) / scale)


def assert_close(analytic, numerical, name, tol=DEFAULT_TOL):
    """Raise AssertionError unless rel_error(analytic, numerical) < tol.

    The message names what was compared, the worst index and both values.
    Returns the relative error otherwise.
    """
    analytic, numerical = np.asarray(analytic), np.asarray(numerical)
    err = rel_error(analytic, numerical)
    if not err < tol:
        diff = np.abs(analytic - numerical)
        idx = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        raise AssertionError(
            f"gradient check failed for {name}: relative error {err:.3e} >= {tol:.1e}; "
            f"worst index {tuple(int(i) for i in idx)}: analytic {float(analytic[idx])!r}, "
            f"numerical {float(numerical[idx])!r} (shape {analytic.shape})")
    return err


def numerical_gradient(f, x, h=DEFAULT_H):
    """Centred-difference gradient of a scalar function.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``. It may read ``x``; ``x`` is perturbed in place and
        restored, so ``f`` must not keep references to it between calls.
    x : float64 ndarray
    h : float

    Returns
    -------
    grad : ndarray like ``x``
    """
    _require_float64(x, "x", "numerical_gradient")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):  # pragma: no cover - non-contiguous input
        raise ValueError("numerical_gradient: x must be contiguous (perturbed in place)")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = float(f(x))
        flat[i] = old - h
        fm = float(f(x))
        flat[i] = old
        gflat[i] = (fp - fm) / (2.0 * h)
    return grad


def numerical_vjp(f, x, dy, h=DEFAULT_H):
    """Centred-difference vector-Jacobian product J^T dy of ``y = f(x)``.

    Parameters
    ----------
    f : callable, ``f(x) -> ndarray`` of the shape of ``dy``
    x : float64 ndarray (perturbed in place and restored)
    dy : float64 ndarray
    """
    _require_float64(dy, "dy", "numerical_vjp")

    def scalar(xx):
        y = np.asarray(f(xx))
        if y.shape != dy.shape:
            raise ValueError(f"numerical_vjp: f(x) has shape {y.shape}, dy has {dy.shape}")
        return float(np.sum(y * dy))

    return numerical_gradient(scalar, x, h)


def directional_check(f, x, dy, jt_dy, rng, n_directions=4, h=DEFAULT_H):
    """Compare <dy, J v> (differences) with <J^T dy, v> (analytic) on random v.

    Parameters
    ----------
    f : callable, ``f(x) -> ndarray`` of the shape of ``dy``
    x : float64 ndarray
    dy : float64 ndarray, the upstream gradient
    jt_dy : float64 ndarray like ``x``, the analytic J^T dy under test
    rng : numpy.random.Generator
    n_directions : int

    Returns
    -------
    err : float
        rel_error between the two vectors of ``n_directions`` scalars.
    numerical, analytic : ndarray of shape (n_directions,)
    """
    if not isinstance(n_directions, (int, np.integer)) or n_directions < 1:
        raise ValueError(f"directional_check: n_directions must be a positive int, "
                         f"got {n_directions!r}")
    _require_float64(x, "x", "directional_check")
    _require_float64(dy, "dy", "directional_check")
    jt_dy = np.asarray(jt_dy)
    if jt_dy.shape != x.shape:
        raise ValueError(f"directional_check: jt_dy must have x's shape {x.shape}, got {jt_dy.shape}")
    num, ana = np.empty(n_directions), np.empty(n_directions)
    for k in range(n_directions):
        v = rng.standard_normal(x.shape)
        v /= np.linalg.norm(v)
        fp = np.asarray(f(x + h * v))
        fm = np.asarray(f(x - h * v))
        num[k] = np.sum(dy * (fp - fm)) / (2.0 * h)
        ana[k] = np.sum(jt_dy * v)
    return rel_error(ana, num), num, ana


def check_loss(loss, pred, *args, h=DEFAULT_H, **kwargs):
    """Gradient-check a loss ``loss(pred, *args, **kwargs) -> (value, dpred)``.

    The returned ``dpred`` is compared element-wise with the centred
    differences of the returned value (the loss is a scalar, so no upstream
    gradient is needed).

    Parameters
    ----------
    loss : callable returning ``(float, ndarray like pred)``
        e.g. :func:`refnets.losses.softmax_cross_entropy`.
    pred : float64 ndarray, the network output the loss is differentiated by
    *args, **kwargs : the loss's other arguments (labels, targets, options)

    Returns
    -------
    float, ``rel_error(dpred, numerical gradient)``.
    """
    _require_float64(pred, "pred", "check_loss")
    pred = np.array(pred, copy=True)
    _, analytic = loss(pred, *args, **kwargs)
    analytic = np.asarray(analytic)
    if analytic.shape != pred.shape:
        raise AssertionError(f"check_loss: the loss's derivative has shape {analytic.shape}, "
                             f"expected pred's {pred.shape}")
    numerical = numerical_gradient(lambda v: loss(v, *args, **kwargs)[0], pred, h)
    return rel_error(analytic, numerical)


def check_layer(layer, x, rng, params=None, max_elements=3000, n_directions=6, tol=None,
                h=DEFAULT_H):
    """Gradient-check a layer's backward against its forward.

    A random upstream ``dy`` (standard normal, not a sum loss) is drawn with
    ``rng``; the analytic ``dx`` and every parameter gradient are compared with
    centred differences: element-wise for tensors of at most ``max_elements``
    entries, along ``n_directions`` random directions otherwise.

    Parameters
    ----------
    layer : refnets layer
    x : float64 ndarray, the input
    rng : numpy.random.Generator
    params : dict, optional
        Parameters to run with (default: the layer's own, copied).
    tol : float, optional
        If given, raise AssertionError (with the worst index) when any error
        reaches it.

    Returns
    -------
    errors : dict
        ``{'x': err, 'W': err, ...}`` relative errors.
    """
    where = f"check_layer({layer!r})"
    _require_float64(x, "x", where)
    params = {k: np.array(v, dtype=v.dtype, copy=True)
              for k, v in (layer.params if params is None else params).items()}
    for k, v in params.items():
        _require_float64(v, f"params[{k!r}]", where)
    x = np.array(x, copy=True)

    y, cache = layer.forward(x, params)
    dy = rng.standard_normal(np.shape(y))
    dx, grads = layer.backward(dy, cache)
    if set(grads) != set(params):
        raise AssertionError(f"{where}: grads keys {sorted(grads)} != params keys {sorted(params)}")

    targets = {"x": (x, dx, lambda v: layer.forward(v, params)[0])}
    for key in params:
        def run(v, key=key):
            p = dict(params)
            p[key] = v
            return layer.forward(x, p)[0]
        targets[key] = (params[key], grads[key], run)

    errors = {}
    for name, (value, analytic, f) in targets.items():
        analytic = np.asarray(analytic)
        if analytic.shape != value.shape:
            raise AssertionError(f"{where}: gradient for {name} has shape {analytic.shape}, "
                                 f"expected {value.shape}")
        if value.size <= max_elements:
            numerical = numerical_vjp(f, np.array(value, copy=True), dy, h)
            if tol is not None:
                errors[name] = assert_close(analytic, numerical, f"{where} d{name}", tol)
            else:
                errors[name] = rel_error(analytic, numerical)
        else:
            err, num, ana = directional_check(f, value, dy, analytic, rng, n_directions, h)
            if tol is not None and not err < tol:
                raise AssertionError(
                    f"gradient check failed for {where} d{name} (directional, "
                    f"{n_directions} directions): relative error {err:.3e} >= {tol:.1e}; "
                    f"analytic <J^T dy, v> = {ana}, numerical <dy, J v> = {num}")
            errors[name] = err
    return errors
