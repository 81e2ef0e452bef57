"""The everyday commands as a user runs them (real subprocesses, real ports): config check, check
--config, status, --version, completion; and `urlwarden run` start-up: a port in use, the admin
listener before start-up succeeded, systemd's STATUS= line, a required feed without a list."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.proxyproc import ProxyProcess, free_port

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
TIMEOUT = 60


def urlwarden(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([URLWARDEN, *args], capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def write(directory: Path, config: str, **files: str) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text)
    path = directory / "urlwarden.yaml"
    path.write_text(config)
    return path


FEED_CONFIG = """
state_dir: state
lists:
  - name: local
    path: block.txt
  - name: hotline
    feed:
      adapter: file
      options: {path: hotline.txt}
      required: true
allow:
  - name: rescue
    path: allow.txt
"""


@pytest.fixture
def feed_config(tmp_path) -> Path:
    return write(tmp_path, FEED_CONFIG, **{"block.txt": "static.test/\n", "hotline.txt": "fed.test/\n",
                                           "allow.txt": "fed.test/ok/\n"})


# --- config check ----------------------------------------------------------------------------------


def test_config_check_accepts_a_good_configuration(tmp_path):
    config = write(tmp_path, "lists:\n  - path: block.txt\n", **{"block.txt": "listed.test/\nnot a url\n"})
    done = urlwarden("config", "check", "--config", str(config))
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == f"urlwarden: warning: {tmp_path / 'block.txt'}:2: " + lines[0].split(":2: ", 1)[1]
    assert lines[-1] == f"urlwarden: configuration {config} is ok: 1 list, 1 block and 0 allow entries"


def test_config_check_prints_one_line_per_broken_list(tmp_path):
    config = write(tmp_path, "lists:\n  - path: missing-a.txt\n  - path: missing-b.txt\n")
    done = urlwarden("config", "check", "--config", str(config))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 3, done.stderr
    assert lines[0].startswith(f"urlwarden: {tmp_path / 'missing-a.txt'}: cannot read")
    assert lines[1].startswith(f"urlwarden: {tmp_path / 'missing-b.txt'}: cannot read")
    assert lines[2] == f"urlwarden: configuration {config} test failed"


@pytest.mark.parametrize(("text", "expected"), [
    ("lists:\n  - path: a.txt\n    colour: red\n", ":3: lists[0]: unknown key 'colour'"),
    ("listen: nowhere\n", ":1: listen: must be HOST:PORT"),
    ("lists: [\n", ": invalid YAML"),
])
def test_config_check_names_the_file_and_line(tmp_path, text, expected):
    config = write(tmp_path, text, **{"a.txt": "listed.test/\n"})
    done = urlwarden("config", "check", "--config", str(config))
    assert done.returncode == 2
    first, last = done.stderr.splitlines()
    assert first.startswith(f"urlwarden: {config}") and expected in first, first
    assert last == f"urlwarden: configuration {config} test failed"


def test_config_check_fails_a_required_feed_without_a_list(feed_config):
    done = urlwarden("config", "check", "--config", str(feed_config))
    assert done.returncode == 2
    assert "feed hotline is required and has no list yet" in done.stderr


# --- check --config, status ----------------------------------------------------------------------


def test_check_with_a_configuration_decides_as_the_proxy(feed_config):
    urls = ["http://static.test/", "http://fed.test/x", "http://fed.test/ok/y", "http://other.test/"]
    before = urlwarden("check", "--config", str(feed_config), *urls)
    assert before.returncode == 2  # a required feed without a list: the proxy would refuse everything
    assert "hotline is required and has no list yet" in before.stderr
    assert urlwarden("update", "--config", str(feed_config)).returncode == 0  # saves the last-known-good
    (feed_config.parent / "hotline.txt").unlink()  # decided from the saved copy, not the source
    done = urlwarden("check", "--json", "--config", str(feed_config), *urls)
    assert done.returncode == 1, done.stderr
    decisions = [(r["url"], r["decision"], r.get("list")) for r in map(json.loads, done.stdout.splitlines())]
    assert decisions == [("http://static.test/", "block", "local"), ("http://fed.test/x", "block", "hotline"),
                         ("http://fed.test/ok/y", "allow", "rescue"), ("http://other.test/", "allow", None)]


def test_status_shows_static_lists_and_the_saved_last_known_good(feed_config):
    assert urlwarden("update", "--config", str(feed_config)).returncode == 0
    done = urlwarden("status", "--json", "--config", str(feed_config))
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r.get("feed") or r.get("list"), r["kind"], r["entries"]) for r in records] == [
        ("hotline", "feed", 1), ("local", "static block", 1), ("rescue", "static allow", 1)]
    assert records[0]["lkg_saved"] is True
    text = urlwarden("status", "--config", str(feed_config)).stdout.splitlines()
    assert "last-known-good saved" in text[0]
    assert text[1].startswith(f"local: static block list, 1 entries, plain file {feed_config.parent / 'block.txt'}")


def test_version_names_urlwarden_mitmproxy_and_python():
    done = urlwarden("--version")
    assert done.returncode == 0
    python = ".".join(map(str, sys.version_info[:3]))
    assert re.fullmatch(rf"urlwarden \S+ \(mitmproxy 1\d\.\S+, Python {re.escape(python)}\)\n", done.stdout)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_covers_every_command(shell):
    done = urlwarden("completion", shell)
    assert done.returncode == 0, done.stderr
    for command in ("run", "check", "status", "config", "selftest", "squid-helper", "--config"):
        assert command in done.stdout


# --- urlwarden run: start-up -------------------------------------------------------------------------


def occupied_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.e2e
@pytest.mark.parametrize("which", ["listen", "admin.listen"])
def test_a_port_in_use_is_one_line_on_stderr_and_exit_2(tmp_path, which):
    with occupied_port() as busy:
        port = busy.getsockname()[1]
        proxy, admin = (port, free_port()) if which == "listen" else (free_port(), port)
        config = write(tmp_path, f"listen: 127.0.0.1:{proxy}\nadmin:\n  listen: 127.0.0.1:{admin}\n"
                                 "lists:\n  - path: block.txt\n", **{"block.txt": "listed.test/\n"})
        done = subprocess.run([URLWARDEN, "run", "--config", str(config), "--", "--set", f"confdir={tmp_path}"],
                              capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"urlwarden: {which} 127.0.0.1:{port} in {config}: cannot listen: address already in use\n"


@pytest.mark.e2e
def test_the_admin_listener_accepts_nothing_when_start_up_fails(tmp_path):
    """A proxy mode with a port of its own (not checked before mitmproxy starts) fails to listen:
    the admin port, taken with the configuration, never accepted a connection meanwhile."""
    admin = free_port()
    config = write(tmp_path, f"admin:\n  listen: 127.0.0.1:{admin}\nlists:\n  - path: block.txt\n",
                   **{"block.txt": "listed.test/\n"})
    with occupied_port() as busy:
        process = subprocess.Popen(
            [URLWARDEN, "run", "--config", str(config), "--", "--mode", f"regular@{busy.getsockname()[1]}",
             "--set", f"confdir={tmp_path}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        accepted, attempts = 0, 0
        deadline = time.monotonic() + TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            attempts += 1
            try:
                socket.create_connection(("127.0.0.1", admin), timeout=1).close()
                accepted += 1
            except OSError:
                time.sleep(0.01)
        if process.poll() is None:
            process.kill()
        process.wait(10)
    assert process.returncode != 0
    assert attempts > 0 and accepted == 0


@pytest.mark.e2e
def test_status_line_for_systemd_and_a_required_feed_without_a_list(tmp_path, feed_config):
    notify = tmp_path / "notify.sock"
    port = free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(30)
        argv = [URLWARDEN, "run", "--config", str(feed_config), "--listen", f"127.0.0.1:{port}", "--",
                "--set", f"confdir={tmp_path / 'conf'}"]
        with ProxyProcess(argv, port, workdir=tmp_path, env={"NOTIFY_SOCKET": str(notify)}) as proxy:
            assert sock.recv(4096) == b"READY=1"
            status = sock.recv(4096).decode()
            assert status.startswith("STATUS=REFUSING ALL REQUESTS: required feed hotline has no list yet; "
                                     "1 block list, 1 entry; 1 allow list; last update "), status
            # the feed loop fetches the feed at once: the new lists bring a new STATUS=
            assert re.fullmatch(r"STATUS=2 block lists, 2 entries; 1 allow list; last update "
                                r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", sock.recv(4096).decode())
            proxy.send_signal(signal.SIGHUP)
            assert sock.recv(4096).startswith(b"RELOADING=1")
            assert sock.recv(4096) == b"READY=1"
            assert sock.recv(4096).startswith(b"STATUS=2 block lists, 2 entries")
            banner = proxy.stderr()
    assert "nothing will be blocked" not in banner
    assert "block feed hotline: no list yet; it is required, so every request is refused" in banner
