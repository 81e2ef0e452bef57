"""Block and allow list files: parsed once, at the edge, into immutable columnar values.

Policy:

* Three formats. ``plain``: one URL or ``host/path`` expression per line. ``sha256``: one
  SHA-256 (hex) of a canonical expression per line, plus optional ``host:<hex>`` host keys.
  ``csv``: a header row naming exactly one of a ``url`` or a ``sha256`` column, with optional
  ``id``, ``category`` and (hashed only) ``host_sha256`` columns; other columns are ignored.
  ``#`` comment lines and blank lines are ignored in ``plain`` and ``sha256`` files.
* Every URL entry goes through `canon.parse`, the same canonicalizer as request URLs; its
  lookup expression is ``CanonicalURL.expression`` (scheme and port are ignored). Nothing here
  lowercases or strips a URL on its own.
* An entry is stored as ``sha256(expression)``, so plain and hashed lists are the same value
  and give identical verdicts. For URL lists the host keys (``sha256(canonical host)``) are
  computed; hashed lists carry them only when the file declares them (see docs/lists.md).
* A bad line is skipped and counted; the first `MAX_REPORTED_PROBLEMS` are kept as
  ``file:line: reason``. A file that cannot be read, is not UTF-8, holds NUL bytes, is not its
  declared format, or yields no valid entry raises `ListError` ("file: reason", one line):
  nothing half-loaded ever reaches the matcher.
* Values are columnar (one bytes blob of digests, aligned tuples for ids and categories),
  because licensed lists can hold millions of entries.

Worked example (a ``plain`` file)::

    # comment                          ignored
    HTTP://Listed.TEST:8080/           expression "listed.test/"        (whole host)
    paths.test/folder/                 expression "paths.test/folder/"  (everything below)
    paths.test/q.php?id=7              expression "paths.test/q.php?id=7" (that query only)
    paths.test/ # note                 bad line: contains whitespace
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from urlwarden.core.digests import DIGEST_SIZE, digest_prefixes, find_digest  # (re-exported: the list vocabulary)
from urlwarden.core import canon
from urlwarden.errors import ListError
from urlwarden.core.fsutil import write_atomically

__all__ = [
    "DIGEST_SIZE",
    "FORMATS",
    "HostKeys",
    "MAX_ENTRY_LENGTH",
    "MAX_LABEL_LENGTH",
    "MAX_LIST_ENTRIES",
    "MAX_REPORTED_PROBLEMS",
    "ListSpec",
    "ParsedList",
    "digest",
    "digest_prefixes",
    "find_digest",
    "load_list",
    "make_spec",
    "parse_list_spec",
    "parse_text",
    "write_sha256_list",
]

FORMATS = ("plain", "sha256", "csv")
"""List formats, as named in ``FILE:FORMAT``."""


MAX_REPORTED_PROBLEMS = 5
"""Bad lines reported by position and reason; the rest are only counted."""

MAX_ENTRY_LENGTH = 8192
"""Longest accepted entry line or cell, in characters (longer is a bad line, never truncated)."""

MAX_LABEL_LENGTH = 200
"""Longest accepted ``id`` or ``category`` value: they end up in logs and block pages."""

MAX_LIST_ENTRIES = 50_000_000
"""A file with more entries is refused rather than allowed to exhaust memory (the largest
licensed lists hold about ten million)."""

_WRONG_FORMAT_SHARE = 0.5
"""A ``plain`` file in which more than this share of entry lines are SHA-256 digests is a
hashed list loaded with the wrong format."""

_EXTENSION_FORMATS = {".csv": "csv", ".sha256": "sha256"}
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HOST_KEY_PREFIX = "host:"
_INNER_WHITESPACE = re.compile(r"\s")
_CSV_COLUMNS = ("url", "sha256", "id", "category", "host_sha256")


@dataclass(frozen=True, slots=True)
class ListSpec:
    """Where a list lives, how to read it and the name verdicts report."""

    path: str
    format: str
    name: str


class HostKeys:
    """An immutable set of 32-byte host keys, held as one sorted blob (not a set of objects).

    A million-entry list has hundreds of thousands of host keys. As a `frozenset` they were
    that many Python objects: seconds to build when a list is loaded, a long walk for every
    full garbage collection, and a long pause to free when a reload drops the list. Here they
    are two buffers (the blob and an array of each key's first 8 bytes, for bisection), built
    and freed in milliseconds. It behaves like a frozenset of `bytes` for `in`, `len`,
    iteration (in ascending order), ``==`` (also against a set), ``<=``, ``|`` and ``-``.
    """

    __slots__ = ("blob", "prefixes")

    def __init__(self, keys: Iterable[bytes] = ()):
        keys = set(keys)
        if any(len(key) != DIGEST_SIZE for key in keys):
            raise ValueError(f"a host key is not {DIGEST_SIZE} bytes")
        blob = b"".join(sorted(keys))
        self._set(blob, digest_prefixes(blob))

    @classmethod
    def from_sorted_blob(cls, blob: bytes) -> HostKeys:
        """Keys already sorted and distinct, concatenated (as `blob` gives them back); trusted."""
        if len(blob) % DIGEST_SIZE:
            raise ValueError(f"a host-key blob is not a multiple of {DIGEST_SIZE} bytes")
        return cls._restore(blob, digest_prefixes(blob))

    @classmethod
    def _restore(cls, blob, prefixes) -> HostKeys:
        keys = cls.__new__(cls)
        keys._set(blob, prefixes)
        return keys

    def _set(self, blob, prefixes) -> None:
        object.__setattr__(self, "blob", blob)  # bytes, or a read-only mapping of them (snapfile)
        object.__setattr__(self, "prefixes", prefixes)

    def __setattr__(self, name, value):
        raise AttributeError("HostKeys is immutable")

    def find(self, prefix: int, key: bytes) -> bool:
        """Whether `key`, whose first 8 bytes read as a big-endian number are `prefix`, is here."""
        return find_digest(self.prefixes, self.blob, DIGEST_SIZE, prefix, key) >= 0

    def __contains__(self, key: object) -> bool:
        return type(key) is bytes and len(key) == DIGEST_SIZE and self.find(_PREFIX.unpack_from(key)[0], key)

    def __len__(self) -> int:
        return len(self.prefixes)

    def __iter__(self) -> Iterator[bytes]:
        blob = self.blob
        return (blob[i : i + DIGEST_SIZE] for i in range(0, len(blob), DIGEST_SIZE))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HostKeys):
            return memoryview(self.blob) == memoryview(other.blob)  # also when a blob is mapped
        if isinstance(other, (set, frozenset)):
            return len(other) == len(self) and all(key in self for key in other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.blob[:DIGEST_SIZE]) ^ len(self)

    def __le__(self, other: Iterable[bytes]) -> bool:
        return all(key in other for key in self)

    def __or__(self, other: Iterable[bytes]) -> HostKeys:
        return HostKeys((*self, *other))

    def __sub__(self, other: Iterable[bytes]) -> HostKeys:
        drop = set(other)
        return HostKeys(key for key in self if key not in drop)

    def __reduce__(self):
        return (HostKeys._restore, (self.blob, self.prefixes))

    def __repr__(self) -> str:
        return f"HostKeys(<{len(self)} keys>)"


_PREFIX = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class ParsedList:
    """One loaded list, columnar: entry ``i`` is ``digests[32*i:32*i+32]``, ``ids[i]``, ...

    digests           SHA-256 of each entry's canonical expression, in file order (duplicates kept)
    ids, categories   aligned with the entries (None for a row without one), or None when the
                      list has no such column
    host_keys         SHA-256 of every canonical host that has entries, or None when unknown
                      (a hashed list that declares none)
    max_folder_depth  the most "/" in a folder entry's path (1 for a whole-host entry, 0 when
                      there is none), so the matcher generates no deeper prefixes; None for
                      hashed lists, whose depth cannot be known
    bad_lines         lines skipped; problems holds the first few as "file:line: reason"
    """

    name: str
    path: str
    format: str
    digests: bytes
    ids: tuple[str | None, ...] | None
    categories: tuple[str | None, ...] | None
    host_keys: HostKeys | None
    max_folder_depth: int | None
    bad_lines: int
    problems: tuple[str, ...]

    def __post_init__(self):
        if self.host_keys is not None and type(self.host_keys) is not HostKeys:
            object.__setattr__(self, "host_keys", HostKeys(self.host_keys))  # any set of keys given

    @property
    def count(self) -> int:
        """Entries loaded (duplicates included)."""
        return len(self.digests) // DIGEST_SIZE

    @property
    def hashed(self) -> bool:
        """Whether the list names its entries only by digest (``sha256`` or a hashed csv)."""
        return self.max_folder_depth is None

    def digest_at(self, index: int) -> bytes:
        start = index * DIGEST_SIZE
        return self.digests[start : start + DIGEST_SIZE]


def digest(text: str) -> bytes:
    """The 32-byte SHA-256 of a canonical expression or host (canonical text is ASCII)."""
    return hashlib.sha256(text.encode("ascii")).digest()


# --- specs -------------------------------------------------------------------------------------


def make_spec(path: str | os.PathLike[str], format: str | None = None, name: str | None = None) -> ListSpec:
    """A validated `ListSpec`; the format defaults from the extension, the name to the stem."""
    text = os.fspath(path)
    if not text:
        raise ListError("empty list path")
    if format is None:
        format = _EXTENSION_FORMATS.get(Path(text).suffix.lower(), "plain")
    elif format not in FORMATS:
        raise ListError(f"{text}: unknown list format {format!r} (known: {', '.join(FORMATS)})")
    return ListSpec(path=text, format=format, name=name or Path(text).stem)


def parse_list_spec(text: str) -> ListSpec:
    """Parse the command-line form ``FILE[:FORMAT]``.

    The text after the last ``:`` is a format unless it contains a path separator, so
    ``lists/a.txt:csv`` is a csv file and ``C:\\lists\\a.txt`` a plain one; a file whose name
    itself contains ``:`` is written with its format (``odd:name.txt:plain``).
    """
    path, colon, format = text.rpartition(":")
    if not colon or "/" in format or "\\" in format:
        return make_spec(text)
    return make_spec(path, format)


# --- loading -----------------------------------------------------------------------------------


def load_list(spec: ListSpec) -> ParsedList:
    """Read and parse the file `spec` names; `ListError` when it cannot be used at all."""
    try:
        # utf-8-sig: spreadsheet exports often start with a byte order mark.
        with open(spec.path, encoding="utf-8-sig", errors="strict", newline="") as f:
            return _parse_lines(_checked_lines(f, spec.path), spec)
    except UnicodeDecodeError as exc:
        bad_byte = exc.object[exc.start : exc.start + 1].hex()
        raise ListError(f"{spec.path}: not UTF-8 text (invalid byte 0x{bad_byte})") from None
    except OSError as exc:
        raise ListError(f"{spec.path}: cannot read ({exc.strerror or exc})") from None


def parse_text(text: str, spec: ListSpec) -> ParsedList:
    """Parse list text as if read from ``spec.path`` (for tests and tools)."""
    text = text.removeprefix("\ufeff")
    return _parse_lines(_checked_lines(io.StringIO(text, newline=""), spec.path), spec)


def _checked_lines(lines: Iterable[str], path: str) -> Iterator[str]:
    """Yield lines, refusing binary input (a NUL byte) outright."""
    for number, line in enumerate(lines, 1):
        if "\x00" in line:
            raise ListError(f"{path}: contains NUL bytes at line {number} (a binary file?)")
        yield line


def _parse_lines(lines: Iterator[str], spec: ListSpec) -> ParsedList:
    if spec.format == "plain":
        return _parse_plain(lines, spec)
    if spec.format == "sha256":
        return _parse_sha256(lines, spec)
    if spec.format == "csv":
        return _parse_csv(lines, spec)
    raise ListError(f"{spec.path}: unknown list format {spec.format!r} (known: {', '.join(FORMATS)})")


class _BadLine(ValueError):
    """One entry that cannot be used; its message is the reason reported."""


class _Collector:
    """Accumulates one file's entries while it is read (private, mutable, short-lived)."""

    def __init__(
        self, spec: ListSpec, *, hashed: bool, with_ids: bool = False, with_categories: bool = False
    ):
        self.spec = spec
        self.hashed = hashed
        self.digests = bytearray()
        self.ids: list[str | None] | None = [] if with_ids else None
        self.categories: list[str | None] | None = [] if with_categories else None
        self.hosts: set[str] = set()
        self.host_keys: set[bytes] = set()
        self.max_depth = 0
        self.bad_lines = 0
        self.problems: list[str] = []
        self.entry_lines = 0
        self.digest_lines = 0

    @property
    def count(self) -> int:
        return len(self.digests) // DIGEST_SIZE

    def bad(self, line: int, reason: str) -> None:
        self.bad_lines += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(f"{self.spec.path}:{line}: {reason}")

    def add_url(self, line: int, text: str, entry_id: str | None = None, category: str | None = None) -> None:
        self.entry_lines += 1
        if _looks_like_digest(text):
            self.digest_lines += 1
            self.bad(line, "a SHA-256 digest, not a URL (hashed entries belong in a sha256 list)")
            return
        try:
            cu = _url_entry(text)
        except _BadLine as exc:
            self.bad(line, str(exc))
            return
        if cu.query is None and cu.path.endswith("/"):
            self.max_depth = max(self.max_depth, cu.path.count("/"))
        self.hosts.add(cu.host)
        self._add(digest(cu.expression), entry_id, category)

    def add_digest(self, value: bytes, entry_id: str | None = None, category: str | None = None) -> None:
        self.entry_lines += 1
        self._add(value, entry_id, category)

    def _add(self, value: bytes, entry_id: str | None, category: str | None) -> None:
        if self.count >= MAX_LIST_ENTRIES:
            raise ListError(f"{self.spec.path}: more than {MAX_LIST_ENTRIES} entries")
        self.digests += value
        if self.ids is not None:
            self.ids.append(entry_id)
        if self.categories is not None:
            self.categories.append(category)

    def finish(self) -> ParsedList:
        path = self.spec.path
        if not self.hashed and self.digest_lines > _WRONG_FORMAT_SHARE * self.entry_lines:
            raise ListError(
                f"{path}: looks like a sha256 list ({self.digest_lines} of {self.entry_lines} "
                f"entries are SHA-256 digests); load it as {path}:sha256"
            )
        if not self.digests:
            detail = f" ({self.bad_lines} bad lines; first: {self.problems[0]})" if self.problems else ""
            raise ListError(f"{path}: no valid entries{detail}")
        if self.hashed:
            host_keys = HostKeys(self.host_keys) if self.host_keys else None
        else:
            host_keys = HostKeys(map(digest, self.hosts))
        return ParsedList(
            name=self.spec.name,
            path=path,
            format=self.spec.format,
            digests=bytes(self.digests),
            ids=_column(self.ids),
            categories=_column(self.categories),
            host_keys=host_keys,
            max_folder_depth=None if self.hashed else self.max_depth,
            bad_lines=self.bad_lines,
            problems=tuple(self.problems),
        )


def _column(values: list[str | None] | None) -> tuple[str | None, ...] | None:
    """An aligned column, or None when no row has a value (nothing to carry around)."""
    if values is None or not any(values):
        return None
    return tuple(values)


def _looks_like_digest(text: str) -> bool:
    lowered = text.lower().removeprefix(_HOST_KEY_PREFIX)
    return _HEX64.match(lowered) is not None


def _url_entry(text: str) -> canon.CanonicalURL:
    """Canonicalize one URL entry, or `_BadLine` saying why it cannot be one."""
    if len(text) > MAX_ENTRY_LENGTH:
        raise _BadLine(f"entry longer than {MAX_ENTRY_LENGTH} characters")
    if _INNER_WHITESPACE.search(text):
        # canon would keep it as %20, silently turning "host/ # note" into another entry.
        raise _BadLine("contains whitespace (no inline comments; write a space in a URL as %20)")
    try:
        cu = canon.parse(text)
    except ValueError as exc:
        raise _BadLine(f"not a URL: {exc}") from None
    if cu.query is None and cu.path.endswith("/") and cu.path.count("/") > canon.MAX_PATH_PREFIXES:
        raise _BadLine(
            f"folder entry deeper than {canon.MAX_PATH_PREFIXES} levels cannot match below it"
        )
    return cu


def _hex_digest(text: str, what: str = "SHA-256") -> bytes:
    """32 bytes from 64 hex digits (either case), or `_BadLine`."""
    lowered = text.lower()
    if not _HEX64.match(lowered):
        raise _BadLine(f"not a {what} digest (64 hex digits)")
    return bytes.fromhex(lowered)


def _label(text: str, column: str) -> str | None:
    """An id or category value: None when empty; `_BadLine` when unfit for logs."""
    if not text:
        return None
    if len(text) > MAX_LABEL_LENGTH or not text.isprintable():
        raise _BadLine(f"{column} is not printable or longer than {MAX_LABEL_LENGTH} characters")
    return text


def _entry_lines(lines: Iterator[str]) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of every line that is not blank or a ``#`` comment."""
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if text and not text.startswith("#"):
            yield number, text


def _parse_plain(lines: Iterator[str], spec: ListSpec) -> ParsedList:
    out = _Collector(spec, hashed=False)
    for number, text in _entry_lines(lines):
        if out.entry_lines == 0 and _looks_like_csv_header(text):
            raise ListError(
                f"{spec.path}: looks like a csv list (header {text!r}); load it as {spec.path}:csv"
            )
        out.add_url(number, text)
    return out.finish()


def _looks_like_csv_header(text: str) -> bool:
    cells = [cell.strip().lower() for cell in text.split(",")]
    return len(cells) > 1 and ("url" in cells or "sha256" in cells)


def _parse_sha256(lines: Iterator[str], spec: ListSpec) -> ParsedList:
    out = _Collector(spec, hashed=True)
    for number, text in _entry_lines(lines):
        try:
            if text.lower().startswith(_HOST_KEY_PREFIX):
                out.host_keys.add(_hex_digest(text[len(_HOST_KEY_PREFIX) :], "host SHA-256"))
            else:
                out.add_digest(_hex_digest(text))
        except _BadLine as exc:
            out.bad(number, str(exc))
    return out.finish()


def _parse_csv(lines: Iterator[str], spec: ListSpec) -> ParsedList:
    reader = csv.reader(lines)
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise ListError(f"{spec.path}: empty csv file (a header row is required)")
        columns = _csv_columns(header, spec.path)
        hashed = "sha256" in columns
        out = _Collector(spec, hashed=hashed, with_ids="id" in columns, with_categories="category" in columns)
        for row in reader:
            if any(cell.strip() for cell in row):
                _csv_row(out, reader.line_num, row, columns)
    except csv.Error as exc:
        raise ListError(f"{spec.path}:{reader.line_num}: malformed csv ({exc})") from None
    return out.finish()


def _csv_columns(header: list[str], path: str) -> dict[str, int]:
    """Column name -> index for the columns urlwarden reads; `ListError` for an unusable header."""
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = cell.strip().lower()
        if name not in _CSV_COLUMNS:
            continue  # licensors' files carry extra columns
        if name in columns:
            raise ListError(f"{path}: csv column {name!r} appears twice")
        columns[name] = index
    if ("url" in columns) == ("sha256" in columns):
        found = "both" if "url" in columns else "neither"
        raise ListError(
            f"{path}: the csv header needs exactly one of a 'url' or a 'sha256' column, found {found} "
            f"(header: {','.join(cell.strip() for cell in header)[:200]!r})"
        )
    return columns


def _csv_row(out: _Collector, number: int, row: list[str], columns: dict[str, int]) -> None:
    def cell(name: str) -> str:
        index = columns.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    try:
        entry_id = _label(cell("id"), "id")
        category = _label(cell("category"), "category")
        if "url" in columns:
            url = cell("url")
            if not url:
                raise _BadLine("empty url cell")
            out.add_url(number, url, entry_id, category)
            return
        value, host = cell("sha256"), cell("host_sha256")
        host_key = _hex_digest(host, "host_sha256") if host else None
        if value:
            out.add_digest(_hex_digest(value), entry_id, category)
        elif host_key is None:
            raise _BadLine("empty sha256 cell")
        if host_key is not None:
            out.host_keys.add(host_key)
    except _BadLine as exc:
        out.bad(number, str(exc))


# --- writing hashed lists ----------------------------------------------------------------------


def write_sha256_list(parsed: ParsedList, out_path: str | os.PathLike[str]) -> int:
    """Write `parsed` as a hashed list, atomically; returns the number of entries written.

    ``OUT.csv`` gets a csv with columns sha256,id,category,host_sha256 (host keys on rows of
    their own); anything else a ``sha256`` file with a comment header. Entries are deduplicated
    (the first occurrence keeps its id) and sorted, so the output does not reveal list order.
    A list with ids or categories can only be written as csv: the other format would lose them.
    """
    out = os.fspath(out_path)
    as_csv = Path(out).suffix.lower() == ".csv"
    if not as_csv and (parsed.ids is not None or parsed.categories is not None):
        raise ListError(f"{out}: {parsed.path} has ids or categories; write to a .csv file to keep them")
    rows = _unique_rows(parsed)
    hosts = list(parsed.host_keys) if parsed.host_keys is not None else []  # ascending
    text = _csv_text(rows, hosts) if as_csv else _sha256_text(parsed, rows, hosts)
    _write_atomically(out, text)
    return len(rows)


def _unique_rows(parsed: ParsedList) -> list[tuple[bytes, str | None, str | None]]:
    first: dict[bytes, int] = {}
    for index in range(parsed.count):
        first.setdefault(parsed.digest_at(index), index)
    return [
        (
            value,
            parsed.ids[index] if parsed.ids is not None else None,
            parsed.categories[index] if parsed.categories is not None else None,
        )
        for value, index in sorted(first.items())
    ]


def _sha256_text(parsed: ParsedList, rows: list, hosts: list[bytes]) -> str:
    header = [
        f"# urlwarden hashed list, written by `urlwarden hash-list` from list {parsed.name!r}",
        f"# {len(rows)} entries: SHA-256 (hex) of each canonical expression (see docs/lists.md).",
    ]
    if hosts:
        header.append(f"# {len(hosts)} host keys (host:<hex>): SHA-256 of each canonical host with entries.")
    else:
        header.append("# no host keys: the source list had none, so every HTTPS host must be inspected.")
    body = [value.hex() for value, _, _ in rows] + [_HOST_KEY_PREFIX + host.hex() for host in hosts]
    return "\n".join(header + body) + "\n"


def _csv_text(rows: list, hosts: list[bytes]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sha256", "id", "category", "host_sha256"])
    for value, entry_id, category in rows:
        writer.writerow([value.hex(), entry_id or "", category or "", ""])
    for host in hosts:
        writer.writerow(["", "", "", host.hex()])
    return buffer.getvalue()


def _write_atomically(path: str, text: str) -> None:
    """`fsutil.write_atomically` for text, with its OSError as a ListError naming the file."""
    try:
        write_atomically(path, (text.encode("utf-8"),))
    except OSError as exc:
        raise ListError(f"{path}: cannot write ({exc.strerror or exc})") from None

