"""Sorted tables of 32-byte SHA-256 digests: the one place that says what "sorted and distinct"
means and how such a table is searched.

Lists, compiled lists, feed payloads and the matcher all hold digests as one flat blob of
`DIGEST_SIZE`-byte values. A *normalized* blob is strictly ascending (so distinct). The fast test
compares the 8-byte prefixes as numbers in C-speed passes and falls back to whole digests only
where two prefixes are equal, which practically never happens.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from itertools import islice
from operator import lt

__all__ = ["DIGEST_SIZE", "digest_prefixes", "find_digest", "is_sorted_distinct", "strictly_increasing"]

DIGEST_SIZE = 32
"""Bytes in one SHA-256 digest; `ParsedList.digests` holds one per entry."""


def strictly_increasing(values: Sequence) -> bool:
    """Whether each value is greater than the one before it."""
    return all(map(lt, values, islice(values, 1, None)))


def is_sorted_distinct(blob: bytes) -> bool:
    """Whether a digest blob is ascending and distinct (False when its length is not whole digests)."""
    if len(blob) % DIGEST_SIZE:
        return False
    if strictly_increasing(digest_prefixes(blob)):
        return True
    previous = b""
    for start in range(0, len(blob), DIGEST_SIZE):  # equal prefixes: compare whole digests
        value = blob[start : start + DIGEST_SIZE]
        if value <= previous:
            return False
        previous = value
    return True


def find_digest(prefixes: Sequence[int], blob: bytes, stride: int, prefix: int, value: bytes, skip: int = 0) -> int:
    """Position ``i`` of the digest `value` in a sorted table, or -1. ``prefixes`` holds each digest's first
    8 bytes as a number, ascending (`prefix` is `value`'s); ``blob[i*stride:]`` starts with
    digest ``i`` without its first `skip` bytes (0: whole digests; 8: the part after the prefix)."""
    i = bisect_left(prefixes, prefix)
    count = len(prefixes)
    if i >= count or prefixes[i] != prefix:
        return -1  # the common case: not there
    tail = value[skip:]
    size = len(tail)
    while i < count and prefixes[i] == prefix:  # equal prefixes (rare): compare the rest
        start = i * stride
        if blob[start : start + size] == tail:  # (a mapped blob has no startswith)
            return i
        i += 1
    return -1


def digest_prefixes(blob: bytes) -> array:
    """The first 8 bytes of each 32-byte digest in `blob`, as big-endian numbers (so that number
    order is byte order), in C-speed passes."""
    prefixes = array("Q")
    prefixes.frombytes(memoryview(blob).cast("Q")[:: DIGEST_SIZE // 8].tobytes())
    if sys.byteorder == "little":
        prefixes.byteswap()
    return prefixes
