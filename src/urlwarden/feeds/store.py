"""The last-known-good copy of each feed, in the state directory, so a restart never starts empty.

Policy:

* Per feed two files in the state directory (created with mode 0700 when missing):
  ``<feed>.sha256`` (or ``<feed>.csv`` when the list has ids or categories), the list in hashed
  form as written by `urlwarden.core.lists.write_sha256_list`; and ``<feed>.json``, its metadata
  (version, checksum, time of the last successful fetch, the feed's format and a fingerprint of
  its configuration).
* Always the hashed form, for plain feeds too: a hashed list gives the same verdicts, entry ids
  and host keys as its plain source (docs/lists.md), and the state directory then never holds
  URLs of abuse material in clear. The one thing lost is the plain list's folder depth, so the
  matcher generates all directory prefixes for a restored plain feed until its next full list.
* Every write is atomic (temp file in the same directory, fsync, `os.replace`, directory fsync;
  files are created 0600): a crash leaves the previous copy whole. A temporary file a killed
  process left behind (``.urlwarden-XXXXXXXX.tmp``/``.sha256``/``.csv``, untouched for ten
  minutes) is removed at start and after every save; nothing else in the directory is touched. The list is written first,
  the metadata second; the metadata names the list's checksum, so a list whose metadata did not
  follow (or is missing) is still used, but with no version, and the next fetch is a full one.
* A state directory that cannot be written is reported (`FeedError`); the manager keeps the
  update in memory and tries again at the next refresh.
* Fast start: next to the list, ``<feed>.compiled`` holds the same list as loading it would
  give (normalized, hashed form) in `urlwarden.core.compiled`'s binary format, so a restart reads it
  in a fraction of the time parsing takes. It is a cache, never the source of truth: it records
  which file it was made from (inode, size, modification time: every save writes a new file)
  and is used only while the list file is still that one and its own checksums hold; otherwise
  the list file is parsed as before and a fresh compiled file is written (best effort, silently
  skipped when the directory is not writable). `save` removes the compiled file before it
  replaces the list. Like the list, it holds digests only, never a URL in clear.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, replace

from urlwarden.core import compiled
from urlwarden.errors import FeedError, ListError
from urlwarden.feeds import FeedVersion
from urlwarden.feeds.payload import checksum as list_checksum
from urlwarden.feeds.payload import normalize
from urlwarden.core.lists import ListSpec, ParsedList, _write_atomically, load_list, write_sha256_list
from urlwarden.core.fsutil import TEMP_PREFIX, fsync_directory, remove_stale_temporaries

__all__ = ["COMPILED_SUFFIX", "METADATA_VERSION", "LastKnownGood", "StoredFeed"]

METADATA_VERSION = 1
MAX_METADATA_BYTES = 64 * 1024
COMPILED_SUFFIX = ".compiled"


@dataclass(frozen=True, slots=True)
class StoredFeed:
    """A feed's last-known-good copy as read back.

    version       None when the metadata is missing or does not describe this list
    last_success  when the list was last confirmed by its source (the file's mtime when the
                  metadata is unusable)
    feed_format   the feed's declared format when it was saved (the file itself is hashed)
    config_id     fingerprint of the feed configuration it was fetched with
    """

    parsed: ParsedList
    version: FeedVersion | None
    checksum: str
    last_success: float
    feed_format: str | None
    config_id: str | None
    list_path: str


class LastKnownGood:
    """Reads and writes last-known-good copies under `state_dir`; see the module docstring."""

    def __init__(self, state_dir: str | os.PathLike[str]):
        self.state_dir = os.fspath(state_dir)

    def remove_stale_temporaries(self) -> int:
        """Remove temporary files a killed save left in the state directory (`fsutil.STALE_TEMP_AGE`
        old, our own names only); returns how many. Run at start and after every save."""
        return remove_stale_temporaries(self.state_dir)

    def list_path(self, name: str, parsed: ParsedList) -> str:
        """Where `parsed` would be saved for feed `name`."""
        extension = ".csv" if parsed.ids is not None or parsed.categories is not None else ".sha256"
        return os.path.join(self.state_dir, name + extension)

    def metadata_path(self, name: str) -> str:
        return os.path.join(self.state_dir, name + ".json")

    def compiled_path(self, name: str) -> str:
        """The compiled copy of the list (`urlwarden.core.compiled`), read instead of parsing it."""
        return os.path.join(self.state_dir, name + COMPILED_SUFFIX)

    def health_path(self, name: str) -> str:
        return os.path.join(self.state_dir, name + ".health.json")

    def save_health(self, name: str, *, last_attempt: float | None, last_error: str | None,
                    consecutive_failures: int) -> None:
        """Record the outcome of the latest refresh, so that another process (``urlwarden status``)
        and the next start see failures too. Best effort: a write failure raises `FeedError`."""
        document = {"feed": name, "last_attempt": last_attempt, "last_error": last_error,
                    "consecutive_failures": consecutive_failures}
        self._make_directory(name)
        try:
            _write_atomically(self.health_path(name), json.dumps(document, sort_keys=True) + "\n")
        except ListError as exc:  # (_write_atomically translates OSError into ListError)
            raise FeedError(f"feed {name!r}: health record not saved: {exc}") from None

    def load_health(self, name: str) -> dict | None:
        """What `save_health` recorded, or None (missing or damaged)."""
        try:
            with open(self.health_path(name), "rb") as f:
                data = f.read(MAX_METADATA_BYTES + 1)
            document = json.loads(data) if len(data) <= MAX_METADATA_BYTES else None
        except (OSError, ValueError):
            return None
        if not isinstance(document, dict) or document.get("feed") != name:
            return None
        return document

    def save(
        self,
        name: str,
        parsed: ParsedList,
        *,
        version: FeedVersion | None,
        checksum: str,
        last_success: float,
        feed_format: str,
        config_id: str,
    ) -> str:
        """Write list and metadata atomically; returns the list path. `FeedError` on failure."""
        self._make_directory(name)
        path = self.list_path(name, parsed)
        _remove_quietly(self.compiled_path(name))  # it describes the list about to be replaced
        try:
            stamp = self._write_list(parsed, path)
        except ListError as exc:
            raise FeedError(f"feed {name!r}: last-known-good not saved: {exc}") from None
        for other in (".sha256", ".csv"):
            stale = os.path.join(self.state_dir, name + other)
            if stale != path:
                _remove_quietly(stale)
        self._write_compiled(name, stamp, _as_stored(parsed, name, path))
        self.remove_stale_temporaries()  # a restart soon after a kill -9 finds its file still fresh
        self.save_metadata(
            name,
            path,
            version=version,
            checksum=checksum,
            last_success=last_success,
            feed_format=feed_format,
            config_id=config_id,
        )
        return path

    def save_metadata(
        self,
        name: str,
        list_path: str,
        *,
        version: FeedVersion | None,
        checksum: str,
        last_success: float,
        feed_format: str,
        config_id: str,
    ) -> None:
        """Rewrite only the metadata (the list file is unchanged)."""
        document = {
            "urlwarden_feed_state": METADATA_VERSION,
            "feed": name,
            "list_file": os.path.basename(list_path),
            "format": feed_format,
            "checksum": checksum,
            "etag": version.etag if version else None,
            "last_modified": version.last_modified if version else None,
            "serial": version.serial if version else None,
            "last_success": last_success,
            "config": config_id,
        }
        self._make_directory(name)
        try:
            _write_atomically(self.metadata_path(name), json.dumps(document, indent=1, sort_keys=True) + "\n")
        except ListError as exc:
            raise FeedError(f"feed {name!r}: last-known-good metadata not saved: {exc}") from None

    def load(self, name: str) -> StoredFeed | None:
        """The stored copy of feed `name`, None when there is none; `FeedError` when unusable."""
        meta = self._read_metadata(name)
        candidates = [meta["list_file"]] if meta and isinstance(meta.get("list_file"), str) else []
        candidates += [name + ".sha256", name + ".csv"]
        for file_name in candidates:
            if os.path.basename(file_name) != file_name or not file_name.startswith(name + "."):
                continue  # never follow a path out of the state directory
            path = os.path.join(self.state_dir, file_name)
            if os.path.isfile(path):
                return self._load_list(name, path, meta)
        return None

    # --- internals ------------------------------------------------------------------------

    def _make_directory(self, name: str) -> None:
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise FeedError(
                f"feed {name!r}: last-known-good not saved: cannot create {self.state_dir} "
                f"({exc.strerror or exc})"
            ) from None

    def _read_metadata(self, name: str) -> dict | None:
        try:
            with open(self.metadata_path(name), "rb") as f:
                data = f.read(MAX_METADATA_BYTES + 1)
            document = json.loads(data) if len(data) <= MAX_METADATA_BYTES else None
        except (OSError, ValueError):
            return None  # missing or damaged: the list is still used, without a version
        if not isinstance(document, dict) or document.get("urlwarden_feed_state") != METADATA_VERSION:
            return None
        if document.get("feed") != name:
            return None
        return document

    def _load_list(self, name: str, path: str, meta: dict | None) -> StoredFeed:
        format = _list_format(path)
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise FeedError(
                f"feed {name!r}: last-known-good unusable: {path}: {exc.strerror or exc}"
            ) from None
        mtime = stat.st_mtime
        fast = self._read_compiled(name, path, stat)
        if fast is not None:
            parsed, actual = fast  # normalized, so the digests' SHA-256 is the list checksum
        else:
            try:
                parsed = load_list(ListSpec(path=path, format=format, name=name))
            except ListError as exc:
                raise FeedError(f"feed {name!r}: last-known-good unusable: {exc}") from None
            parsed = replace(normalize(parsed), path=f"feed:{name}")
            actual = list_checksum(parsed)
            # So that the next start is fast again. The stamp is the one taken before reading:
            # if the list was replaced meanwhile, the new file has another and this copy is unused.
            self._write_compiled(name, _source_stamp(path, stat), parsed)
        if meta is None or meta.get("checksum") != actual or os.path.basename(path) != meta.get("list_file"):
            return StoredFeed(parsed, None, actual, mtime, None, None, path)
        version = FeedVersion(
            etag=_text(meta.get("etag")),
            last_modified=_text(meta.get("last_modified")),
            serial=_text(meta.get("serial")),
        )
        last_success = meta.get("last_success")
        if isinstance(last_success, bool) or not isinstance(last_success, (int, float)):
            last_success = mtime
        return StoredFeed(
            parsed=parsed,
            version=version,
            checksum=actual,
            last_success=float(last_success),
            feed_format=_text(meta.get("format")),
            config_id=_text(meta.get("config")),
            list_path=path,
        )

    def _read_compiled(self, name: str, list_path: str, stat: os.stat_result) -> compiled.Compiled | None:
        """The compiled copy of `list_path`, or None when there is none usable (parse instead)."""
        try:
            found = compiled.read(self.compiled_path(name), source=_source_stamp(list_path, stat))
        except ListError:
            return None  # missing, damaged, outdated or of another format version
        parsed = found.parsed
        if (parsed.name, parsed.path, parsed.format) != (name, f"feed:{name}", _list_format(list_path)):
            return None
        return found

    def _write_compiled(self, name: str, stamp: str, parsed: ParsedList) -> None:
        """Best effort: without a compiled copy the next start parses the list, nothing worse."""
        target = self.compiled_path(name)
        try:
            compiled.write(parsed, target, source=stamp)
        except ListError:
            _remove_quietly(target)

    def _write_list(self, parsed: ParsedList, path: str) -> str:
        """`write_sha256_list` to a temp name, then into place; returns the new file's stamp,
        taken before it can be seen under `path` (so it is this file's, whoever writes next)."""
        try:
            fd, temp = tempfile.mkstemp(dir=self.state_dir, prefix=TEMP_PREFIX, suffix=os.path.splitext(path)[1])
            os.close(fd)
        except OSError as exc:
            raise ListError(f"{path}: cannot write ({exc.strerror or exc})") from None
        try:
            write_sha256_list(parsed, temp)
            stamp = _source_stamp(path, os.stat(temp))
            os.replace(temp, path)
        except OSError as exc:
            raise ListError(f"{path}: cannot write ({exc.strerror or exc})") from None
        finally:
            _remove_quietly(temp)
        fsync_directory(self.state_dir)
        return stamp


def _list_format(path: str) -> str:
    return "csv" if path.endswith(".csv") else "sha256"


def _source_stamp(list_path: str, stat: os.stat_result) -> str:
    """What ties a compiled copy to one version of its list file: every save writes a new file
    (a new inode), and an edit in place changes the size or the modification time."""
    return f"{os.path.basename(list_path)}:{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"



def _as_stored(parsed: ParsedList, name: str, list_path: str) -> ParsedList:
    """`parsed` as `LastKnownGood.load` reads it back from `list_path` after
    `write_sha256_list` wrote it there: normalized, hashed, without a folder depth or problems."""
    parsed = normalize(parsed)
    return ParsedList(
        name=name,
        path=f"feed:{name}",
        format=_list_format(list_path),
        digests=parsed.digests,
        ids=parsed.ids,
        categories=parsed.categories,
        host_keys=parsed.host_keys or None,
        max_folder_depth=None,
        bad_lines=0,
        problems=(),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
