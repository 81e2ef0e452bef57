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

from tests.support.clients import curl
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
