"""Datasets: synthetic tasks, MNIST / Fashion-MNIST loaders, minibatches.

Nothing here touches the network unless you pass ``download=True``.

* :func:`two_spirals` - the two-spirals benchmark (194 training points) and its
  interleaved test set.
* :func:`bit_sequences` - recall / xor / serial-adder bit streams (Target Space RNNs).
* :func:`pi_digits` - decimal digits of pi by exact integer arithmetic (FTM memory task).
* :func:`load_fashion_mnist_small` - a stratified 5000/1000 Fashion-MNIST subset
  shipped inside the package (works offline, in CI).
* :func:`load_fashion_mnist`, :func:`load_mnist` - the full sets from local IDX
  files (optionally downloaded once, SHA-256 verified).
* :func:`minibatches` - seeded shuffled minibatches along any batch axis.

Image loaders return a :class:`Dataset` namedtuple ``(x_train, y_train,
x_test, y_test)`` with float64 pixels in [0, 1] and int64 labels.
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple

import numpy as np

from .data.download import fetch_from_mirrors
from .data.idx import read_idx

__all__ = ["Dataset", "two_spirals", "bit_sequences", "labels_from_bits", "pi_digits", "minibatches",
           "stratified_indices", "load_fashion_mnist", "load_fashion_mnist_small",
           "load_mnist", "cache_dir", "FASHION_MNIST_CLASSES", "IDX_FILES"]

Dataset = namedtuple("Dataset", ["x_train", "y_train", "x_test", "y_test"])
Dataset.__doc__ = "Train and test arrays: ``x_train, y_train, x_test, y_test = data``."

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _check_rng(rng, where, allow_none=False):
    if rng is None and allow_none:
        return None
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"{where}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _check_count(n, name, where, minimum=1, allow_none=False):
    if n is None and allow_none:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {n!r}")
    return int(n)


# ---------------------------------------------------------------------------
# Synthetic tasks
# ---------------------------------------------------------------------------

def two_spirals(variant="cmu"):
    """The two-spirals benchmark: 194 training points, 194 interleaved test points.

    Parameters
    ----------
    variant : {'cmu', 'target_space'}
        ``'cmu'``: the CMU benchmark generator (Lang & Witbrock 1988): for
        i = 0..96, angle = i pi / 16, radius = 6.5 (104 - i) / 104, point
        (radius sin(angle), radius cos(angle)).
        ``'target_space'``: the parametrisation of the Target Space authors'
        CSV files: angle = i pi / 16, radius = 0.65 + 5.85 i / 96, point
        (radius cos(angle), radius sin(angle)).
        Both are three turns per spiral with radii between ~0.5 and 6.5.

    Returns
    -------
    Dataset
        ``x_train`` (194, 2) float64, ``y_train`` (194,) int64 in {0, 1},
        ``x_test`` (194, 2), ``y_test`` (194,). Class 0 is the spiral above,
        class 1 its point reflection (-x); rows alternate 0, 1, 0, 1, ...
        The test set evaluates the same formula at i + 0.5, i.e. halfway
        between consecutive training points of the same spiral.

    References
    ----------
    K. J. Lang & M. J. Witbrock (1988), "Learning to tell two spirals apart",
    Proc. Connectionist Models Summer School.
    """
    def points(i):
        theta = i * np.pi / 16.0
        if variant == "cmu":
            r = 6.5 * (104.0 - i) / 104.0
            p = np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)
        elif variant == "target_space":
            r = 0.65 + 5.85 * i / 96.0
            p = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
        else:
            raise ValueError(f"two_spirals: variant must be 'cmu' or 'target_space', got {variant!r}")
        x = np.empty((2 * len(i), 2))
        x[0::2], x[1::2] = p, -p
        y = np.tile(np.array([0, 1], dtype=np.int64), len(i))
        return x, y

    i = np.arange(97, dtype=np.float64)
    x_train, y_train = points(i)
    x_test, y_test = points(i + 0.5)
    return Dataset(x_train, y_train, x_test, y_test)


_BIT_TASKS = ("recall", "xor", "adder")


def bit_sequences(task, delay, length, n, rng=None, bits=None):
    """Random bit streams and delayed targets (the Target Space RNN tasks).

    One random bit b_t per step is the input. From step ``delay`` on the label is
    given by :func:`labels_from_bits`:

    * ``'recall'``: b_{t-delay};
    * ``'xor'``: b_{t-delay} XOR b_t;
    * ``'adder'``: bit t-delay of the serial binary sum of the streams
      a_s = b_s and c_s = b_{s+delay} (least significant bit first):
      s_t = b_{t-delay} XOR b_t XOR carry_t, carry_{t+1} = majority(b_{t-delay}, b_t, carry_t),
      carry_delay = 0.

    Parameters
    ----------
    task : {'recall', 'xor', 'adder'}
    delay : int >= 0
    length : int > delay
        Sequence length T.
    n : int >= 1
        Number of sequences N.
    rng : numpy.random.Generator, optional
        Draws the bits (``rng.integers(0, 2, size=(length, n))``); not used
        when ``bits`` is given.
    bits : array of shape (length, n) with entries in {0, 1}, optional
        Given bits instead of drawn ones, time-major. To reproduce a stream
        made with the legacy global generator, e.g. ``np.random.seed(s);
        np.random.randint(2, size=(n, length))`` (batch-major), pass
        ``np.random.RandomState(s).randint(2, size=(n, length)).T`` (the same
        numbers; ``RandomState(s)`` is what ``np.random.seed(s)`` seeds).

    Returns
    -------
    x : ndarray of shape (T, N, 1), float64 in {0, 1}
        Time-major, as :class:`refnets.layers.recurrent.RNN` expects.
    y : ndarray of shape (T, N), int64
        Labels in {0, 1} for t >= delay and **-1 ("no label") for t < delay**,
        where the target does not exist yet: take the loss and the accuracy
        on ``y[delay:]`` only (the papers' setting).
    """
    where = "bit_sequences"
    if task not in _BIT_TASKS:
        raise ValueError(f"{where}: task must be one of {_BIT_TASKS}, got {task!r}")
    delay = _check_count(delay, "delay", where, minimum=0)
    length = _check_count(length, "length", where)
    n = _check_count(n, "n", where)
    if length <= delay:
        raise ValueError(f"{where}: length must be > delay ({delay}), got {length}")
    if bits is None:
        bits = _check_rng(rng, where).integers(0, 2, size=(length, n))
    else:
        bits = _check_bits(bits, where)
        if bits.shape != (length, n):
            raise ValueError(f"{where}: bits must have shape (length, n) = ({length}, {n}) "
                             f"(time-major), got {bits.shape}")
    return bits[:, :, None].astype(np.float64), labels_from_bits(task, bits, delay)


def _check_bits(bits, where):
    arr = np.asarray(bits)
    if arr.ndim != 2 or arr.size == 0 or not (np.issubdtype(arr.dtype, np.integer)
                                              or arr.dtype == bool or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{where}: bits must be a non-empty 2-D array (T, N) of 0s and 1s, "
                         f"got {arr.dtype} array of shape {arr.shape}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{where}: bits must contain only 0 and 1, got values "
                         f"{np.unique(arr)[:5].tolist()}")
    return arr.astype(np.int64)


def labels_from_bits(task, bits, delay):
    """The labels of a bit task for given bits (see :func:`bit_sequences`).

    Parameters
    ----------
    task : {'recall', 'xor', 'adder'}
    bits : array of shape (T, N) with entries in {0, 1}, time-major
    delay : int, 0 <= delay < T

    Returns
    -------
    y : ndarray of shape (T, N), int64, -1 for t < delay.
    """
    where = "labels_from_bits"
    if task not in _BIT_TASKS:
        raise ValueError(f"{where}: task must be one of {_BIT_TASKS}, got {task!r}")
    bits = _check_bits(bits, where)
    delay = _check_count(delay, "delay", where, minimum=0)
    length, n = bits.shape
    if length <= delay:
        raise ValueError(f"{where}: bits must have more than delay = {delay} time steps, "
                         f"got shape {bits.shape}")
    y = np.full((length, n), -1, dtype=np.int64)
    early, late = bits[: length - delay], bits[delay:]   # b_{t-delay}, b_t for t >= delay
    if task == "recall":
        y[delay:] = early
    elif task == "xor":
        y[delay:] = early ^ late
    else:
        carry = np.zeros(n, dtype=bits.dtype)
        for s in range(length - delay):   # a carry chain: sequential in time, vectorised over N
            a, b = early[s], late[s]
            y[delay + s] = a ^ b ^ carry
            carry = (a & b) | (carry & (a ^ b))
    return y


def pi_digits(n):
    """The first ``n`` decimal digits of pi, 3, 1, 4, 1, 5, ... (exact).

    Uses Machin's formula pi = 16 arctan(1/5) - 4 arctan(1/239) in Python
    integer arithmetic with 10 guard digits, so every returned digit is exact
    (no floating point, no download).

    Parameters
    ----------
    n : int >= 1

    Returns
    -------
    ndarray of shape (n,), int64, the leading 3 first.
    """
    n = _check_count(n, "n", "pi_digits")
    guard = 10
    unity = 10 ** (n - 1 + guard)          # pi * unity keeps n digits plus the guard digits

    def arctan_inv(x):
        # arctan(1/x) * unity = sum_k (-1)^k unity / ((2k+1) x^(2k+1)); each term floored,
        # the accumulated flooring error (< number of terms) is far below the guard digits.
        total, power, k, x2 = 0, unity // x, 0, x * x
        while power:
            term = power // (2 * k + 1)
            total += -term if k % 2 else term
            power //= x2
            k += 1
        return total

    scaled = 16 * arctan_inv(5) - 4 * arctan_inv(239)
    digits = str(scaled // 10 ** guard)
    return np.array([int(c) for c in digits[:n]], dtype=np.int64)


# ---------------------------------------------------------------------------
# Minibatches and subsets
# ---------------------------------------------------------------------------

def minibatches(x, y, batch_size, rng, shuffle=True, batch_axis=0, y_batch_axis=None):
    """Yield ``(x_batch, y_batch)`` pairs covering the data once (one epoch).

    Parameters
    ----------
    x : ndarray
        Inputs, samples along ``batch_axis``.
    y : ndarray or None
        Labels/targets. Their batch axis is ``y_batch_axis``; by default
        ``batch_axis`` if y has that axis with the same length as x's, else 0
        (so ``(T, N)`` per-step labels and ``(N,)`` per-sequence labels both
        work with time-major ``x`` of shape ``(T, N, D)``).
    batch_size : int >= 1
        The last batch is smaller when N is not a multiple (never dropped).
    rng : numpy.random.Generator or None
        Draws one permutation per call; may be None when ``shuffle=False``.
    shuffle : bool
    batch_axis : int
        0 for batch-first data, 1 for time-major sequences ``(T, N, D)``.
    y_batch_axis : int, optional

    Yields
    ------
    x_batch, y_batch : views/copies of x and y restricted to one batch.
    """
    where = "minibatches"
    x = np.asarray(x)
    if not 0 <= batch_axis < max(x.ndim, 1):
        raise ValueError(f"{where}: batch_axis must be in [0, {x.ndim}) for x of shape "
                         f"{x.shape}, got {batch_axis}")
    n = x.shape[batch_axis]
    batch_size = _check_count(batch_size, "batch_size", where)
    if y is not None:
        y = np.asarray(y)
        if y_batch_axis is None:
            y_batch_axis = (batch_axis if y.ndim > batch_axis and y.shape[batch_axis] == n else 0)
        if y.ndim <= y_batch_axis or y.shape[y_batch_axis] != n:
            raise ValueError(f"{where}: y must have {n} samples along axis {y_batch_axis} "
                             f"(x has shape {x.shape}, batch_axis={batch_axis}), got shape {y.shape}")
    if shuffle:
        order = _check_rng(rng, where).permutation(n)
    else:
        order = None
    for start in range(0, n, batch_size):
        if order is None:
            idx = slice(start, min(start + batch_size, n))
        else:
            idx = order[start:start + batch_size]
        xb = _take(x, idx, batch_axis)
        yb = None if y is None else _take(y, idx, y_batch_axis)
        yield xb, yb


def _take(a, idx, axis):
    if isinstance(idx, slice):
        index = [slice(None)] * a.ndim
        index[axis] = idx
        return a[tuple(index)]
    return np.take(a, idx, axis=axis)


def stratified_indices(y, n, rng=None):
    """Indices of a class-stratified subset of size ``n``.

    Class c gets floor(n * N_c / N) samples, and the remaining ones go to the
    classes with the largest fractional parts (ties: smaller class index), so
    the class proportions of ``y`` are kept as closely as possible.

    Parameters
    ----------
    y : int ndarray of shape (N,)
    n : int, 1 <= n <= N
    rng : numpy.random.Generator, optional
        Which samples of each class: a random choice when given, else the
        first ones in file order (deterministic without randomness).

    Returns
    -------
    int64 ndarray of shape (n,), sorted ascending (original order kept).
    """
    where = "stratified_indices"
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{where}: y must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    n = _check_count(n, "n", where)
    if n > len(y):
        raise ValueError(f"{where}: n must be <= the number of samples {len(y)}, got {n}")
    rng = _check_rng(rng, where, allow_none=True)
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / len(y)
    take = np.floor(exact).astype(np.int64)
    remainder = n - int(take.sum())
    by_fraction = np.lexsort((np.arange(len(classes)), -(exact - take)))
    take[by_fraction[:remainder]] += 1
    chosen = []
    for c, k in zip(classes, take):
        members = np.flatnonzero(y == c)
        chosen.append(members[:k] if rng is None else rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# ---------------------------------------------------------------------------
# MNIST and Fashion-MNIST
# ---------------------------------------------------------------------------

#: The four IDX files of MNIST and Fashion-MNIST (same names for both sets).
IDX_FILES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
             "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}

#: SHA-256 of the upstream Fashion-MNIST files (computed with sha256sum on the
#: files of the Debian package dataset-fashion-mnist, which ships the upstream
#: .gz files byte for byte).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FASHION_MNIST_MIRRORS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)

#: SHA-256 of the MNIST files as published in TensorFlow Datasets'
#: url_checksums/mnist.txt (the same four values appear in several independent
#: public projects that verify their downloads against them).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: Where Debian's dataset-fashion-mnist package installs the files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def cache_dir():
    """The per-user cache directory of refnets (created on first download).

    ``$XDG_CACHE_HOME/refnets`` or ``~/.cache/refnets`` on Linux,
    ``~/Library/Caches/refnets`` on macOS, ``%LOCALAPPDATA%\\refnets\\Cache`` on Windows.
    """
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")
        return os.path.join(base, "refnets", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/refnets")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "refnets")


def _find_file(directory, gz_name):
    """The .gz file or its uncompressed twin in ``directory``, or None."""
    for name in (gz_name, gz_name[:-3]):
        p = os.path.join(directory, name)
        if os.path.isfile(p):
            return p
    return None


def _candidate_dirs(name, path, system_dirs):
    if path is not None:        # an explicit path is the only place looked at
        return [os.fspath(path)]
    dirs = []
    env = os.environ.get("REFNETS_DATA")
    if env:
        dirs.append(os.path.join(env, name))
    dirs.append(os.path.join(cache_dir(), name))
    dirs.extend(system_dirs)
    return dirs


def _locate(name, path, download, mirrors, checksums, system_dirs, where):
    """Directory -> {key: file path} for the four IDX files, downloading if allowed.

    With ``path`` given, only ``path`` is looked at (and downloaded into); the
    search order applies when ``path`` is None.
    """
    if path is not None and (isinstance(path, bool) or not isinstance(path, (str, os.PathLike))):
        raise ValueError(f"{where}: path must be a directory (str or os.PathLike) or None, "
                         f"got {path!r} ({type(path).__name__})")
    if path is not None and not download:
        p = os.fspath(path)
        if not os.path.isdir(p):
            raise FileNotFoundError(f"{where}: path {p} is not a directory; expected the "
                                    f"directory holding {', '.join(IDX_FILES.values())} "
                                    f"(gzipped or not); pass download=True to fetch them into "
                                    f"it, or path=None to search the usual places")
        missing = [f for f in IDX_FILES.values() if _find_file(p, f) is None]
        if missing:
            raise FileNotFoundError(f"{where}: path {p} does not hold {', '.join(missing)} "
                                    f"(gzipped or not); pass download=True to fetch them there, "
                                    f"or path=None to search the usual places")
    searched = _candidate_dirs(name, path, system_dirs)
    for d in searched:
        files = {k: _find_file(d, f) for k, f in IDX_FILES.items()}
        if all(files.values()):
            return files
    # a download goes to the first writable choice the user expressed
    env = os.environ.get("REFNETS_DATA")
    target = (os.fspath(path) if path is not None
              else os.path.join(env, name) if env else os.path.join(cache_dir(), name))
    if not download:
        raise FileNotFoundError(
            f"{where}: the four IDX files ({', '.join(IDX_FILES.values())}, gzipped or not) "
            f"were not found in any of {searched}. Pass path=<directory>, set $REFNETS_DATA "
            f"(files in $REFNETS_DATA/{name}/), or pass download=True to fetch them once "
            f"(SHA-256 verified) into {target}. Without any files, "
            f"load_fashion_mnist_small() works offline.")
    files = {}
    for key, fname in IDX_FILES.items():
        existing = _find_file(target, fname)
        files[key] = existing or fetch_from_mirrors(
            mirrors, fname, os.path.join(target, fname), checksums[fname])
    return files


def _read_pair(images_path, labels_path, where):
    x = read_idx(images_path, expected_ndim=3)
    y = read_idx(labels_path, expected_ndim=1)
    if x.dtype != np.uint8 or y.dtype != np.uint8:
        raise ValueError(f"{where}: expected uint8 images and labels, got {x.dtype} in "
                         f"{images_path} and {y.dtype} in {labels_path}")
    if len(x) != len(y):
        raise ValueError(f"{where}: {images_path} holds {len(x)} images but {labels_path} "
                         f"holds {len(y)} labels")
    if y.size and y.max() > 9:
        raise ValueError(f"{where}: labels must lie in 0..9, got max {y.max()} in {labels_path}")
    return x, y.astype(np.int64)


def _finish(x_train, y_train, x_test, y_test, n_train, n_test, rng, flatten, where):
    """Subset (stratified), scale to [0, 1] float64, reshape."""
    n_train = _check_count(n_train, "n_train", where, allow_none=True)
    n_test = _check_count(n_test, "n_test", where, allow_none=True)
    rng = _check_rng(rng, where, allow_none=True)
    if n_train is not None:
        if n_train > len(y_train):
            raise ValueError(f"{where}: n_train must be <= {len(y_train)}, got {n_train}")
        i = stratified_indices(y_train, n_train, rng)
        x_train, y_train = x_train[i], y_train[i]
    if n_test is not None:
        if n_test > len(y_test):
            raise ValueError(f"{where}: n_test must be <= {len(y_test)}, got {n_test}")
        i = stratified_indices(y_test, n_test, rng)
        x_test, y_test = x_test[i], y_test[i]

    def scale(x):
        x = x.astype(np.float64) / 255.0
        return x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *x.shape[1:])

    return Dataset(scale(x_train), y_train.astype(np.int64), scale(x_test), y_test.astype(np.int64))


def _load_idx_dataset(name, path, n_train, n_test, rng, flatten, download, mirrors, checksums,
                      system_dirs, where):
    files = _locate(name, path, download, mirrors, checksums, system_dirs, where)
    x_train, y_train = _read_pair(files["x_train"], files["y_train"], where)
    x_test, y_test = _read_pair(files["x_test"], files["y_test"], where)
    return _finish(x_train, y_train, x_test, y_test, n_train, n_test, rng, flatten, where)


def load_fashion_mnist(path=None, n_train=None, n_test=None, rng=None, flatten=True,
                       download=False, mirrors=FASHION_MNIST_MIRRORS):
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; Zalando Research, MIT licence).

    The four IDX files (gzipped or not) are read from ``path`` when it is
    given (nowhere else: a ``path`` without them is an error naming it). With
    ``path=None`` they are looked for, in order, in
    ``$REFNETS_DATA/fashion-mnist``, ``<cache_dir()>/fashion-mnist`` and
    ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).

    Parameters
    ----------
    path : str or os.PathLike, optional
        The directory holding the four files (the only place looked at).
    n_train, n_test : int, optional
        Class-stratified subset sizes (default: all 60000 / 10000).
    rng : numpy.random.Generator, optional
        Random stratified subset; None takes the first images of each class.
    flatten : bool
        ``(N, 784)`` if True, else ``(N, 1, 28, 28)`` (NCHW).
    download : bool
        If the files are not found, fetch them from ``mirrors`` into ``path``
        (or ``$REFNETS_DATA/fashion-mnist``, or the cache dir), verifying the
        SHA-256 constants of this module; written atomically.
    mirrors : sequence of str
        Base URLs tried in order.

    Returns
    -------
    Dataset of float64 images in [0, 1] and int64 labels 0..9
    (:data:`FASHION_MNIST_CLASSES`).
    """
    return _load_idx_dataset("fashion-mnist", path, n_train, n_test, rng, flatten, download,
                             mirrors, FASHION_MNIST_SHA256, [DEBIAN_FASHION_MNIST],
                             "load_fashion_mnist")


def load_mnist(path=None, n_train=None, n_test=None, rng=None, flatten=True,
               download=False, mirrors=MNIST_MIRRORS):
    """MNIST handwritten digits (LeCun, Cortes & Burges).

    Same search order and options as :func:`load_fashion_mnist`, with
    ``$REFNETS_DATA/mnist`` and ``<cache_dir()>/mnist`` (no system directory).
    """
    return _load_idx_dataset("mnist", path, n_train, n_test, rng, flatten, download,
                             mirrors, MNIST_SHA256, [], "load_mnist")


#: File name of the embedded subset inside ``refnets/data``.
SMALL_FILE = "fashion_mnist_small.npz"


def load_fashion_mnist_small(n_train=None, n_test=None, rng=None, flatten=True):
    """A stratified 5000 / 1000 subset of Fashion-MNIST shipped with refnets.

    Made by :func:`refnets.data.make_small.make_fashion_mnist_small` (seed 0,
    500 training and 100 test images per class); see ``refnets/data/ORIGIN.md``.
    Works offline and on a fresh install.

    Parameters
    ----------
    n_train, n_test : int, optional
        Smaller stratified subsets of the embedded set.
    rng : numpy.random.Generator, optional
        Random stratified subset; None takes the first images of each class.
    flatten : bool
        ``(N, 784)`` if True, else ``(N, 1, 28, 28)``.

    Returns
    -------
    Dataset of float64 images in [0, 1] and int64 labels 0..9.
    """
    from importlib.resources import as_file, files

    with as_file(files("refnets.data") / SMALL_FILE) as p, np.load(p, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    return _finish(arrays["x_train"], arrays["y_train"].astype(np.int64), arrays["x_test"],
                   arrays["y_test"].astype(np.int64), n_train, n_test, rng, flatten,
                   "load_fashion_mnist_small")
