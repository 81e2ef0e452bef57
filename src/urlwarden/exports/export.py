"""Exports of the configured lists for other systems: stage-1 diversion addresses and fleet snapshots.

**Stage-1 diversion** (`export_divert`, ``urlwarden export divert``). The Cleanfeed design: the
routers send only the traffic to *suspect addresses* through urlwarden, which then decides by
URL (stage 2). The suspect addresses are the destination addresses of the hosts the plain lists
name:

1. Hosts. Every configured block list given by ``path`` in ``plain`` or csv-``url`` format is
   read in clear (`list_hosts`; the file is first loaded with `lists.load_list`, so a broken
   list fails exactly as in the proxy) and each entry's canonical host taken with
   `canon.parse`. Hashed lists (``sha256``, csv with a ``sha256`` column) and feeds (their
   last-known-good copy is stored hashed) name no host: each is reported on stderr and skipped.
2. Resolution (`resolve_hosts`) with an injectable resolver ``resolver(name, timeout) ->
   [address, ...]`` (default `SystemResolver`: ``socket.getaddrinfo`` in a daemon thread, with a
   timeout per name), at most ``concurrency`` names at a time, all within ``total_timeout``.
   IP-literal hosts need no resolution.
3. Sanity checks (`plan_divert`) against DNS tricks (a listed name pointed at someone else's
   address, to make the ISP divert or break unrelated traffic): an address is **held back**, not
   diverted, when it is in a special-purpose range (`SPECIAL_NETWORKS`, RFC 6890 and successors:
   loopback, private, CGNAT, link-local, multicast, documentation, benchmarking, unspecified,
   reserved...), in a network the operator declared shared (``shared_networks``,
   ``shared_networks_file``: CDN and big hosting ranges, or single addresses), or when more than
   ``max_names_per_address`` listed sites resolve to it (a leading ``www.`` does not make a
   second site). A held address is reported with its reasons and names; the operator confirms
   it (or one of its names) in the ``--confirm`` file, and it is then diverted.
4. Output (`render_plain`, `render_nft`): addresses sorted (IPv4, then IPv6) and deduplicated;
   ``plain`` is one per line under a comment header, ``nft`` a script for ``nft -f`` that
   declares two sets in ``table inet <nft_table>`` (``urlwarden_divert4``: ``ipv4_addr``,
   ``urlwarden_divert6``: ``ipv6_addr``), flushes them and adds the elements: one transaction,
   so a router never sees a half-filled set. ``--output`` is written atomically.

Exit status: 0; 1 when an address was held back (the output is written without it: a cron job
sees the 1 and the operator decides); 2 (a `UrlwardenError`) when nothing can be exported, a
file cannot be read, or more than ``max_unresolved`` of the names did not resolve (a broken
resolver must not empty the routers' sets) -- then nothing is written.

Worked example: with `SPECIAL_NETWORKS` taken as empty (the addresses below are documentation
addresses, themselves special-purpose), shared network 203.0.113.0/24 configured, and the lists
naming ``listed.test`` (resolving to 198.51.100.7) and ``cdn-hosted.test`` (203.0.113.5), the set
is {198.51.100.7}, stderr says "held back 203.0.113.5: in shared network 203.0.113.0/24 (config);
names: cdn-hosted.test", and the exit status is 1; a ``--confirm`` file with the line
``203.0.113.5`` (or ``cdn-hosted.test``) adds it and gives 0.

**Fleet snapshot** (`export_snapshot`, ``urlwarden export snapshot DIR``). A licensor counts
downloads, so one node fetches and the others read a copy. With a TUF key directory (``--keys
KEYDIR`` or ``export.snapshot.keys_dir``; `export_keys_init`, `export_keys_rotate`) DIR becomes a
TUF repository whose targets are the same hashed lists (`urlwarden.exports.tufrepo`; the nodes read it
with the ``tuf`` feed adapter), and ``--every SECONDS`` (`export_snapshot_every`) keeps
re-publishing so the short-lived timestamp never expires while the publisher runs.

The detached-signature format below (``--key``) is deprecated (a warning at every export) and
stays for one release; both can be written into one DIR at once, for a migration. For every
configured feed with a last-known-good copy (and, with ``snapshot.include_static``, the static
lists), DIR receives

* ``<name>.sha256`` (or ``<name>.csv`` when the list has ids or categories): the list in hashed
  form, exactly as stored, behind a ``# urlwarden-list v1 serial=... sha256=<checksum>`` header
  line (`feeds.payload.encode_list_header`), i.e. a full list the ``http`` feed adapter accepts
  with ``format: sha256`` (or ``csv``). It is parsed back and its checksum compared with the
  stored one before it is written. Nothing in clear ever leaves: feeds are stored hashed, static
  lists are hashed on the way out (`lists.write_sha256_list`), and a list that is not hashed is
  refused;
* ``<file>.sig``: the detached Ed25519 signature of that exact file, base64, made with ``--key``
  (an unencrypted PEM private key). The consumers set ``signature_url`` to it and
  ``public_key`` to the matching public key. Without ``--key`` the snapshot is written unsigned
  with a warning (and stale ``.sig`` files are removed); a key that cannot be used is an error,
  never a silent unsigned snapshot;
* ``index.json`` (and ``index.json.sig``): what was exported (names, files, formats, entry
  counts, checksums, serials, sizes, times, the signing key's id) -- counts and digests only.

Every file is written atomically (temporary file, fsync, rename, directory fsync) with mode
0644 (a web server serves DIR), and only when its bytes changed, so a static server's ETag
stays and the consumers get 304s. A list that cannot be exported this time (no last-known-good
copy yet, a damaged copy) keeps its previous files and index entry and makes the exit status 1;
files of lists no longer configured are removed.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from urlwarden.core import canon
from urlwarden.core.fsutil import read_small_text
from urlwarden.errors import ConfigError, FeedError, ListError, UrlwardenError
from urlwarden.feeds.payload import checksum, encode_list_header, normalize, parse_full
from urlwarden.feeds.store import LastKnownGood
from urlwarden.core.lists import MAX_ENTRY_LENGTH, ListSpec, load_list, write_sha256_list

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_NAMES_PER_ADDRESS",
    "DEFAULT_MAX_UNRESOLVED",
    "DEFAULT_NFT_TABLE",
    "DEFAULT_RESOLVE_TIMEOUT",
    "DEFAULT_TOTAL_TIMEOUT",
    "INDEX_FILE",
    "NFT_SET4",
    "NFT_SET6",
    "SPECIAL_NETWORKS",
    "Confirmations",
    "DivertPlan",
    "DivertSettings",
    "ExportSettings",
    "HeldAddress",
    "Resolution",
    "SharedNetwork",
    "SnapshotSettings",
    "SystemResolver",
    "export_divert",
    "export_snapshot",
    "list_hosts",
    "parse_export_settings",
    "plan_divert",
    "read_confirmations",
    "read_networks_file",
    "render_nft",
    "render_plain",
    "resolve_hosts",
    "special_range",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, float], Sequence[str]]
"""``resolver(name, timeout) -> addresses``: text IPv4/IPv6 addresses of a canonical host name,
answered within `timeout` seconds; raises `OSError` (``TimeoutError`` included) when it cannot."""

DEFAULT_MAX_NAMES_PER_ADDRESS = 16
"""An address more listed sites than this resolve to is held back (shared hosting, a CDN, a trick)."""
DEFAULT_RESOLVE_TIMEOUT = 5.0
"""Seconds one name may take to resolve."""
DEFAULT_TOTAL_TIMEOUT = 600.0
"""Seconds all names together may take; names not resolved by then count as unresolved."""
DEFAULT_CONCURRENCY = 32
"""Names resolved at the same time."""
DEFAULT_MAX_UNRESOLVED = 0.5
"""When more than this fraction of the names does not resolve, nothing is written (error)."""
DEFAULT_NFT_TABLE = "urlwarden"
"""The ``inet`` table that holds the sets (the one of docs/isp.md)."""
NFT_SET4, NFT_SET6 = "urlwarden_divert4", "urlwarden_divert6"
MAX_CONCURRENCY = 256
MAX_PENDING_LOOKUPS = 64
"""`SystemResolver`: lookups that timed out but still run in the background; past this the
resolver is considered unresponsive and fails at once (so hung lookups cannot pile up threads)."""
MAX_SIDE_FILE_BYTES = 16 * 1024 * 1024
"""Largest ``--confirm`` or shared-networks file read."""
MAX_KEY_FILE_BYTES = 16 * 1024
MAX_SNAPSHOT_LIST_BYTES = 512 * 1024 * 1024
"""Largest list exported (the ``http`` adapter's default ``max_bytes``: a bigger one would be refused)."""
MAX_INDEX_BYTES = 4 * 1024 * 1024
NFT_ELEMENTS_PER_STATEMENT = 4096
MAX_NAMES_SHOWN = 10
"""Names shown per held address and for unresolved names on stderr (the rest are counted)."""
INDEX_FILE = "index.json"
SNAPSHOT_VERSION = 1
PUBLISHED_MODE = 0o644
"""Mode of the files written: the output is meant to be read by a router or a web server."""

_NFT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")
_WHITESPACE = re.compile(r"\s")
_SNAPSHOT_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.(?:sha256|csv)(?:\.sig)?\Z")


# --- special-purpose ranges ------------------------------------------------------------------------

def _table(*rows: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    nets = [(ipaddress.ip_network(cidr), label) for cidr, label in rows]
    return tuple(sorted(nets, key=lambda item: -item[0].prefixlen))  # most specific first


SPECIAL_NETWORKS: tuple[tuple[Network, str], ...] = _table(
    ("0.0.0.0/8", "this network, RFC 791"),
    ("10.0.0.0/8", "private, RFC 1918"),
    ("100.64.0.0/10", "shared address space (CGNAT), RFC 6598"),
    ("127.0.0.0/8", "loopback, RFC 1122"),
    ("169.254.0.0/16", "link-local, RFC 3927"),
    ("172.16.0.0/12", "private, RFC 1918"),
    ("192.0.0.0/24", "IETF protocol assignments, RFC 6890"),
    ("192.0.2.0/24", "documentation, RFC 5737"),
    ("192.88.99.0/24", "6to4 relay anycast, RFC 7526"),
    ("192.168.0.0/16", "private, RFC 1918"),
    ("198.18.0.0/15", "benchmarking, RFC 2544"),
    ("198.51.100.0/24", "documentation, RFC 5737"),
    ("203.0.113.0/24", "documentation, RFC 5737"),
    ("224.0.0.0/4", "multicast, RFC 5771"),
    ("240.0.0.0/4", "reserved, RFC 1112"),
    ("255.255.255.255/32", "limited broadcast, RFC 919"),
    ("::/128", "unspecified, RFC 4291"),
    ("::1/128", "loopback, RFC 4291"),
    ("::/8", "reserved (IPv4-compatible and others), RFC 4291"),
    ("::ffff:0:0/96", "IPv4-mapped, RFC 4291"),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation, RFC 8215"),
    ("100::/64", "discard-only, RFC 6666"),
    ("2001::/23", "IETF protocol assignments, RFC 2928"),
    ("2001:db8::/32", "documentation, RFC 3849"),
    ("3fff::/20", "documentation, RFC 9637"),
    ("fc00::/7", "unique-local, RFC 4193"),
    ("fe80::/10", "link-local, RFC 4291"),
    ("ff00::/8", "multicast, RFC 4291"),
)
"""Special-purpose ranges (RFC 6890 and successors), most specific first, with a label each.
Never diverted unless confirmed: a listed name resolving into one of them is a mistake or a trick."""


def special_range(address: Address,
                  table: Sequence[tuple[Network, str]] = SPECIAL_NETWORKS) -> str | None:
    """``"<network> (<label>)"`` of the special-purpose range `address` is in, or None."""
    for network, label in table:
        if address.version == network.version and address in network:
            return f"{network} ({label})"
    return None


# --- settings (the ``export:`` mapping of the configuration) ---------------------------------------

@dataclass(frozen=True)
class SharedNetwork:
    """A network (or single address) known to be shared by unrelated sites; `source` says where from."""

    network: Network
    source: str


@dataclass(frozen=True)
class DivertSettings:
    max_names_per_address: int = DEFAULT_MAX_NAMES_PER_ADDRESS
    shared_networks: tuple[SharedNetwork, ...] = ()
    shared_networks_file: str | None = None  # read at every export (the ranges change)
    resolve_timeout: float = DEFAULT_RESOLVE_TIMEOUT
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    concurrency: int = DEFAULT_CONCURRENCY
    max_unresolved: float = DEFAULT_MAX_UNRESOLVED
    nft_table: str = DEFAULT_NFT_TABLE


@dataclass(frozen=True)
class SnapshotSettings:
    include_static: bool = False
    keys_dir: str | None = None       # TUF key directory (``export keys init``): publish a TUF repository
    tuf: object = None                # tufrepo.TufSettings (expiry, thresholds); None: the defaults
    every: float | None = None        # ``--every`` default: seconds between runs of a publishing loop


@dataclass(frozen=True)
class ExportSettings:
    divert: DivertSettings = field(default_factory=DivertSettings)
    snapshot: SnapshotSettings = field(default_factory=SnapshotSettings)


_DIVERT_KEYS = ("max_names_per_address", "shared_networks", "shared_networks_file", "resolve_timeout",
                "total_timeout", "concurrency", "max_unresolved", "nft_table")
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\Z")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_export_settings(data: Mapping | None, base_dir: str | os.PathLike[str] | None = None,
                          where: str = "export") -> ExportSettings:
    """The ``export:`` mapping of the configuration (plain values, as `yaml.safe_load` gives them).

    ::

        export:
          divert:
            max_names_per_address: 16      # int >= 1
            shared_networks: [192.0.2.0/24, 198.51.100.7]   # CIDR networks or addresses
            shared_networks_file: cdn.txt  # one CIDR per line, label after it; relative to base_dir
            resolve_timeout: 5s            # seconds, or "500ms", "5s", "2m", "1h"
            total_timeout: 10m
            concurrency: 32                # 1..256
            max_unresolved: 0.5            # fraction 0..1
            nft_table: urlwarden           # the inet table holding the sets
          snapshot:
            include_static: false          # also export the static lists (hashed)

    Unknown keys and bad values raise `ConfigError` naming ``export.<key>``.
    """
    if data is None:
        return ExportSettings()
    top = _mapping(data, where, ("divert", "snapshot"))
    divert = DivertSettings()
    if top.get("divert") is not None:
        divert = _divert_settings(_mapping(top["divert"], f"{where}.divert", _DIVERT_KEYS), base_dir,
                                  f"{where}.divert")
    snapshot = SnapshotSettings()
    if top.get("snapshot") is not None:
        snapshot = _snapshot_settings(top["snapshot"], base_dir, f"{where}.snapshot")
    return ExportSettings(divert=divert, snapshot=snapshot)


_TUF_EXPIRY_KEYS = {"root_expiry": "root", "targets_expiry": "targets", "snapshot_expiry": "snapshot",
                    "timestamp_expiry": "timestamp"}


def _snapshot_settings(data: object, base_dir, where: str) -> SnapshotSettings:
    """``export.snapshot``: include_static, and the TUF publisher's keys_dir, every, expiries, thresholds."""
    from urlwarden.exports.tufrepo import ROLES, TufError, TufSettings

    fields = _mapping(data, where, ("include_static", "keys_dir", "every", "thresholds", *_TUF_EXPIRY_KEYS))
    values: dict[str, object] = {}
    if "include_static" in fields:
        value = fields["include_static"]
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.include_static: must be true or false, not {value!r}")
        values["include_static"] = value
    if "keys_dir" in fields:
        value = fields["keys_dir"]
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.keys_dir: must be a directory path")
        values["keys_dir"] = str(Path(base_dir or ".") / value)
    if "every" in fields:
        seconds = _seconds(fields["every"])
        if seconds is None or not 1 <= seconds <= 3600:
            raise ConfigError(f"{where}.every: must be a duration from 1s to 1h, not {fields['every']!r}")
        values["every"] = seconds
    expiry: dict[str, float] = {}
    for key, role in _TUF_EXPIRY_KEYS.items():
        if key in fields:
            seconds = _seconds(fields[key])
            if seconds is None:
                raise ConfigError(f"{where}.{key}: must be a duration such as 5m, 7d, not {fields[key]!r}")
            expiry[role] = seconds
    thresholds: dict[str, int] = {}
    if "thresholds" in fields:
        for role, count in _mapping(fields["thresholds"], f"{where}.thresholds", ROLES).items():
            thresholds[role] = count
    try:
        values["tuf"] = TufSettings(expiry=expiry, thresholds=thresholds)
    except TufError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return SnapshotSettings(**values)


def _mapping(value: object, where: str, allowed: tuple[str, ...]) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    for key in value:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(allowed)})")
    return value


def _divert_settings(fields: Mapping, base_dir, where: str) -> DivertSettings:
    values: dict[str, object] = {}

    def integer(key: str, low: int, high: int) -> None:
        if key in fields:
            value = fields[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{where}.{key}: must be an integer from {low} to {high}, not {value!r}")
            values[key] = value

    integer("max_names_per_address", 1, 1_000_000)
    integer("concurrency", 1, MAX_CONCURRENCY)
    for key in ("resolve_timeout", "total_timeout"):
        if key in fields:
            seconds = _seconds(fields[key])
            if seconds is None or not 0 < seconds <= 86400:
                raise ConfigError(f"{where}.{key}: must be a duration such as 5s, 500ms, 10m (at most a day), "
                                  f"not {fields[key]!r}")
            values[key] = seconds
    if "max_unresolved" in fields:
        value = fields["max_unresolved"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"{where}.max_unresolved: must be a fraction from 0 to 1, not {value!r}")
        values["max_unresolved"] = float(value)
    if "shared_networks" in fields:
        items = fields["shared_networks"]
        if not isinstance(items, list):
            raise ConfigError(f"{where}.shared_networks: must be a list of CIDR networks or addresses")
        shared = []
        for i, item in enumerate(items):
            try:
                shared.append(SharedNetwork(ipaddress.ip_network(str(item), strict=False), "config"))
            except ValueError:
                raise ConfigError(f"{where}.shared_networks[{i}]: not a CIDR network or address: {item!r}") from None
        values["shared_networks"] = tuple(shared)
    if "shared_networks_file" in fields:
        value = fields["shared_networks_file"]
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.shared_networks_file: must be a file path")
        values["shared_networks_file"] = str(Path(base_dir or ".") / value)
    if "nft_table" in fields:
        value = fields["nft_table"]
        if not isinstance(value, str) or not _NFT_NAME.match(value):
            raise ConfigError(f"{where}.nft_table: must be an nftables table name (letters, digits, '_'), "
                              f"not {value!r}")
        values["nft_table"] = value
    return DivertSettings(**values)


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value.strip().lower())
    if match is None:
        return None
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _settings_of(config) -> ExportSettings:
    """The configuration's export settings once the lead wires ``Config.export``; the defaults until then."""
    value = getattr(config, "export", None)
    if isinstance(value, ExportSettings):
        return value
    if isinstance(value, Mapping):
        return parse_export_settings(value, Path(getattr(config, "source", ".")).parent)
    return ExportSettings()


# --- hosts of plain lists -----------------------------------------------------------------------

def list_hosts(spec: ListSpec) -> frozenset[str] | None:
    """The canonical hosts a ``plain`` or csv-``url`` list names; None for a hashed list.

    The file is loaded with `lists.load_list` first, so an unusable file raises the same
    `ListError` as in the proxy. Lines the list loader skips (comments, whitespace, digests,
    no host, too long) give no host here either.
    """
    if spec.format == "sha256":
        return None
    if load_list(spec).hashed:  # a csv with a sha256 column
        return None
    hosts: set[str] = set()
    try:
        with open(spec.path, encoding="utf-8-sig", errors="strict", newline="") as f:
            for text in (_csv_urls(f) if spec.format == "csv" else _plain_entries(f)):
                host = _entry_host(text)
                if host is not None:
                    hosts.add(host)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ListError(f"{spec.path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    return frozenset(hosts)


def _plain_entries(lines: Iterable[str]) -> Iterable[str]:
    for raw in lines:
        text = raw.strip()
        if text and not text.startswith("#"):
            yield text


def _csv_urls(lines: Iterable[str]) -> Iterable[str]:
    reader = csv.reader(lines)
    column = None
    for row in reader:
        if column is None:
            if any(cell.strip() for cell in row):
                names = [cell.strip().lower() for cell in row]
                if "url" not in names:
                    return
                column = names.index("url")
            continue
        if column < len(row) and row[column].strip():
            yield row[column].strip()


def _entry_host(text: str) -> str | None:
    if len(text) > MAX_ENTRY_LENGTH or _WHITESPACE.search(text) or _HEX64.match(text.lower().removeprefix("host:")):
        return None
    try:
        return canon.parse(text).host
    except ValueError:
        return None


def _literal_address(host: str) -> Address | None:
    """The address of an IP-literal canonical host, else None."""
    if not canon.is_ip_literal(host):
        return None
    try:
        return _plain_address(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _plain_address(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# --- resolution ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Resolution:
    """What one name resolved to: addresses (possibly none) or the reason it did not."""

    addresses: tuple[Address, ...] = ()
    error: str | None = None


class SystemResolver:
    """The default resolver: ``getaddrinfo`` (the system's, through nsswitch) with a timeout.

    ``getaddrinfo`` cannot be interrupted, so each lookup runs in a daemon thread and the
    caller waits at most `timeout`; a lookup that outlives its timeout is left to finish on
    its own. When `MAX_PENDING_LOOKUPS` of them are still running, the resolver fails at once.
    """

    def __init__(self, getaddrinfo: Callable = socket.getaddrinfo, max_pending: int = MAX_PENDING_LOOKUPS):
        self._getaddrinfo = getaddrinfo
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()

    def __call__(self, name: str, timeout: float) -> list[str]:
        with self._lock:
            if self._pending >= self._max_pending:
                raise TimeoutError(f"the system resolver is not answering ({self._pending} lookups pending)")
            self._pending += 1
        box: dict[str, object] = {}
        done = threading.Event()

        def lookup() -> None:
            try:
                box["infos"] = self._getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:
                box["error"] = exc
            finally:
                with self._lock:
                    self._pending -= 1
                done.set()

        threading.Thread(target=lookup, name="urlwarden-resolve", daemon=True).start()
        if not done.wait(timeout):
            raise TimeoutError(f"no answer within {timeout:g} s")
        error = box.get("error")
        if isinstance(error, OSError):
            raise error
        if error is not None:
            raise OSError(f"cannot look this name up ({type(error).__name__})")
        return [info[4][0] for info in box.get("infos") or ()]


def resolve_hosts(names: Iterable[str], resolver: Resolver, *, timeout: float = DEFAULT_RESOLVE_TIMEOUT,
                  concurrency: int = DEFAULT_CONCURRENCY, total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
                  clock: Callable[[], float] = time.monotonic) -> dict[str, Resolution]:
    """Resolve every name with `resolver`: ``concurrency`` at a time, each within `timeout`,
    all within `total_timeout` (names left over then are answered "not resolved in time")."""
    todo = list(dict.fromkeys(names))
    results: dict[str, Resolution] = {}
    lock = threading.Lock()
    queue = iter(todo)
    deadline = clock() + total_timeout

    def work() -> None:
        while True:
            with lock:
                name = next(queue, None)
            if name is None:
                return
            left = deadline - clock()
            result = Resolution(error="not resolved within the total time limit")
            if left > 0:
                result = _resolve_one(resolver, name, min(timeout, left))
            with lock:
                results[name] = result

    workers = [threading.Thread(target=work, name="urlwarden-resolver", daemon=True)
               for _ in range(max(1, min(concurrency, MAX_CONCURRENCY, len(todo))))] if todo else []
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(0.0, deadline - clock()) + timeout + 1.0)  # a resolver ignoring its timeout is left behind
    with lock:
        final = dict(results)
    for name in todo:
        final.setdefault(name, Resolution(error="not resolved within the total time limit"))
    return final


def _resolve_one(resolver: Resolver, name: str, timeout: float) -> Resolution:
    try:
        answers = resolver(name, timeout)
    except TimeoutError as exc:
        return Resolution(error=f"timed out ({exc})" if str(exc) else "timed out")
    except OSError as exc:
        return Resolution(error=exc.strerror or str(exc) or type(exc).__name__)
    except Exception as exc:  # an injected resolver broke its contract: one name fails, not the export
        return Resolution(error=f"resolver failed ({type(exc).__name__})")
    addresses = []
    for text in answers or ():
        try:
            addresses.append(_plain_address(ipaddress.ip_address(str(text).partition("%")[0])))
        except ValueError:
            continue
    return Resolution(addresses=tuple(dict.fromkeys(addresses)))


# --- planning ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Confirmations:
    """What the operator confirmed for diversion: addresses or networks, and host names."""

    networks: tuple[Network, ...] = ()
    names: frozenset[str] = frozenset()


@dataclass(frozen=True)
class HeldAddress:
    address: Address
    reasons: tuple[str, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class DivertPlan:
    """diverted: sorted, distinct (IPv4 first); held: held back for confirmation; confirmed: the
    diverted addresses that would have been held without the operator's confirmation."""

    diverted: tuple[Address, ...]
    held: tuple[HeldAddress, ...]
    confirmed: tuple[Address, ...] = ()

    @property
    def ipv4(self) -> tuple[ipaddress.IPv4Address, ...]:
        return tuple(a for a in self.diverted if a.version == 4)

    @property
    def ipv6(self) -> tuple[ipaddress.IPv6Address, ...]:
        return tuple(a for a in self.diverted if a.version == 6)


class _NetworkIndex:
    """Which of many networks holds an address, in one dict lookup per distinct prefix length
    (a CDN's published ranges run to thousands of networks; a list to many thousand addresses)."""

    def __init__(self, items: Iterable[tuple[Network, object]]):
        self._by_key: dict[tuple[int, int, int], object] = {}
        lengths: dict[int, set[int]] = {4: set(), 6: set()}
        for network, value in items:
            self._by_key.setdefault((network.version, network.prefixlen, int(network.network_address)), value)
            lengths[network.version].add(network.prefixlen)
        self._lengths = {version: sorted(found, reverse=True) for version, found in lengths.items()}

    def find(self, address: Address) -> object | None:
        """The value of the most specific network holding `address`, or None."""
        bits = address.max_prefixlen
        value = int(address)
        for length in self._lengths[address.version]:
            found = self._by_key.get((address.version, length, value >> (bits - length) << (bits - length)))
            if found is not None:
                return found
        return None


def _site(host: str) -> str:
    return host[4:] if host.startswith("www.") and host.count(".") >= 2 else host


def plan_divert(host_addresses: Mapping[str, Iterable[Address]], *,
                max_names_per_address: int = DEFAULT_MAX_NAMES_PER_ADDRESS,
                shared: Sequence[SharedNetwork] = (), confirmed: Confirmations = Confirmations(),
                special: Sequence[tuple[Network, str]] = SPECIAL_NETWORKS) -> DivertPlan:
    """Decide, per address, divert or hold back (see the module docstring). Pure."""
    names_of: dict[Address, set[str]] = {}
    for host, addresses in host_addresses.items():
        for address in addresses:
            names_of.setdefault(_plain_address(address), set()).add(host)
    shared_index = _NetworkIndex((item.network, item) for item in shared)
    confirmed_index = _NetworkIndex((network, network) for network in confirmed.networks)
    diverted: list[Address] = []
    held: list[HeldAddress] = []
    confirmed_out: list[Address] = []
    for address in sorted(names_of, key=_sort_key):
        names = sorted(names_of[address])
        reasons = []
        range_label = special_range(address, special)
        if range_label is not None:
            reasons.append(f"special-purpose range {range_label}")
        item = shared_index.find(address)
        if item is not None:
            reasons.append(f"in shared network {item.network} ({item.source})")
        sites = {_site(name) for name in names}
        if len(sites) > max_names_per_address:
            reasons.append(f"{len(sites)} listed sites resolve to it (more than max_names_per_address="
                           f"{max_names_per_address})")
        if not reasons:
            diverted.append(address)
        elif confirmed_index.find(address) is not None or any(name in confirmed.names for name in names):
            diverted.append(address)
            confirmed_out.append(address)
        else:
            held.append(HeldAddress(address, tuple(reasons), tuple(names)))
    return DivertPlan(tuple(diverted), tuple(held), tuple(confirmed_out))


def _sort_key(address: Address) -> tuple[int, int]:
    return address.version, int(address)


# --- side files ------------------------------------------------------------------------------------

def _read_side_file(path: str, what: str) -> list[tuple[int, str]]:
    """(line number, text without comment) of the non-empty lines of a small operator file."""
    text = read_small_text(path, MAX_SIDE_FILE_BYTES, what, ConfigError, encoding="utf-8-sig")
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.partition("#")[0].strip()
        if line:
            out.append((number, line))
    return out


def read_confirmations(path: str) -> Confirmations:
    """The ``--confirm`` file: one IP address, CIDR network or host name per line, ``#`` comments."""
    networks: list[Network] = []
    names: set[str] = set()
    for number, line in _read_side_file(path, "the confirmations"):
        item = line.split()[0]
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
            continue
        except ValueError:
            pass
        try:
            if any(c in item for c in "/?#@[]\\"):
                raise ValueError("not a bare host name")
            host = canon.canonical_host(item)
        except ValueError:
            raise ConfigError(f"{path}:{number}: not an address, network or host name: {item[:80]!r}") from None
        literal = _literal_address(host)
        if literal is not None:
            networks.append(ipaddress.ip_network(literal))
        else:
            names.add(host)
    return Confirmations(tuple(networks), frozenset(names))


def read_networks_file(path: str) -> tuple[SharedNetwork, ...]:
    """A shared-networks file: ``CIDR [label]`` per line, ``#`` comments (e.g. a CDN's published ranges)."""
    out = []
    for number, line in _read_side_file(path, "the shared networks"):
        cidr, *label = line.split(None, 1)
        label = label[0] if label else ""
        try:
            network = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise ConfigError(f"{path}:{number}: not a CIDR network or address: {cidr[:80]!r}") from None
        source = label.strip()[:80] or f"{os.path.basename(path)}:{number}"
        out.append(SharedNetwork(network, source))
    return tuple(out)


# --- rendering -----------------------------------------------------------------------------------

def _header_lines(plan: DivertPlan, generated: str, source: str) -> list[str]:
    held = f"; {len(plan.held)} held back for confirmation (see stderr)" if plan.held else ""
    return [
        f"# urlwarden stage-1 diversion, generated {generated} from {_comment_safe(source)}",
        f"# {len(plan.ipv4)} IPv4 and {len(plan.ipv6)} IPv6 destination addresses of listed hosts{held}.",
    ]


def _comment_safe(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:300]


def render_plain(plan: DivertPlan, *, generated: str, source: str) -> str:
    """One address per line (IPv4, then IPv6), under a ``#`` comment header."""
    lines = _header_lines(plan, generated, source)
    lines += [str(a) for a in plan.diverted]
    return "\n".join(lines) + "\n"


def render_nft(plan: DivertPlan, *, generated: str, source: str, table: str = DEFAULT_NFT_TABLE) -> str:
    """An ``nft -f`` script: declare the two sets in ``table inet <table>``, flush, add (one transaction)."""
    if not _NFT_NAME.match(table):
        raise ConfigError(f"not an nftables table name: {table!r}")
    lines = _header_lines(plan, generated, source)
    lines += [
        "# Load with `nft -f FILE`: one transaction, the sets are replaced whole. Match them with",
        f"# `ip daddr @{NFT_SET4}` and `ip6 daddr @{NFT_SET6}` (docs/isp.md).",
        f"table inet {table} {{",
        f"\tset {NFT_SET4} {{",
        "\t\ttype ipv4_addr",
        "\t}",
        f"\tset {NFT_SET6} {{",
        "\t\ttype ipv6_addr",
        "\t}",
        "}",
        f"flush set inet {table} {NFT_SET4}",
        f"flush set inet {table} {NFT_SET6}",
    ]
    for name, addresses in ((NFT_SET4, plan.ipv4), (NFT_SET6, plan.ipv6)):
        for start in range(0, len(addresses), NFT_ELEMENTS_PER_STATEMENT):
            chunk = addresses[start:start + NFT_ELEMENTS_PER_STATEMENT]
            lines.append(f"add element inet {table} {name} {{")
            lines += [f"\t{a}," for a in chunk[:-1]] + [f"\t{chunk[-1]}"]
            lines.append("}")
    return "\n".join(lines) + "\n"


# --- export divert -------------------------------------------------------------------------------

def _warn(err: TextIO, message: str) -> None:
    print(f"urlwarden: {message}", file=err)


def _hashed_message(name: str, feed: bool) -> str:
    why = " (a feed's last-known-good copy is stored hashed)" if feed else ""
    return f"list {name!r} is hashed: its hosts are unknown, so it cannot be exported{why}"


def _shown(names: Sequence[str]) -> str:
    more = f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
    return ", ".join(names[:MAX_NAMES_SHOWN]) + more


def export_divert(config, fmt: str = "plain", output: str | None = None, confirm: str | None = None, *,
                  resolver: Resolver | None = None, settings: ExportSettings | None = None,
                  special: Sequence[tuple[Network, str]] = SPECIAL_NETWORKS,
                  out: TextIO | None = None, err: TextIO | None = None,
                  clock: Callable[[], float] = time.time) -> int:
    """``urlwarden export divert``: see the module docstring. Returns 0, or 1 when an address was
    held back; raises `UrlwardenError` (exit 2) when nothing can be written safely.

    `resolver` (default `SystemResolver`), `settings` (default: the configuration's), `special`
    (the special-purpose ranges), the streams and the clock are injectable for tests."""
    if fmt not in ("plain", "nft"):
        raise ConfigError(f"unknown divert format {fmt!r} (known: plain, nft)")
    out = out or sys.stdout
    err = err or sys.stderr
    divert = (settings or _settings_of(config)).divert
    confirmed = read_confirmations(confirm) if confirm else Confirmations()
    shared = divert.shared_networks
    if divert.shared_networks_file:
        shared = shared + read_networks_file(divert.shared_networks_file)

    hosts: set[str] = set()
    exported = []
    for lc in config.lists:
        if lc.feed is not None:
            _warn(err, _hashed_message(lc.name, feed=True))
            continue
        found = list_hosts(lc.spec)
        if found is None:
            _warn(err, _hashed_message(lc.name, feed=False))
            continue
        exported.append(lc.name)
        hosts |= found
    if not exported:
        raise UrlwardenError(f"{config.source}: no list can be exported for diversion (only plain and csv url "
                             f"lists given by 'path' name their hosts); nothing written")

    host_addresses: dict[str, tuple[Address, ...]] = {}
    names = []
    for host in sorted(hosts):
        literal = _literal_address(host)
        if literal is not None:
            host_addresses[host] = (literal,)
        else:
            names.append(host)
    resolved = resolve_hosts(names, resolver or SystemResolver(), timeout=divert.resolve_timeout,
                             concurrency=divert.concurrency, total_timeout=divert.total_timeout)
    unresolved = [name for name in names if not resolved[name].addresses]
    if names and len(unresolved) > divert.max_unresolved * len(names):
        first = resolved[unresolved[0]].error or "no address"
        raise UrlwardenError(f"{len(unresolved)} of {len(names)} names did not resolve (more than max_unresolved="
                             f"{divert.max_unresolved:g}; first: {unresolved[0]}: {first}); is the resolver "
                             f"working? Nothing written")
    for name in names:
        if resolved[name].addresses:
            host_addresses[name] = resolved[name].addresses

    plan = plan_divert(host_addresses, max_names_per_address=divert.max_names_per_address, shared=shared,
                       confirmed=confirmed, special=special)
    generated = dt.datetime.fromtimestamp(clock(), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if fmt == "nft":
        text = render_nft(plan, generated=generated, source=str(config.source), table=divert.nft_table)
    else:
        text = render_plain(plan, generated=generated, source=str(config.source))
    if output:
        _write_file(output, text.encode("utf-8"), what="output")
    else:
        out.write(text)
        out.flush()

    _warn(err, f"{len(plan.diverted)} addresses to divert ({len(plan.ipv4)} IPv4, {len(plan.ipv6)} IPv6) for "
               f"{len(hosts)} hosts of {len(exported)} lists ({', '.join(exported)})"
               + (f"; {len(plan.confirmed)} of them confirmed by the operator" if plan.confirmed else ""))
    if unresolved:
        _warn(err, f"{len(unresolved)} of {len(names)} names did not resolve and are not diverted: "
                   f"{_shown(unresolved)}")
    for item in plan.held:
        _warn(err, f"held back {item.address}: {'; '.join(item.reasons)}; names: {_shown(list(item.names))}")
    if plan.held:
        _warn(err, f"{len(plan.held)} addresses held back: traffic to them is NOT diverted (so not filtered). "
                   f"Check them; list the ones to divert (address or name) in a file given with --confirm")
        return 1
    return 0


# --- export snapshot -----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Item:
    """One list ready to publish."""

    name: str
    source: str  # "feed" or "static"
    file: str
    format: str
    body: bytes
    entries: int
    checksum: str
    serial: str | None
    last_success: float | None


def export_snapshot(config, directory: str, key_path: str | None = None, *, keys_dir: str | None = None,
                    settings: ExportSettings | None = None, err: TextIO | None = None,
                    clock: Callable[[], float] = time.time) -> int:
    """``urlwarden export snapshot DIR``: see the module docstring. Returns 0, or 1 when a configured
    list could not be exported this time; raises `UrlwardenError` (exit 2) when nothing can be.

    With a TUF key directory (`keys_dir`, or ``export.snapshot.keys_dir``) DIR becomes a TUF
    repository (`urlwarden.exports.tufrepo`); with `key_path` the detached-signature format is written
    (deprecated; both at once for a migration); with neither, the unsigned legacy format."""
    err = err or sys.stderr
    snapshot_settings = (settings or _settings_of(config)).snapshot
    keys_dir = keys_dir or snapshot_settings.keys_dir
    key = _load_private_key(key_path, err) if key_path else None
    if key is not None:
        _warn(err, "warning: --key writes the detached-signature snapshot, deprecated and removed in the next "
                   "release: publish a TUF repository with --keys KEYDIR (see docs/isp.md, section 7)")
    elif keys_dir is None:
        _warn(err, "warning: no --key given: the snapshot is NOT signed; consumers with a public_key reject it")
    items, skipped = _snapshot_items(config, snapshot_settings, err)
    if keys_dir is not None:
        _export_tuf(directory, keys_dir, items, skipped, snapshot_settings, err, clock)
        if key is None:
            return 1 if skipped else 0
    return _export_legacy(directory, items, skipped, key, err, clock)


def _snapshot_items(config, snapshot_settings: SnapshotSettings, err: TextIO) -> tuple[list[_Item], list[str]]:
    """The lists to publish and the names of the configured ones that cannot be this time."""
    wanted: list[str] = []
    items: list[_Item] = []
    skipped: list[str] = []
    store = LastKnownGood(config.state_dir)
    for spec in config.feeds:
        wanted.append(spec.name)
        try:
            item = _feed_item(store, spec.name)
        except FeedError as exc:
            _warn(err, f"feed {spec.name!r} not exported, its previous snapshot stays: {exc}")
            skipped.append(spec.name)
            continue
        if item is None:
            _warn(err, f"feed {spec.name!r} has no last-known-good copy in {config.state_dir} yet (run "
                       f"`urlwarden update` first); its previous snapshot stays")
            skipped.append(spec.name)
            continue
        items.append(item)
    if snapshot_settings.include_static:
        for lc in config.static_lists:
            wanted.append(lc.name)
            items.append(_static_item(lc.spec))
    if not wanted:
        raise UrlwardenError(f"{config.source}: no feeds configured, nothing to export")
    if not items:
        raise UrlwardenError(f"nothing to export: no configured list is available ({', '.join(skipped)}); "
                             f"the snapshot is left unchanged")
    return items, skipped


def _export_tuf(directory: str, keys_dir: str, items: list[_Item], skipped: list[str],
                snapshot_settings: SnapshotSettings, err: TextIO, clock: Callable[[], float]) -> None:
    """Publish `items` as the targets of the TUF repository in `directory` (see `urlwarden.exports.tufrepo`)."""
    from urlwarden.exports.tufrepo import KeyStore, ListTarget, TufSettings, publish

    targets = [ListTarget(path=item.file, raw=item.body.split(b"\n", 1)[1], checksum=item.checksum,
                          entries=item.entries, source=item.source, upstream_serial=item.serial)
               for item in items]
    keep = [f"{name}.{fmt}" for name in skipped for fmt in ("sha256", "csv")]
    tuf_settings = snapshot_settings.tuf if snapshot_settings.tuf is not None else TufSettings()
    result = publish(directory, KeyStore(keys_dir), targets, tuf_settings, keep=keep, clock=clock)
    for note in result.notes:
        _warn(err, f"warning: {note}")
    for item in items:
        what = "changed" if item.file in result.changed else "unchanged"
        _warn(err, f"{item.source} {item.name!r}: {item.entries} entries, checksum {item.checksum[:16]}, list "
                   f"version {result.list_versions.get(item.file)} ({what}) -> TUF target {item.file}")
    _warn(err, f"TUF repository {directory}: root v{result.root_version}, targets v{result.targets_version}, "
               f"snapshot v{result.snapshot_version}, timestamp v{result.timestamp_version} (expires in "
               f"{tuf_settings.expiry['timestamp']:g} s)")


def _export_legacy(directory: str, items: list[_Item], skipped: list[str], key, err: TextIO,
                   clock: Callable[[], float]) -> int:
    """The detached-signature snapshot (one ``.sig`` per file and ``index.json``): deprecated."""
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise UrlwardenError(f"{directory}: cannot create ({exc.strerror or exc})") from None
    previous_index = _read_index(directory)
    previous = previous_index.get("lists", [])
    key_id = _key_id(key) if key is not None else None
    entries = []
    for item in items:
        entries.append(_publish(directory, item, key))
    by_name = {entry.get("name"): entry for entry in previous}
    for name in skipped:  # keep what was published before for it
        if isinstance(by_name.get(name), Mapping):
            entries.append(dict(by_name[name]))
    kept = {e["file"] for e in entries} | {e["signature"] for e in entries if e.get("signature")}
    for entry in previous:
        for key_name in ("file", "signature"):
            old = entry.get(key_name)
            if isinstance(old, str) and old not in kept and _SNAPSHOT_FILE.match(old):
                _remove_quietly(os.path.join(directory, old))
    entries.sort(key=lambda e: e["name"])
    index = {
        "urlwarden_snapshot": SNAPSHOT_VERSION,
        "generated": _iso(clock()),  # when the snapshot last changed
        "signed": key is not None,
        "key_id": key_id,
        "lists": entries,
    }
    if all(previous_index.get(k) == index[k] for k in ("urlwarden_snapshot", "signed", "key_id", "lists")):
        index["generated"] = previous_index.get("generated", index["generated"])  # unchanged: not rewritten
    index_bytes = (json.dumps(index, indent=1, sort_keys=True) + "\n").encode("ascii")
    _write_if_changed(directory, INDEX_FILE, index_bytes)
    if key is not None:
        _write_if_changed(directory, INDEX_FILE + ".sig", _signature_file(key, index_bytes))
    else:
        _remove_quietly(os.path.join(directory, INDEX_FILE + ".sig"))
    for item in items:
        _warn(err, f"{item.source} {item.name!r}: {item.entries} entries, checksum {item.checksum[:16]}, "
                   f"{'signed' if key is not None else 'UNSIGNED'} -> {os.path.join(directory, item.file)}")
    return 1 if skipped else 0


def _feed_item(store: LastKnownGood, name: str) -> _Item | None:
    stored = store.load(name)  # FeedError when damaged
    if stored is None:
        return None
    fmt = "csv" if stored.list_path.endswith(".csv") else "sha256"
    try:
        with open(stored.list_path, "rb") as f:
            raw = f.read(MAX_SNAPSHOT_LIST_BYTES + 1)
    except OSError as exc:
        raise FeedError(f"feed {name!r}: cannot read {stored.list_path} ({exc.strerror or exc})") from None
    if len(raw) > MAX_SNAPSHOT_LIST_BYTES:
        raise FeedError(f"feed {name!r}: last-known-good copy larger than {MAX_SNAPSHOT_LIST_BYTES} bytes")
    serial = stored.version.serial if stored.version is not None else None
    try:
        header = encode_list_header(serial, stored.checksum)
    except ValueError:
        header = encode_list_header(None, stored.checksum)
        serial = None
    body = header.encode("ascii") + raw
    parsed, _ = parse_full(body, fmt, name)  # what a consumer will do; FeedError if it would fail
    if not parsed.hashed:
        raise FeedError(f"feed {name!r}: the stored copy is not hashed; refusing to publish a list in clear")
    if checksum(parsed) != stored.checksum:
        raise FeedError(f"feed {name!r}: the last-known-good copy changed while it was exported; run again")
    return _Item(name, "feed", f"{name}.{fmt}", fmt, body, parsed.count, stored.checksum, serial,
                 stored.last_success)


def _static_item(spec: ListSpec) -> _Item:
    parsed = normalize(load_list(spec))
    fmt = "csv" if parsed.ids is not None or parsed.categories is not None else "sha256"
    value = checksum(parsed)
    with tempfile.TemporaryDirectory(prefix="urlwarden-export-") as tmp:
        path = os.path.join(tmp, f"{spec.name}.{fmt}")
        write_sha256_list(parsed, path)  # hashed, sorted: nothing in clear leaves
        with open(path, "rb") as f:
            raw = f.read()
    body = encode_list_header(None, value).encode("ascii") + raw
    check, _ = parse_full(body, fmt, spec.name)
    if not check.hashed or checksum(check) != value:
        raise UrlwardenError(f"list {spec.name!r}: the hashed copy does not give the list's checksum")
    return _Item(spec.name, "static", f"{spec.name}.{fmt}", fmt, body, check.count, value, None, None)


def _publish(directory: str, item: _Item, key) -> dict:
    other = f"{item.name}.{'sha256' if item.format == 'csv' else 'csv'}"
    signature_name = item.file + ".sig"
    if key is None:
        _remove_quietly(os.path.join(directory, signature_name))  # an old signature must not pair with a new list
    _write_if_changed(directory, item.file, item.body)
    if key is not None:
        _write_if_changed(directory, signature_name, _signature_file(key, item.body))
    for stale in (other, other + ".sig"):
        _remove_quietly(os.path.join(directory, stale))
    return {
        "name": item.name,
        "source": item.source,
        "file": item.file,
        "signature": signature_name if key is not None else None,
        "format": item.format,
        "entries": item.entries,
        "checksum": item.checksum,
        "serial": item.serial,
        "last_success": _iso(item.last_success) if item.last_success is not None else None,
        "bytes": len(item.body),
        "file_sha256": hashlib.sha256(item.body).hexdigest(),
    }


def _load_private_key(path: str, err: TextIO):
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as exc:
        raise UrlwardenError(f"--key {path}: cannot read ({exc.strerror or exc}); nothing written") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise UrlwardenError(f"--key {path}: too large for a key; nothing written")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise UrlwardenError(f"--key {path}: the key is encrypted; give an unencrypted PEM key; nothing written") \
            from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UrlwardenError(f"--key {path}: not a PEM private key ({type(exc).__name__}); nothing written") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UrlwardenError(f"--key {path}: not an Ed25519 key ({type(key).__name__}); nothing written")
    if mode & 0o077:
        _warn(err, f"warning: --key {path} is readable by other users (mode {mode & 0o777:o}); chmod 600 it")
    return key


def _key_id(key) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _signature_file(key, body: bytes) -> bytes:
    return base64.b64encode(key.sign(body)) + b"\n"


def _read_index(directory: str) -> dict:
    """The previous index in `directory`, its ``lists`` reduced to usable entries; {} when there is
    none or it is damaged."""
    try:
        with open(os.path.join(directory, INDEX_FILE), "rb") as f:
            data = f.read(MAX_INDEX_BYTES + 1)
        document = json.loads(data) if len(data) <= MAX_INDEX_BYTES else None
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or not isinstance(document.get("lists"), list):
        return {}
    document["lists"] = [e for e in document["lists"] if isinstance(e, dict) and isinstance(e.get("name"), str)
                         and isinstance(e.get("file"), str)]
    return document


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- files ---------------------------------------------------------------------------------------

def _write_if_changed(directory: str, name: str, data: bytes) -> bool:
    """Write `data` to ``directory/name`` atomically unless it already holds exactly that; True if written."""
    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as f:
            if f.read(len(data) + 1) == data:
                if os.stat(path).st_mode & 0o777 != PUBLISHED_MODE:
                    os.chmod(path, PUBLISHED_MODE)
                return False
    except OSError:
        pass
    _write_file(path, data, what="snapshot")
    return True


def _write_file(path: str, data: bytes, what: str) -> None:
    """Temp file in the same directory, fsync, rename, directory fsync; mode `PUBLISHED_MODE`."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".urlwarden-", suffix=".tmp")
    except OSError as exc:
        raise UrlwardenError(f"{path}: cannot write {what} ({exc.strerror or exc})") from None
    done = False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), PUBLISHED_MODE)
            os.fsync(f.fileno())
        os.replace(temp, path)
        done = True
    except OSError as exc:
        raise UrlwardenError(f"{path}: cannot write {what} ({exc.strerror or exc})") from None
    finally:
        if not done:
            _remove_quietly(temp)
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        os.unlink(path)



# --- TUF keys and the publishing loop ---------------------------------------------------------------

def export_snapshot_every(config, directory: str, seconds: float, key_path: str | None = None, *,
                          keys_dir: str | None = None, err: TextIO | None = None,
                          clock: Callable[[], float] = time.time, runs: int | None = None,
                          stop: threading.Event | None = None) -> int:
    """``export snapshot DIR --every SECONDS``: publish, then again every `seconds` (the TUF
    timestamp must be re-signed before it expires, and a changed list should reach the fleet
    within a minute). A failed run is reported and the next one tried; the previous repository
    state stays published meanwhile. Runs until `stop` is set (SIGTERM and SIGINT set it, between
    two runs: a run is never cut in half), or `runs` times. Returns the last run's status."""
    err = err or sys.stderr
    if not 1 <= seconds <= 3600:
        raise UrlwardenError(f"--every: must be from 1 to 3600 seconds, not {seconds:g}")
    stop = stop or threading.Event()
    restore = _stop_on_signals(stop)
    try:
        status, done, next_run = 0, 0, time.monotonic()
        while not stop.is_set() and (runs is None or done < runs):
            try:
                status = export_snapshot(config, directory, key_path, keys_dir=keys_dir, err=err, clock=clock)
            except UrlwardenError as exc:
                _warn(err, f"{exc} (retrying in {seconds:g} s)")
                status = 2
            done += 1
            next_run += seconds
            if runs is None or done < runs:
                stop.wait(max(0.0, next_run - time.monotonic()))
        return status
    finally:
        restore()


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGTERM and SIGINT set `stop` (main thread only); returns what undoes it."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def snapshot_every(config) -> float | None:
    """``export.snapshot.every`` of the configuration (None: one run)."""
    return _settings_of(config).snapshot.every


def _tuf_settings(config):
    from urlwarden.exports.tufrepo import TufSettings

    value = _settings_of(config).snapshot.tuf
    return value if value is not None else TufSettings()


def _keys_dir(config, keys_dir: str | None) -> str:
    value = keys_dir or _settings_of(config).snapshot.keys_dir
    if value is None:
        raise UrlwardenError("no TUF key directory: give --keys KEYDIR or set export.snapshot.keys_dir")
    return value


def export_keys_init(config, directory: str, thresholds: Sequence[str] = (), *, err: TextIO | None = None) -> int:
    """``urlwarden export keys init KEYDIR``: keys for the four roles and root version 1."""
    from urlwarden.exports.tufrepo import ROLES, TufSettings, init_keys

    err = err or sys.stderr
    base = _tuf_settings(config)
    chosen = dict(base.thresholds)
    for text in thresholds:
        role, sep, count = text.partition("=")
        if not sep or role not in ROLES or not count.isdigit():
            raise UrlwardenError(f"--threshold {text!r}: must be ROLE=N with ROLE one of {', '.join(ROLES)}")
        chosen[role] = int(count)
    root = init_keys(directory, TufSettings(expiry=base.expiry, thresholds=chosen))
    _warn(err, f"TUF keys created in {directory} (root version 1, expires {root.signed.expires:%Y-%m-%d}):")
    for line in _describe(directory):
        _warn(err, "  " + line)
    _warn(err, f"ship {os.path.join(directory, 'metadata', '1.root.json')} to every node (feed option root_file); "
               f"move {os.path.join(directory, 'root')} offline (needed only to rotate keys)")
    return 0


def export_keys_rotate(config, role: str, keys_dir: str | None = None, keyid: str | None = None, *,
                       err: TextIO | None = None) -> int:
    """``urlwarden export keys rotate ROLE``: a new key for ROLE through a new root version."""
    from urlwarden.exports.tufrepo import KeyStore, rotate_key

    err = err or sys.stderr
    directory = _keys_dir(config, keys_dir)
    root = rotate_key(KeyStore(directory), role, keyid, _tuf_settings(config))
    _warn(err, f"root version {root.signed.version} written: the {role} role has a new key "
               f"(the old private key is in {os.path.join(directory, 'revoked')}); the next "
               f"`urlwarden export snapshot` publishes it and re-signs what the old key signed")
    for line in _describe(directory):
        _warn(err, "  " + line)
    return 0


def export_keys_show(config, keys_dir: str | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    for line in _describe(_keys_dir(config, keys_dir)):
        print(line, file=out)
    return 0


def _describe(directory: str) -> list[str]:
    from urlwarden.exports.tufrepo import KeyStore, describe_keys

    store = KeyStore(directory)
    return [f"root version {store.root().signed.version}", *describe_keys(store)]
