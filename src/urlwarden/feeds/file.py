"""The ``file`` feed adapter: a list file that another tool (rsync, a vendor client) keeps current.

Policy:

* The file is read whole (at most ``max_bytes``) on every fetch; its version key is
  ``<mtime_ns>-<size>-<sha256>`` (in `FeedVersion.etag`). When that key equals the ``since``
  version's, the fetch answers not_modified and the manager changes nothing. A touched but
  identical file therefore reaches the manager, which finds the same checksum and changes
  nothing either.
* The body is delivered as read; the manager parses it in the feed's format (a full list, which
  may start with a ``# urlwarden-list v1`` header, or a diff).
* ``signature_path`` names a detached signature file (64 raw bytes or base64) read with the list.
* Publishers should replace the file atomically (write aside, rename): a file caught half
  written is usually refused (parse error, shrink limit, checksum), but only a rename is safe.
"""

from __future__ import annotations

import hashlib
import os

from urlwarden.feeds import FeedAdapter, FeedPayload, FeedVersion

__all__ = ["DEFAULT_MAX_BYTES", "MAX_SIGNATURE_BYTES", "FileAdapter"]

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
"""Largest list file accepted (the largest licensed lists are a few hundred MB as text)."""

MAX_SIGNATURE_BYTES = 4096

_READ_CHUNK = 1024 * 1024


class FileAdapter(FeedAdapter):
    """Reads a local list file; see the module docstring.

    path            the list file (required)
    max_bytes       refuse a larger file (default `DEFAULT_MAX_BYTES`)
    signature_path  detached Ed25519 signature of the file (optional)
    """

    source = "file"

    def __init__(
        self,
        *,
        path: str | os.PathLike[str],
        feed_name: str = "feed",
        max_bytes: int = DEFAULT_MAX_BYTES,
        signature_path: str | os.PathLike[str] | None = None,
    ):
        super().__init__(feed_name=feed_name)
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise self.error("option 'path' must be a non-empty file path")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise self.error(f"option 'max_bytes' must be a positive integer, got {max_bytes!r}")
        if signature_path is not None and not (
            isinstance(signature_path, (str, os.PathLike)) and os.fspath(signature_path)
        ):
            raise self.error("option 'signature_path' must be a file path")
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.signature_path = os.fspath(signature_path) if signature_path is not None else None

    def fetch(self, since: FeedVersion | None) -> FeedPayload:
        body, key = self._read_list()
        version = FeedVersion(etag=key)
        if since is not None and since.etag == key:
            return FeedPayload(body=b"", version=since, not_modified=True)
        signature = self._read_signature() if self.signature_path is not None else None
        return FeedPayload(body=body, version=version, signature=signature)

    def _read_list(self) -> tuple[bytes, str]:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_size > self.max_bytes:
                    raise self.error(f"{self.path}: {st.st_size} bytes, more than max_bytes={self.max_bytes}")
                chunks: list[bytes] = []
                total = 0
                while True:  # bounded: stops at EOF or after max_bytes + 1 bytes
                    chunk = f.read(min(_READ_CHUNK, self.max_bytes + 1 - total))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > self.max_bytes:
                        raise self.error(f"{self.path}: grew beyond max_bytes={self.max_bytes} while read")
        except OSError as exc:
            raise self.error(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        body = b"".join(chunks)
        sha = hashlib.sha256(body).hexdigest()
        return body, f"{st.st_mtime_ns}-{len(body)}-{sha}"

    def _read_signature(self) -> bytes:
        try:
            with open(self.signature_path, "rb") as f:
                data = f.read(MAX_SIGNATURE_BYTES + 1)
        except OSError as exc:
            raise self.error(
                f"{self.signature_path}: cannot read signature ({exc.strerror or exc})"
            ) from None
        if len(data) > MAX_SIGNATURE_BYTES:
            raise self.error(f"{self.signature_path}: signature file larger than {MAX_SIGNATURE_BYTES} bytes")
        return data

    def __repr__(self) -> str:
        return f"FileAdapter(feed={self.feed_name!r}, path={self.path!r})"
