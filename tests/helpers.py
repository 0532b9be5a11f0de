"""Helpers shared by the test modules."""

import numpy as np


def assert_same(a, b, path="value"):
    """Nested dicts/lists/tuples of arrays and scalars equal bit for bit.

    Arrays must agree in shape, dtype and every entry (NaN equals NaN); the
    message names the path to the first difference, e.g. ``state['0.T']``.
    """
    if isinstance(a, dict):
        assert isinstance(b, dict), f"{path}: dict vs {type(b).__name__}"
        assert set(a) == set(b), f"{path}: keys differ: {sorted(map(str, set(a) ^ set(b)))}"
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: lengths differ"
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{path}[{i}]")
    elif isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{path}: shapes {a.shape} vs {b.shape}"
        assert a.dtype == b.dtype, f"{path}: dtypes {a.dtype} vs {b.dtype}"
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), f"{path}: values differ"
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} != {b!r}"
