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
* Memory: per table a sorted ``array('Q')`` of the digests' first 8 bytes with a small bucket
  index over their top bits (a lookup bisects a handful of keys), a bytes blob of the other 24
  bytes for full-hash confirmation, and ids/categories only when a list has them. Identical
  digests are stored once; the first list (in the order given) keeps the provenance.
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
import struct
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from urlwarden import canon
from urlwarden.lists import DIGEST_SIZE, ParsedList

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

_BUCKET_LOAD = 4
"""Average keys per bucket of the prefix index: a lookup bisects about this many keys, and the
index costs 4 / _BUCKET_LOAD bytes per key."""

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
_sha256 = hashlib.sha256


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


class _PrefixIndex:
    """A sorted array of 64-bit keys with a bucket table over their top bits."""

    __slots__ = ("keys", "starts", "shift")

    def __init__(self, keys: array):
        bits = (len(keys) // _BUCKET_LOAD).bit_length()
        self.keys = keys
        self.shift = 64 - bits
        counts = array("I", bytes(4 * ((1 << bits) + 1)))
        shift = self.shift
        for key in keys:
            counts[(key >> shift) + 1] += 1
        self.starts = array("I", accumulate(counts))

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: int) -> bool:
        # Runs for every host suffix of every request on a host not yet memoized.
        bucket = key >> self.shift
        starts, keys = self.starts, self.keys
        hi = starts[bucket + 1]
        i = bisect_left(keys, key, starts[bucket], hi)
        return i < hi and keys[i] == key


class _Table:
    """Distinct digests of one kind of list (all block lists, or all allow lists)."""

    __slots__ = ("index", "rest", "sources", "names", "ids", "categories")

    def __init__(self, lists: Sequence[ParsedList]):
        blob = b"".join(pl.digests for pl in lists)
        order = _distinct_sorted(blob)
        self.index = _PrefixIndex(array("Q", (_prefix_of(blob, i * DIGEST_SIZE)[0] for i in order)))
        self.rest = b"".join(blob[i * DIGEST_SIZE + PREFIX_SIZE : (i + 1) * DIGEST_SIZE] for i in order)
        self.names = tuple(pl.name for pl in lists)
        owner = array("H")  # list number of each position in `blob`
        for number, pl in enumerate(lists):
            owner.extend(array("H", [number]) * pl.count)
        self.sources = array("H", (owner[i] for i in order)) if len(lists) > 1 else None
        self.ids = _aligned(lists, order, "ids")
        self.categories = _aligned(lists, order, "categories")

    def __len__(self) -> int:
        return len(self.index)

    def find(self, value: bytes) -> int:
        """Position of the 32-byte digest `value`, or -1."""
        key = _prefix_of(value)[0]
        index = self.index
        keys, starts = index.keys, index.starts
        bucket = key >> index.shift
        hi = starts[bucket + 1]
        i = bisect_left(keys, key, starts[bucket], hi)
        if i >= hi or keys[i] != key:
            return -1  # the common case, settled by the 8-byte prefix alone
        tail = value[PREFIX_SIZE:]
        while i < hi and keys[i] == key:  # equal prefixes (rare): compare the other 24 bytes
            if self.rest.startswith(tail, i * _REST_SIZE):
                return i
            i += 1
        return -1

    def verdict(self, i: int, action: str, value: bytes, expression: str) -> Verdict:
        entry_id = self.ids[i] if self.ids is not None else None
        return Verdict(
            action=action,
            list_name=self.names[self.sources[i] if self.sources is not None else 0],
            entry_id=entry_id or value.hex()[:ENTRY_ID_HEX_DIGITS],
            category=self.categories[i] if self.categories is not None else None,
            expression=expression,
        )


def _distinct_sorted(blob: bytes) -> array:
    """Entry numbers of `blob` ordered by 8-byte prefix, each distinct digest once (its first
    occurrence: the first list given, then the first line)."""
    count = len(blob) // DIGEST_SIZE
    # One int per entry, prefix above entry number: sorting plain ints needs about half the
    # memory of sorting by 32-byte keys, which matters for lists of ten million entries.
    decorated = [(_prefix_of(blob, i * DIGEST_SIZE)[0] << _ENTRY_BITS) | i for i in range(count)]
    decorated.sort()
    distinct = array("I")
    run_prefix, run = -1, []  # digests seen under the current prefix (almost always one)
    for item in decorated:
        i, prefix = item & _ENTRY_MASK, item >> _ENTRY_BITS
        value = blob[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
        if prefix != run_prefix:
            run_prefix, run = prefix, [value]
        elif value in run:
            continue  # a duplicate: the earlier entry keeps the provenance
        else:
            run.append(value)
        distinct.append(i)
    return distinct


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


def _host_index(lists: Sequence[ParsedList]) -> _PrefixIndex:
    keys = {_prefix_of(key)[0] for pl in lists if pl.host_keys is not None for key in pl.host_keys}
    return _PrefixIndex(array("Q", sorted(keys)))


def _max_prefixes(lists: Sequence[ParsedList]) -> int:
    """Directory prefixes worth generating: as deep as the deepest folder entry."""
    depths = [pl.max_folder_depth for pl in lists]
    if any(depth is None for depth in depths):
        return canon.MAX_PATH_PREFIXES  # a hashed list may hold folders at any depth
    return min(max(depths, default=0), canon.MAX_PATH_PREFIXES)


def build(block: Sequence[ParsedList], allow: Sequence[ParsedList] = ()) -> Snapshot:
    """Compile parsed lists into a `Snapshot` (the lists themselves can then be dropped)."""
    stats = tuple(_list_stats(pl, BLOCK) for pl in block) + tuple(_list_stats(pl, ALLOW) for pl in allow)
    return Snapshot(
        block=_Table(block),
        allow=_Table(allow),
        block_hosts=_host_index(block),
        allow_hosts=_host_index(allow),
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
        block_hosts: _PrefixIndex,
        allow_hosts: _PrefixIndex,
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
        if not self._fast:
            return self._lookup(_parsed(url), None, self._max_prefixes)
        host = canon.fast_host(url) if type(url) is str else None
        if host is None:
            cu = _parsed(url)
            known = self._known_suffixes(cu.host)
            return self._lookup(cu, known, self._max_prefixes) if known else None
        known = self._known_suffixes(host)
        if not known:
            return None  # the common case: no list names this host or a parent of it
        return self._lookup(canon.parse(url), known, self._max_prefixes)

    def host_status(self, host: str) -> HostStatus:
        """What the lists say about every URL on `host`, a raw name or ``name:port``.

        Raises `ValueError` (from `canon.canonical_host`) when it is not a valid host.
        """
        suffixes = canon.host_suffixes(canon.canonical_host(host))
        if any(self._block.find(_digest(suffix + "/")) >= 0 for suffix in suffixes):
            return HostStatus.PATHS if self._allow_may_touch(suffixes) else HostStatus.WHOLE
        if any(_host_key(suffix) in self._block_hosts for suffix in suffixes):
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
            known = tuple(suffix for suffix in canon.host_suffixes(host) if self._host_known(suffix))
            self._host_memo.put(host, known)
        return known

    def _host_known(self, host: str) -> bool:
        key = _host_key(host)
        return key in self._block_hosts or (len(self._allow_hosts) > 0 and key in self._allow_hosts)

    def _allow_may_touch(self, suffixes: list[str]) -> bool:
        if not len(self._allow):
            return False
        if not self._allow_hosts_complete:
            return True
        return any(_host_key(suffix) in self._allow_hosts for suffix in suffixes)

    def _lookup(
        self, cu: canon.CanonicalURL, known: tuple[str, ...] | None, max_prefixes: int
    ) -> Verdict | None:
        """Digest every expression of `cu` (only those on `known` hosts, unless None) once and
        look it up in the allow table, then the block table."""
        expressions = canon.expressions(cu, max_prefixes)
        if known is not None:
            # The host part ends at the first "/"; only expressions on known hosts can hit.
            expressions = [e for e in expressions if e[: e.index("/")] in known]
        block, allow = self._block, self._allow
        check_allow = len(allow) > 0
        hit: Verdict | None = None
        for expression in expressions:
            value = _sha256(expression.encode("ascii")).digest()
            if check_allow:
                i = allow.find(value)
                if i >= 0:
                    return allow.verdict(i, ALLOW, value, expression)
            if hit is None:
                i = block.find(value)
                if i >= 0:
                    hit = block.verdict(i, BLOCK, value, expression)
                    if not check_allow:
                        return hit
        return hit


class _HostMemo:
    """A bounded memo, host -> known suffixes, in two generations (an approximate LRU in O(1)).

    A hit in the old generation is copied into the new one; when the new one is full it
    becomes the old one. The memoized function is pure (the tables never change), so a race
    between threads can only lose or repeat an entry, never give a wrong answer: no lock.
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


def _host_key(host: str) -> int:
    return _prefix_of(_sha256(host.encode("ascii")).digest())[0]
