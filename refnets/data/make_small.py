"""Regenerate the embedded ``fashion_mnist_small.npz`` from the full Fashion-MNIST.

Run (on a machine with the Debian package ``dataset-fashion-mnist``, or pass
the directory holding the four upstream IDX files)::

    python -m refnets.data.make_small [--source /usr/share/datasets/fashion-mnist] [--out FILE]

The subset is class-stratified and seeded: with the defaults it holds 500
training images per class drawn from the 60000 training images and 100 test
images per class from the 10000 test images, stored as uint8 in a compressed
``.npz`` with the indices into the original files. The same source files and
arguments reproduce the file's arrays exactly (tests/data/test_make_small.py
checks this when the source files are present).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from .idx import read_idx

__all__ = ["make_fashion_mnist_small"]

DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_small.npz")


def make_fashion_mnist_small(source=DEFAULT_SOURCE, n_train=5000, n_test=1000, seed=0):
    """The arrays of the embedded subset.

    Parameters
    ----------
    source : str
        Directory with the four Fashion-MNIST IDX files (gzipped or not).
    n_train, n_test : int
        Subset sizes (stratified over the 10 classes).
    seed : int
        ``np.random.default_rng(seed)`` draws the training subset, then the test subset.

    Returns
    -------
    dict with uint8 ``x_train`` (n_train, 28, 28), ``y_train`` (n_train,),
    ``x_test``, ``y_test``, and int64 ``train_index``/``test_index`` (rows of
    the original files, ascending).
    """
    from ..datasets import IDX_FILES, _find_file, stratified_indices

    paths = {}
    for key, fname in IDX_FILES.items():
        paths[key] = _find_file(source, fname)
        if paths[key] is None:
            raise FileNotFoundError(f"make_fashion_mnist_small: {fname} not found in {source}")
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = read_idx(paths[f"x_{split}"], expected_ndim=3)
        y = read_idx(paths[f"y_{split}"], expected_ndim=1)
        index = stratified_indices(y.astype(np.int64), n, rng)
        out[f"x_{split}"], out[f"y_{split}"] = x[index], y[index]
        out[f"{split}_index"] = index
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=DEFAULT_SOURCE)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--n-train", type=int, default=5000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    arrays = make_fashion_mnist_small(args.source, args.n_train, args.n_test, args.seed)
    tmp = args.out + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB): "
          + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
