"""The IDX file format of MNIST and Fashion-MNIST.

Layout (big-endian), from LeCun et al.'s MNIST page::

    bytes 0-1   zero
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions d
    4 * d       the size of each dimension (uint32)
    ...         the data, C order

So ``train-images-idx3-ubyte`` starts with magic 0x00000803 (uint8, 3 dims:
N, 28, 28) and ``train-labels-idx1-ubyte`` with 0x00000801 (uint8, N).
Files may be gzipped (recognised by the gzip magic bytes, not by the name).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

__all__ = ["IDXError", "read_idx", "write_idx", "parse_idx"]

#: IDX type code -> big-endian numpy dtype
_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
           0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IDXError(ValueError):
    """A file is not valid IDX (bad magic, truncated, wrong size or shape)."""


def parse_idx(raw, name="<bytes>", expected_ndim=None):
    """Decode the bytes of an (uncompressed) IDX file.

    Parameters
    ----------
    raw : bytes
    name : str
        Used in error messages (usually the file path).
    expected_ndim : int, optional
        Required number of dimensions (3 for images, 1 for labels).

    Returns
    -------
    ndarray in native byte order with the dims from the header.

    Raises
    ------
    IDXError
        On a bad magic number, an unknown type code, a wrong number of
        dimensions, or a data section shorter or longer than the header says.
    """
    if len(raw) < 4:
        raise IDXError(f"{name}: too short for an IDX header ({len(raw)} bytes; "
                       f"the file is truncated or not IDX)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _DTYPES:
        raise IDXError(f"{name}: bad IDX magic number 0x{raw[:4].hex()} (expected "
                       f"0x0000TTDD with type TT in {sorted(hex(c) for c in _DTYPES)}); "
                       f"the file is corrupt or not IDX")
    if expected_ndim is not None and ndim != expected_ndim:
        raise IDXError(f"{name}: expected an IDX file with {expected_ndim} dimensions, "
                       f"got {ndim} (magic 0x{raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{name}: truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _DTYPES[code]
    # Python integers: a product of uint32 dims can exceed int64 (65536**4 wraps to 0)
    expected = math.prod(dims) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise IDXError(f"{name}: truncated: the header announces shape {dims} "
                       f"({expected} data bytes) but only {got} bytes follow")
    if got > expected:
        raise IDXError(f"{name}: {got - expected} unexpected bytes after the data of "
                       f"shape {dims}; the file is corrupt")
    data = np.frombuffer(raw, dtype=dtype, offset=header, count=expected // dtype.itemsize)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path, expected_ndim=None):
    """Read an IDX file, gzipped or raw.

    Parameters
    ----------
    path : str or os.PathLike
    expected_ndim : int, optional
        Required number of dimensions.

    Returns
    -------
    ndarray (uint8 for the MNIST files) with the dims from the header.

    Raises
    ------
    IDXError
        Corrupt or truncated file (gzip stream or IDX content).
    FileNotFoundError
        No such file.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise IDXError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    return parse_idx(raw, name=path, expected_ndim=expected_ndim)


def write_idx(path, array, compress=None):
    """Write ``array`` as an IDX file (gzipped when ``compress`` or the name ends in .gz).

    Parameters
    ----------
    path : str or os.PathLike
    array : ndarray of dtype uint8, int8, int16, int32, float32 or float64
    compress : bool, optional
        Default: ``str(path).endswith(".gz")``.
    """
    path = os.fspath(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"write_idx: array dtype must be one of "
                         f"{sorted(str(d) for d in _CODES)}, got {array.dtype}")
    if array.ndim > 255:
        raise ValueError(f"write_idx: at most 255 dimensions, got {array.ndim}")
    raw = (struct.pack(">HBB", 0, code, array.ndim)
           + struct.pack(f">{array.ndim}I", *array.shape)
           + np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes())
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        raw = gzip.compress(raw, mtime=0)
    with open(path, "wb") as f:
        f.write(raw)
