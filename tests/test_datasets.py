"""Synthetic datasets, minibatches, stratified subsets and the image loaders."""

import os

import numpy as np
import pytest

from refnets import datasets as D
from refnets.data.idx import write_idx


# --- two spirals -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["cmu", "target_space"])
def test_two_spirals_shapes_and_symmetry(variant):
    d = D.two_spirals(variant)
    assert d.x_train.shape == (194, 2) and d.x_test.shape == (194, 2)
    assert d.y_train.dtype == np.int64 and np.array_equal(d.y_train[:4], [0, 1, 0, 1])
    assert np.bincount(d.y_train).tolist() == [97, 97] and np.bincount(d.y_test).tolist() == [97, 97]
    # class 1 is the point reflection of class 0
    np.testing.assert_array_equal(d.x_train[1::2], -d.x_train[0::2])
    # three turns between radius ~0.5 and 6.5
    r = np.hypot(*d.x_train.T)
    assert 0.49 < r.min() < 0.66 and np.isclose(r.max(), 6.5)


def test_two_spirals_cmu_formula_by_hand():
    d = D.two_spirals("cmu")
    # i = 16: angle pi, radius 6.5 * 88 / 104 -> (0, -5.5)
    np.testing.assert_allclose(d.x_train[32], [0.0, -6.5 * 88 / 104], atol=1e-12)
    # test point i = 0.5 lies between training points 0 and 1 of the same spiral (same radius law)
    r = np.hypot(*d.x_test[0])
    assert np.isclose(r, 6.5 * 103.5 / 104)


def test_two_spirals_target_space_formula_by_hand():
    d = D.two_spirals("target_space")
    np.testing.assert_allclose(d.x_train[0], [0.65, 0.0])
    np.testing.assert_allclose(d.x_train[-2], [6.5, 0.0], atol=1e-12)   # i = 96: angle 6 pi
    with pytest.raises(ValueError, match="variant"):
        D.two_spirals("nope")


# --- bit sequences ---------------------------------------------------------------------------

def test_bit_sequences_recall_and_xor_by_definition(rng):
    x, y = D.bit_sequences("recall", 3, 10, 7, rng)
    assert x.shape == (10, 7, 1) and x.dtype == np.float64 and y.shape == (10, 7)
    b = x[:, :, 0].astype(np.int64)
    assert np.all(y[:3] == -1)
    np.testing.assert_array_equal(y[3:], b[:-3])
    x, y = D.bit_sequences("xor", 2, 9, 5, np.random.default_rng(1))
    b = x[:, :, 0].astype(np.int64)
    np.testing.assert_array_equal(y[2:], b[:-2] ^ b[2:])


def test_bit_sequences_adder_is_binary_addition(rng):
    delay, T, n = 4, 30, 6
    x, y = D.bit_sequences("adder", delay, T, n, rng)
    b = x[:, :, 0].astype(np.int64)
    L = T - delay
    weights = 2 ** np.arange(L)                       # least significant bit first
    a = (b[:L] * weights[:, None]).sum(0)             # stream b_{t-delay}
    c = (b[delay:] * weights[:, None]).sum(0)         # stream b_t
    s = (y[delay:] * weights[:, None]).sum(0)         # the labels, read as a number
    np.testing.assert_array_equal(s, (a + c) % 2 ** L)


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="sum", delay=1, length=5, n=2), "task"),
    (dict(task="recall", delay=5, length=5, n=2), "length"),
    (dict(task="recall", delay=-1, length=5, n=2), "delay"),
    (dict(task="recall", delay=1, length=5, n=0), "n must"),
])
def test_bit_sequences_bad_arguments(rng, kwargs, match):
    with pytest.raises(ValueError, match=match):
        D.bit_sequences(rng=rng, **kwargs)


def test_bit_sequences_seeded():
    a = D.bit_sequences("xor", 2, 12, 4, np.random.default_rng(5))
    b = D.bit_sequences("xor", 2, 12, 4, np.random.default_rng(5))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))


# --- pi ------------------------------------------------------------------------------------

def test_pi_digits_known_values():
    # the first 50 digits (a mathematical constant, not a result of this code)
    first50 = "31415926535897932384626433832795028841971693993751"
    assert "".join(map(str, D.pi_digits(50))) == first50
    d = D.pi_digits(800)
    assert d.dtype == np.int64 and d.shape == (800,)
    assert d[762:768].tolist() == [9] * 6          # the Feynman point: decimals 762-767
    np.testing.assert_array_equal(D.pi_digits(1000)[:800], d)
    with pytest.raises(ValueError, match="n must"):
        D.pi_digits(0)


# --- minibatches -------------------------------------------------------------------------

def test_minibatches_cover_each_sample_once(rng):
    x = np.arange(23, dtype=float)[:, None] * np.ones((1, 3))
    y = np.arange(23)
    seen = []
    for xb, yb in D.minibatches(x, y, 5, rng):
        assert len(xb) == len(yb) <= 5
        np.testing.assert_array_equal(xb[:, 0], yb)
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(23)) and seen != list(range(23))
    batches = [yb for _, yb in D.minibatches(x, y, 5, None, shuffle=False)]
    assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(batches), y)


def test_minibatches_time_major(rng):
    T, N = 4, 9
    x = np.arange(T * N, dtype=float).reshape(T, N, 1)
    y_steps = np.arange(T * N).reshape(T, N)
    y_seq = np.arange(N)
    for yy in (y_steps, y_seq):
        for xb, yb in D.minibatches(x, yy, 4, rng, batch_axis=1):
            assert xb.shape[0] == T and xb.shape[1] == yb.shape[-1] <= 4
            if yy is y_steps:
                np.testing.assert_array_equal(xb[..., 0], yb)
            else:
                np.testing.assert_array_equal(xb[0, :, 0], yb)


def test_minibatches_seeded_and_errors():
    x, y = np.zeros((10, 2)), np.arange(10)
    a = [yb for _, yb in D.minibatches(x, y, 3, np.random.default_rng(3))]
    b = [yb for _, yb in D.minibatches(x, y, 3, np.random.default_rng(3))]
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    with pytest.raises(ValueError, match="y must have 10 samples"):
        list(D.minibatches(x, y[:9], 3, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="batch_size"):
        list(D.minibatches(x, y, 0, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="rng"):
        list(D.minibatches(x, y, 2, None))
    with pytest.raises(ValueError, match="batch_axis"):
        list(D.minibatches(x, y, 2, None, shuffle=False, batch_axis=2))


# --- stratified subsets ----------------------------------------------------------------------

def test_stratified_indices_keep_proportions(rng):
    y = np.repeat(np.arange(3), [50, 30, 20])
    idx = D.stratified_indices(y, 10)
    assert np.bincount(y[idx]).tolist() == [5, 3, 2]
    np.testing.assert_array_equal(idx, [0, 1, 2, 3, 4, 50, 51, 52, 80, 81])   # first of each class
    idx = D.stratified_indices(y, 7, rng)          # 3.5, 2.1, 1.4 -> 3 + 2 + 1, remainder to class 0
    assert np.bincount(y[idx], minlength=3).tolist() == [4, 2, 1]
    assert len(np.unique(idx)) == 7 and np.all(np.diff(idx) > 0)
    with pytest.raises(ValueError, match="n must be <="):
        D.stratified_indices(y, 101)


# --- image loaders ---------------------------------------------------------------------------

def test_embedded_fashion_mnist_small():
    d = D.load_fashion_mnist_small()
    assert d.x_train.shape == (5000, 784) and d.x_test.shape == (1000, 784)
    assert d.x_train.dtype == np.float64 and 0 <= d.x_train.min() and d.x_train.max() <= 1
    assert np.bincount(d.y_train).tolist() == [500] * 10
    assert np.bincount(d.y_test).tolist() == [100] * 10
    s = D.load_fashion_mnist_small(n_train=200, n_test=50, rng=np.random.default_rng(0), flatten=False)
    assert s.x_train.shape == (200, 1, 28, 28) and s.x_test.shape == (50, 1, 28, 28)
    assert np.bincount(s.y_train).tolist() == [20] * 10


def _fake_idx_dir(directory, n_train=30, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": (np.arange(n_train) % 10).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": (np.arange(n_test) % 10).astype(np.uint8)}
    for key, fname in D.IDX_FILES.items():
        write_idx(os.path.join(directory, fname if gz else fname[:-3]), arrays[key])
    return arrays


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """Isolate the search path: no $REFNETS_DATA, an empty cache dir."""
    monkeypatch.delenv("REFNETS_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(D.sys, "platform", "linux")
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
def test_load_from_path_scales_and_subsets(no_env, gz):
    arrays = _fake_idx_dir(no_env / "fm", gz=gz)
    d = D.load_mnist(path=no_env / "fm")
    np.testing.assert_array_equal(d.x_train, arrays["x_train"].reshape(30, 784) / 255.0)
    np.testing.assert_array_equal(d.y_test, arrays["y_test"])
    assert d.y_train.dtype == np.int64
    s = D.load_mnist(path=no_env / "fm", n_train=10, n_test=10, flatten=False)
    assert s.x_train.shape == (10, 1, 28, 28) and np.bincount(s.y_train).tolist() == [1] * 10


def test_search_order_env_then_cache(no_env, monkeypatch):
    _fake_idx_dir(no_env / "cache" / "refnets" / "mnist", seed=1)
    from_cache = D.load_mnist()
    _fake_idx_dir(no_env / "env" / "mnist", seed=2)
    monkeypatch.setenv("REFNETS_DATA", str(no_env / "env"))
    from_env = D.load_mnist()
    assert not np.array_equal(from_cache.x_train, from_env.x_train)
    _fake_idx_dir(no_env / "explicit", seed=3)
    explicit = D.load_mnist(path=no_env / "explicit")
    assert not np.array_equal(explicit.x_train, from_env.x_train)


def test_missing_files_give_helpful_error(no_env):
    with pytest.raises(FileNotFoundError, match="download=True"):
        D.load_mnist(path=no_env / "nowhere")


def test_download_via_file_url(no_env, monkeypatch):
    mirror = no_env / "mirror"
    arrays = _fake_idx_dir(mirror)
    from refnets.data.download import sha256_file
    monkeypatch.setattr(D, "MNIST_SHA256", {f: sha256_file(mirror / f) for f in D.IDX_FILES.values()})
    dest = no_env / "dl"
    d = D.load_mnist(path=dest, download=True, mirrors=["file:///nonexistent/", mirror.as_uri() + "/"])
    np.testing.assert_array_equal(d.x_test, arrays["x_test"].reshape(20, 784) / 255.0)
    assert sorted(os.listdir(dest)) == sorted(D.IDX_FILES.values())


def test_download_with_wrong_checksum_leaves_nothing(no_env):
    mirror = no_env / "mirror"
    _fake_idx_dir(mirror)
    dest = no_env / "dl"
    from refnets.data.download import DownloadError
    # the real MNIST checksums cannot match the fake files
    with pytest.raises(DownloadError, match="SHA-256"):
        D.load_mnist(path=dest, download=True, mirrors=[mirror.as_uri() + "/"])
    assert os.listdir(dest) == []


@pytest.mark.skipif(not os.path.isdir(D.DEBIAN_FASHION_MNIST), reason="full Fashion-MNIST not installed")
def test_full_fashion_mnist_files_are_upstream():
    from refnets.data.download import sha256_file
    for fname, digest in D.FASHION_MNIST_SHA256.items():
        assert sha256_file(os.path.join(D.DEBIAN_FASHION_MNIST, fname)) == digest
    d = D.load_fashion_mnist(n_train=100, n_test=100)
    assert d.x_train.shape == (100, 784) and np.bincount(d.y_test).tolist() == [10] * 10


def test_bit_sequences_given_bits_match_drawn_and_legacy_streams():
    """Given bits replace the draw exactly; a legacy np.random.seed stream is reproducible."""
    x, y = D.bit_sequences("adder", 2, 8, 3, np.random.default_rng(5))
    bits = x[:, :, 0].astype(np.int64)
    x2, y2 = D.bit_sequences("adder", 2, 8, 3, bits=bits)
    assert np.array_equal(x2, x) and np.array_equal(y2, y)
    assert np.array_equal(D.labels_from_bits("adder", bits, 2), y)
    saved = np.random.get_state()
    np.random.seed(1)                                  # the authors' legacy global generator
    legacy = np.random.randint(2, size=(3, 8))         # batch-major (N, T)
    np.random.set_state(saved)
    x3, y3 = D.bit_sequences("recall", 2, 8, 3, bits=np.random.RandomState(1).randint(2, size=(3, 8)).T)
    assert np.array_equal(x3[:, :, 0], legacy.T)
    assert np.array_equal(y3[2:], legacy.T[:-2]) and np.all(y3[:2] == -1)


@pytest.mark.parametrize("bits,msg", [
    (np.zeros((8, 2)), r"bits must have shape \(length, n\) = \(8, 3\)"),
    (np.full((8, 3), 2), "bits must contain only 0 and 1"),
    (np.zeros(8), "bits must be a non-empty 2-D array"),
])
def test_bit_sequences_bad_given_bits(bits, msg):
    with pytest.raises(ValueError, match=f"bit_sequences: {msg}"):
        D.bit_sequences("xor", 1, 8, 3, bits=bits)
    with pytest.raises(ValueError, match="bit_sequences: rng must be a numpy.random.Generator"):
        D.bit_sequences("xor", 1, 8, 3)


def test_explicit_path_is_the_only_place_looked_at(no_env, monkeypatch):
    _fake_idx_dir(no_env / "env" / "mnist", seed=2)
    monkeypatch.setenv("REFNETS_DATA", str(no_env / "env"))
    missing = no_env / "missing"
    with pytest.raises(FileNotFoundError, match=rf"load_mnist: path {missing} is not a directory"):
        D.load_mnist(path=missing)                 # never silently $REFNETS_DATA/mnist
    (no_env / "half").mkdir()
    write_idx(no_env / "half" / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"load_fashion_mnist: path .*half does not hold "
                                                r"train-labels-idx1-ubyte.gz, t10k"):
        D.load_fashion_mnist(path=no_env / "half")


@pytest.mark.parametrize("path", [5, 2.5, True, b"dir", ["dir"]])
def test_non_path_path_is_refused(no_env, path):
    with pytest.raises(ValueError, match=r"load_mnist: path must be a directory \(str or "
                                         r"os.PathLike\) or None, got"):
        D.load_mnist(path)
