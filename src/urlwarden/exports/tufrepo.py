"""A TUF repository of the fleet's lists: keys, root versions, and the publisher.

The Update Framework (TUF, https://theupdateframework.io) protects a fleet's list downloads
against what a signature per file cannot: replays of older lists (rollback), a mirror that keeps
serving the same old state (freeze), files combined from different moments (mix and match), and
one key that can never change. This module builds such a repository with ``tuf.api.metadata``;
the nodes read it with ``tuf.ngclient`` (`urlwarden.feeds.tuf`).

Roles and keys (Ed25519, one PEM file per key, mode 0600, in ``KEYDIR/<role>/<keyid>.pem``):

    root       signs the root metadata: which keys each role has, and thresholds.
               Offline: needed only by ``urlwarden export keys init`` and ``... rotate``.
    targets    signs the list of targets (each list file's length, SHA-256, list version).
               Needed by the publisher whenever a list changes.
    snapshot   signs which targets metadata version is current (no mix and match).   Online.
    timestamp  signs which snapshot is current, with a short expiry (no freeze).     Online.

``KEYDIR/metadata/<N>.root.json`` holds every root version (1 is the one the nodes ship);
``KEYDIR/revoked/`` keeps the private keys a rotation replaced, never used again;
``KEYDIR/published.json`` the newest timestamp, snapshot and targets versions published, so a
wiped or restored repository directory continues above them (nodes refuse lower versions).

Repository layout (``DIR``, served by a web server; consistent snapshots, so every file a node
fetches is named by its version or hash and one refresh sees one moment):

    <N>.root.json            every root version (nodes walk them one by one)
    timestamp.json           re-signed at every `publish`, expires after ``timestamp_expiry``
    <N>.snapshot.json        a new version when targets changed or a key was rotated
    <N>.targets.json         a new version when a list changed or a key was rotated
    targets/<sha256>.<name>.<sha256|csv>   the hashed lists (never a URL in clear)

Every file is written atomically (temporary file, fsync, rename, directory fsync), targets and
metadata first, ``timestamp.json`` last: until its rename a node sees the previous moment whole.
The previous `KEEP_VERSIONS` versions of snapshot, targets and target files stay, so a node in
the middle of a refresh still finds the files its (older) timestamp names.

List version: each target carries ``custom.urlwarden.list_version``, an integer raised by one
whenever that list's content changes; the list file's header line carries the same number as
its serial, so nodes report it (``urlwarden_list_version``) and an operator sees convergence.

Worked example::

    keys = init_keys("/etc/urlwarden/tuf-keys")                  # 1.root.json and four keys
    publish("/srv/urlwarden-tuf", KeyStore("/etc/urlwarden/tuf-keys"), [ListTarget(...)])
    rotate_key(KeyStore("/etc/urlwarden/tuf-keys"), "timestamp")   # 2.root.json, new key
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from urlwarden.errors import UrlwardenError
from urlwarden.core.fsutil import fsync_directory, read_small_file, write_atomically

__all__ = [
    "DEFAULT_EXPIRY",
    "DEFAULT_THRESHOLDS",
    "KEEP_VERSIONS",
    "ROLES",
    "KeyStore",
    "ListTarget",
    "PublishResult",
    "TufSettings",
    "init_keys",
    "publish",
    "rotate_key",
]

ROLES = ("root", "targets", "snapshot", "timestamp")
DEFAULT_EXPIRY = {
    "root": 365 * 86400.0,
    "targets": 90 * 86400.0,
    "snapshot": 7 * 86400.0,
    "timestamp": 300.0,
}
"""Seconds each role's metadata stays valid. The timestamp's five minutes: a node refuses a
frozen repository at most that long after the publisher stopped re-signing (nodes refresh every
30 s, the publisher re-signs every 10 s, so a few missed runs do no harm)."""
DEFAULT_THRESHOLDS = {role: 1 for role in ROLES}
KEEP_VERSIONS = 3
"""Snapshot and targets versions (and their target files) kept besides the newest."""
MIN_EXPIRY = 30.0
MAX_EXPIRY = 10 * 365 * 86400.0
MAX_THRESHOLD = 16
MAX_KEY_FILE_BYTES = 16 * 1024
MAX_METADATA_BYTES = 16 * 1024 * 1024
MAX_ROOT_VERSIONS = 10_000
PUBLISHED_MODE = 0o644
TARGETS_DIR = "targets"
CUSTOM_KEY = "urlwarden"

_TARGET_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.(?:sha256|csv)\Z")
_VERSIONED = re.compile(r"([1-9][0-9]{0,17})\.(root|snapshot|targets)\.json\Z")
_KEY_FILE = re.compile(r"[0-9a-f]{64}\.pem\Z")
_SERIALIZER = JSONSerializer(compact=False)


class TufError(UrlwardenError):
    """A key, a root version or the repository cannot be used; nothing was published."""


@dataclass(frozen=True)
class TufSettings:
    """Expiry (seconds) per role and signature thresholds (used when a root is made)."""

    expiry: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EXPIRY))
    thresholds: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))

    def __post_init__(self) -> None:
        expiry = {**DEFAULT_EXPIRY, **dict(self.expiry)}
        thresholds = {**DEFAULT_THRESHOLDS, **dict(self.thresholds)}
        for role, seconds in expiry.items():
            if role not in ROLES or isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                    or not MIN_EXPIRY <= seconds <= MAX_EXPIRY:
                raise TufError(f"tuf expiry of {role!r}: must be {MIN_EXPIRY:g} s to {MAX_EXPIRY:g} s, not {seconds!r}")
        for role, count in thresholds.items():
            if role not in ROLES or isinstance(count, bool) or not isinstance(count, int) \
                    or not 1 <= count <= MAX_THRESHOLD:
                raise TufError(f"tuf threshold of {role!r}: must be an integer 1..{MAX_THRESHOLD}, not {count!r}")
        object.__setattr__(self, "expiry", expiry)
        object.__setattr__(self, "thresholds", thresholds)


@dataclass(frozen=True)
class ListTarget:
    """One hashed list to publish: its file name (``<name>.sha256`` or ``.csv``), the list bytes
    without header line, and what the header and the custom metadata say about it."""

    path: str
    raw: bytes
    checksum: str
    entries: int
    source: str = "feed"
    upstream_serial: str | None = None

    def __repr__(self) -> str:
        return f"ListTarget({self.path!r}, <{len(self.raw)} bytes>, entries={self.entries})"


@dataclass(frozen=True)
class PublishResult:
    root_version: int
    targets_version: int
    snapshot_version: int
    timestamp_version: int
    list_versions: Mapping[str, int]
    changed: tuple[str, ...]
    notes: tuple[str, ...] = ()  # problems that did not stop the run (printed as warnings)


# --- keys --------------------------------------------------------------------------------------

class KeyStore:
    """The key directory: private keys per role and the chain of root versions."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = os.fspath(directory)

    def role_dir(self, role: str) -> str:
        return os.path.join(self.directory, role)

    @property
    def metadata_dir(self) -> str:
        return os.path.join(self.directory, "metadata")

    def root_versions(self) -> list[int]:
        try:
            names = os.listdir(self.metadata_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TufError(f"{self.metadata_dir}: cannot read ({exc.strerror or exc})") from None
        versions = sorted(int(m.group(1)) for n in names if (m := _VERSIONED.match(n)) and m.group(2) == "root")
        if versions and versions != list(range(1, len(versions) + 1)):
            raise TufError(f"{self.metadata_dir}: root versions {versions} are not 1..N without gaps")
        return versions

    def root_bytes(self, version: int) -> bytes:
        return _read(os.path.join(self.metadata_dir, f"{version}.root.json"), MAX_METADATA_BYTES)

    def root(self) -> Metadata[Root]:
        """The newest root version; `TufError` when there is none (run ``export keys init``)."""
        versions = self.root_versions()
        if not versions:
            raise TufError(f"{self.directory}: no root metadata (run `urlwarden export keys init {self.directory}`)")
        return _parse(self.root_bytes(versions[-1]), f"{versions[-1]}.root.json", Root)

    def signers(self, role: str, root: Root, *, need: int | None = None) -> list[CryptoSigner]:
        """Signers for `role`'s keys as `root` names them, from ``KEYDIR/<role>/``; at least the
        role's threshold (or `need`) of them, else `TufError` naming the role and the directory."""
        wanted = set(root.roles[role].keyids)
        signers = [s for s in self._load_role(role) if s.public_key.keyid in wanted]
        required = root.roles[role].threshold if need is None else need
        if len(signers) < required:
            raise TufError(f"{self.role_dir(role)}: {len(signers)} of the {role} role's keys found, "
                           f"{required} needed to sign (is the {role} key directory in place?)")
        return signers

    def add_key(self, role: str) -> CryptoSigner:
        """A new Ed25519 key for `role`, written to ``KEYDIR/<role>/<keyid>.pem`` (0600)."""
        private = Ed25519PrivateKey.generate()
        signer = CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))
        os.makedirs(self.role_dir(role), mode=0o700, exist_ok=True)
        os.chmod(self.role_dir(role), 0o700)
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        path = os.path.join(self.role_dir(role), f"{signer.public_key.keyid}.pem")
        _write(path, pem, mode=0o600)
        return signer

    def revoke_key(self, role: str, keyid: str) -> None:
        """Move a replaced private key to ``KEYDIR/revoked/<role>-<keyid>.pem`` (kept, never used)."""
        source = os.path.join(self.role_dir(role), f"{keyid}.pem")
        if not os.path.exists(source):
            return  # an offline key not present here: nothing to move
        revoked = os.path.join(self.directory, "revoked")
        os.makedirs(revoked, mode=0o700, exist_ok=True)
        os.replace(source, os.path.join(revoked, f"{role}-{keyid}.pem"))
        fsync_directory(revoked)
        fsync_directory(self.role_dir(role))

    def write_root(self, root: Metadata[Root]) -> str:
        os.makedirs(self.metadata_dir, mode=0o755, exist_ok=True)
        path = os.path.join(self.metadata_dir, f"{root.signed.version}.root.json")
        if os.path.exists(path):
            raise TufError(f"{path}: already exists; a root version is never rewritten")
        _write(path, root.to_bytes(_SERIALIZER), mode=PUBLISHED_MODE)
        return path

    def _load_role(self, role: str) -> list[CryptoSigner]:
        directory = self.role_dir(role)
        try:
            names = sorted(n for n in os.listdir(directory) if _KEY_FILE.match(n))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TufError(f"{directory}: cannot read ({exc.strerror or exc})") from None
        return [_load_signer(os.path.join(directory, n)) for n in names]


def _load_signer(path: str) -> CryptoSigner:
    data = _read(path, MAX_KEY_FILE_BYTES)
    if os.stat(path).st_mode & 0o077:
        raise TufError(f"{path}: readable by other users; chmod 600 it (a signing key must stay private)")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TufError(f"{path}: the key is encrypted; keep it unencrypted on a protected disk") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TufError(f"{path}: not a PEM private key ({type(exc).__name__})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise TufError(f"{path}: not an Ed25519 key ({type(private).__name__})")
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key()))


def init_keys(directory: str, settings: TufSettings | None = None, *,
              clock: Callable[[], float] | None = None) -> Metadata[Root]:
    """``urlwarden export keys init KEYDIR``: threshold-many keys per role and root version 1."""
    settings = settings or TufSettings()
    store = KeyStore(directory)
    if store.root_versions():
        raise TufError(f"{directory}: already holds root metadata; use `urlwarden export keys rotate`")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        root = Root(expires=_expiry(settings, "root", clock), consistent_snapshot=True)
        signers: dict[str, list[CryptoSigner]] = {}
        for role in ROLES:
            signers[role] = [store.add_key(role) for _ in range(settings.thresholds[role])]
            for signer in signers[role]:
                root.add_key(signer.public_key, role)
            root.roles[role].threshold = settings.thresholds[role]
        metadata = Metadata(root)
        for signer in signers["root"]:
            metadata.sign(signer, append=True)
        store.write_root(metadata)
    except OSError as exc:
        raise TufError(f"{directory}: cannot write keys ({exc.strerror or exc})") from None
    return metadata


def rotate_key(store: KeyStore, role: str, keyid: str | None = None, settings: TufSettings | None = None, *,
               clock: Callable[[], float] | None = None) -> Metadata[Root]:
    """``urlwarden export keys rotate ROLE``: replace one key of `role` (`keyid`, or the role's
    only key) by a new one, in a new root version signed by the threshold of the current root
    keys and of the new root keys (for root itself: old and new root key both sign). The old
    private key moves to ``revoked/``. The next `publish` re-signs what the old key had signed."""
    settings = settings or TufSettings()
    if role not in ROLES:
        raise TufError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    current = store.root()
    keyids = list(current.signed.roles[role].keyids)
    if keyid is None:
        if len(keyids) != 1:
            raise TufError(f"the {role} role has {len(keyids)} keys; name the one to replace with --keyid")
        keyid = keyids[0]
    if keyid not in keyids:
        raise TufError(f"key {keyid} is not a {role} key (its keys: {', '.join(keyids)})")
    old_root_signers = store.signers("root", current.signed)
    new = Metadata(Root.from_dict(copy.deepcopy(current.signed.to_dict())))  # to_dict shares the role lists
    new.signed.version = current.signed.version + 1
    new.signed.expires = _expiry(settings, "root", clock)
    try:
        signer = store.add_key(role)
    except OSError as exc:
        raise TufError(f"{store.role_dir(role)}: cannot write the new key ({exc.strerror or exc})") from None
    new.signed.revoke_key(keyid, role)
    new.signed.add_key(signer.public_key, role)
    if new.signed.roles[role].threshold > len(new.signed.roles[role].keyids):
        raise TufError(f"the {role} role would have fewer keys than its threshold")
    # The current root's keys sign (the nodes trust the new version through them); for a root
    # rotation the new root key signs too (the new version must meet its own threshold).
    for s in [*old_root_signers, *([signer] if role == "root" else [])]:
        new.sign(s, append=True)
    try:
        new.signed.verify_delegate(Root.type, new.signed_bytes, new.signatures)       # new keys
        current.signed.verify_delegate(Root.type, new.signed_bytes, new.signatures)   # old keys
    except UnsignedMetadataError as exc:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(store.role_dir(role), f"{signer.public_key.keyid}.pem"))
        raise TufError(f"the new root would not verify ({exc}); nothing changed") from None
    try:
        store.write_root(new)
        store.revoke_key(role, keyid)
    except OSError as exc:
        raise TufError(f"{store.directory}: cannot write the new root ({exc.strerror or exc})") from None
    return new


# --- publishing --------------------------------------------------------------------------------

def publish(directory: str, store: KeyStore, lists: Sequence[ListTarget], settings: TufSettings | None = None, *,
            keep: Iterable[str] = (), clock: Callable[[], float] | None = None) -> PublishResult:
    """Bring the repository in `directory` to `lists` (plus the previously published targets
    named in `keep`, lists that could not be read this time), re-sign the timestamp, and
    re-sign snapshot and targets when they changed, near expiry, or no longer verify with the
    current root (a rotated key). `TufError` (nothing of this run published) on any problem."""
    settings = settings or TufSettings()
    now = _now(clock)
    store.root()  # a clear error for a key directory without keys, before anything else
    try:
        with _exclusive(os.path.join(store.directory, ".publish.lock")):  # one publisher run per key directory
            return _publish(directory, store, lists, settings, set(keep), now)
    except OSError as exc:
        raise TufError(f"{directory}: cannot write the repository ({exc.strerror or exc}); "
                       f"the previous timestamp stays") from None


def _publish(directory: str, store: KeyStore, lists: Sequence[ListTarget], settings: TufSettings,
             keep: set[str], now: dt.datetime) -> PublishResult:
    root_md = store.root()
    root = root_md.signed
    if root.is_expired(now):
        raise TufError(f"root version {root.version} expired on {root.expires:%Y-%m-%d}; rotate a key "
                       f"(`urlwarden export keys rotate`) to issue a new root")
    os.makedirs(os.path.join(directory, TARGETS_DIR), mode=0o755, exist_ok=True)
    for version in store.root_versions():  # every root version, so a node can walk the chain
        _write_if_changed(os.path.join(directory, f"{version}.root.json"), store.root_bytes(version))

    old_timestamp, old_snapshot, old_targets = _current(directory)
    previous = old_targets.signed.targets if old_targets is not None else {}
    # Versions the fleet has seen, kept beside the keys: a repository directory that was wiped or
    # restored from an older backup must not restart at lower versions (every node would refuse
    # them as a rollback).
    floor = _read_versions(store)

    # targets: one entry per list, the list version raised when the content changed
    new_files: dict[str, TargetFile] = {}
    bodies: dict[str, bytes] = {}
    changed: list[str] = []
    for item in lists:
        if not _TARGET_PATH.match(item.path):
            raise TufError(f"list file name {item.path!r} is not <name>.sha256 or <name>.csv")
        before = previous.get(item.path)
        info_before = _custom(before)
        if before is not None and info_before.get("checksum") == item.checksum:
            new_files[item.path] = before
            continue
        list_version = int(info_before.get("list_version", 0)) + 1
        body = _header(list_version, item.checksum) + item.raw
        custom = {CUSTOM_KEY: {"list_version": list_version, "checksum": item.checksum, "entries": item.entries,
                               "source": item.source, "upstream_serial": item.upstream_serial,
                               "published": _iso(now)}}
        target = TargetFile.from_data(item.path, body, ["sha256"])
        target.unrecognized_fields["custom"] = custom
        new_files[item.path] = target
        bodies[item.path] = body
        changed.append(item.path)
    for path in keep:
        if path in previous and path not in new_files:
            new_files[path] = previous[path]

    # target files first (hash-prefixed names: never overwriting a file a node may be reading)
    for path, body in bodies.items():
        digest = new_files[path].hashes["sha256"]
        _write_if_changed(os.path.join(directory, TARGETS_DIR, f"{digest}.{path}"), body)

    targets_md = old_targets
    notes: list[str] = []
    if (old_targets is None or new_files != previous or _needs_resign(old_targets, root, settings, now)):
        version = max(old_targets.signed.version if old_targets is not None else 0, floor["targets"]) + 1
        candidate = Metadata(Targets(version=version, expires=_later(now, settings, "targets"), targets=new_files))
        try:
            _sign(candidate, store, "targets", root)
        except TufError as exc:
            if old_targets is None or old_targets.signed.is_expired(now) or _unverified(old_targets, root):
                raise
            # The targets key may be kept away from node A: the lists in force stay published,
            # the timestamp is still re-signed (no freeze alarm), and the operator is told.
            notes.append(f"{exc}: list changes NOT published, the previous targets version "
                         f"{old_targets.signed.version} stays")
            changed = []
        else:
            targets_md = candidate
            _write_new(os.path.join(directory, f"{version}.targets.json"), targets_md)

    snapshot_md = old_snapshot
    if (old_snapshot is None or old_snapshot.signed.meta.get("targets.json") != MetaFile(targets_md.signed.version)
            or _needs_resign(old_snapshot, root, settings, now)):
        version = max(old_snapshot.signed.version if old_snapshot is not None else 0, floor["snapshot"]) + 1
        snapshot_md = Metadata(Snapshot(version=version, expires=_later(now, settings, "snapshot"),
                                        meta={"targets.json": MetaFile(targets_md.signed.version)}))
        _sign(snapshot_md, store, "snapshot", root)
        _write_new(os.path.join(directory, f"{version}.snapshot.json"), snapshot_md)

    snapshot_bytes = _read(os.path.join(directory, f"{snapshot_md.signed.version}.snapshot.json"), MAX_METADATA_BYTES)
    timestamp_version = max(old_timestamp.signed.version if old_timestamp is not None else 0, floor["timestamp"]) + 1
    timestamp_md = Metadata(Timestamp(
        version=timestamp_version, expires=_later(now, settings, "timestamp"),
        snapshot_meta=MetaFile(snapshot_md.signed.version, length=len(snapshot_bytes),
                               hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()})))
    _sign(timestamp_md, store, "timestamp", root)
    _write_versions(store, {"timestamp": timestamp_version, "snapshot": snapshot_md.signed.version,
                            "targets": targets_md.signed.version})
    _write(os.path.join(directory, "timestamp.json"), timestamp_md.to_bytes(_SERIALIZER), mode=PUBLISHED_MODE)

    _prune(directory, snapshot_md.signed.version, targets_md.signed.version)
    return PublishResult(
        root_version=root.version, targets_version=targets_md.signed.version,
        snapshot_version=snapshot_md.signed.version, timestamp_version=timestamp_version,
        list_versions={p: int(_custom(t).get("list_version", 0))
                       for p, t in sorted(targets_md.signed.targets.items())},
        changed=tuple(changed), notes=tuple(notes))


def _current(directory: str) -> tuple[Metadata | None, Metadata | None, Metadata | None]:
    """(timestamp, snapshot, targets) now published in `directory`, each None when absent;
    `TufError` when they exist but are damaged (a publisher never builds on a broken state)."""
    path = os.path.join(directory, "timestamp.json")
    if not os.path.exists(path):
        return None, None, None
    timestamp = _parse(_read(path, MAX_METADATA_BYTES), path, Timestamp)
    snapshot_path = os.path.join(directory, f"{timestamp.signed.snapshot_meta.version}.snapshot.json")
    snapshot = _parse(_read(snapshot_path, MAX_METADATA_BYTES), snapshot_path, Snapshot)
    meta = snapshot.signed.meta.get("targets.json")
    if meta is None:
        raise TufError(f"{snapshot_path}: names no targets metadata")
    targets_path = os.path.join(directory, f"{meta.version}.targets.json")
    return timestamp, snapshot, _parse(_read(targets_path, MAX_METADATA_BYTES), targets_path, Targets)


VERSIONS_FILE = "published.json"


def _read_versions(store: KeyStore) -> dict[str, int]:
    versions = {"timestamp": 0, "snapshot": 0, "targets": 0}
    try:
        with open(os.path.join(store.directory, VERSIONS_FILE), "rb") as f:
            document = json.loads(f.read(MAX_KEY_FILE_BYTES))
    except FileNotFoundError:
        return versions
    except (OSError, ValueError) as exc:
        raise TufError(f"{os.path.join(store.directory, VERSIONS_FILE)}: unreadable ({exc}); it records the "
                       f"versions the fleet has seen, restore it or remove it knowingly") from None
    for role in versions:
        value = document.get(role) if isinstance(document, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            versions[role] = value
    return versions


def _write_versions(store: KeyStore, versions: dict[str, int]) -> None:
    data = (json.dumps(versions, sort_keys=True) + "\n").encode("ascii")
    _write(os.path.join(store.directory, VERSIONS_FILE), data, mode=0o600)


@contextlib.contextmanager
def _exclusive(path: str):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _needs_resign(md: Metadata, root: Root, settings: TufSettings, now: dt.datetime) -> bool:
    """Half its lifetime gone, or its signatures no longer meet the current root (rotation)."""
    role = md.signed.type
    if md.signed.expires - now < dt.timedelta(seconds=settings.expiry[role] / 2):
        return True
    try:
        root.verify_delegate(role, md.signed_bytes, md.signatures)
    except UnsignedMetadataError:
        return True
    return False


def _unverified(md: Metadata, root: Root) -> bool:
    try:
        root.verify_delegate(md.signed.type, md.signed_bytes, md.signatures)
    except UnsignedMetadataError:
        return True
    return False


def _sign(md: Metadata, store: KeyStore, role: str, root: Root) -> None:
    for signer in store.signers(role, root):
        md.sign(signer, append=True)


def _prune(directory: str, snapshot_version: int, targets_version: int) -> None:
    """Remove snapshot and targets versions older than `KEEP_VERSIONS` before the newest, and
    target files no kept targets version names."""
    kept_targets: set[str] = set()
    for name in os.listdir(directory):
        match = _VERSIONED.match(name)
        if not match or match.group(2) == "root":
            continue
        version, role = int(match.group(1)), match.group(2)
        newest = snapshot_version if role == "snapshot" else targets_version
        if version < newest - KEEP_VERSIONS or version > newest:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
        elif role == "targets":
            try:
                md = _parse(_read(os.path.join(directory, name), MAX_METADATA_BYTES), name, Targets)
            except TufError:
                continue
            kept_targets.update(f"{t.hashes['sha256']}.{p}" for p, t in md.signed.targets.items())
    target_dir = os.path.join(directory, TARGETS_DIR)
    for name in os.listdir(target_dir):
        if name not in kept_targets and not name.startswith("."):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(target_dir, name))


# --- helpers -----------------------------------------------------------------------------------

def _header(list_version: int, checksum: str) -> bytes:
    from urlwarden.feeds.payload import encode_list_header  # the list format's own header line
    return encode_list_header(str(list_version), checksum).encode("ascii")


def _custom(target: TargetFile | None) -> dict[str, Any]:
    if target is None:
        return {}
    custom = target.unrecognized_fields.get("custom")
    info = custom.get(CUSTOM_KEY) if isinstance(custom, dict) else None
    return info if isinstance(info, dict) else {}


def _now(clock: Callable[[], float] | None) -> dt.datetime:
    seconds = clock() if clock is not None else dt.datetime.now(dt.timezone.utc).timestamp()
    return dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc)


def _expiry(settings: TufSettings, role: str, clock: Callable[[], float] | None) -> dt.datetime:
    return _later(_now(clock), settings, role)


def _later(now: dt.datetime, settings: TufSettings, role: str) -> dt.datetime:
    return now + dt.timedelta(seconds=int(settings.expiry[role]))


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(data: bytes, where: str, kind: type) -> Metadata:
    try:
        md = Metadata.from_bytes(data)
    except (DeserializationError, ValueError, KeyError, TypeError) as exc:
        raise TufError(f"{where}: not valid TUF metadata ({type(exc).__name__})") from None
    if not isinstance(md.signed, kind):
        raise TufError(f"{where}: is {md.signed.type} metadata, not {kind.type}")
    return md


def _read(path: str, limit: int) -> bytes:
    return read_small_file(path, limit, "", TufError)


def _write(path: str, data: bytes, *, mode: int) -> None:
    write_atomically(path, [data])
    os.chmod(path, mode)


def _write_new(path: str, md: Metadata) -> None:
    _write(path, md.to_bytes(_SERIALIZER), mode=PUBLISHED_MODE)


def _write_if_changed(path: str, data: bytes) -> None:
    with contextlib.suppress(OSError):
        with open(path, "rb") as f:
            if f.read(len(data) + 1) == data:
                return
    _write(path, data, mode=PUBLISHED_MODE)


def describe_keys(store: KeyStore) -> list[str]:
    """One line per role: threshold, key ids, and whether their private keys are here."""
    root = store.root().signed
    lines = []
    for role in ROLES:
        present = {s.public_key.keyid for s in store._load_role(role)}
        keys = ", ".join(f"{k[:16]}{'' if k in present else ' (not here)'}" for k in root.roles[role].keyids)
        lines.append(f"{role}: threshold {root.roles[role].threshold}, keys {keys}")
    return lines

