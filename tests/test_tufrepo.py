"""urlwarden.exports.tufrepo: what the publisher writes always verifies with ngclient, through publishes
and key rotations; key files, thresholds, and the export CLI around it.

The repository is read by a real `tuf.ngclient.Updater` with a fetcher that reads the published
directory (no network: the HTTP path is covered by tests/test_feeds_tuf.py)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from urlwarden.feeds.payload import checksum, parse_full
from urlwarden.exports.tufrepo import (
    ROLES,
    KeyStore,
    ListTarget,
    TufError,
    TufSettings,
    init_keys,
    publish,
    rotate_key,
)

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
BASE = "http://repo.invalid/"


class DirectoryFetcher(FetcherInterface):
    """Serves BASE + path from a directory, 404 for what is not there."""

    def __init__(self, root: Path):
        self.root = root

    def _fetch(self, url: str):
        assert url.startswith(BASE)
        path = self.root / url[len(BASE):]
        if not path.is_file():
            raise tuf_errors.DownloadHTTPError(f"not found: {url}", 404)
        return iter([path.read_bytes()])


def hashed(hosts: list[str]) -> ListTarget:
    raw = "# hashed list\n" + "".join(hashlib.sha256(f"{h}/".encode()).hexdigest() + "\n" for h in hosts)
    parsed, _ = parse_full(raw.encode(), "sha256", "t")
    return ListTarget("hotline.sha256", raw.encode(), checksum(parsed), parsed.count)


def client(repo: Path, keys: Path, cache: Path) -> Updater:
    cache.mkdir(parents=True, exist_ok=True)
    return Updater(str(cache), BASE, str(cache), BASE + "targets/", fetcher=DirectoryFetcher(repo),
                   bootstrap=(keys / "metadata" / "1.root.json").read_bytes())


def fetch_list(repo: Path, keys: Path, cache: Path) -> bytes:
    updater = client(repo, keys, cache)
    updater.refresh()
    info = updater.get_targetinfo("hotline.sha256")
    assert info is not None
    return Path(updater.download_target(info)).read_bytes()


def same_list(body: bytes, target: ListTarget) -> bool:
    parsed, header = parse_full(body, "sha256", "t")
    return checksum(parsed) == header.checksum == target.checksum


def test_publish_writes_a_consistent_snapshot_repository_that_verifies(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(str(keys))
    target = hashed(["listed.test"])
    result = publish(str(repo), KeyStore(keys), [target])
    names = sorted(p.name for p in repo.iterdir())
    assert names == ["1.root.json", "1.snapshot.json", "1.targets.json", "targets", "timestamp.json"]
    body = fetch_list(repo, keys, tmp_path / "node")
    digest = hashlib.sha256(body).hexdigest()
    assert [p.name for p in (repo / "targets").iterdir()] == [f"{digest}.hotline.sha256"]
    assert body.startswith(b"# urlwarden-list v1 serial=1 sha256=" + target.checksum.encode())
    assert body.endswith(target.raw) and b"listed.test" not in body
    assert result.list_versions == {"hotline.sha256": 1} and result.changed == ("hotline.sha256",)
    for path in repo.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644
    for path in (keys / role for role in ROLES):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in path.iterdir())


def test_unchanged_run_resigns_only_the_timestamp(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(str(keys))
    publish(str(repo), KeyStore(keys), [hashed(["a.test"])])
    before = {p.name: p.read_bytes() for p in repo.iterdir() if p.is_file()}
    again = publish(str(repo), KeyStore(keys), [hashed(["a.test"])])
    after = {p.name: p.read_bytes() for p in repo.iterdir() if p.is_file()}
    assert (again.timestamp_version, again.snapshot_version, again.targets_version, again.changed) == (2, 1, 1, ())
    assert [n for n in after if after[n] != before.get(n)] == ["timestamp.json"]


def test_list_version_rises_with_each_change_and_old_versions_are_pruned(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(str(keys))
    for n in range(1, 7):
        result = publish(str(repo), KeyStore(keys), [hashed([f"h{i}.test" for i in range(n)])])
        assert result.list_versions == {"hotline.sha256": n}
    assert sorted(p.name for p in repo.glob("*.targets.json")) == [f"{v}.targets.json" for v in (3, 4, 5, 6)]
    assert len(list((repo / "targets").iterdir())) == 4  # the files those versions name
    assert b"serial=6 " in fetch_list(repo, keys, tmp_path / "node")


def test_a_list_that_cannot_be_read_keeps_its_published_target(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(str(keys))
    other = ListTarget("other.sha256", hashed(["o.test"]).raw, hashed(["o.test"]).checksum, 1)
    publish(str(repo), KeyStore(keys), [hashed(["a.test"]), other])
    result = publish(str(repo), KeyStore(keys), [hashed(["b.test"])], keep=["other.sha256", "other.csv"])
    assert set(result.list_versions) == {"hotline.sha256", "other.sha256"}


# sequences of publishes and rotations: a node following along and a fresh node both verify

OPERATIONS = st.lists(
    st.one_of(st.tuples(st.just("publish"), st.lists(st.sampled_from(["a.test", "b.test", "c.test", "d.test"]),
                                                     min_size=1, max_size=4, unique=True)),
              st.tuples(st.just("rotate"), st.sampled_from(ROLES))),
    min_size=1, max_size=6)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_whatever_is_published_and_rotated_verifies_with_ngclient(tmp_path_factory, operations):
    tmp = tmp_path_factory.mktemp("seq")
    keys, repo = tmp / "keys", tmp / "repo"
    init_keys(str(keys))
    current = hashed(["first.test"])
    publish(str(repo), KeyStore(keys), [current])
    assert same_list(fetch_list(repo, keys, tmp / "follower"), current)
    for kind, value in operations:
        if kind == "publish":
            current = hashed(value)
        else:
            rotate_key(KeyStore(keys), value)
        publish(str(repo), KeyStore(keys), [current])
        assert same_list(fetch_list(repo, keys, tmp / "follower"), current)
    assert same_list(fetch_list(repo, keys, tmp / "fresh"), current)


@pytest.mark.parametrize("role", ROLES)
def test_rotation_revokes_the_old_key_for_good(tmp_path, role):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(str(keys))
    old = KeyStore(keys).root().signed.roles[role].keyids[0]
    new_root = rotate_key(KeyStore(keys), role)
    assert new_root.signed.version == 2 and old not in new_root.signed.roles[role].keyids
    assert (keys / "revoked" / f"{role}-{old}.pem").exists() and not (keys / role / f"{old}.pem").exists()
    # version 1 root keys signed version 2 (the nodes' trust chain), and so did the new root keys
    v1 = KeyStore(keys).root_bytes(1)
    from tuf.api.metadata import Metadata
    first, second = Metadata.from_bytes(v1), Metadata.from_bytes(KeyStore(keys).root_bytes(2))
    first.signed.verify_delegate("root", second.signed_bytes, second.signatures)
    second.signed.verify_delegate("root", second.signed_bytes, second.signatures)


def test_thresholds_need_that_many_keys(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(str(keys), TufSettings(thresholds={"timestamp": 2}))
    assert len(list((keys / "timestamp").iterdir())) == 2
    publish(str(repo), KeyStore(keys), [hashed(["a.test"])])
    assert fetch_list(repo, keys, tmp_path / "node")
    next(iter((keys / "timestamp").iterdir())).unlink()
    with pytest.raises(TufError, match="1 of the timestamp role's keys found, 2 needed"):
        publish(str(repo), KeyStore(keys), [hashed(["a.test"])])


@pytest.mark.parametrize(("settings_kwargs", "message"), [
    ({"expiry": {"timestamp": 5}}, "tuf expiry of 'timestamp'"),
    ({"thresholds": {"root": 0}}, "tuf threshold of 'root'"),
    ({"thresholds": {"mirror": 1}}, "tuf threshold of 'mirror'"),
])
def test_bad_settings_are_refused(settings_kwargs, message):
    with pytest.raises(TufError, match=message):
        TufSettings(**settings_kwargs)


def test_key_files_readable_by_others_are_refused(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(str(keys))
    key = next(iter((keys / "timestamp").iterdir()))
    key.chmod(0o644)
    with pytest.raises(TufError, match="readable by other users"):
        publish(str(repo), KeyStore(keys), [hashed(["a.test"])])
    assert not (repo / "timestamp.json").exists()


def test_init_refuses_an_existing_key_directory(tmp_path):
    init_keys(str(tmp_path / "keys"))
    with pytest.raises(TufError, match="already holds root metadata"):
        init_keys(str(tmp_path / "keys"))


def test_export_cli_publishes_from_the_last_known_good_lists(tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "urlwarden.yaml"
    feed_file = tmp_path / "feed.txt"
    feed_file.write_text("listed.test/\n")
    config.write_text(f"""
state_dir: {state}
lists:
  - name: hotline
    format: plain
    feed: {{adapter: file, options: {{path: {feed_file}}}}}
export:
  snapshot:
    keys_dir: keys
    timestamp_expiry: 2m
""")
    run = lambda *a: subprocess.run([URLWARDEN, *a], capture_output=True, text=True, timeout=60)  # noqa: E731
    done = run("export", "keys", "init", str(tmp_path / "keys"), "--config", str(config), "--threshold",
               "snapshot=2")
    assert done.returncode == 0, done.stderr
    assert "snapshot: threshold 2" in done.stderr and "1.root.json" in done.stderr
    assert run("update", "--config", str(config)).returncode == 0
    done = run("export", "snapshot", str(tmp_path / "repo"), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "list version 1 (changed)" in done.stderr and "expires in 120 s" in done.stderr
    assert "NOT signed" not in done.stderr
    assert fetch_list(tmp_path / "repo", tmp_path / "keys", tmp_path / "node")
    done = run("export", "keys", "rotate", "timestamp", "--config", str(config))
    assert done.returncode == 0 and "root version 2" in done.stderr, done.stderr
    done = run("export", "keys", "rotate", "mirror", "--config", str(config))
    assert done.returncode == 2 and "invalid choice" in done.stderr
    timestamp = json.loads((tmp_path / "repo" / "timestamp.json").read_text())
    done = run("export", "snapshot", str(tmp_path / "repo"), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "repo" / "timestamp.json").read_text())["signed"]["version"] == \
        timestamp["signed"]["version"] + 1
    assert (tmp_path / "repo" / "2.root.json").exists()
    assert fetch_list(tmp_path / "repo", tmp_path / "keys", tmp_path / "node")
    assert os.listdir(tmp_path / "keys" / "revoked")


def test_without_the_targets_key_the_timestamp_is_still_resigned_and_changes_wait(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(str(keys))
    first = hashed(["a.test"])
    publish(str(repo), KeyStore(keys), [first])
    (keys / "targets").rename(tmp_path / "targets-key-offline")
    result = publish(str(repo), KeyStore(keys), [hashed(["a.test", "b.test"])])
    assert result.timestamp_version == 2 and result.changed == () and result.targets_version == 1
    assert "list changes NOT published" in result.notes[0]
    assert same_list(fetch_list(repo, keys, tmp_path / "node"), first)
    (tmp_path / "targets-key-offline").rename(keys / "targets")
    result = publish(str(repo), KeyStore(keys), [hashed(["a.test", "b.test"])])
    assert result.changed == ("hotline.sha256",) and result.notes == ()


def test_a_wiped_repository_continues_above_the_versions_the_fleet_has_seen(tmp_path):
    keys, repo = tmp_path / "keys", tmp_path / "repo"
    init_keys(str(keys))
    for hosts in (["a.test"], ["a.test", "b.test"]):
        publish(str(repo), KeyStore(keys), [hashed(hosts)])
    follower = tmp_path / "node"
    fetch_list(repo, keys, follower)
    import shutil
    shutil.rmtree(repo)  # the web server's directory is lost; the keys directory is not
    result = publish(str(repo), KeyStore(keys), [hashed(["a.test", "b.test"])])
    assert (result.timestamp_version, result.snapshot_version, result.targets_version) == (3, 3, 3)
    assert same_list(fetch_list(repo, keys, follower), hashed(["a.test", "b.test"]))  # no rollback refusal
