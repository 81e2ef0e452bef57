"""The ``tuf`` feed adapter: a list from a TUF repository (`urlwarden.exports.tufrepo`), read with
``tuf.ngclient``.

Every fetch runs the TUF client workflow against the repository at ``url``: root versions one by
one from the trusted root shipped in the node's configuration (``root_file``), then timestamp,
snapshot and targets metadata, each checked for signatures by the role's threshold of keys,
expiry, and versions never lower than the ones this node already trusts; then the list file,
checked against the length and SHA-256 the signed targets metadata gives for it. So the adapter
refuses, with a ``feed 'NAME': ...`` error (the list in force stays):

    rollback       older metadata than this node has seen         (BadVersionNumberError)
    freeze         a timestamp (or other metadata) past its expiry (ExpiredMetadataError)
    mix and match  a list file or metadata from another moment   (LengthOrHashMismatchError,
                                                                   BadVersionNumberError)
    bad signature  metadata not signed by the keys the root names  (UnsignedMetadataError)

The trusted metadata lives in ``metadata_path`` (a directory; relative to the configuration
file like other paths). ngclient supports one updater per metadata directory at a time; several
workers of one machine that share it take an exclusive ``flock`` on ``metadata_path/.lock``
around each refresh (bounded by ``lock_timeout``), so they take turns, and each starts from what
the previous one trusted. ``target`` names the list file in the repository (default
``<feed>.sha256``, else ``<feed>.csv``).

`FeedVersion.etag` is ``sha256:<hex>`` of the list file: when the signed targets metadata still
names the file the node has, the answer is ``not_modified`` (the metadata was still refreshed
and verified, so a frozen repository is noticed even when no list changes).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time

from urlwarden.feeds import FeedAdapter, FeedPayload, FeedVersion

DEFAULT_TIMEOUT = 30
"""Seconds without progress before a download fails."""
DEFAULT_LOCK_TIMEOUT = 60.0
"""Seconds a refresh waits for another worker's refresh of the same metadata directory."""
DEFAULT_REFRESH = 30.0
"""Default ``refresh`` of a tuf feed (the fleet's freshness target is one minute)."""
MAX_ROOT_BYTES = 512 * 1024
LOCK_POLL = 0.05
TARGETS_PATH = "targets/"

_KINDS = (  # (exception class name, what it means for an operator), most specific first
    ("EqualVersionNumberError", "rollback or replay refused: metadata version not newer than the trusted one"),
    ("BadVersionNumberError", "rollback or mix-and-match refused: metadata version does not match"),
    ("ExpiredMetadataError", "expired metadata refused (repository frozen, or its publisher stopped)"),
    ("LengthOrHashMismatchError", "file refused: length or SHA-256 differs from the signed metadata "
                                  "(tampered, or from another moment)"),
    ("UnsignedMetadataError", "metadata refused: not signed by the trusted keys (wrong, revoked or bad root)"),
    ("DownloadHTTPError", "download failed"),
    ("SlowRetrievalError", "download failed (no connection, or too slow)"),
    ("DownloadLengthMismatchError", "download refused: longer than allowed"),
    ("DownloadError", "download failed"),
    ("RepositoryError", "repository metadata refused"),
)


class TufAdapter(FeedAdapter):
    """A list from a TUF repository; see the module docstring."""

    default_refresh = DEFAULT_REFRESH

    def __init__(self, *, url: str, root_file: str, metadata_path: str, target: str | None = None,
                 timeout: int = DEFAULT_TIMEOUT, lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
                 feed_name: str = "feed"):
        super().__init__(feed_name=feed_name)
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise self.error("option 'url': must be the repository's http(s) URL")
        for option, value in (("root_file", root_file), ("metadata_path", metadata_path)):
            if not isinstance(value, str) or not value:
                raise self.error(f"option {option!r}: must be a path")
        if target is not None and (not isinstance(target, str) or "/" in target or not target):
            raise self.error("option 'target': must be a list file name such as hotline.sha256")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 600:
            raise self.error("option 'timeout': must be whole seconds from 1 to 600")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, (int, float)) \
                or not 0 < lock_timeout <= 3600:
            raise self.error("option 'lock_timeout': must be seconds from 0 to 3600")
        self.url = url.rstrip("/") + "/"
        self.root_file = root_file
        self.metadata_path = metadata_path
        self.targets = (target,) if target else (f"{feed_name}.sha256", f"{feed_name}.csv")
        self.timeout = timeout
        self.lock_timeout = float(lock_timeout)
        self._root = self._read_root()  # fail at configuration time, not at the first refresh

    def fetch(self, since: FeedVersion | None) -> FeedPayload:
        # Imported here: the configuration check and other adapters need no TUF client.
        from tuf.api import exceptions as tuf_errors
        from tuf.ngclient import Updater
        from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            os.makedirs(os.path.join(self.metadata_path, "targets"), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise self.error(f"cannot create {self.metadata_path} ({exc.strerror or exc})") from None
        with self._exclusive():
            try:
                updater = Updater(
                    metadata_dir=self.metadata_path,
                    metadata_base_url=self.url,
                    target_dir=os.path.join(self.metadata_path, "targets"),
                    target_base_url=self.url + TARGETS_PATH,
                    fetcher=Urllib3Fetcher(socket_timeout=self.timeout, app_user_agent="urlwarden"),
                    bootstrap=self._root,
                )
                updater.refresh()
                info = None
                for name in self.targets:
                    info = updater.get_targetinfo(name)
                    if info is not None:
                        break
                if info is None:
                    raise self.error(f"the repository has no list {' or '.join(self.targets)}")
                digest = info.hashes.get("sha256")
                if not digest:
                    raise self.error(f"list {info.path}: the targets metadata gives no SHA-256")
                version = FeedVersion(etag=f"sha256:{digest}")
                if since is not None and since.etag == version.etag:
                    return FeedPayload(body=b"", version=version, not_modified=True)
                path = updater.find_cached_target(info) or updater.download_target(info)
                with open(path, "rb") as f:
                    body = f.read(info.length + 1)
            except tuf_errors.RepositoryError as exc:
                raise self.error(_describe(exc)) from None
            except tuf_errors.DownloadError as exc:
                raise self.error(_describe(exc)) from None
            except (Urllib3Error, ValueError) as exc:
                raise self.error(f"download failed ({type(exc).__name__})") from None
            except OSError as exc:
                raise self.error(f"cannot use {self.metadata_path} ({exc.strerror or exc})") from None
        if len(body) != info.length:
            raise self.error(f"list {info.path}: cached copy changed while read")
        custom = info.custom.get("urlwarden") if isinstance(info.custom, dict) else None
        expected = custom.get("checksum") if isinstance(custom, dict) else None
        return FeedPayload(body=body, version=version, content_type="application/octet-stream",
                           checksum=expected if isinstance(expected, str) else None)

    def _read_root(self) -> bytes:
        try:
            with open(self.root_file, "rb") as f:
                data = f.read(MAX_ROOT_BYTES + 1)
        except OSError as exc:
            raise self.error(f"option 'root_file': cannot read {self.root_file} ({exc.strerror or exc})") from None
        if len(data) > MAX_ROOT_BYTES:
            raise self.error(f"option 'root_file': {self.root_file} is larger than {MAX_ROOT_BYTES} bytes")
        from tuf.api.metadata import Metadata, Root
        try:
            root = Metadata.from_bytes(data)
        except Exception as exc:  # the TUF parser raises several kinds; all mean "not a root"
            raise self.error(f"option 'root_file': {self.root_file} is not TUF metadata "
                             f"({type(exc).__name__})") from None
        if not isinstance(root.signed, Root):
            raise self.error(f"option 'root_file': {self.root_file} is {root.signed.type} metadata, not root")
        return data

    @contextlib.contextmanager
    def _exclusive(self):
        """One refresh of `metadata_path` at a time across processes (ngclient's requirement)."""
        path = os.path.join(self.metadata_path, ".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self.error(f"cannot open {path} ({exc.strerror or exc})") from None
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise self.error(f"cannot lock {path} ({exc.strerror or exc})") from None
                if time.monotonic() > deadline:
                    raise self.error(f"another worker has been refreshing {self.metadata_path} for more than "
                                     f"{self.lock_timeout:g} s")
                time.sleep(LOCK_POLL)
            yield
        finally:
            os.close(fd)  # releases the lock


def _describe(exc: Exception) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    for name, meaning in _KINDS:
        if name in names:
            detail = str(exc).strip()
            return f"{meaning}: {detail}" if detail else meaning
    return f"TUF error ({type(exc).__name__})"
