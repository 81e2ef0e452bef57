"""Feeds end to end: a real `urlwarden run`, a real feed server and a real origin on loopback.

Shows the proxy picking a feed up, refreshing it on SIGHUP, keeping the last good list when an
update fails, and blocking after a restart with the feed server down (last-known-good).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.clients import curl
from tests.support.feedserver import FeedServer, Reply
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
NAMES = ["listed.test", "later.test", "unlisted.test"]
WAIT = 20.0


def write_config(directory: Path, feed_url: str) -> Path:
    config = directory / "urlwarden.yaml"
    config.write_text(f"""
state_dir: state
lists:
  - name: hotline
    format: plain
    feed:
      adapter: http
      options:
        url: {feed_url}
      refresh: 1h
      max_age: 2d
      required: true
""")
    return config


def wait_for(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def status_of_feed(config: Path) -> dict:
    done = subprocess.run([URLWARDEN, "status", "--json", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[0])


def start(tmp_path: Path, config: Path, origin) -> ProxyProcess:
    port = free_port()
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={tmp_path / 'conf'}"]
    process = ProxyProcess(argv, port, hosts={n: "127.0.0.1" for n in NAMES}, workdir=tmp_path)
    process.port = port
    return process


def status_code(process, origin, host: str) -> int | None:
    return curl(f"http://{host}:{origin.http_port}/x", proxy=process.port).status


def test_feed_lifecycle_through_a_live_proxy(tmp_path, origin):
    with FeedServer() as feeds:
        feeds.set_default("/hotline", Reply(body=b"listed.test/\n", etag='"v1"'))
        config = write_config(tmp_path, feeds.url("/hotline"))
        origin.reset()
        with start(tmp_path, config, origin) as proxy:
            # first start: no last-known-good yet, the feed is fetched at once in the background
            wait_for(lambda: status_code(proxy, origin, "listed.test") == 451, "the feed's first list")
            assert status_code(proxy, origin, "later.test") == 200
            assert status_of_feed(config)["entries"] == 1

            # the licensor adds an entry; SIGHUP refreshes every feed now
            feeds.set_default("/hotline", Reply(body=b"listed.test/\nlater.test/\n", etag='"v2"'))
            proxy.send_signal(signal.SIGHUP)
            wait_for(lambda: status_code(proxy, origin, "later.test") == 451, "the updated list")
            assert status_of_feed(config)["version"] == '"v2"'

            # a broken update (server error, then garbage) keeps the last good list
            feeds.set_default("/hotline", Reply(status=500))
            proxy.send_signal(signal.SIGHUP)
            wait_for(lambda: "update failed" in proxy.output(), "the failure to be logged")
            feeds.set_default("/hotline", Reply(body=b"\x00\x01garbage" * 50, etag='"v3"'))
            proxy.send_signal(signal.SIGHUP)
            wait_for(lambda: proxy.output().count("update failed") >= 2, "the second failure")
            assert status_code(proxy, origin, "listed.test") == 451
            assert status_code(proxy, origin, "later.test") == 451
            assert "feed_update_failed" in proxy.stdout()

        # restart with the feed server down: the last-known-good list blocks at once
        feeds.stop()
        origin.reset()
        with start(tmp_path, config, origin) as proxy:
            assert status_code(proxy, origin, "later.test") == 451
            assert status_code(proxy, origin, "listed.test") == 451
            origin.wait_idle()
            assert origin.connections == []
    state_files = sorted(p.name for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert state_files and all("listed.test" not in (tmp_path / "state" / f).read_text(errors="replace")
                               for f in state_files if (tmp_path / "state" / f).exists())


def test_update_command_shows_progress_and_status(tmp_path):
    with FeedServer() as feeds:
        feeds.set_default("/hotline", Reply(body=b"listed.test/\npaths.test/folder/\n", etag='"e1"'))
        config = write_config(tmp_path, feeds.url("/hotline"))
        done = subprocess.run([URLWARDEN, "update", "--config", str(config)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert "[1/1] hotline: updating..." in done.stderr
        assert "[1/1] hotline: full, 2 entries" in done.stderr
        feeds.set_default("/hotline", Reply(status=404))
        failed = subprocess.run([URLWARDEN, "update", "--config", str(config)], capture_output=True, text=True,
                                timeout=60)
        assert failed.returncode == 2
        assert "hotline: failed, the last good list stays:" in failed.stderr
    text = subprocess.run([URLWARDEN, "status", "--config", str(config)], capture_output=True, text=True,
                          timeout=60).stdout
    assert text.startswith("hotline: 2 entries, version \"e1\"")
    assert "last error" in text and "404" in text


def test_sighup_during_a_download(tmp_path, origin):
    with FeedServer() as feeds:
        feeds.set_default("/hotline", Reply(body=b"listed.test/\n", etag='"v1"'))
        config = write_config(tmp_path, feeds.url("/hotline"))
        origin.reset()
        with start(tmp_path, config, origin) as proxy:
            wait_for(lambda: status_code(proxy, origin, "listed.test") == 451, "the first list")
            # a slow download is under way when a second SIGHUP arrives
            feeds.set_default("/hotline", Reply(body=b"listed.test/\nlater.test/\n", etag='"v2"', delay=3.0))
            proxy.send_signal(signal.SIGHUP)
            wait_for(lambda: len(feeds.requests_for("/hotline")) >= 2, "the slow download to start")
            proxy.send_signal(signal.SIGHUP)
            # requests never wait on the download: the old list answers meanwhile
            assert status_code(proxy, origin, "listed.test") == 451
            assert status_code(proxy, origin, "later.test") == 200
            wait_for(lambda: status_code(proxy, origin, "later.test") == 451, "the slow download to land")
            assert proxy.returncode is None
            assert "reload rejected" not in proxy.output()


def test_required_feed_without_a_list_fails_closed(tmp_path, origin):
    with FeedServer() as feeds:
        feeds.set_default("/hotline", Reply(body=b"listed.test/\n", etag='"v1"', delay=3.0))
        config = write_config(tmp_path, feeds.url("/hotline"))
        origin.reset()
        with start(tmp_path, config, origin) as proxy:
            # first start, no last-known-good, the download still under way: nothing is let through
            assert status_code(proxy, origin, "listed.test") == 503
            assert status_code(proxy, origin, "unlisted.test") == 503
            origin.wait_idle()
            assert origin.connections == []
            wait_for(lambda: status_code(proxy, origin, "unlisted.test") == 200, "the required list")
            assert status_code(proxy, origin, "listed.test") == 451
