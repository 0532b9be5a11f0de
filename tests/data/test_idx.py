"""The IDX reader: round trips, and clear errors on corrupt or truncated files."""

import gzip
import struct

import numpy as np
import pytest

from refnets.data.idx import IDXError, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, rng, dtype, suffix):
    a = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    p = tmp_path / f"a.idx{suffix}"
    write_idx(p, a)
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.shape == (3, 4, 5)
    np.testing.assert_array_equal(a, b)


def test_header_by_hand(tmp_path):
    # labels file: magic 0x00000801, one dim of size 3, then the bytes
    raw = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])
    np.testing.assert_array_equal(parse_idx(raw), [7, 8, 9])
    (tmp_path / "l.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "l.gz", expected_ndim=1), [7, 8, 9])
    # images file: magic 0x00000803, dims 1 x 2 x 2 (big-endian uint32)
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4])
    np.testing.assert_array_equal(parse_idx(raw), [[[1, 2], [3, 4]]])


@pytest.mark.parametrize("raw, match", [
    (b"\x00\x00", "too short"),
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "magic"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "magic"),
    (bytes([0, 0, 8, 3, 0, 0, 0, 1]), "truncated IDX header"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2]), "truncated: the header announces shape \\(4,\\)"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "1 unexpected bytes"),
])
def test_corrupt_content(raw, match):
    with pytest.raises(IDXError, match=match):
        parse_idx(raw)


def test_wrong_ndim_and_truncated_gzip(tmp_path):
    p = tmp_path / "x.gz"
    write_idx(p, np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(IDXError, match="expected an IDX file with 1 dimensions, got 3"):
        read_idx(p, expected_ndim=1)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(IDXError, match="corrupt or truncated gzip"):
        read_idx(p)
    assert issubclass(IDXError, ValueError)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "b", np.zeros(3, dtype=np.complex128))


def test_dims_whose_product_overflows_int64_are_checked_with_python_ints(tmp_path):
    # 65536**4 = 2**64 wraps to 0 in int64, which made an empty data section "match"
    raw = struct.pack(">HBB", 0, 0x08, 4) + struct.pack(">4I", *[65536] * 4)
    with pytest.raises(IDXError, match=r"<bytes>: truncated: the header announces shape "
                                       r"\(65536, 65536, 65536, 65536\) \(18446744073709551616 "
                                       r"data bytes\) but only 0 bytes follow"):
        parse_idx(raw)
    p = tmp_path / "big-idx4-ubyte"
    p.write_bytes(raw + b"\x00" * 7)
    with pytest.raises(IDXError, match=rf"{p}: truncated"):
        read_idx(p)
