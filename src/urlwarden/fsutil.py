"""File-system helpers shared by the modules that write state atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable

WRITE_CHUNK = 64 * 1024 * 1024
"""Bytes per write call: a multi-gigabyte part is written in pieces, never copied whole."""


def write_atomically(path: str, parts: Iterable[bytes]) -> None:
    """Write `parts` to `path` so that a crash leaves either the old file or the new one whole.

    Temp file in the same directory (mode 0600), fsync, `os.replace`, then the directory is
    synced. Raises OSError (callers translate it into their own error); the temp file is removed
    on failure.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".urlwarden-", suffix=".tmp")
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
