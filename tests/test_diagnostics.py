"""Cosine and angle between update dicts."""

import numpy as np
import pytest

from refnets.diagnostics import angle_degrees, cosine, flat_dot, flat_norm


def test_by_hand():
    a = {"W": np.array([[1.0, 0.0]]), "b": np.array([0.0])}
    b = {"W": np.array([[1.0, 1.0]]), "b": np.array([0.0])}
    assert flat_dot(a, b) == 1.0
    assert flat_norm(b) == pytest.approx(np.sqrt(2))
    assert cosine(a, b) == pytest.approx(1 / np.sqrt(2), rel=1e-15)
    assert angle_degrees(a, b) == pytest.approx(45.0, rel=1e-13)


def test_flattens_across_keys():
    """Orthogonal as concatenated vectors although each key alone is parallel or zero."""
    a = {"p": np.array([1.0]), "q": np.array([0.0])}
    b = {"p": np.array([0.0]), "q": np.array([1.0])}
    assert cosine(a, b) == 0.0 and angle_degrees(a, b) == 90.0
    c = {"p": np.array([3.0]), "q": np.array([4.0])}
    d = {"p": np.array([3.0]), "q": np.array([-4.0])}
    assert cosine(c, d) == pytest.approx((9 - 16) / 25, rel=1e-15)


def test_limits_and_invariances(rng):
    a = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(4)}
    b = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(4)}
    assert cosine(a, a) == pytest.approx(1.0, abs=1e-15)
    assert angle_degrees(a, a) == pytest.approx(0.0, abs=1e-6)  # clipped: arccos never sees 1 + eps
    assert angle_degrees(a, {k: -3 * v for k, v in a.items()}) == pytest.approx(180.0, abs=1e-6)
    scaled = {k: 7.5 * v for k, v in b.items()}
    assert cosine(a, scaled) == pytest.approx(cosine(a, b), rel=1e-13)
    assert cosine(a, b) == cosine(b, a)
    flat = cosine(np.concatenate([a["W"].ravel(), a["b"]]), np.concatenate([b["W"].ravel(), b["b"]]))
    assert cosine(a, b) == pytest.approx(flat, rel=1e-13)


def test_key_selection(rng):
    a = {"x": rng.standard_normal(3), "y": rng.standard_normal(2)}
    b = {"x": rng.standard_normal(3), "z": rng.standard_normal(2)}
    assert cosine(a, b) == pytest.approx(cosine(a["x"], b["x"]), rel=1e-14)  # shared keys only
    c = {"x": a["x"], "y": -a["y"]}
    assert cosine(a, c, keys=["x"]) == pytest.approx(1.0)
    assert cosine(a, c) < 1.0


def test_zero_update_has_no_direction():
    a = {"W": np.zeros((2, 2))}
    b = {"W": np.ones((2, 2))}
    assert np.isnan(cosine(a, b)) and np.isnan(cosine(b, a))
    assert np.isnan(angle_degrees(a, b))  # no RuntimeWarning (pytest would raise it)


def test_bad_input():
    with pytest.raises(ValueError, match=r"share no keys \(\['a'\] vs \['b'\]\)"):
        cosine({"a": np.ones(2)}, {"b": np.ones(2)})
    with pytest.raises(ValueError, match=r"shapes of 'a' differ, \(2,\) vs \(3,\)"):
        cosine({"a": np.ones(2)}, {"a": np.ones(3)})
    with pytest.raises(ValueError, match=r"shapes of '' differ"):
        cosine(np.ones(2), np.ones(3))
