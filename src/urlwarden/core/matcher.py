"""The compiled lookup structure: an immutable snapshot of the loaded block and allow lists.

Policy:

* Safe Browsing semantics. A URL matches an entry when one of its lookup expressions
  (`canon.expressions`: host suffixes x path-with-query, path, directory prefixes) has the
  entry's digest. So ``host/`` covers the host and its subdomains, ``host/dir/`` everything
  below the folder, ``host/page`` that page with any query, ``host/page?q`` that query only.
* Allow lists override block lists: when any expression of a URL is on an allow list the
  verdict is "allow", whatever the block lists say. Among several hits the first expression
  in `canon.expressions` order is reported (exact host before its parents; for each host the
  path with query, the path, then the directory prefixes from "/" down).
* Plain and hashed lists are the same thing here (a set of SHA-256 digests), so they give
  identical verdicts and identical entry ids (``id`` column, else the digest's first 12 hex
  digits; never the URL, which must not end up in logs).
* Fast path: most requests go to hosts no list mentions. When every list has host keys, the
  host is read off the URL (`canon.fast_host`) and its suffixes' digests are looked up among
  the host keys (the answer is memoized per host); only a known host pays for full
  canonicalization and expression digests, and only its expressions are hashed. Any list
  without host keys switches this off (every URL then takes the full path).
* Lookup structure: per table, a one-hash bit filter (`FILTER_BITS_PER_KEY` bits or more per
  digest) turns almost every absent digest away with one bit; what passes it bisects sorted
  ``array('Q')``s of the digests' first 8 bytes and compares the rest. Host keys have a filter
  of their own, in front of the lists' own host-key sets. On the fast path only URLs on known
  hosts reach the tables, so their filters are left out there (quicker to build).
* Tables are made of segments. A large list whose digests are already sorted and distinct (a
  hashed list as `urlwarden hash-list` writes it, a feed's list, a compiled last-known-good)
  becomes a segment of its own that shares the list's digest blob (no copy, no sort: building
  it costs a few C-speed passes). All other lists are merged into one segment that keeps the
  other 24 bytes of each digest for confirmation. A digest in several lists is reported from
  the first list in the order given, whichever segment holds it.
* Memory: per digest 8 bytes of key, 2 to 4 of filter (only without the fast path), and the
  other 24 bytes (merged segment) or nothing (a shared segment uses the list's own blob); per
  host key 2 to 4 bytes of filter (the keys themselves are the lists' own `HostKeys`); ids and
  categories only when a list has them.
* A `Snapshot` never changes after `build`; lookups take no lock. A refresh builds a new one
  aside and the caller swaps it in with one assignment.

Worked example::

    snap = build([load_list(make_spec("lists/sample-block.txt"))])
    snap.match("https://www.listed.test/any/page?x=1")
        -> Verdict(action="block", list_name="sample-block", entry_id="<12 hex>",
                   category=None, expression="listed.test/")
    snap.host_status("paths.test")  -> HostStatus.PATHS
"""

from __future__ import annotations

import enum
import hashlib
import mmap
import struct
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, islice, repeat
from operator import and_, eq, itemgetter, lshift, or_, rshift

from urlwarden.core import canon
from urlwarden.core.digests import strictly_increasing
from urlwarden.core.lists import DIGEST_SIZE, ParsedList, digest_prefixes, find_digest

__all__ = [
    "ALLOW",
    "BLOCK",
    "ENTRY_ID_HEX_DIGITS",
    "HostStatus",
    "ListStats",
    "Snapshot",
    "SnapshotStats",
    "Verdict",
    "build",
]

BLOCK = "block"
ALLOW = "allow"

ENTRY_ID_HEX_DIGITS = 12
"""Entry id of a list without ids: this many hex digits of the entry digest (48 bits, so
distinct entries of one list practically never share an id)."""

PREFIX_SIZE = 8
"""Bytes of each digest kept in the sorted key array; the rest is compared on a key hit."""

FILTER_BITS_PER_KEY = 16
"""Least bits per key of the one-hash filters in front of each table and host index (rounded up
to a power of two of bits in all, so 16 to 32): 3 to 6 % of the keys never added pass it and
pay a bisection or a set lookup; costs 2 to 4 bytes per key."""

SHARED_SEGMENT_MIN_ENTRIES = 65_536
"""A sorted, distinct list at least this large gets a segment of its own sharing its blob;
smaller lists are merged (each segment costs one more probe per lookup)."""

HOST_MEMO_SIZE = 32_768
"""Hosts per generation of the per-snapshot host memo (two generations: about 7 MB when both
are full of typical names). Real traffic requests many URLs per host, so most requests skip
hashing host suffixes; the memo should hold the hosts a proxy sees in a few minutes."""

MAX_CACHED_HOST_LENGTH = 253
"""Longer names (not valid DNS names) are looked up but not remembered, bounding the memo."""

_REST_SIZE = DIGEST_SIZE - PREFIX_SIZE
_ENTRY_BITS = 32  # entry numbers while building (MAX_LIST_ENTRIES per list is far below 2**32)
_ENTRY_MASK = (1 << _ENTRY_BITS) - 1
_prefix_of = struct.Struct(">Q").unpack_from  # big-endian, so int order == byte order
_REST_RECORD = struct.Struct(f"{PREFIX_SIZE}x{DIGEST_SIZE - PREFIX_SIZE}s")  # a digest but its key
_fast_host = canon.fast_host


def _sha256_constructor():
    """CPython's own SHA-256 when present: for the short strings hashed here (host names and
    lookup expressions) it is about 15 % faster per call than OpenSSL's, same digests."""
    for module in ("_sha2", "_sha256"):  # 3.12+, 3.11
        try:
            constructor = getattr(__import__(module), "sha256")
        except (ImportError, AttributeError):
            continue
        if constructor(b"abc").digest() == hashlib.sha256(b"abc").digest():
            return constructor
    return hashlib.sha256


_sha256 = _sha256_constructor()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What matched a URL. `expression` is the request's lookup expression that hit."""

    action: str  # BLOCK or ALLOW
    list_name: str
    entry_id: str
    category: str | None
    expression: str

    @property
    def blocked(self) -> bool:
        return self.action == BLOCK


class HostStatus(enum.Enum):
    """What the block lists say about a whole host (for deciding on TLS interception).

    CLEAN    no block entry for the host or any of its suffixes: no URL on it can be blocked
    PATHS    entries below host level, or a whole-host block with allow entries on the host:
             the paths must be inspected
    WHOLE    every URL is blocked (a ``suffix/`` entry) and no allow entry touches the host
    UNKNOWN  a block list is hashed without host keys, so entries on this host cannot be ruled
             out: the proxy must treat it like PATHS
    """

    CLEAN = "clean"
    PATHS = "paths"
    WHOLE = "whole"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class ListStats:
    name: str
    action: str
    format: str
    path: str
    entries: int  # loaded from the file (duplicates included)
    bad_lines: int
    host_keys: int | None  # None: the list has none (hashed without host keys)


@dataclass(frozen=True, slots=True)
class SnapshotStats:
    lists: tuple[ListStats, ...]
    block_entries: int  # distinct digests over all block lists
    allow_entries: int
    block_hosts: int  # distinct host-key prefixes
    allow_hosts: int
    max_prefixes: int  # directory prefixes generated per URL
    fast_path: bool  # False when some list has no host keys


def _joined(key_arrays: Sequence[array]) -> array:
    """The keys of several arrays in one (the only one itself: no copy)."""
    if len(key_arrays) == 1:
        return key_arrays[0]
    return array("Q", b"".join(keys.tobytes() for keys in key_arrays))


_PASS_ALL = (b"\xff", 61)
"""A `_bit_filter` value that every key passes (8 bits, all set)."""


def _bit_filter(keys: array) -> tuple[bytes, int]:
    """A one-hash filter over 64-bit keys: a bitmap with bit ``key >> shift`` set for every key,
    and `shift`. It has a power of two of bits, `FILTER_BITS_PER_KEY` to twice that per key.

    Built by C-speed passes, without a Python-level loop over the keys: one byte per position
    is set to "1" through `map`, and the digits are read as a base-2 number. That keeps
    compiling a list of millions of entries well under a second.
    """
    bits = max(3, (len(keys) * FILTER_BITS_PER_KEY - 1).bit_length())
    shift = 64 - bits
    digits = bytearray(b"0") * (1 << bits)
    any(map(digits.__setitem__, map(rshift, keys, repeat(shift)), repeat(ord("1"))))
    digits.reverse()  # the first digit is the most significant: position 0 must come last
    return int(digits, 2).to_bytes(1 << (bits - 3), "little"), shift


class _Segment:
    """Distinct digests in key order, with where each came from.

    keys                the digests' first 8 bytes (big-endian numbers), ascending
    blob, stride, skip  digest ``i`` minus its first `skip` bytes is ``blob[i*stride:][:32-skip]``
                        (a shared list blob: stride 32, skip 0; a merged table: 24 and 8)
    sources             list number of each digest, or None when all come from `first_list`
    ids, categories     aligned with the digests, or None
    """

    __slots__ = ("keys", "count", "blob", "stride", "skip", "first_list", "sources", "ids", "categories")

    def __init__(self, keys, blob, stride, skip, first_list, sources, ids, categories):
        self.keys = keys
        self.count = len(keys)
        self.blob = blob
        self.stride = stride
        self.skip = skip
        self.first_list = first_list
        self.sources = sources
        self.ids = ids
        self.categories = categories

    def __len__(self) -> int:
        return self.count

    def find(self, key: int, value: bytes) -> int:
        """Position of the 32-byte digest `value` (whose first 8 bytes are `key`), or -1."""
        return find_digest(self.keys, self.blob, self.stride, key, value, self.skip)

    def list_of(self, i: int) -> int:
        return self.sources[i] if self.sources is not None else self.first_list

    def digest_at(self, i: int) -> bytes:
        start = i * self.stride
        rest = self.blob[start : start + DIGEST_SIZE - self.skip]
        return rest if not self.skip else struct.pack(">Q", self.keys[i]) + rest


def _shared_segment(pl: ParsedList, number: int) -> _Segment | None:
    """A segment over `pl`'s own digest blob, when its digests are sorted and distinct."""
    blob = pl.digests
    if type(blob) not in (bytes, mmap.mmap) or len(blob) % DIGEST_SIZE:  # immutable blobs only
        return None
    keys = digest_prefixes(blob)
    if not strictly_increasing(keys):
        return None  # unsorted, duplicated or colliding prefixes
    return _Segment(keys, blob, DIGEST_SIZE, 0, number, None, pl.ids, pl.categories)


def _merged_segment(lists: Sequence[tuple[int, ParsedList]]) -> _Segment:
    blob = b"".join(pl.digests for _, pl in lists)
    order, keys = _distinct_sorted(blob)
    rests = list(map(itemgetter(0), _REST_RECORD.iter_unpack(blob)))  # every digest but its key
    rest = b"".join(map(rests.__getitem__, order))
    del rests
    sources = None
    if len(lists) > 1:
        owner = array("H")  # list number of each position in `blob`
        for number, pl in lists:
            owner.extend(array("H", [number]) * pl.count)
        sources = array("H", map(owner.__getitem__, order))
    plain = [pl for _, pl in lists]
    return _Segment(
        keys, rest, _REST_SIZE, PREFIX_SIZE, lists[0][0] if lists else 0, sources,
        _aligned(plain, order, "ids"), _aligned(plain, order, "categories"),
    )


class _Table:
    """Distinct digests of one kind of list (all block lists, or all allow lists): segments,
    and one bit filter over all their keys that turns most absent digests away first.

    With `with_filter` False the filter lets everything through (building it costs about a
    tenth of a second per million entries): for snapshots on the fast path, where only URLs on
    hosts with entries ever reach the tables, it would save next to nothing.
    """

    __slots__ = ("segments", "names", "distinct", "filter", "filter_shift")

    def __init__(self, lists: Sequence[ParsedList], with_filter: bool = True):
        self.names = tuple(pl.name for pl in lists)
        shared: list[_Segment] = []
        rest: list[tuple[int, ParsedList]] = []
        for number, pl in enumerate(lists):
            segment = _shared_segment(pl, number) if pl.count >= SHARED_SEGMENT_MIN_ENTRIES else None
            if segment is not None:
                shared.append(segment)
            else:
                rest.append((number, pl))
        segments = shared + ([_merged_segment(rest)] if rest or not shared else [])
        segments.sort(key=len, reverse=True)  # the largest first: it settles most hits
        self.segments = tuple(segments)
        if with_filter:
            self.filter, self.filter_shift = _bit_filter(_joined([s.keys for s in segments]))
        else:
            self.filter, self.filter_shift = _PASS_ALL
        self.distinct = sum(len(s) for s in segments) - self._duplicates()

    def _duplicates(self) -> int:
        """Digests held by more than one segment (counted once in `distinct`)."""
        duplicates = 0
        for j in range(1, len(self.segments)):
            earlier, segment = self.segments[:j], self.segments[j]
            for i in range(len(segment)):
                value = segment.digest_at(i)
                key = _prefix_of(value)[0]
                if any(other.find(key, value) >= 0 for other in earlier):
                    duplicates += 1
        return duplicates

    def __len__(self) -> int:
        return self.distinct

    def find(self, value: bytes) -> tuple[_Segment, int] | None:
        """Where the 32-byte digest `value` is (the first list's copy when several have it)."""
        key = _prefix_of(value)[0]
        f = key >> self.filter_shift
        if not self.filter[f >> 3] >> (f & 7) & 1:
            return None  # the common case: settled by one bit
        return self.find_key(key, value)

    def find_key(self, key: int, value: bytes) -> tuple[_Segment, int] | None:
        """`find` past the filter, for a digest whose first 8 bytes are `key`."""
        found = None
        for segment in self.segments:
            i = segment.find(key, value)
            if i >= 0 and (found is None or segment.list_of(i) < found[0].list_of(found[1])):
                found = (segment, i)
        return found

    def verdict(self, found: tuple[_Segment, int], action: str, value: bytes, expression: str) -> Verdict:
        segment, i = found
        entry_id = segment.ids[i] if segment.ids is not None else None
        return Verdict(
            action=action,
            list_name=self.names[segment.list_of(i)],
            entry_id=entry_id or value.hex()[:ENTRY_ID_HEX_DIGITS],
            category=segment.categories[i] if segment.categories is not None else None,
            expression=expression,
        )


def _distinct_sorted(blob: bytes) -> tuple[array, array]:
    """(entry numbers, their 8-byte prefixes) of the digests in `blob`, ordered by prefix, each
    distinct digest once (its first occurrence: the first list given, then the first line).

    Sorted as one int per entry, prefix above entry number (half the memory of sorting 32-byte
    values, which matters for ten million entries), with C-speed passes (`map`) around the sort;
    only runs of equal prefixes (duplicates, or the rare collision) are looked at one by one.
    """
    count = len(blob) // DIGEST_SIZE
    decorated = sorted(map(or_, map(lshift, digest_prefixes(blob), repeat(_ENTRY_BITS)), range(count)))
    order = array("I", map(and_, decorated, repeat(_ENTRY_MASK)))
    keys = array("Q", map(rshift, decorated, repeat(_ENTRY_BITS)))
    del decorated
    repeated = compress(range(1, count), map(eq, keys, islice(keys, 1, None)))  # keys[k] == keys[k - 1]
    dropped: list[int] = []
    run: list[bytes] = []  # digests seen under the current prefix
    run_end = -1
    for k in repeated:
        if k != run_end + 1:  # a new run of equal prefixes, from k - 1
            run = [_digest_at(blob, order[k - 1])]
        run_end = k
        value = _digest_at(blob, order[k])
        if value in run:
            dropped.append(k)  # a duplicate: the earlier entry keeps the provenance
        else:
            run.append(value)
    if dropped:
        order, keys = _without(order, dropped), _without(keys, dropped)
    return order, keys


def _digest_at(blob: bytes, i: int) -> bytes:
    return blob[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]


def _without(values: array, positions: list[int]) -> array:
    """`values` without the items at the ascending `positions` (by slices, not item by item)."""
    out, start = array(values.typecode), 0
    for position in positions:
        out.extend(values[start:position])
        start = position + 1
    out.extend(values[start:])
    return out


def _aligned(lists: Sequence[ParsedList], order: array, column: str) -> tuple[str | None, ...] | None:
    """The ids or categories column over all lists, in table order; None when no list has it."""
    if all(getattr(pl, column) is None for pl in lists):
        return None
    values: list[str | None] = []
    for pl in lists:
        own = getattr(pl, column)
        values.extend(own if own is not None else [None] * pl.count)
    shared: dict[str, str] = {}  # categories repeat: keep one string object per value
    return tuple(None if values[i] is None else shared.setdefault(values[i], values[i]) for i in order)


class _HostIndex:
    """The host keys of some lists: one bit filter over all of them, then the lists' own
    `HostKeys` (sorted blobs, bisected). Whoever holds the lists holds the keys anyway, so the
    index adds only the filter: no copy, no sort. `digest in index`.
    """

    __slots__ = ("sets", "count", "filter", "shift")

    def __init__(self, lists: Sequence[ParsedList]):
        self.sets = tuple(pl.host_keys for pl in lists if pl.host_keys)
        self.filter, self.shift = _bit_filter(_joined([keys.prefixes for keys in self.sets]))
        by_size = sorted(self.sets, key=len, reverse=True)
        # distinct host keys: the largest set, plus what each smaller one adds
        self.count = sum(
            len(keys) if n == 0 else sum(1 for key in keys if not any(key in other for other in by_size[:n]))
            for n, keys in enumerate(by_size)
        )

    def __len__(self) -> int:
        return self.count

    def __contains__(self, digest: bytes) -> bool:
        key = _prefix_of(digest)[0]
        f = key >> self.shift
        return bool(self.filter[f >> 3] >> (f & 7) & 1) and any(keys.find(key, digest) for keys in self.sets)


def _max_prefixes(lists: Sequence[ParsedList]) -> int:
    """Directory prefixes worth generating: as deep as the deepest folder entry."""
    depths = [pl.max_folder_depth for pl in lists]
    if any(depth is None for depth in depths):
        return canon.MAX_PATH_PREFIXES  # a hashed list may hold folders at any depth
    return min(max(depths, default=0), canon.MAX_PATH_PREFIXES)


def build(block: Sequence[ParsedList], allow: Sequence[ParsedList] = ()) -> Snapshot:
    """Compile parsed lists into a `Snapshot`.

    Some parts of the lists are used in place, not copied: the digest blob of a large list whose
    digests are sorted and distinct, and every list's host-key set. The snapshot keeps them
    alive (the lists are immutable, so nothing else changes for the caller, who usually keeps
    the lists anyway, to rebuild after an update).
    """
    stats = tuple(_list_stats(pl, BLOCK) for pl in block) + tuple(_list_stats(pl, ALLOW) for pl in allow)
    fast = all(pl.host_keys is not None for pl in (*block, *allow))
    return Snapshot(
        block=_Table(block, with_filter=not fast),
        allow=_Table(allow, with_filter=not fast),
        block_hosts=_HostIndex(block),
        allow_hosts=_HostIndex(allow),
        block_hosts_complete=all(pl.host_keys is not None for pl in block),
        allow_hosts_complete=all(pl.host_keys is not None for pl in allow),
        max_prefixes=_max_prefixes([*block, *allow]),
        list_stats=stats,
    )


def _list_stats(pl: ParsedList, action: str) -> ListStats:
    return ListStats(
        name=pl.name,
        action=action,
        format=pl.format,
        path=pl.path,
        entries=pl.count,
        bad_lines=pl.bad_lines,
        host_keys=None if pl.host_keys is None else len(pl.host_keys),
    )


class Snapshot:
    """Immutable compiled lists. Build with `build` (or `Snapshot.empty()`), never mutate."""

    __slots__ = (
        "_block",
        "_allow",
        "_block_hosts",
        "_allow_hosts",
        "_block_hosts_complete",
        "_allow_hosts_complete",
        "_fast",
        "_max_prefixes",
        "_host_memo",
        "stats",
    )

    def __init__(
        self,
        *,
        block: _Table,
        allow: _Table,
        block_hosts: _HostIndex,
        allow_hosts: _HostIndex,
        block_hosts_complete: bool,
        allow_hosts_complete: bool,
        max_prefixes: int,
        list_stats: tuple[ListStats, ...],
    ):
        self._block = block
        self._allow = allow
        self._block_hosts = block_hosts
        self._allow_hosts = allow_hosts
        self._block_hosts_complete = block_hosts_complete
        self._allow_hosts_complete = allow_hosts_complete
        # The fast path may only skip a host when every list could have named it.
        self._fast = block_hosts_complete and allow_hosts_complete
        self._max_prefixes = max_prefixes
        self._host_memo = _HostMemo()
        self.stats = SnapshotStats(
            lists=list_stats,
            block_entries=len(block),
            allow_entries=len(allow),
            block_hosts=len(block_hosts),
            allow_hosts=len(allow_hosts),
            max_prefixes=max_prefixes,
            fast_path=self._fast,
        )

    @classmethod
    def empty(cls) -> Snapshot:
        """A snapshot with no lists: matches nothing, every host CLEAN."""
        return build(())

    def match(self, url: str | bytes | canon.CanonicalURL) -> Verdict | None:
        """The verdict for a request URL, or None when no list matches it.

        Raises `ValueError` (from `canon.parse`) when `url` has no valid host.
        """
        if self._fast and type(url) is str:
            host = _fast_host(url)
            if host is not None:  # the hot path: one regex, then (usually) one dict lookup
                memo = self._host_memo
                known = memo._new.get(host)
                if known is None:  # `_HostMemo.get` and `put`, inlined
                    known = memo._old.get(host)
                    if known is None:
                        known = self._find_known_suffixes(host)
                    if len(host) <= MAX_CACHED_HOST_LENGTH:
                        if len(memo._new) >= HOST_MEMO_SIZE:
                            memo._old, memo._new = memo._new, {}
                        memo._new[host] = known
                if not known:
                    return None  # the common case: no list names this host or a parent of it
                return self._lookup(canon.parse(url), known, self._max_prefixes)
        cu = _parsed(url)
        if not self._fast:
            return self._lookup(cu, None, self._max_prefixes)
        known = self._known_suffixes(cu.host)
        return self._lookup(cu, known, self._max_prefixes) if known else None

    def host_status(self, host: str) -> HostStatus:
        """What the lists say about every URL on `host`, a raw name or ``name:port``.

        Raises `ValueError` (from `canon.canonical_host`) when it is not a valid host.
        """
        suffixes = canon.host_suffixes(canon.canonical_host(host))
        if any(self._block.find(_digest(suffix + "/")) is not None for suffix in suffixes):
            return HostStatus.PATHS if self._allow_may_touch(suffixes) else HostStatus.WHOLE
        if any(_digest(suffix) in self._block_hosts for suffix in suffixes):
            return HostStatus.PATHS
        if not self._block_hosts_complete:
            return HostStatus.UNKNOWN
        return HostStatus.CLEAN

    # --- internals ---------------------------------------------------------------------------

    def _match_reference(self, url: str | bytes | canon.CanonicalURL) -> Verdict | None:
        """`match` without any shortcut (no host keys, all prefixes): the oracle for tests."""
        return self._lookup(_parsed(url), None, canon.MAX_PATH_PREFIXES)

    def _known_suffixes(self, host: str) -> tuple[str, ...]:
        """The suffixes of a canonical host that some list has host keys for (memoized)."""
        known = self._host_memo.get(host)
        if known is None:
            known = self._find_known_suffixes(host)
            self._host_memo.put(host, known)
        return known

    def _find_known_suffixes(self, host: str) -> tuple[str, ...]:
        # Runs for every request on a host not in the memo: one digest per suffix, and almost
        # every one is turned away by the filter bit (the inlined `_HostIndex.__contains__`).
        block = self._block_hosts
        allow = self._allow_hosts if self._allow_hosts.count else None
        bits, shift, sets = block.filter, block.shift, block.sets
        known = None
        for suffix in canon.host_suffixes(host):
            value = _sha256(suffix.encode("ascii")).digest()
            key = _prefix_of(value)[0]
            f = key >> shift
            if (bits[f >> 3] >> (f & 7) & 1 and any(keys.find(key, value) for keys in sets)) or (
                allow is not None and value in allow
            ):
                known = (*known, suffix) if known else (suffix,)
        return known or ()

    def _allow_may_touch(self, suffixes: list[str]) -> bool:
        if not len(self._allow):
            return False
        if not self._allow_hosts_complete:
            return True
        return any(_digest(suffix) in self._allow_hosts for suffix in suffixes)

    def _lookup(
        self, cu: canon.CanonicalURL, known: tuple[str, ...] | None, max_prefixes: int
    ) -> Verdict | None:
        """Digest every expression of `cu` (only those on `known` hosts, unless None) once and
        look it up in the allow table, then the block table (their filters inlined)."""
        paths = canon.lookup_paths(cu, max_prefixes)
        hosts = canon.host_suffixes(cu.host) if known is None else known
        block, allow = self._block, self._allow
        check_allow = allow.distinct > 0
        block_bits, block_shift = block.filter, block.filter_shift
        allow_bits, allow_shift = allow.filter, allow.filter_shift
        hit: Verdict | None = None
        paths = [path.encode("ascii") for path in paths]  # canonical text is ASCII
        for host in hosts:
            host = host.encode("ascii")
            for path in paths:
                expression = host + path
                value = _sha256(expression).digest()
                key = _prefix_of(value)[0]
                if check_allow:
                    f = key >> allow_shift
                    if allow_bits[f >> 3] >> (f & 7) & 1:
                        found = allow.find_key(key, value)
                        if found is not None:
                            return allow.verdict(found, ALLOW, value, expression.decode())
                if hit is None:
                    f = key >> block_shift
                    if block_bits[f >> 3] >> (f & 7) & 1:
                        found = block.find_key(key, value)
                        if found is not None:
                            hit = block.verdict(found, BLOCK, value, expression.decode())
                            if not check_allow:
                                return hit
        return hit


class _HostMemo:
    """A bounded memo, host -> known suffixes, in two generations (an approximate LRU in O(1)).

    A hit in the old generation is copied into the new one; when the new one is full it
    becomes the old one. The memoized function is pure (the tables never change), so a race
    between threads can only lose or repeat an entry, never give a wrong answer: no lock.
    (`Snapshot.match` reads the two generations directly, which is the same thing inlined.)
    """

    __slots__ = ("_new", "_old")

    def __init__(self) -> None:
        self._new: dict[str, tuple[str, ...]] = {}
        self._old: dict[str, tuple[str, ...]] = {}

    def get(self, host: str) -> tuple[str, ...] | None:
        known = self._new.get(host)
        if known is None:
            known = self._old.get(host)
            if known is not None:
                self.put(host, known)
        return known

    def put(self, host: str, known: tuple[str, ...]) -> None:
        if len(host) > MAX_CACHED_HOST_LENGTH:
            return
        if len(self._new) >= HOST_MEMO_SIZE:
            self._old, self._new = self._new, {}
        self._new[host] = known


def _parsed(url: str | bytes | canon.CanonicalURL) -> canon.CanonicalURL:
    return url if isinstance(url, canon.CanonicalURL) else canon.parse(url)


def _digest(text: str) -> bytes:
    return _sha256(text.encode("ascii")).digest()
