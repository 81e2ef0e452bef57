"""File-system helpers shared by the modules that write state atomically."""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable

WRITE_CHUNK = 64 * 1024 * 1024
"""Bytes per write call: a multi-gigabyte part is written in pieces, never copied whole."""

TEMP_PREFIX = ".urlwarden-"
"""Every temporary file urlwarden creates beside the file it replaces starts with this."""

STALE_TEMP_AGE = 600.0
"""Seconds since its last write after which one of our temporary files is taken as left behind
by a killed process. Another process sharing the directory (proxy workers, Squid helpers) may be
writing one right now: a live write touches the file at least every `WRITE_CHUNK` bytes, and ten
minutes covers even a slow fsync on an SD card."""

_OUR_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[a-z0-9_]{8}\.(?:tmp|sha256|csv)\Z")
"""`tempfile.mkstemp` names with our prefix and one of the suffixes we give it; nothing else."""


def write_atomically(path: str, parts: Iterable[bytes]) -> None:
    """Write `parts` to `path` so that a crash leaves either the old file or the new one whole.

    Temp file in the same directory (mode 0600), fsync, `os.replace`, then the directory is
    synced. Raises OSError (callers translate it into their own error); the temp file is removed
    on failure.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=".tmp")
    replaced = False
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                view = memoryview(part)
                for start in range(0, len(view), WRITE_CHUNK):
                    f.write(view[start : start + WRITE_CHUNK])
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
        replaced = True
    finally:
        if not replaced:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
    fsync_directory(directory)


def fsync_directory(directory: str) -> None:
    """Make a rename inside `directory` durable; not every platform can open a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the data itself is synced
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: str, now: float | None = None, min_age: float = STALE_TEMP_AGE) -> int:
    """Remove our own temporary files in `directory` untouched for `min_age` seconds; how many.

    A process killed during `write_atomically` (or a feed save) leaves its full-size temporary
    file behind, and nothing else would ever remove it. Only regular files named as we name them
    (`TEMP_PREFIX`, eight ``mkstemp`` characters, ``.tmp``/``.sha256``/``.csv``) are candidates;
    anything else in the directory is left alone. Errors are ignored: this is housekeeping.
    """
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = os.scandir(directory)
    except OSError:
        return 0
    with entries:
        for entry in entries:
            if not _OUR_TEMP_NAME.match(entry.name):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and info.st_mtime <= now - min_age:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
    return removed


def read_small_file(path: str | os.PathLike[str], limit: int, what: str, error: type[Exception]) -> bytes:
    """The bytes of a small file (a configuration, a template, a key, metadata), or `error` with
    one line naming the file: unreadable, or larger than `limit` bytes. `what` names the file's
    role in the message ("" for none)."""
    role = f" {what}" if what else ""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read{role}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path}:{role} larger than {limit} bytes")
    return data


def read_small_text(path: str | os.PathLike[str], limit: int, what: str, error: type[Exception],
                    encoding: str = "utf-8") -> str:
    """`read_small_file`, decoded; also `error` when it is not `encoding` text."""
    data = read_small_file(path, limit, what, error)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what + ' is ' if what else ''}not UTF-8 text (byte {exc.start})") from None
