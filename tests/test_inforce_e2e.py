"""What is in force, end to end: a real `urlwarden run` whose reloads overlap feed updates, and
whose reloads must not keep old snapshots alive.

* A SIGHUP reload that starts while a feed download is under way and ends after the feed
  published its new list must not put the old list back (the newest inputs always win).
* Reloads of a large list under a little traffic leave file descriptors and mappings of
  the snapshot hand-over files where they were, and memory within a bound.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.clients import curl, raw_http, status_of
from tests.support.feedserver import FeedServer, Reply
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
WAIT = 30.0
STATIC_ENTRIES = 60_000
"""A static list big enough that a reload's build in its child takes clearly longer than a small
feed update's: the reload starts before the feed publishes and would end after it."""
FEED_V1 = [f"f{i}.feed.test/" for i in range(205)]
FEED_V2 = [*FEED_V1, "new.feed.test/"]


def wait_for(predicate, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def admin_json(port: int, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def list_status(admin_port: int, name: str) -> dict | None:
    status = admin_json(admin_port, "/status")
    for entry in (status or {}).get("lists", ()):
        if entry["name"] == name:
            return entry
    return None


def start(tmp_path: Path, config: Path) -> ProxyProcess:
    port = free_port()
    (tmp_path / "tmp").mkdir(exist_ok=True)
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={tmp_path / 'conf'}"]
    process = ProxyProcess(argv, port, workdir=tmp_path, env={"TMPDIR": str(tmp_path / "tmp")},
                           start_timeout=60)
    process.port = port
    return process


def build_dirs(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "tmp").glob("urlwarden-build-*")}


def test_a_reload_overlapping_a_slow_feed_update_keeps_the_newest_list(tmp_path):
    (tmp_path / "static.txt").write_text("".join(f"s{i}.static.test/\n" for i in range(STATIC_ENTRIES)))
    admin_port = free_port()
    with FeedServer() as feeds:
        feeds.set_default("/hotline", Reply(body="\n".join(FEED_V1).encode() + b"\n", etag='"v1"'))
        config = tmp_path / "urlwarden.yaml"
        config.write_text(f"""
state_dir: state
admin:
  listen: 127.0.0.1:{admin_port}
lists:
  - name: static
    path: static.txt
  - name: hotline
    format: plain
    feed:
      adapter: http
      options:
        url: {feeds.url("/hotline")}
      refresh: 1h
""")
        with start(tmp_path, config) as proxy:
            first = wait_for(lambda: (s := list_status(admin_port, "hotline")) and s["entries"] == 205 and s,
                             "the feed's first list in force")
            # v2 comes slowly; every later conditional request is answered 304
            gate = threading.Event()
            v2 = "\n".join(FEED_V2).encode() + b"\n"
            feeds.script("/hotline", Reply(body=v2, etag='"v2"', chunks=6, chunk_interval=0.1, last_chunk_gate=gate))
            feeds.set_default("/hotline", Reply(body=v2, etag='"v2"'))
            proxy.send_signal(signal.SIGHUP)  # reload, then refresh every feed: the slow download
            wait_for(lambda: feeds.chunks_sent("/hotline") >= 5, "the download to be under way")
            before, loads = build_dirs(tmp_path), proxy.stdout().count('"lists loaded: ')
            proxy.send_signal(signal.SIGHUP)  # a reload while the download is under way...
            wait_for(lambda: build_dirs(tmp_path) - before, "the reload's list build to start")
            gate.set()  # ...and the download ends while the reload builds
            wait_for(lambda: (s := list_status(admin_port, "hotline")) and s["checksum"] != first["checksum"],
                     "the new feed list to be published")
            wait_for(lambda: proxy.stdout().count('"lists loaded: ') > loads, "the second reload to end")
            wait_for(lambda: list_status(admin_port, "hotline")["entries"] == len(FEED_V2),
                     "the snapshot in force to hold the feed's newest list", timeout=20)
            assert curl("http://new.feed.test/x", proxy=proxy.port).status == 451
            assert curl("http://f7.feed.test/x", proxy=proxy.port).status == 451
            assert curl("http://s59999.static.test/x", proxy=proxy.port).status == 451


LEAK_ENTRIES = 50_000
RELOADS = 5


def mappings_and_fds(pid: int) -> tuple[int, int, int]:
    """(hand-over file mappings, deleted-file mappings, open file descriptors) of process `pid`."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    handover = sum("urlwarden-build" in line for line in maps)
    deleted = sum(line.endswith("(deleted)") for line in maps)
    return handover, deleted, len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Traffic:
    """A little traffic while the proxy reloads: one client, blocked URLs (no upstream, no DNS)."""

    def __init__(self, port: int):
        self.port, self.stop, self.answers = port, threading.Event(), []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while i < 5000 and not self.stop.wait(0.02):
            host = f"e{i % LEAK_ENTRIES}.leak.test"
            request = f"GET http://{host}/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            self.answers.append(status_of(raw_http("127.0.0.1", self.port, request, timeout=10)))
            i += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_reloads_release_the_snapshots_they_replace(tmp_path):
    (tmp_path / "big.txt").write_text("".join(f"e{i}.leak.test/\n" for i in range(LEAK_ENTRIES)))
    config = tmp_path / "urlwarden.yaml"
    config.write_text("lists:\n  - name: big\n    path: big.txt\n")
    with start(tmp_path, config) as proxy, Traffic(proxy.port) as traffic:
        pid = proxy.pid
        # SIGHUP reloads only once the addon runs (the banner comes after it); before, it ends mitmdump
        wait_for(lambda: "proxy listening on" in proxy.stderr(), "the proxy to run")

        def reload_and_settle(n: int) -> None:
            loads = proxy.stdout().count('"lists loaded: ')
            proxy.send_signal(signal.SIGHUP)
            wait_for(lambda: proxy.stdout().count('"lists loaded: ') > loads, f"reload {n} to end", timeout=60)

        at_start = mappings_and_fds(pid)  # one snapshot in force: the start-up one
        assert at_start[0] > 0
        reload_and_settle(1)
        rss_first = rss_kib(pid)
        for n in range(2, RELOADS + 1):
            reload_and_settle(n)
        # the old snapshot goes with the last decision that read it: poll, bounded
        def settled():  # one snapshot's mappings again: every replaced one released
            now = mappings_and_fds(pid)
            # (+2 descriptors: the client's connection and a log file may come and go)
            return now[0] <= at_start[0] and now[1] <= at_start[1] and now[2] <= at_start[2] + 2

        try:
            wait_for(settled, "mappings and descriptors back to where they were", timeout=20)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: (build-file maps, deleted maps, fds) at start {at_start}, "
                                 f"after {RELOADS} reloads: {mappings_and_fds(pid)}") from None
        print(f"RSS after reload 1: {rss_first} KiB; after {RELOADS}: {rss_kib(pid)} KiB")
        assert rss_kib(pid) - rss_first < 40 * 1024, (rss_first, rss_kib(pid))
        assert set(traffic.answers) <= {451}, set(traffic.answers)
    assert len(traffic.answers) > 0
