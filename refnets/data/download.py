"""Opt-in download with SHA-256 verification and atomic writes.

Nothing in refnets downloads unless a user passes ``download=True`` to a
loader. A download goes to a temporary file in the destination directory,
its SHA-256 is checked, and only then is it renamed to its final name
(``os.replace`` is atomic on POSIX and Windows). A failed, interrupted or
mismatching download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request

__all__ = ["sha256_file", "fetch", "fetch_from_mirrors", "DownloadError"]

_CHUNK = 1 << 16


class DownloadError(OSError):
    """Every mirror failed, or the downloaded bytes had the wrong SHA-256."""


def sha256_file(path):
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url, dest, sha256, opener=None, timeout=60):
    """Download ``url`` to ``dest`` if its SHA-256 equals ``sha256``.

    Parameters
    ----------
    url : str
        Any URL ``urllib`` opens (https://, file://).
    dest : str or os.PathLike
        Final path; its directory is created if needed.
    sha256 : str
        Expected hex digest (64 characters).
    opener : callable, optional
        ``opener(url, timeout=...) -> file-like`` (default
        ``urllib.request.urlopen``); tests pass a fake one.
    timeout : float
        Seconds, passed to the opener.

    Returns
    -------
    str, the final path.

    Raises
    ------
    DownloadError
        On a checksum mismatch (nothing is written) or any I/O error.
    """
    if not (isinstance(sha256, str) and len(sha256) == 64
            and all(c in "0123456789abcdef" for c in sha256.lower())):
        raise ValueError(f"fetch: sha256 must be a 64-character hex digest, got {sha256!r}")
    opener = urllib.request.urlopen if opener is None else opener
    dest = os.fspath(dest)
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", suffix="-" + os.path.basename(dest), dir=directory)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            with opener(url, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
        if h.hexdigest() != sha256.lower():
            raise DownloadError(f"fetch: {url} has SHA-256 {h.hexdigest()}, expected {sha256}; "
                                f"the file was discarded")
        os.replace(tmp, dest)
    except DownloadError:
        _remove(tmp)
        raise
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, Exception):
            raise DownloadError(f"fetch: downloading {url} failed: {exc}") from exc
        raise
    return dest


def fetch_from_mirrors(mirrors, filename, dest, sha256, opener=None, timeout=60):
    """Try ``mirror + filename`` for each mirror in turn; see :func:`fetch`."""
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            return fetch(url, dest, sha256, opener=opener, timeout=timeout)
        except DownloadError as exc:
            errors.append(str(exc))
    raise DownloadError(f"could not download {filename} from any mirror:\n  " + "\n  ".join(errors))


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
