"""Comparing update directions: cosine and angle between dicts of arrays.

Every algorithm reports the cosine between its update and the backprop
gradient on the same batch; these helpers define it once.
"""

from __future__ import annotations

import numpy as np

__all__ = ["flat_dot", "flat_norm", "cosine", "angle_degrees"]


def _keys(a, b, keys):
    if keys is None:
        keys = sorted(set(a) & set(b))
        if not keys:
            raise ValueError(f"cosine: the dicts share no keys ({sorted(a)} vs {sorted(b)})")
    for k in keys:
        if np.shape(a[k]) != np.shape(b[k]):
            raise ValueError(f"cosine: shapes of {k!r} differ, {np.shape(a[k])} vs {np.shape(b[k])}")
    return keys


def flat_dot(a, b, keys=None):
    """sum over shared keys of <a[k], b[k]>."""
    return float(sum(np.vdot(a[k], b[k]) for k in _keys(a, b, keys)))


def flat_norm(a, keys=None):
    """Euclidean norm of the concatenation of a[k] over ``keys`` (default all)."""
    keys = sorted(a) if keys is None else keys
    return float(np.sqrt(sum(np.vdot(a[k], a[k]) for k in keys)))


def cosine(a, b, keys=None):
    """Cosine of the angle between two update dicts, flattened over shared keys.

    Parameters
    ----------
    a, b : dict of ndarray, or ndarray
    keys : list of str, optional
        Restrict to these keys (default: all keys the dicts share).

    Returns
    -------
    float in [-1, 1]; ``nan`` if either side is all zeros (no direction).
    """
    if not isinstance(a, dict):
        a, b = {"": np.asarray(a)}, {"": np.asarray(b)}
    keys = _keys(a, b, keys)
    na, nb = flat_norm(a, keys), flat_norm(b, keys)
    if na == 0.0 or nb == 0.0:
        return float("nan")
    return float(np.clip(flat_dot(a, b, keys) / (na * nb), -1.0, 1.0))


def angle_degrees(a, b, keys=None):
    """Angle between two update dicts in degrees (0 = same direction)."""
    return float(np.degrees(np.arccos(cosine(a, b, keys))))
