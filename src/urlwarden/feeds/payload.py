"""The feed wire format: full lists, diffs, the list checksum and the detached signature.

Policy (docs/feeds.md has the publisher's view):

* A **full list** is a list file in the feed's declared format (``plain``, ``sha256``, ``csv``;
  parsed by `urlwarden.core.lists.parse_text`). It may start with one header line
  ``# urlwarden-list v1 serial=<serial> sha256=<checksum>`` (both fields optional), which is
  removed before parsing, also for csv. A body whose first non-blank character is ``<`` is
  refused outright (an HTML error page or XML, never a list).
* A **diff** starts with ``# urlwarden-diff v1 base=<serial> serial=<serial> sha256=<checksum>``
  (all three required), followed by ``+<entry>`` and ``-<entry>`` lines in the feed's format
  (``plain``: URL expressions; ``sha256``: hex digests and ``host:<hex>`` host keys). Blank
  lines and ``#`` comments are ignored; any other line makes the diff invalid. The result is
  ``(current - removed) | added`` as sets of entries; csv feeds get no diffs (their rows carry
  ids). A diff applies only to the list whose serial is `base`.
* The **checksum** of a list is the hex SHA-256 of its distinct entry digests (the 32-byte
  values of `ParsedList.digests`), sorted and concatenated. It is the same for a plain list and
  its hashed form and ignores order, duplicates, comments, host keys, ids and categories. A diff
  whose result does not have the diff's checksum is discarded (the manager fetches a full list).
* The **signature** is a detached Ed25519 signature (64 bytes, raw or base64) over the exact
  payload bytes (after HTTP content decoding, header line included). The public key is a PEM
  file or base64 (the 32 raw bytes, or a DER SubjectPublicKeyInfo).
* Lists handled here are *normalized*: distinct digests in ascending order (a duplicate keeps its
  first id and category), so comparing and diffing two versions is cheap.
* Host keys under diffs: a ``plain`` diff adds the hosts of added entries but never removes a
  host key (a removed entry's host may still have other entries; a spare host key only makes
  the proxy inspect that host). A ``sha256`` diff adds and removes ``host:`` keys as written; a
  hashed list without host keys stays without (keys for some hosts only would hide the others).

Worked example (a ``sha256`` feed at serial 41 holding the digests of ``a.test/`` and
``b.test/``)::

    # urlwarden-diff v1 base=41 serial=42 sha256=<checksum of {b.test/, c.test/}>
    -<sha256("a.test/")>
    +<sha256("c.test/")>

gives serial 42 holding ``b.test/`` and ``c.test/``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from urlwarden.errors import FeedError, ListError
from urlwarden.core.digests import is_sorted_distinct
from urlwarden.core.lists import DIGEST_SIZE, MAX_LIST_ENTRIES, HostKeys, ListSpec, ParsedList, parse_text

__all__ = [
    "DIFF_FORMATS",
    "DIFF_MAGIC",
    "LIST_MAGIC",
    "SIGNATURE_SIZE",
    "WIRE_VERSION",
    "Diff",
    "ListHeader",
    "apply_diff",
    "checksum",
    "decode_signature",
    "encode_diff",
    "encode_list_header",
    "is_diff",
    "load_public_key",
    "normalize",
    "parse_diff",
    "parse_full",
    "verify_signature",
]

DIFF_MAGIC = "# urlwarden-diff"
LIST_MAGIC = "# urlwarden-list"
WIRE_VERSION = "v1"
"""The header lines are ``<MAGIC> <WIRE_VERSION> key=value ...``; another version is refused
(a diff is never mistaken for a full list, whatever its version)."""
DIFF_FORMATS = ("plain", "sha256")
"""List formats that can be updated by diffs (csv rows carry ids, so csv feeds get full lists)."""

SIGNATURE_SIZE = 64
MAX_HEADER_LENGTH = 1024
"""Longest accepted diff or list header line, in characters."""

MAX_PUBLIC_KEY_FILE = 16 * 1024

_SERIAL = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HOST_PREFIX = "host:"


@dataclass(frozen=True, slots=True)
class ListHeader:
    """The optional first line of a full list."""

    serial: str | None = None
    checksum: str | None = None


@dataclass(frozen=True, slots=True)
class Diff:
    """A parsed diff. `added` / `removed` are the entry texts with their line numbers."""

    base: str
    serial: str
    checksum: str
    added: tuple[tuple[int, str], ...]
    removed: tuple[tuple[int, str], ...]


# --- checksum and normalization -----------------------------------------------------------------


def checksum(parsed: ParsedList) -> str:
    """Hex SHA-256 of the list's distinct entry digests, sorted and concatenated."""
    blob = parsed.digests
    if not is_sorted_distinct(blob):
        blob = b"".join(sorted(set(_chunks(blob))))
    return hashlib.sha256(blob).hexdigest()


def normalize(parsed: ParsedList) -> ParsedList:
    """The same list with distinct digests in ascending order (first id/category kept)."""
    if is_sorted_distinct(parsed.digests):  # stops at the first disorder: cheap either way
        return parsed
    if parsed.ids is None and parsed.categories is None:  # the common case: one sort
        return replace(parsed, digests=b"".join(sorted(set(_chunks(parsed.digests)))))
    first: dict[bytes, int] = {}
    for index, value in enumerate(_chunks(parsed.digests)):
        first.setdefault(value, index)
    order = [first[value] for value in sorted(first)]
    return replace(
        parsed,
        digests=b"".join(parsed.digest_at(i) for i in order),
        ids=_pick(parsed.ids, order),
        categories=_pick(parsed.categories, order),
    )


def _pick(column: tuple[str | None, ...] | None, order: list[int]) -> tuple[str | None, ...] | None:
    if column is None:
        return None
    picked = tuple(column[i] for i in order)
    return picked if any(picked) else None


def _chunks(blob: bytes) -> Iterable[bytes]:
    return (blob[i : i + DIGEST_SIZE] for i in range(0, len(blob), DIGEST_SIZE))


class _SortedDigests:
    """A read-only sequence view of a normalized digest blob, for `bisect`."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes):
        self.blob = blob

    def __len__(self) -> int:
        return len(self.blob) // DIGEST_SIZE

    def __getitem__(self, index: int) -> bytes:
        return self.blob[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE]


# --- full lists ----------------------------------------------------------------------------------


def parse_full(body: bytes, format: str, feed: str) -> tuple[ParsedList, ListHeader]:
    """Parse a full list (optional header line, then a list file): a normalized `ParsedList`.

    `FeedError` when the body is not UTF-8, its header is malformed, or `lists.parse_text`
    refuses it (binary, wrong format, no valid entry).
    """
    text = _decode(body, feed)
    header = ListHeader()
    first, newline, rest = text.partition("\n")
    if _has_magic(first.rstrip("\r"), LIST_MAGIC):
        header = _parse_list_header(first.rstrip("\r"), feed)
        text = "\n" + rest if newline else ""  # keep line numbers right
    if text.lstrip()[:1] == "<":
        raise FeedError(f"feed {feed!r}: looks like HTML or XML (an error page?), not a {format} list")
    path = f"feed:{feed}"
    try:
        parsed = parse_text(text, ListSpec(path=path, format=format, name=feed))
    except ListError as exc:
        raise FeedError(f"feed {feed!r}: not a valid {format} list: {_strip_path(exc, path)}") from None
    return normalize(parsed), header


def encode_list_header(serial: str | None = None, checksum: str | None = None) -> str:
    """The ``# urlwarden-list v1 ...`` line (with newline) a publisher may put first."""
    fields = [LIST_MAGIC, WIRE_VERSION]
    if serial is not None:
        fields.append(f"serial={_checked_serial(serial)}")
    if checksum is not None:
        fields.append(f"sha256={_checked_checksum(checksum)}")
    return " ".join(fields) + "\n"


def _parse_list_header(line: str, feed: str) -> ListHeader:
    fields = _header_fields(line, LIST_MAGIC, feed, "list")
    unknown = set(fields) - {"serial", "sha256"}
    if unknown:
        raise FeedError(f"feed {feed!r}: list header has unknown field {sorted(unknown)[0]!r}")
    serial = fields.get("serial")
    value = fields.get("sha256")
    return ListHeader(
        serial=_serial_field(serial, feed) if serial is not None else None,
        checksum=_checksum_field(value, feed) if value is not None else None,
    )


# --- diffs ---------------------------------------------------------------------------------------


def is_diff(body: bytes) -> bool:
    """Whether `body` is a diff (its first line is the diff header)."""
    first = body.removeprefix(b"\xef\xbb\xbf")[:MAX_HEADER_LENGTH].split(b"\n", 1)[0]
    return _has_magic(first.decode("ascii", "replace").rstrip("\r"), DIFF_MAGIC)


def _has_magic(line: str, magic: str) -> bool:
    return line.startswith(magic) and (len(line) == len(magic) or line[len(magic)].isspace())


def parse_diff(body: bytes, feed: str) -> Diff:
    """Parse a diff; `FeedError` when it is malformed (the caller then wants a full list)."""
    text = _decode(body, feed)
    lines = text.split("\n")
    header = lines[0].rstrip("\r")
    fields = _header_fields(header, DIFF_MAGIC, feed, "diff")
    for key in ("base", "serial", "sha256"):
        if key not in fields:
            raise FeedError(f"feed {feed!r}: diff header lacks {key}=")
    unknown = set(fields) - {"base", "serial", "sha256"}
    if unknown:
        raise FeedError(f"feed {feed!r}: diff header has unknown field {sorted(unknown)[0]!r}")
    added: list[tuple[int, str]] = []
    removed: list[tuple[int, str]] = []
    for number, raw in enumerate(lines[1:], 2):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line[0] == "+":
            added.append((number, line[1:].strip()))
        elif line[0] == "-":
            removed.append((number, line[1:].strip()))
        else:
            raise FeedError(f"feed {feed!r}: diff line {number} starts with neither '+' nor '-'")
        if len(added) + len(removed) > MAX_LIST_ENTRIES:
            raise FeedError(f"feed {feed!r}: diff has more than {MAX_LIST_ENTRIES} lines")
    return Diff(
        base=_serial_field(fields["base"], feed),
        serial=_serial_field(fields["serial"], feed),
        checksum=_checksum_field(fields["sha256"], feed),
        added=tuple(added),
        removed=tuple(removed),
    )


def encode_diff(
    base: str, serial: str, checksum: str, added: Iterable[str] = (), removed: Iterable[str] = ()
) -> bytes:
    """A diff document (for publishers and tests): header, then ``-`` lines, then ``+`` lines."""
    header = (
        f"{DIFF_MAGIC} {WIRE_VERSION} base={_checked_serial(base)} serial={_checked_serial(serial)} "
        f"sha256={_checked_checksum(checksum)}"
    )
    lines = [header, *(f"-{entry}" for entry in removed), *(f"+{entry}" for entry in added)]
    return ("\n".join(lines) + "\n").encode("utf-8")


def apply_diff(current: ParsedList, diff: Diff, format: str, feed: str) -> ParsedList:
    """``(current - removed) | added`` as a normalized list, checked against the diff checksum.

    `current` is the list in force (normalized, plain or hashed form); `format` is the feed's
    format, in which the diff's entries are written. `FeedError` when the diff cannot apply
    (format without diffs, unusable entry lines, an entry both added and removed, too many
    entries, checksum mismatch). Does not check the base serial (the caller knows the current).
    """
    if format not in DIFF_FORMATS:
        raise FeedError(f"feed {feed!r}: diffs are not supported for {format} feeds (send full lists)")
    if current.ids is not None or current.categories is not None:
        raise FeedError(f"feed {feed!r}: cannot apply a diff to a list with ids or categories")
    add_digests, add_hosts, add_depth, bad, problems = _diff_entries(diff.added, format, feed, "added")
    del_digests, del_hosts, _, del_bad, del_problems = _diff_entries(diff.removed, format, feed, "removed")
    if bad or del_bad:
        first = (problems + del_problems)[0]
        raise FeedError(f"feed {feed!r}: diff has {bad + del_bad} unusable entry lines (first: {first})")
    both = set(add_digests) & set(del_digests)
    if both:
        raise FeedError(f"feed {feed!r}: diff both adds and removes {len(both)} entries")
    digests = _merge(current.digests, del_digests, add_digests)
    if len(digests) // DIGEST_SIZE > MAX_LIST_ENTRIES:
        raise FeedError(f"feed {feed!r}: diff result has more than {MAX_LIST_ENTRIES} entries")
    result = replace(
        current,
        digests=digests,
        host_keys=_diff_host_keys(current, format, add_hosts, del_hosts),
        max_folder_depth=None
        if current.max_folder_depth is None
        else max(current.max_folder_depth, add_depth),
        bad_lines=0,
        problems=(),
    )
    actual = hashlib.sha256(digests).hexdigest()
    if actual != diff.checksum:
        raise FeedError(
            f"feed {feed!r}: diff {diff.base} -> {diff.serial} gives checksum {actual[:16]}..., "
            f"expected {diff.checksum[:16]}..."
        )
    return result


def _diff_host_keys(
    current: ParsedList, format: str, added: set[bytes], removed: set[bytes]
) -> HostKeys | None:
    if current.host_keys is None:
        return None  # keys for some hosts only would hide entries on every other host
    if format == "plain":
        return current.host_keys | added  # see the module docstring: never removed by a diff
    keys = (current.host_keys - removed) | added
    return keys if keys else None


def _diff_entries(
    lines: tuple[tuple[int, str], ...], format: str, feed: str, what: str
) -> tuple[list[bytes], set[bytes], int, int, list[str]]:
    """(digests, host keys, max folder depth, bad lines, problems) of one side of a diff."""
    if not lines:
        return [], set(), 0, 0, []
    if format == "sha256":
        digests: list[bytes] = []
        hosts: set[bytes] = set()
        problems: list[str] = []
        for number, text in lines:
            lowered = text.lower()
            is_host = lowered.startswith(_HOST_PREFIX)
            value = lowered[len(_HOST_PREFIX) :] if is_host else lowered
            if not _HEX64.match(value):
                problems.append(f"line {number}: not a SHA-256 digest")
                continue
            (hosts.add if is_host else digests.append)(bytes.fromhex(value))
        return digests, hosts, 0, len(problems), problems
    # plain: let the list parser canonicalize, keeping the diff's line numbers
    last = lines[-1][0]
    slots = [""] * last
    for number, text in lines:
        slots[number - 1] = text
    path = f"diff({what})"
    try:
        parsed = parse_text("\n".join(slots), ListSpec(path=path, format="plain", name=feed))
    except ListError as exc:
        raise FeedError(f"feed {feed!r}: diff {what} entries unusable: {_strip_path(exc, path)}") from None
    digests = list(_chunks(parsed.digests))
    return (
        digests,
        set(parsed.host_keys or ()),
        parsed.max_folder_depth or 0,
        parsed.bad_lines,
        list(parsed.problems),
    )


def _merge(blob: bytes, removed: list[bytes], added: list[bytes]) -> bytes:
    """Remove and insert digests in a normalized blob: O(d log n) searches, one copy."""
    view = _SortedDigests(blob)
    size = len(view)
    drop: set[int] = set()
    for value in removed:
        i = bisect_left(view, value)
        if i < size and view[i] == value:
            drop.add(i)
    inserts: dict[int, list[bytes]] = {}
    for value in sorted(set(added)):
        i = bisect_left(view, value)
        if i < size and view[i] == value:
            continue  # already there
        inserts.setdefault(i, []).append(value)
    if not drop and not inserts:
        return blob
    parts: list[bytes] = []
    start = 0
    for position in sorted(drop | set(inserts)):
        parts.append(blob[start * DIGEST_SIZE : position * DIGEST_SIZE])
        parts.extend(inserts.get(position, ()))
        start = position + 1 if position in drop else position
    parts.append(blob[start * DIGEST_SIZE :])
    return b"".join(parts)


# --- signatures ----------------------------------------------------------------------------------


def load_public_key(value: str, feed: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 (32 raw bytes or DER SPKI) or a PEM file path."""
    if not isinstance(value, str) or not value.strip():
        raise FeedError(f"feed {feed!r}: public_key must be a PEM file path or base64 text")
    text = value.strip()
    raw = _b64(text)
    if raw is not None and len(raw) == 32:
        return Ed25519PublicKey.from_public_bytes(raw)
    if raw is not None and not os.path.exists(text):
        try:
            key = serialization.load_der_public_key(raw)
        except ValueError:
            key = None
        if isinstance(key, Ed25519PublicKey):
            return key
    try:
        with open(text, "rb") as f:
            data = f.read(MAX_PUBLIC_KEY_FILE + 1)
    except OSError as exc:
        raise FeedError(
            f"feed {feed!r}: public_key {text!r}: not base64 and cannot read file ({exc.strerror or exc})"
        ) from None
    if len(data) > MAX_PUBLIC_KEY_FILE:
        raise FeedError(f"feed {feed!r}: public_key {text!r}: file too large for a key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise FeedError(f"feed {feed!r}: public_key {text!r}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise FeedError(f"feed {feed!r}: public_key {text!r}: not an Ed25519 key ({type(key).__name__})")
    return key


def decode_signature(raw: bytes, feed: str) -> bytes:
    """64 signature bytes from raw bytes or base64 text; `FeedError` otherwise."""
    if len(raw) == SIGNATURE_SIZE:
        return raw
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    decoded = _b64(text) if text else None
    if decoded is None or len(decoded) != SIGNATURE_SIZE:
        raise FeedError(f"feed {feed!r}: signature is neither 64 bytes nor base64 of 64 bytes")
    return decoded


def verify_signature(body: bytes, signature: bytes | None, key: Ed25519PublicKey, feed: str) -> None:
    """`FeedError` unless `signature` is a valid Ed25519 signature of `body` under `key`."""
    if signature is None:
        raise FeedError(f"feed {feed!r}: signature required (public_key is set) but the source sent none")
    try:
        key.verify(decode_signature(signature, feed), body)
    except InvalidSignature:
        raise FeedError(
            f"feed {feed!r}: bad signature (the payload was not signed by the configured key)"
        ) from None


# --- helpers -------------------------------------------------------------------------------------


def _decode(body: bytes, feed: str) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedError(
            f"feed {feed!r}: not UTF-8 text (invalid byte 0x{body[exc.start : exc.start + 1].hex()} "
            f"at offset {exc.start})"
        ) from None


def _header_fields(line: str, magic: str, feed: str, what: str) -> dict[str, str]:
    if len(line) > MAX_HEADER_LENGTH:
        raise FeedError(f"feed {feed!r}: {what} header longer than {MAX_HEADER_LENGTH} characters")
    words = line[len(magic) :].split()
    if not words or words[0] != WIRE_VERSION:
        raise FeedError(f"feed {feed!r}: unsupported {what} version (expected {magic} {WIRE_VERSION})")
    fields: dict[str, str] = {}
    for item in words[1:]:
        key, eq, value = item.partition("=")
        if not eq or not key or key in fields:
            raise FeedError(f"feed {feed!r}: malformed {what} header field {item[:40]!r}")
        fields[key] = value
    return fields


def _serial_field(value: str, feed: str) -> str:
    if not _SERIAL.match(value):
        raise FeedError(f"feed {feed!r}: invalid serial {value[:70]!r} (1-64 of A-Z a-z 0-9 . _ : -)")
    return value


def _checksum_field(value: str, feed: str) -> str:
    lowered = value.lower()
    if not _HEX64.match(lowered):
        raise FeedError(f"feed {feed!r}: invalid checksum {value[:70]!r} (64 hex digits)")
    return lowered


def _checked_serial(value: str) -> str:
    if not isinstance(value, str) or not _SERIAL.match(value):
        raise ValueError(f"invalid serial {value!r}")
    return value


def _checked_checksum(value: str) -> str:
    if not isinstance(value, str) or not _HEX64.match(value.lower()):
        raise ValueError(f"invalid checksum {value!r}")
    return value.lower()


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _strip_path(exc: ListError, path: str) -> str:
    return str(exc).removeprefix(f"{path}: ")
