"""File-system helpers shared by the modules that write state atomically."""

from __future__ import annotations

import os


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
