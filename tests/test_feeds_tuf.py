"""The ``tuf`` feed adapter against a real TUF repository on a loopback HTTP server, through the
feed manager: every attack leaves the node on its last good list, with a ``feed 'hotline': ...``
error in its status; a root rotation done right is followed, one done wrong is refused."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from urlwarden.errors import FeedError
from urlwarden.feeds import make_adapter
from urlwarden.feeds.manager import FeedManager, FeedSpec
from urlwarden.feeds.payload import checksum, parse_full
from urlwarden.feeds.tuf import TufAdapter
from urlwarden.exports.tufrepo import KeyStore, ListTarget, TufSettings, init_keys, publish, rotate_key

FIRST = ["listed.test", "also.test"]
SECOND = ["listed.test", "also.test", "new.test"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path):
    """(repo dir, base URL) of a threading HTTP server on 127.0.0.1 serving the repository."""
    repo = tmp_path / "repo"
    repo.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(repo)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield repo, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(5)


def target(hosts: list[str]) -> ListTarget:
    raw = "# hashed list\n" + "".join(hashlib.sha256(f"{h}/".encode()).hexdigest() + "\n" for h in hosts)
    parsed, _ = parse_full(raw.encode(), "sha256", "t")
    return ListTarget("hotline.sha256", raw.encode(), checksum(parsed), parsed.count)


class Fleet:
    """A publisher (key dir + repository) and one node (a FeedManager with a tuf feed)."""

    def __init__(self, tmp: Path, repo: Path, url: str, settings: TufSettings | None = None):
        self.keys, self.repo, self.settings = tmp / "keys", repo, settings or TufSettings()
        init_keys(str(self.keys), self.settings)
        self.store = KeyStore(self.keys)
        self.spec = FeedSpec("hotline", "tuf", {"url": url, "root_file": str(self.keys / "metadata" / "1.root.json"),
                                                "metadata_path": str(tmp / "node" / "tuf")}, format="sha256")
        self.node = FeedManager([self.spec], tmp / "node" / "state")

    def publish(self, hosts: list[str], **kwargs) -> None:
        publish(str(self.repo), self.store, [target(hosts)], self.settings, **kwargs)

    def entries(self) -> int:
        return self.node.status("hotline").entries

    def refused(self, match: str) -> str:
        """Refresh; it must fail with `match`, the list in force and its error kept visible."""
        before = self.node.status("hotline")
        with pytest.raises(FeedError, match=match) as caught:
            self.node.refresh("hotline")
        after = self.node.status("hotline")
        assert str(caught.value).startswith("feed 'hotline': ")
        assert (after.entries, after.checksum) == (before.entries, before.checksum)
        assert after.last_error == str(caught.value) and after.consecutive_failures >= 1
        return str(caught.value)

    def snapshot_files(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.repo)): p.read_bytes() for p in self.repo.rglob("*") if p.is_file()}

    def restore(self, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            (self.repo / name).write_bytes(data)

    def sign_timestamp_with(self, signer: CryptoSigner) -> None:
        md = Metadata.from_file(str(self.repo / "timestamp.json"))
        md.signed.version += 1
        md.signatures.clear()
        md.sign(signer)
        (self.repo / "timestamp.json").write_bytes(md.to_bytes(JSONSerializer()))


@pytest.fixture
def fleet(tmp_path, served):
    repo, url = served
    fleet = Fleet(tmp_path, repo, url)
    fleet.publish(FIRST)
    assert fleet.node.refresh("hotline") is True
    assert fleet.entries() == 2
    yield fleet
    fleet.node.close()


def test_a_published_change_is_followed_and_an_unchanged_one_is_not_modified(fleet):
    assert fleet.entries() == 2
    status = fleet.node.status("hotline")
    assert status.version.serial == "1" and status.version.etag.startswith("sha256:")
    fleet.publish(FIRST)  # timestamp re-signed only
    assert fleet.node.refresh("hotline") is False
    assert fleet.node.status("hotline").last_update == "not-modified"
    fleet.publish(SECOND)
    assert fleet.node.refresh("hotline") is True
    status = fleet.node.status("hotline")
    assert (status.entries, status.version.serial, status.last_error) == (3, "2", None)


def test_rollback_to_older_metadata_is_refused(fleet):
    old = fleet.snapshot_files()
    fleet.publish(SECOND)
    fleet.node.refresh("hotline")
    fleet.restore(old)  # a mirror replays the earlier, validly signed state
    fleet.refused("rollback")
    assert fleet.entries() == 3


def test_a_frozen_repository_is_refused_once_its_timestamp_expired(fleet):
    # the timestamp the mirror keeps serving was signed long ago and never renewed
    fleet.publish(FIRST, clock=lambda: __import__("time").time() - 3600)
    fleet.refused("expired metadata refused")


def test_a_target_file_swapped_for_an_older_one_is_refused(fleet):
    old_files = {p.name: p.read_bytes() for p in (fleet.repo / "targets").iterdir()}
    fleet.publish(SECOND)
    newest = next(p for p in (fleet.repo / "targets").iterdir() if p.name not in old_files)
    newest.write_bytes(next(iter(old_files.values())))  # mix and match: an older list under the new name
    fleet.refused("length or SHA-256 differs")
    assert fleet.entries() == 2


def test_targets_metadata_from_another_moment_is_refused(fleet):
    first_targets = (fleet.repo / "1.targets.json").read_bytes()
    fleet.publish(SECOND)
    (fleet.repo / "2.targets.json").write_bytes(first_targets)  # the snapshot names version 2
    fleet.refused("mix-and-match refused")


def test_a_tampered_target_is_refused(fleet):
    fleet.publish(SECOND)
    newest = max((fleet.repo / "targets").iterdir(), key=lambda p: p.stat().st_mtime)
    body = bytearray(newest.read_bytes())
    body[-2] ^= 0x01
    newest.write_bytes(bytes(body))
    fleet.refused("length or SHA-256 differs")


def test_metadata_signed_by_a_wrong_key_is_refused(fleet):
    fleet.sign_timestamp_with(CryptoSigner.generate_ed25519())
    fleet.refused("not signed by the trusted keys")


def test_metadata_signed_by_a_revoked_key_is_refused(fleet):
    revoked = fleet.store.signers("timestamp", fleet.store.root().signed)[0]
    rotate_key(fleet.store, "timestamp")
    fleet.publish(FIRST)
    assert fleet.node.refresh("hotline") is False  # the node now trusts root version 2
    fleet.sign_timestamp_with(revoked)
    fleet.refused("not signed by the trusted keys")


def test_a_root_rotation_done_right_is_followed(fleet):
    rotate_key(fleet.store, "root")
    rotate_key(fleet.store, "targets")
    fleet.publish(SECOND)
    assert fleet.node.refresh("hotline") is True and fleet.entries() == 3
    assert sorted(p.name for p in fleet.repo.glob("*.root.json")) == ["1.root.json", "2.root.json", "3.root.json"]


def test_a_root_rotation_done_wrong_is_refused(fleet):
    # a new root signed only by its own new key: the keys the node trusts never approved it
    current = fleet.store.root()
    wrong = Metadata(Root.from_dict(current.signed.to_dict()))
    intruder = CryptoSigner.generate_ed25519()
    for role in ("root", "timestamp"):
        for keyid in list(wrong.signed.roles[role].keyids):
            wrong.signed.revoke_key(keyid, role)
        wrong.signed.add_key(intruder.public_key, role)
    wrong.signed.version = 2
    wrong.sign(intruder)
    (fleet.repo / "2.root.json").write_bytes(wrong.to_bytes(JSONSerializer()))
    fleet.sign_timestamp_with(intruder)
    fleet.refused("not signed by the trusted keys")
    assert fleet.entries() == 2


def test_a_fresh_node_loads_nothing_from_a_tampered_repository(tmp_path, served):
    repo, url = served
    fleet = Fleet(tmp_path, repo, url)
    fleet.publish(FIRST)
    fleet.sign_timestamp_with(CryptoSigner.generate_ed25519())
    with pytest.raises(FeedError, match="not signed by the trusted keys"):
        fleet.node.refresh("hotline")
    assert fleet.entries() == 0


def test_workers_sharing_a_metadata_directory_take_turns(fleet):
    other = make_adapter("tuf", dict(fleet.spec.options), "hotline")
    lock = Path(fleet.spec.options["metadata_path"]) / ".lock"
    import fcntl
    import os
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another worker is refreshing
        slow = TufAdapter(**{**fleet.spec.options, "lock_timeout": 0.2}, feed_name="hotline")
        with pytest.raises(FeedError, match="another worker has been refreshing"):
            slow.fetch(None)
    finally:
        os.close(fd)
    assert other.fetch(None).body  # lock released: the next worker goes ahead


@pytest.mark.parametrize(("options", "message"), [
    ({"url": "ftp://x.invalid/"}, "option 'url'"),
    ({"root_file": "/nonexistent/root.json"}, "option 'root_file': cannot read"),
    ({"timeout": 0}, "option 'timeout'"),
    ({"target": "../x"}, "option 'target'"),
])
def test_bad_options_are_refused_at_configuration_time(fleet, options, message):
    with pytest.raises(FeedError, match=message):
        make_adapter("tuf", {**fleet.spec.options, **options}, "hotline")


def test_a_root_file_that_is_not_a_root_is_refused(fleet, tmp_path):
    bad = tmp_path / "timestamp-as-root.json"
    shutil.copy(fleet.repo / "timestamp.json", bad)
    with pytest.raises(FeedError, match="is timestamp metadata, not root"):
        make_adapter("tuf", {**fleet.spec.options, "root_file": str(bad)}, "hotline")


def test_an_unreachable_repository_is_a_feed_error(fleet):
    adapter = TufAdapter(**{**fleet.spec.options, "url": "http://127.0.0.1:9/", "timeout": 2}, feed_name="hotline")
    with pytest.raises(FeedError, match="^feed 'hotline': download failed"):
        adapter.fetch(None)

