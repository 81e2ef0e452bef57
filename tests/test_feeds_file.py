"""Tests for the file feed adapter, alone and under the manager (synthetic lists only)."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from urlwarden.errors import FeedError
from urlwarden.feeds import FeedVersion, make_adapter
from urlwarden.feeds.file import FileAdapter
from urlwarden.feeds.manager import FeedManager, FeedSpec
from urlwarden.feeds.payload import checksum, encode_diff, encode_list_header, parse_full


def write(path, text: str, mtime_ns: int | None = None) -> None:
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_fetch_and_not_modified(tmp_path):
    path = tmp_path / "list.txt"
    write(path, "a.test/\n", 1_000_000_000)
    a = make_adapter("file", {"path": str(path)}, "f")
    assert isinstance(a, FileAdapter) and a.source == "file"
    first = a.fetch(None)
    assert first.body == b"a.test/\n" and not first.not_modified
    again = a.fetch(first.version)
    assert again.not_modified and again.body == b"" and again.version == first.version


@pytest.mark.parametrize(
    "change",
    ["content", "mtime-only", "same-size-same-mtime"],
)
def test_any_change_of_mtime_size_or_hash_is_picked_up(tmp_path, change):
    path = tmp_path / "list.txt"
    write(path, "a.test/\n", 1_000_000_000)
    a = FileAdapter(path=str(path), feed_name="f")
    version = a.fetch(None).version
    if change == "content":
        write(path, "a.test/\nb.test/\n", 1_000_000_000)
    elif change == "mtime-only":
        write(path, "a.test/\n", 2_000_000_000)
    else:  # an in-place edit that kept size and mtime: only the hash tells
        write(path, "c.test/\n", 1_000_000_000)
    fetched = a.fetch(version)
    assert not fetched.not_modified and fetched.version != version


def test_errors(tmp_path):
    with pytest.raises(FeedError, match="cannot read"):
        FileAdapter(path=str(tmp_path / "missing.txt"), feed_name="f").fetch(None)
    big = tmp_path / "big.txt"
    write(big, "a.test/\n" * 100)
    with pytest.raises(FeedError, match="max_bytes=100"):
        FileAdapter(path=str(big), feed_name="f", max_bytes=100).fetch(None)
    with pytest.raises(FeedError, match="'path'"):
        make_adapter("file", {"path": ""}, "f")
    with pytest.raises(FeedError, match="'max_bytes'"):
        make_adapter("file", {"path": "x", "max_bytes": True}, "f")


def test_signature_file(tmp_path):
    path, sig = tmp_path / "list.txt", tmp_path / "list.txt.sig"
    write(path, "a.test/\n")
    key = Ed25519PrivateKey.generate()
    sig.write_bytes(key.sign(b"a.test/\n"))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    manager = FeedManager(
        [
            FeedSpec(
                "f",
                "file",
                {"path": str(path), "signature_path": str(sig)},
                public_key=base64.b64encode(raw).decode(),
            )
        ],
        str(tmp_path / "state"),
    )
    assert manager.refresh("f") is True
    write(path, "a.test/\nb.test/\n")  # changed without a new signature
    with pytest.raises(FeedError, match="bad signature"):
        manager.refresh("f")
    assert manager.status("f").entries == 1


def test_manager_with_file_feed(tmp_path):
    path = tmp_path / "list.txt"
    write(path, encode_list_header(serial="1") + "a.test/\nb.test/\n")
    now = [1_000.0]
    manager = FeedManager(
        [FeedSpec("f", "file", {"path": str(path)})], str(tmp_path / "state"), clock=lambda: now[0]
    )
    assert manager.refresh("f") is True
    status = manager.status("f")
    assert (status.source, status.entries, status.version.serial, status.last_update) == (
        "file",
        2,
        "1",
        "full",
    )
    assert manager.refresh("f") is False and manager.status("f").last_update == "not-modified"

    write(path, encode_list_header(serial="1") + "b.test/\na.test/\n", 5_000_000_000)  # same entries
    assert manager.refresh("f") is False and manager.status("f").last_update == "unchanged"

    target = parse_full(b"a.test/\nb.test/\nc.test/\n", "plain", "f")[0]
    write(path, encode_diff("1", "2", checksum(target), added=["c.test/"]).decode())
    assert manager.refresh("f") is True
    status = manager.status("f")
    assert (status.last_update, status.entries, status.version.serial) == ("diff", 3, "2")

    path.unlink()
    with pytest.raises(FeedError, match="cannot read"):
        manager.refresh("f")
    assert manager.status("f").entries == 3 and manager.status("f").consecutive_failures == 1
    assert "etag" in FeedVersion.__slots__
