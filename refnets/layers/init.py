"""Weight initialisers. Every function takes an explicit ``rng``.

Shapes follow PyTorch: a dense weight is (fan_out, fan_in); a conv kernel is
(C_out, C_in, kh, kw) with fan_in = C_in*kh*kw and fan_out = C_out*kh*kw.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fans", "glorot_uniform", "glorot_normal", "he_normal", "he_uniform",
           "orthogonal", "get_initializer"]


def _check_rng(rng, where):
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{where}: rng must be a numpy.random.Generator "
                         f"(np.random.default_rng(seed)), got {type(rng).__name__}")


def fans(shape):
    """Return ``(fan_in, fan_out)`` of a weight of the given shape."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"fans: shape must have at least 2 dimensions, got {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def glorot_uniform(shape, rng, gain=1.0):
    """U(-a, a), a = gain*sqrt(6/(fan_in+fan_out)) (Glorot & Bengio 2010, eq. 16)."""
    _check_rng(rng, "glorot_uniform")
    fan_in, fan_out = fans(shape)
    a = gain * np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape)


def glorot_normal(shape, rng, gain=1.0):
    """N(0, s^2), s = gain*sqrt(2/(fan_in+fan_out))."""
    _check_rng(rng, "glorot_normal")
    fan_in, fan_out = fans(shape)
    return rng.normal(0.0, gain * np.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def he_normal(shape, rng):
    """N(0, 2/fan_in) (He et al. 2015), for ReLU-like layers."""
    _check_rng(rng, "he_normal")
    fan_in, _ = fans(shape)
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def he_uniform(shape, rng):
    """U(-a, a), a = sqrt(6/fan_in)."""
    _check_rng(rng, "he_uniform")
    fan_in, _ = fans(shape)
    a = np.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, size=shape)


def orthogonal(shape, rng, gain=1.0):
    """A (semi-)orthogonal matrix from the QR of a Gaussian (Saxe et al. 2014).

    For more than two dimensions the trailing dimensions are flattened into the
    columns, as in PyTorch's ``orthogonal_``.
    """
    _check_rng(rng, "orthogonal")
    shape = tuple(shape)
    rows, cols = shape[0], int(np.prod(shape[1:]))
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))  # make the decomposition unique (Mezzadri 2007)
    if rows < cols:
        q = q.T
    return gain * q[:rows, :cols].reshape(shape)


_INITIALIZERS = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "orthogonal": orthogonal,
}


def get_initializer(name):
    """Look an initialiser up by name (or pass a callable through)."""
    if callable(name):
        return name
    try:
        return _INITIALIZERS[name]
    except KeyError:
        raise ValueError(f"init must be one of {sorted(_INITIALIZERS)} or a callable, "
                         f"got {name!r}") from None
