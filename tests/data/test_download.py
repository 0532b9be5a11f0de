"""fetch(): SHA-256 verification and atomic writes, without the network."""

import hashlib
import io
import os

import pytest

from refnets.data.download import DownloadError, fetch, fetch_from_mirrors, sha256_file


def _opener(payload, fail_after=None):
    """A fake urlopen returning ``payload`` (optionally raising mid-stream)."""
    class Response(io.BytesIO):
        def read(self, n=-1):
            if fail_after is not None and self.tell() >= fail_after:
                raise ConnectionResetError("connection dropped")
            return super().read(min(n, 7) if n and n > 0 else n)
    calls = []

    def opener(url, timeout):
        calls.append(url)
        return Response(payload)
    opener.calls = calls
    return opener


def test_fetch_writes_verified_file(tmp_path):
    payload = b"hello refnets" * 10
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "sub" / "f.bin"
    fetch("https://example.invalid/f.bin", dest, digest, opener=_opener(payload))
    assert dest.read_bytes() == payload and sha256_file(dest) == digest
    assert os.listdir(dest.parent) == ["f.bin"]


def test_fetch_mismatch_leaves_nothing(tmp_path):
    with pytest.raises(DownloadError, match="expected " + "a" * 64):
        fetch("https://example.invalid/f", tmp_path / "f", "a" * 64, opener=_opener(b"data"))
    assert os.listdir(tmp_path) == []


def test_interrupted_download_leaves_nothing(tmp_path):
    payload = b"x" * 100
    with pytest.raises(DownloadError, match="connection dropped"):
        fetch("https://example.invalid/f", tmp_path / "f", hashlib.sha256(payload).hexdigest(),
              opener=_opener(payload, fail_after=20))
    assert os.listdir(tmp_path) == []


def test_mirrors_tried_in_order_and_bad_digest_argument(tmp_path):
    payload = b"abc"
    good = hashlib.sha256(payload).hexdigest()
    src = tmp_path / "m2"
    src.mkdir()
    (src / "f").write_bytes(payload)
    out = fetch_from_mirrors([(tmp_path / "m1").as_uri(), src.as_uri()], "f", tmp_path / "out", good)
    assert open(out, "rb").read() == payload
    with pytest.raises(DownloadError, match="any mirror"):
        fetch_from_mirrors([(tmp_path / "m1").as_uri()], "f", tmp_path / "out2", good)
    with pytest.raises(ValueError, match="sha256"):
        fetch("file:///x", tmp_path / "y", "not-a-digest")
