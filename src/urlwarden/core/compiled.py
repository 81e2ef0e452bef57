"""Compiled lists: a normalized `ParsedList` in a binary file that loads without parsing.

A hashed list of a million entries takes seconds to parse (64 hex digits a line) and to
normalize; its compiled form loads in a few hundred milliseconds, because every column is
stored the way `ParsedList` holds it and is read with one ``read`` per section.

Policy:

* Only *normalized* lists are compiled: distinct digests in ascending order (what
  `urlwarden.feeds.payload.normalize` gives, and what the matcher can use without sorting).
  The file holds everything a `ParsedList` carries, so a round trip gives an equal value.
* Layout (integers little-endian; offsets in bytes)::

      0   8   magic  b"UWCLIST\\n"
      8   4   FORMAT_VERSION
     12   4   flags: 1 host keys present (else ``host_keys`` is None), 2 ids, 4 categories
     16   8   entries          (digest section: 32 bytes each, ascending, distinct)
     24   8   host keys        (host key section: 32 bytes each, ascending, distinct)
     32   8   meta bytes       (UTF-8 JSON: name, path, format, max_folder_depth, bad_lines,
                                problems, source)
     40   8   ids bytes        (UTF-8, the entries' ids joined by "\\n", "" for none)
     48   8   categories bytes (the same for categories)
     56  32   SHA-256 of the digest section: the list checksum (`feeds.payload.checksum`)
     88  32   SHA-256 of bytes 0-87 and of every other section, in file order
    120       sections: meta, digests, host keys, ids, categories

  Ids and categories are printable and never empty (`urlwarden.core.lists` refuses anything else),
  so "\\n" and "" cannot be part of a value; a list whose values break that is not compiled.
* Validation before use: magic, version, flags, section sizes against limits and against the
  file size, both checksums, the meta fields' types, and the caller's `source` stamp. Any
  mismatch raises `ListError` ("file: what is wrong"), and the caller parses the list itself.
* `source` is an opaque string chosen by the caller (the feed store uses the list file's size
  and modification time), stored in the meta and compared on load, so a compiled file is
  never used for a list it was not made from.
* Writes are atomic: a temp file in the same directory (mode 0600), fsync, `os.replace`,
  directory fsync. A crash leaves the previous file or none, never half of one.

Worked example::

    write(parsed, "state/iwf.compiled", source="iwf.sha256:1234:5678:1717171717000000000")
    read("state/iwf.compiled", source="iwf.sha256:1234:5678:1717171717000000000")
        -> Compiled(parsed=<equal to parsed>, checksum="<hex SHA-256 of the digests>")
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import NamedTuple

from urlwarden.errors import ListError
from urlwarden.core.digests import is_sorted_distinct
from urlwarden.core.lists import DIGEST_SIZE, MAX_LIST_ENTRIES, HostKeys, ParsedList
from urlwarden.core.fsutil import write_atomically

__all__ = ["FORMAT_VERSION", "MAGIC", "Compiled", "is_normalized", "read", "write"]

MAGIC = b"UWCLIST\n"
FORMAT_VERSION = 1
MAX_META_BYTES = 1024 * 1024
"""The JSON meta holds a few names and at most a handful of problem lines."""
MAX_COLUMN_BYTES_PER_ENTRY = 4 * 200 + 1
"""An id or category is at most 200 characters (`lists.MAX_LABEL_LENGTH`), 4 bytes each in
UTF-8, plus the separator."""

_HEADER = struct.Struct("<8sIIQQQQQ32s32s")
HEADER_SIZE = _HEADER.size  # 120
_CHECKED_HEADER = HEADER_SIZE - 32  # the file checksum covers the header up to itself
_HOST_KEYS, _IDS, _CATEGORIES = 1, 2, 4
_KNOWN_FLAGS = _HOST_KEYS | _IDS | _CATEGORIES


def is_normalized(digests: bytes) -> bool:
    """Whether a digest blob is ascending and distinct (`digests.is_sorted_distinct`)."""
    return is_sorted_distinct(digests)


def write(parsed: ParsedList, path: str | os.PathLike[str], *, source: str = "") -> None:
    """Write `parsed` (normalized) to `path` atomically; `ListError` when it cannot be compiled
    (not normalized, a value unfit for the format) or written."""
    path = os.fspath(path)
    if not is_normalized(parsed.digests):
        raise ListError(f"{path}: cannot compile {parsed.path}: its digests are not normalized")
    count = parsed.count
    host_keys = b"" if parsed.host_keys is None else parsed.host_keys.blob  # sorted, 32 bytes each
    ids = _encode_column(parsed.ids, count, path, "ids")
    categories = _encode_column(parsed.categories, count, path, "categories")
    meta = json.dumps(
        {
            "name": parsed.name,
            "path": parsed.path,
            "format": parsed.format,
            "max_folder_depth": parsed.max_folder_depth,
            "bad_lines": parsed.bad_lines,
            "problems": list(parsed.problems),
            "source": source,
        },
        sort_keys=True,
    ).encode("utf-8")
    flags = (
        (_HOST_KEYS if parsed.host_keys is not None else 0)
        | (_IDS if parsed.ids is not None else 0)
        | (_CATEGORIES if parsed.categories is not None else 0)
    )
    digest_sum = hashlib.sha256(parsed.digests).digest()
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, flags, count, len(host_keys) // DIGEST_SIZE, len(meta), len(ids),
        len(categories), digest_sum, bytes(32),
    )
    file_sum = hashlib.sha256(header[:_CHECKED_HEADER])
    for section in (meta, host_keys, ids, categories):
        file_sum.update(section)
    header = header[:_CHECKED_HEADER] + file_sum.digest()
    _write_atomically(path, (header, meta, parsed.digests, host_keys, ids, categories))


class Compiled(NamedTuple):
    """What `read` gives: the list, and the hex SHA-256 of its digests (its list checksum)."""

    parsed: ParsedList
    checksum: str


def read(path: str | os.PathLike[str], *, source: str | None = None) -> Compiled:
    """The list compiled in `path`, validated (see the module docstring); `ListError` when the
    file is missing, damaged, of another version, or made from another `source`."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = f.read(HEADER_SIZE)
            magic, version, flags, count, host_count, meta_len, ids_len, cat_len, digest_sum, file_sum = (
                _unpack_header(header, path)
            )
            if version != FORMAT_VERSION:
                raise ListError(f"{path}: compiled list format version {version}, expected {FORMAT_VERSION}")
            if flags & ~_KNOWN_FLAGS:
                raise ListError(f"{path}: unknown flags {flags:#x} in compiled list")
            _check_sizes(path, size, flags, count, host_count, meta_len, ids_len, cat_len)
            checked = hashlib.sha256(header[:_CHECKED_HEADER])
            meta = _read_exactly(f, meta_len, path)
            checked.update(meta)
            digests = _read_exactly(f, count * DIGEST_SIZE, path)
            keys = _read_exactly(f, host_count * DIGEST_SIZE, path)
            ids = _read_exactly(f, ids_len, path)
            categories = _read_exactly(f, cat_len, path)
    except OSError as exc:
        raise ListError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for section in (keys, ids, categories):
        checked.update(section)
    if checked.digest() != file_sum or hashlib.sha256(digests).digest() != digest_sum:
        raise ListError(f"{path}: compiled list damaged (checksum mismatch)")
    fields = _meta_fields(meta, path)
    if source is not None and fields["source"] != source:
        raise ListError(f"{path}: compiled from another version of its list")
    parsed = ParsedList(
        name=fields["name"],
        path=fields["path"],
        format=fields["format"],
        digests=digests,
        ids=_decode_column(ids, count, path, "ids") if flags & _IDS else None,
        categories=_decode_column(categories, count, path, "categories") if flags & _CATEGORIES else None,
        host_keys=HostKeys.from_sorted_blob(keys) if flags & _HOST_KEYS else None,
        max_folder_depth=fields["max_folder_depth"],
        bad_lines=fields["bad_lines"],
        problems=tuple(fields["problems"]),
    )
    return Compiled(parsed, digest_sum.hex())


# --- internals ----------------------------------------------------------------------------------


def _encode_column(values: tuple[str | None, ...] | None, count: int, path: str, what: str) -> bytes:
    if values is None:
        return b""
    if len(values) != count:
        raise ListError(f"{path}: cannot compile: {what} column has {len(values)} rows for {count} entries")
    for value in values:
        if value is not None and (not isinstance(value, str) or not value or "\n" in value):
            raise ListError(f"{path}: cannot compile: an empty or multi-line value in the {what} column")
    return "\n".join(value or "" for value in values).encode("utf-8", "surrogatepass")


def _decode_column(data: bytes, count: int, path: str, what: str) -> tuple[str | None, ...]:
    try:
        values = data.decode("utf-8", "surrogatepass").split("\n") if count else []
    except UnicodeDecodeError:
        raise ListError(f"{path}: compiled list damaged ({what} column is not UTF-8)") from None
    if len(values) != count:
        raise ListError(f"{path}: compiled list damaged ({what} column has {len(values)} rows)")
    return tuple(value or None for value in values)


def _unpack_header(header: bytes, path: str) -> tuple:
    if len(header) < HEADER_SIZE or not header.startswith(MAGIC):
        raise ListError(f"{path}: not a compiled list")
    return _HEADER.unpack(header)


def _check_sizes(path: str, size: int, flags: int, count: int, host_count: int, meta_len: int,
                 ids_len: int, cat_len: int) -> None:
    limit = MAX_COLUMN_BYTES_PER_ENTRY * count
    if (
        count > MAX_LIST_ENTRIES
        or host_count > MAX_LIST_ENTRIES
        or meta_len > MAX_META_BYTES
        or ids_len > limit
        or cat_len > limit
        or (host_count and not flags & _HOST_KEYS)
        or (ids_len and not flags & _IDS)
        or (cat_len and not flags & _CATEGORIES)
    ):
        raise ListError(f"{path}: compiled list damaged (impossible section sizes)")
    expected = HEADER_SIZE + meta_len + (count + host_count) * DIGEST_SIZE + ids_len + cat_len
    if size != expected:
        raise ListError(f"{path}: compiled list damaged ({size} bytes, the header describes {expected})")


def _read_exactly(f, length: int, path: str) -> bytes:
    data = f.read(length)
    if len(data) != length:
        raise ListError(f"{path}: compiled list damaged (truncated)")
    return data


def _meta_fields(meta: bytes, path: str) -> dict:
    try:
        fields = json.loads(meta.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ListError(f"{path}: compiled list damaged (meta is not JSON)") from None
    kinds = {
        "name": (str,), "path": (str,), "format": (str,), "max_folder_depth": (int, type(None)),
        "bad_lines": (int,), "problems": (list,), "source": (str,),
    }
    if not isinstance(fields, dict) or any(
        not isinstance(fields.get(key), types) or isinstance(fields.get(key), bool) for key, types in kinds.items()
    ) or not all(isinstance(problem, str) for problem in fields["problems"]):
        raise ListError(f"{path}: compiled list damaged (meta fields)")
    return fields


def _write_atomically(path: str, parts: tuple[bytes, ...]) -> None:
    """`fsutil.write_atomically`, with its OSError as a ListError naming the file."""
    try:
        write_atomically(path, parts)
    except OSError as exc:
        raise ListError(f"{path}: cannot write ({exc.strerror or exc})") from None