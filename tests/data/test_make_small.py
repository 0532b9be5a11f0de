"""The embedded subset is what make_small regenerates from the full Fashion-MNIST."""

import os
from importlib.resources import files

import numpy as np
import pytest

from refnets.data.make_small import DEFAULT_SOURCE, make_fashion_mnist_small
from refnets.datasets import SMALL_FILE


def test_embedded_file_is_packaged_and_consistent():
    with np.load(files("refnets.data") / SMALL_FILE, allow_pickle=False) as f:
        assert f["x_train"].dtype == np.uint8 and f["x_train"].shape == (5000, 28, 28)
        assert np.all(np.diff(f["train_index"]) > 0) and f["train_index"].max() < 60000
        assert np.all(np.diff(f["test_index"]) > 0) and f["test_index"].max() < 10000
    assert (files("refnets.data") / "ORIGIN.md").is_file()


@pytest.mark.skipif(not os.path.isdir(DEFAULT_SOURCE), reason="full Fashion-MNIST not installed")
def test_regenerates_bit_identically():
    new = make_fashion_mnist_small(DEFAULT_SOURCE)
    with np.load(files("refnets.data") / SMALL_FILE, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(new)
        for key, value in new.items():
            np.testing.assert_array_equal(f[key], value, err_msg=key)
