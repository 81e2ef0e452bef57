"""Tests for building snapshots in a child process: lists.HostKeys, urlwarden.core.snapfile, urlwarden.runtime.offload.

The offload tests start real child processes (``python -m urlwarden.runtime.offload``) and compare what
comes back, through mapped buffers, with the same work done in this process: identical verdicts
and host statuses for every probe URL. Every entry is synthetic (.test names).
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from array import array
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urlwarden.runtime import offload
from urlwarden.core import snapfile
from urlwarden.config import load_config
from urlwarden.runtime.engine import load_state, rebuild
from urlwarden.errors import FeedError, ListError
from urlwarden.feeds.manager import FeedManager
from urlwarden.core.lists import HostKeys, ListSpec, digest, parse_text

digests = st.binary(min_size=32, max_size=32)


# --- HostKeys ---------------------------------------------------------------------------------


@given(st.sets(digests, max_size=40), st.lists(digests, max_size=10))
def test_host_keys_behave_like_a_frozenset(keys, probes):
    hk = HostKeys(keys)
    reference = frozenset(keys)
    assert len(hk) == len(reference) and bool(hk) == bool(reference)
    assert list(hk) == sorted(reference)
    assert hk == reference and hk == HostKeys(sorted(keys, reverse=True))
    for probe in [*probes, *list(keys)[:5]]:
        assert (probe in hk) == (probe in reference)
    extra = set(probes)
    assert hk | extra == reference | extra
    assert hk - extra == reference - extra
    assert hk <= reference | extra
    assert pickle.loads(pickle.dumps(hk)) == hk
    assert HostKeys.from_sorted_blob(hk.blob) == hk


def test_host_keys_with_equal_first_bytes_are_told_apart():
    same_prefix = [bytes(8) + bytes([i]) * 24 for i in range(5)]
    hk = HostKeys(same_prefix[:4])
    assert all(key in hk for key in same_prefix[:4]) and same_prefix[4] not in hk


def test_host_keys_refuse_keys_of_the_wrong_size():
    with pytest.raises(ValueError, match="32 bytes"):
        HostKeys([b"short"])
    with pytest.raises(ValueError, match="multiple of 32"):
        HostKeys.from_sorted_blob(b"x" * 33)


def test_a_parsed_list_turns_any_set_of_host_keys_into_host_keys():
    pl = parse_text("listed.test/\n", ListSpec("l.txt", "plain", "l"))
    assert type(pl.host_keys) is HostKeys and pl.host_keys == {digest("listed.test")}


# --- snapfile ---------------------------------------------------------------------------------


def test_snapfile_round_trip_maps_large_buffers_and_keeps_small_ones(tmp_path):
    big = bytes(range(256)) * 1024  # 256 KiB: out of line
    numbers = array("Q", range(20_000))  # 160 KB: out of line
    value = {
        "big": big, "small": b"tiny", "numbers": numbers, "few": array("H", [1, 2, 3]),
        "settings": MappingProxyType({"a": 1}), "text": "hello", "empty": b"",
    }
    path = str(tmp_path / "hand-over")
    snapfile.dump(value, path)
    back = snapfile.load(path)
    os.unlink(path)  # the mappings outlive the file
    assert type(back["big"]).__name__ == "mmap" and back["big"][:] == big
    assert type(back["numbers"]) is memoryview and back["numbers"].tolist() == numbers.tolist()
    assert back["small"] == b"tiny" and back["few"] == array("H", [1, 2, 3]) and back["empty"] == b""
    assert back["settings"] == {"a": 1} and type(back["settings"]) is MappingProxyType
    # what came back mapped goes out again (a rebuild sends the mapped lists to the next child)
    again = str(tmp_path / "again")
    snapfile.dump(back, again)
    twice = snapfile.load(again)
    assert twice["big"][:] == big and twice["numbers"].tolist() == numbers.tolist()


def test_snapfile_refuses_a_file_it_did_not_write(tmp_path):
    path = tmp_path / "other"
    path.write_bytes(b"not a hand-over file at all")
    with pytest.raises(ValueError, match="not a urlwarden snapshot hand-over file"):
        snapfile.load(str(path))


# --- offload: real child processes --------------------------------------------------------------

BLOCK = ["listed.test/", "paths.test/folder/", "paths.test/page.html", "paths.test/q.php?id=7", "deep.test/a/b/"]
ALLOW = ["paths.test/folder/ok.html"]
PROBES = [
    "http://listed.test/", "http://www.listed.test/x", "http://paths.test/folder/a", "http://paths.test/folder/ok.html",
    "http://paths.test/page.html?x=1", "http://paths.test/q.php?id=7", "http://paths.test/q.php?id=8",
    "http://deep.test/a/b/c", "http://deep.test/a/", "http://clean.test/", "http://127.0.0.1/",
]
HOSTS = ["listed.test", "paths.test", "deep.test", "clean.test", "www.listed.test"]


def write_config(tmp_path, block=BLOCK):
    (tmp_path / "block.txt").write_text("\n".join(block) + "\n")
    (tmp_path / "allow.txt").write_text("\n".join(ALLOW) + "\n")
    config = tmp_path / "urlwarden.yaml"
    config.write_text(f"lists:\n  - name: block\n    path: {tmp_path / 'block.txt'}\n"
                      f"allow:\n  - name: allow\n    path: {tmp_path / 'allow.txt'}\n")
    return load_config(str(config))


def outcomes(state):
    snap = state.snapshot
    return [snap.match(url) for url in PROBES], [snap.host_status(host) for host in HOSTS]


def test_a_child_builds_the_same_state_as_this_process(tmp_path):
    config = write_config(tmp_path)
    feed = parse_text("feed.test/\n", ListSpec("feed:hotline", "plain", "hotline"))
    here = load_state(config, (feed,))
    there = offload.Offloader().run("load_state", config, (feed,))
    assert outcomes(there) == outcomes(here)
    assert there.snapshot.match("http://feed.test/x").list_name == "hotline"
    assert there.snapshot.stats == here.snapshot.stats


def test_a_rebuild_in_a_child_uses_the_mapped_lists_of_the_previous_one(tmp_path):
    config = write_config(tmp_path, BLOCK * 20_000)  # large enough for mapped, out-of-line buffers
    offloader = offload.Offloader()
    first = offloader.run("load_state", config, ())
    assert type(first.static_block[0].digests).__name__ == "mmap"
    feed = parse_text("feed.test/\n", ListSpec("feed:hotline", "plain", "hotline"))
    second = offloader.run("rebuild", first.config, first.static_block, first.allow, (feed,))
    parsed = load_state(config)
    expected = rebuild(config, parsed.static_block, parsed.allow, (feed,))
    assert outcomes(second) == outcomes(expected)
    assert second.snapshot.match("http://feed.test/").blocked


def test_a_bad_list_fails_in_the_child_with_its_own_error(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / "block.txt").write_text("not a url at all\n")
    with pytest.raises(ListError, match="block.txt: no valid entries"):
        offload.Offloader().run("load_state", config, ())


def test_a_child_that_dies_is_reported_and_changes_nothing(tmp_path, monkeypatch):
    config = write_config(tmp_path)
    monkeypatch.setattr(offload.sys, "executable", sys.executable)
    real_popen = subprocess.Popen

    def dying_child(argv, **kwargs):  # the real child, killed by a signal before it replies
        return real_popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], **kwargs)

    monkeypatch.setattr(offload.subprocess, "Popen", dying_child)
    monkeypatch.setattr(offload.tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ListError, match="list builder process failed \\(killed by signal 9\\)"):
        offload.Offloader().run("load_state", config, ())
    assert not [p for p in os.listdir(tmp_path) if p.startswith("urlwarden-build-")]  # cleaned up


def test_without_a_python_to_start_the_job_runs_here(tmp_path, monkeypatch, caplog):
    config = write_config(tmp_path)
    monkeypatch.setattr(offload.sys, "executable", str(tmp_path / "no-such-python"))
    state = offload.Offloader().run("load_state", config, ())
    assert outcomes(state) == outcomes(load_state(config))
    assert "cannot start a list builder process" in caplog.text


def test_stop_kills_a_running_child_and_refuses_new_jobs(tmp_path, monkeypatch):
    config = write_config(tmp_path)
    real_popen = subprocess.Popen
    started = threading.Event()

    def slow_child(argv, **kwargs):  # a child that would take a minute
        child = real_popen([sys.executable, "-c", "import time; time.sleep(60)"], **kwargs)
        started.set()
        return child

    monkeypatch.setattr(offload.subprocess, "Popen", slow_child)
    offloader = offload.Offloader()
    errors: list[Exception] = []

    def job():
        try:
            offloader.run("load_state", config, ())
        except ListError as exc:
            errors.append(exc)

    worker = threading.Thread(target=job)
    worker.start()
    assert started.wait(10)
    offloader.stop()
    worker.join(10)
    assert not worker.is_alive() and "killed by signal 9" in str(errors[0])
    with pytest.raises(ListError, match="shutting down"):
        offloader.run("load_state", config, ())


def test_unknown_jobs_are_refused():
    with pytest.raises(ValueError, match="unknown offload job"):
        offload.Offloader().run("rm -rf", ())


@settings(max_examples=10, deadline=None)
@given(st.lists(st.sampled_from(BLOCK + ["other.test/a.html", "x.test/"]), min_size=1, max_size=6))
def test_property_child_and_here_agree(tmp_path_factory, block):
    tmp_path = tmp_path_factory.mktemp("agree")
    config = write_config(tmp_path, block)
    assert outcomes(offload.Offloader().run("load_state", config, ())) == outcomes(load_state(config))


# --- feed refreshes in a child process ----------------------------------------------------------


def test_a_feed_refresh_in_a_child_publishes_saves_and_recognises_an_unchanged_list(tmp_path):
    feed_file = tmp_path / "hotline.txt"
    feed_file.write_text("listed.test/\npaths.test/folder/\n")
    config_path = tmp_path / "urlwarden.yaml"
    config_path.write_text(f"state_dir: {tmp_path / 'state'}\nlists:\n  - name: hotline\n"
                           f"    feed: {{adapter: file, options: {{path: {feed_file}}}}}\n")
    config = load_config(str(config_path))
    offloader = offload.Offloader()
    with FeedManager(config.feeds, config.state_dir) as manager:
        assert manager.refresh("hotline", offloader=offloader) is True
        status = manager.status("hotline")
        assert (status.entries, status.last_update, status.lkg_saved) == (2, "full", True)
        snap = rebuild(config, (), (), manager.lists()).snapshot
        assert snap.match("http://listed.test/").blocked and snap.match("http://paths.test/folder/x").blocked

        os.utime(feed_file, ns=(1, 1))  # a new version of the same content: nothing to publish
        assert manager.refresh("hotline", offloader=offloader) is False
        assert manager.status("hotline").last_update == "unchanged"

        feed_file.write_text("\x00 garbage \x00\n")  # a broken update: refused, the list stays
        with pytest.raises(FeedError, match="hotline"):
            manager.refresh("hotline", offloader=offloader)
        assert manager.status("hotline").entries == 2 and manager.status("hotline").consecutive_failures == 1

    # the last-known-good the child saved is what a restart loads
    with FeedManager(config.feeds, config.state_dir) as restarted:
        restarted.load_last_known_good()
        assert restarted.status("hotline").entries == 2
