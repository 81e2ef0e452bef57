"""The Squid front end (`urlwarden.frontends.squid`): helper protocol, reloads, feeds, block page server,
and Debian's real Squid 5.7 running the helper and redirecting to the block page server.

The end-to-end part runs ``squid -N`` (foreground, under the test's control) with its own
configuration built from the shipped ``contrib/squid/urlwarden.conf`` (only the helper command,
the configuration path and the block page address are replaced), logs and PID file in a temp
directory, no cache, test names resolved by a ``hosts_file``, ``dns_nameservers 127.0.0.1`` so
that nothing else resolves off loopback. Skipped when squid is not installed
(``scripts/system-deps`` installs it).
"""

from __future__ import annotations

import dataclasses

import grp
import io
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from urlwarden.frontends import squid
from urlwarden.config import load_config
from urlwarden.runtime.engine import State
from urlwarden.frontends.squid import BlockpageServer, SquidHelper, blockpage_answer, format_answer, parse_line

from tests.support.clients import curl
from tests.support.proxyproc import ProxyProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib" / "squid" / "urlwarden.conf"
URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
SQUID = shutil.which("squid") or next((p for p in ("/usr/sbin/squid",) if os.path.exists(p)), None)
IO_TIMEOUT = 10.0  # seconds any one read from a helper subprocess may take

BLOCK_CSV = """url,id
listed.test/,L-1
paths.test/folder/,P-1
paths.test/page.html,P-2
whole.test/,W-1
127.0.0.66/bad/,IP-1
weird.test/,"ID 7<x>&y"
"""
PLAIN_LIST = "plain.test/\n"
ALLOW = "listed.test/allowed.html\n"


def write_setup(directory: Path, *, https: str = "", on_error: str = "block", extra: str = "",
                lists: str = "") -> Path:
    """Lists and a configuration in `directory`; returns the configuration path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "block.csv").write_text(BLOCK_CSV)
    (directory / "plain.txt").write_text(PLAIN_LIST)
    (directory / "allow.txt").write_text(ALLOW)
    config = directory / "urlwarden.yaml"
    config.write_text(f"""
on_error: {on_error}
operator:
  name: Squid Test Operator
  url: https://operator.example/about
{https}
state_dir: state
lists:
  - name: block
    path: block.csv
    reason: Listed by the test hotline.
  - name: plain
    path: plain.txt
    status: 403
{lists}
allow:
  - name: allow
    path: allow.txt
{extra}
""")
    return config


@pytest.fixture
def helper(tmp_path):
    h = SquidHelper(load_config(write_setup(tmp_path)))
    yield h
    h.close()


def ask(h: SquidHelper, line: bytes) -> bytes:
    return h.answer_line(line + b"\n").rstrip(b"\n")


# --- the protocol, as a table --------------------------------------------------------------------

@pytest.mark.parametrize(("line", "answer"), [
    # block list entries: whole host, subdomain, case, port, path-level, percent-encoding, dots
    (b"0 http://listed.test/ -", b"0 OK message=block:L-1 tag=block"),
    (b"1 http://WWW.Listed.TEST:8080/a/b?c=d -", b"1 OK message=block:L-1 tag=block"),
    (b"2 http://unlisted.test/ -", b"2 ERR"),
    (b"3 http://paths.test/folder/deep/x.html -", b"3 OK message=block:P-1 tag=block"),
    (b"4 http://paths.test/%66older/x -", b"4 OK message=block:P-1 tag=block"),
    (b"5 http://paths.test/other/../folder/x -", b"5 OK message=block:P-1 tag=block"),
    (b"6 http://paths.test/page.html?any=1 -", b"6 OK message=block:P-2 tag=block"),
    (b"7 http://paths.test/other -", b"7 ERR"),
    (b"8 http://listed.test/allowed.html -", b"8 ERR"),  # the allow list wins
    (b"9 http://2130706498/bad/x -", b"9 OK message=block:IP-1 tag=block"),  # 127.0.0.66 in decimal
    (b"10 http://127.0.0.66/good/ -", b"10 ERR"),
    (b"11 https://paths.test/folder/x -", b"11 OK message=block:P-1 tag=block"),  # decrypted by ssl_bump
    # CONNECT targets (%>ru is host:port): hosts listed whole are blocked
    (b"12 whole.test:443 -", b"12 OK message=block:W-1 tag=block"),
    (b"13 www.whole.test:443 -", b"13 OK message=block:W-1 tag=block"),
    (b"14 unlisted.test:443 -", b"14 ERR"),
    (b"15 paths.test:443 -", b"15 ERR"),  # path-level, https.intercept listed-hosts: left to ssl_bump
    (b"16 listed.test:443 -", b"16 ERR"),  # whole host, but an allow entry makes it path-level
    (b"17 %5B::1%5D:443 -", b"17 ERR"),  # Squid escapes the brackets
    # an entry id with characters Squid would mangle
    (b"18 http://weird.test/ -", b"18 OK message=block:ID_7_x__y tag=block"),
    # further names after the URL; "-" is Squid's "no value"
    (b"19 http://unlisted.test/ whole.test", b"19 OK message=block:W-1 tag=block"),
    (b"20 http://unlisted.test/ - -", b"20 ERR"),
    # the non-concurrent protocol: no channel id
    (b"http://listed.test/x", b"OK message=block:L-1 tag=block"),
    (b"http://unlisted.test/x -", b"ERR"),
    # garbage: BH, with the channel id when there is one
    (b"", b"BH message=error"),
    (b"21", b"21 BH message=error"),
    (b"22 -", b"22 BH message=error"),
    (b"23 http:// -", b"23 BH message=error"),
    (b"24 " + b"x " * 20, b"24 BH message=error"),
    (b"25 http://a.test:99999999999999999999/ -", b"25 ERR"),
])
def test_answers(helper, line, answer):
    assert ask(helper, line) == answer


def test_plain_list_entry_ids_are_digest_prefixes(helper):
    from urlwarden.core.lists import load_list, make_spec
    from urlwarden.core.matcher import build

    config = helper.state.config
    expected = build([load_list(make_spec(Path(config.source).parent / "plain.txt"))]).match("http://plain.test/")
    assert ask(helper, b"3 http://plain.test/x -") == b"3 OK message=plain:%s tag=plain" % expected.entry_id.encode()


@pytest.mark.parametrize(("uninspected", "line", "answer"), [
    ("refuse", b"1 paths.test:443 -", b"1 OK message=uninspected"),
    ("refuse", b"2 listed.test:443 -", b"2 OK message=uninspected"),
    ("refuse", b"3 whole.test:443 -", b"3 OK message=block:W-1 tag=block"),
    ("refuse", b"4 unlisted.test:443 -", b"4 ERR"),
    ("pass", b"5 paths.test:443 -", b"5 ERR"),
    ("pass", b"6 whole.test:443 -", b"6 OK message=block:W-1 tag=block"),
])
def test_connect_without_ssl_bump(tmp_path, uninspected, line, answer):
    config = write_setup(tmp_path, https=f"https:\n  intercept: none\n  uninspected: {uninspected}\n")
    h = SquidHelper(load_config(config))
    try:
        assert ask(h, line) == answer
    finally:
        h.close()


class _Broken:
    """A snapshot whose every lookup fails: an internal error."""

    def match(self, url):
        raise RuntimeError("broken")

    def host_status(self, host):
        raise RuntimeError("broken")


@pytest.mark.parametrize(("on_error", "answer"), [("block", b"7 OK message=error"), ("allow", b"7 ERR")])
def test_internal_error_applies_on_error(tmp_path, on_error, answer):
    h = SquidHelper(load_config(write_setup(tmp_path, on_error=on_error)))
    try:
        h.runtime._current = dataclasses.replace(h.runtime.current, state=State(config=h.state.config,
                                                                                snapshot=_Broken()))
        assert ask(h, b"7 http://unlisted.test/ -") == answer
        assert ask(h, b"8 unlisted.test:443 -") == answer.replace(b"7", b"8")
    finally:
        h.close()


@pytest.mark.parametrize("line", [
    b"\xff\xfe\x00 \x01\x02", b"0 \xff\xfe", b"0 http://\xff\xfe/ -", b"0 %ZZ:443 -", b"0 [::1:443 -",
    b"0 http://[::1/ -", b"0 :0 -", b"0 http://a.test/\x00 -", b"0 " + b"%" * 5000, b"\t \t",
])
def test_garbage_gets_exactly_one_line(helper, line):
    out = helper.answer_line(line)
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    tokens = out.split()
    result = tokens[1] if tokens[0].isdigit() else tokens[0]
    assert result in (b"OK", b"ERR", b"BH")


def test_format_answer():
    assert format_answer(b"3", squid.ERR) == b"3 ERR\n"
    assert format_answer(None, squid.BH) == b"BH message=error\n"
    assert parse_line(b"12 listed.test:443 -") == squid.HelperRequest(b"12", "listed.test:443", True, ())


def test_public_api_is_curated():
    import inspect

    assert len(squid.__all__) == len(set(squid.__all__))
    assert all(hasattr(squid, name) for name in squid.__all__)
    defined = {name for name, value in vars(squid).items() if not name.startswith("_")
               and (inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == squid.__name__}
    assert defined <= set(squid.__all__)


def test_safe_reference_never_carries_other_characters():
    assert squid.safe_reference("iwf", "4711") == "iwf:4711"
    assert squid.safe_reference("iwf", 'a b"<c>&d\n') == "iwf:a_b__c__d_"
    assert squid.safe_reference("iwf", "x" * 100) == "iwf:" + "x" * squid.MAX_ENTRY_ID_CHARS


# --- the loop: channels in order, long lines, EOF --------------------------------------------------

def test_run_answers_every_channel_in_order(helper):
    lines = b"".join(b"%d http://%s.test/ -\n" % (i, b"listed" if i % 3 == 0 else b"unlisted") for i in range(30))
    too_long = b"30 http://a.test/" + b"a" * (squid.MAX_LINE_BYTES + 10) + b" -\n"
    out = io.BytesIO()
    assert helper.run(io.BytesIO(lines + too_long + b"31 http://listed.test/"), out) == 0
    answers = out.getvalue().splitlines()
    assert [a.split()[0] for a in answers] == [b"%d" % i for i in range(32)]
    for i, answer in enumerate(answers[:30]):
        assert answer.split()[1] == (b"OK" if i % 3 == 0 else b"ERR")
    assert answers[30] == b"30 BH message=error"
    assert answers[31] == b"31 OK message=block:L-1 tag=block"


def test_run_on_a_pipe_batches_and_skips_long_lines(helper):
    read_fd, write_fd = os.pipe()
    long_line = b"2 http://a.test/" + b"a" * (squid.MAX_LINE_BYTES + squid.READ_SIZE) + b" -\n"
    data = b"0 http://listed.test/ -\n1 http://unlisted.test/ -\n" + long_line + b"3 http://listed.test/"

    def feed():
        with open(write_fd, "wb") as w:
            w.write(data)

    import threading

    writer = threading.Thread(target=feed)
    writer.start()
    out = io.BytesIO()
    with open(read_fd, "rb") as r:
        assert helper.run(r, out) == 0
    writer.join(IO_TIMEOUT)
    assert out.getvalue().splitlines() == [b"0 OK message=block:L-1 tag=block", b"1 ERR", b"2 BH message=error",
                                           b"3 OK message=block:L-1 tag=block"]


# --- reloads ------------------------------------------------------------------------------------------

def replace_file(path: Path, text: str) -> None:
    temp = path.with_suffix(".new")
    temp.write_text(text)
    os.replace(temp, path)  # a new inode: the stamp changes even within one mtime tick


def test_reload_when_a_list_changes_and_has_held_still(tmp_path, helper):
    assert ask(helper, b"0 http://newly.test/ -") == b"0 ERR"
    replace_file(tmp_path / "plain.txt", "plain.test/\nnewly.test/\n")
    helper.maintain()  # seen once: it might still be being written
    assert ask(helper, b"1 http://newly.test/ -") == b"1 ERR"
    helper.maintain()  # unchanged since: loaded
    assert ask(helper, b"2 http://newly.test/ -").startswith(b"2 OK message=plain:")


def test_reload_when_the_configuration_changes(tmp_path, helper):
    config = tmp_path / "urlwarden.yaml"
    replace_file(config, config.read_text().replace("https://operator.example/about", "https://other.example/"))
    (tmp_path / "more.txt").write_text("more.test/\n")
    replace_file(config, config.read_text().replace("allow:\n", "  - name: more\n    path: more.txt\nallow:\n"))
    helper.maintain()
    helper.maintain()
    assert ask(helper, b"0 http://more.test/ -").startswith(b"0 OK message=more:")
    assert helper.state.config.page.operator_url == "https://other.example/"


def test_bad_reload_is_rejected_and_the_lists_in_force_stay(tmp_path, helper, caplog):
    config = tmp_path / "urlwarden.yaml"
    good = config.read_text()
    replace_file(config, good + "typo_key: 1\n")
    helper.maintain()
    helper.maintain()
    assert "reload rejected" in caplog.text
    assert ask(helper, b"0 http://listed.test/ -") == b"0 OK message=block:L-1 tag=block"
    (tmp_path / "more.txt").write_text("more.test/\n")
    replace_file(config, good.replace("allow:\n", "  - name: more\n    path: more.txt\nallow:\n"))
    helper.maintain()
    helper.maintain()
    assert ask(helper, b"1 http://more.test/ -").startswith(b"1 OK message=more:")


def test_reload_requested_by_sighup_is_immediate(tmp_path, helper):
    replace_file(tmp_path / "plain.txt", "plain.test/\nnewly.test/\n")
    helper.request_reload()
    helper.maintain()
    assert ask(helper, b"0 http://newly.test/ -").startswith(b"0 OK message=plain:")


# --- feeds -------------------------------------------------------------------------------------------

FEED = """  - name: hotfeed
    feed:
      adapter: file
      options: {path: feed-source.txt}
      required: true
"""


def test_feed_refresh_and_required_feed_fails_closed(tmp_path):
    (tmp_path / "feed-source.txt").write_text("fed.test/\n")
    config = load_config(write_setup(tmp_path, lists=FEED, on_error="allow"))
    h = SquidHelper(config)
    try:
        # no last-known-good copy yet and the feed is required: everything denied, whatever on_error says
        assert ask(h, b"0 http://unlisted.test/ -") == b"0 OK message=error"
        h.maintain()  # the feed is due: fetched, saved as last-known-good, swapped in
        assert ask(h, b"1 http://unlisted.test/ -") == b"1 ERR"
        assert ask(h, b"2 http://fed.test/x -").startswith(b"2 OK message=hotfeed:")
        assert (tmp_path / "state" / "hotfeed.json").exists()
    finally:
        h.close()


def test_other_helpers_pick_up_a_feed_saved_by_one_of_them(tmp_path):
    (tmp_path / "feed-source.txt").write_text("fed.test/\n")
    config = load_config(write_setup(tmp_path, lists=FEED))
    first, second = SquidHelper(config), SquidHelper(config)
    try:
        first.maintain()
        (tmp_path / "feed-source.txt").unlink()  # the second helper must not need the source
        second.maintain()
        assert ask(second, b"0 http://fed.test/ -").startswith(b"0 OK message=hotfeed:")
        assert second.feeds.status("hotfeed").source == "last-known-good"
        assert second.feeds.status("hotfeed").consecutive_failures == 0  # it did not fetch itself
    finally:
        first.close()
        second.close()


# --- the helper as a process: stdout holds only answers, SIGHUP reloads, EOF ends it --------------------

def _read_line(proc: subprocess.Popen) -> bytes:
    ready, _, _ = select.select([proc.stdout], [], [], IO_TIMEOUT)
    assert ready, "the helper did not answer in time"
    return proc.stdout.readline()


def test_helper_process(tmp_path):
    config = write_setup(tmp_path)
    # unbuffered: _read_line selects on the pipe, so nothing may wait in a Python buffer
    proc = subprocess.Popen([URLWARDEN, "squid-helper", "--config", str(config)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, bufsize=0)
    try:
        proc.stdin.write(b"0 http://listed.test/ -\n1 http://unlisted.test/ -\n2 garbage\xff\n")
        proc.stdin.flush()
        assert [_read_line(proc) for _ in range(3)] == [
            b"0 OK message=block:L-1 tag=block\n", b"1 ERR\n", b"2 ERR\n"]
        replace_file(tmp_path / "plain.txt", "plain.test/\nnewly.test/\n")
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + IO_TIMEOUT
        channel = 3
        while True:  # the reload happens on the helper's own thread: ask until it shows
            proc.stdin.write(b"%d http://newly.test/ -\n" % channel)
            proc.stdin.flush()
            answer = _read_line(proc)
            assert answer.startswith(b"%d " % channel)
            if b" OK " in answer:
                break
            assert time.monotonic() < deadline, "SIGHUP did not reload the lists"
            channel += 1
            time.sleep(0.05)
        proc.stdin.close()
        assert proc.wait(IO_TIMEOUT) == 0
        assert proc.stdout.read() == b""
        assert b"lists loaded" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(IO_TIMEOUT)


def test_helper_exits_2_when_the_lists_cannot_load(tmp_path):
    config = write_setup(tmp_path)
    (tmp_path / "block.csv").unlink()
    done = subprocess.run([URLWARDEN, "squid-helper", "--config", str(config)], input=b"0 http://a.test/ -\n",
                          capture_output=True, timeout=30)
    assert done.returncode == 2 and done.stdout == b""
    assert b"urlwarden: " in done.stderr and b"block.csv" in done.stderr


# --- the block page server ---------------------------------------------------------------------------

@pytest.fixture
def config(tmp_path):
    return load_config(write_setup(tmp_path, lists="""  - name: quiet
    path: plain.txt
    mode: notfound
  - name: silent
    path: plain.txt
    mode: close
"""))


HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.mark.parametrize(("target", "headers", "status", "content_type"), [
    ("/blocked?ref=block:L-1", HTML, 451, "text/html; charset=utf-8"),
    ("/blocked?ref=block%3AL-1", HTML, 451, "text/html; charset=utf-8"),
    ("/blocked?ref=block:L-1", {"sec-fetch-dest": "image"}, 451, "image/svg+xml"),
    ("/blocked?ref=block:L-1", {"accept": "application/json", "sec-fetch-dest": "empty"}, 451, "application/json"),
    ("/blocked?ref=plain:0123456789ab", HTML, 403, "text/html; charset=utf-8"),  # the list's status
    ("/blocked?ref=quiet:1", HTML, 404, "text/plain; charset=utf-8"),  # mode notfound
    ("/blocked?ref=", HTML, 503, "text/plain; charset=utf-8"),  # a lookup failed (queue full)
    ("/blocked?ref=error", HTML, 503, "text/plain; charset=utf-8"),
    ("/blocked?ref=uninspected", HTML, 403, "text/plain; charset=utf-8"),
    ("/blocked", HTML, 400, "text/plain; charset=utf-8"),
    ("/blocked?ref=nosuchlist:1", HTML, 400, "text/plain; charset=utf-8"),
    ("/blocked?ref=block:%3Cscript%3E", HTML, 400, "text/plain; charset=utf-8"),
    ("/blocked?ref=block:" + "x" * 65, HTML, 400, "text/plain; charset=utf-8"),
    ("/blocked?ref=block", HTML, 400, "text/plain; charset=utf-8"),
    ("/blocked?ref=block:1&ref=block:2", HTML, 400, "text/plain; charset=utf-8"),
    ("/blocked?" + "&".join(f"a{i}=1" for i in range(20)), HTML, 400, "text/plain; charset=utf-8"),
    ("/other?ref=block:L-1", HTML, 404, "text/plain; charset=utf-8"),
])
def test_blockpage_answers(config, target, headers, status, content_type):
    response = blockpage_answer(config, target, headers)
    assert response.status == status
    assert dict(response.headers)["Content-Type"] == content_type
    if status == 451 and "html" in content_type:
        assert b"block:L-1" in response.body and b"Squid Test Operator" in response.body


def test_blockpage_mode_close_has_no_answer(config):
    assert blockpage_answer(config, "/blocked?ref=silent:1", HTML) is None


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_blockpage_server(config):
    server = BlockpageServer(config, "127.0.0.1", 0)
    server.start()
    try:
        got = _raw(server.port, b"GET /blocked?ref=block:L-1 HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 451 Unavailable For Legal Reasons\r\n")
        assert b'Link: <https://operator.example/about>; rel="blocked-by"' in got and b"block:L-1" in got
        head = _raw(server.port, b"HEAD /blocked?ref=block:L-1 HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 451 ") and head.endswith(b"\r\n\r\n")
        assert _raw(server.port, b"POST /blocked HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").startswith(
            b"HTTP/1.1 405 ")
        assert _raw(server.port, b"GET /blocked?ref=block:1 HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n").startswith(
            b"HTTP/1.1 431 ")
        assert _raw(server.port, b"GET /blocked?ref=silent:1 HTTP/1.1\r\nHost: x\r\n\r\n") == b""
        assert _raw(server.port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    finally:
        server.stop()


def test_blockpage_server_reloads_its_configuration(tmp_path, config):
    now = [0.0]
    server = BlockpageServer(config, "127.0.0.1", 0, clock=lambda: now[0])
    path = tmp_path / "urlwarden.yaml"
    replace_file(path, path.read_text().replace("Squid Test Operator", "Renamed Operator"))
    assert server.current_config().page.operator_name == "Squid Test Operator"  # not checked yet
    now[0] += squid.CONFIG_CHECK_INTERVAL
    assert server.current_config().page.operator_name == "Renamed Operator"
    replace_file(path, "typo_key: 1\n")
    server.reload()
    assert server.current_config().page.operator_name == "Renamed Operator"  # a bad one is rejected


# --- Debian's Squid, for real --------------------------------------------------------------------------

SQUID_NAMES = ("listed.test", "paths.test", "whole.test", "origin.test", "later.test")


def squid_config(workdir: Path, port: int, helper_config: Path, blockpage_port: int) -> Path:
    snippet = CONTRIB.read_text()
    for old, new in (("/usr/local/bin/urlwarden", URLWARDEN), ("/etc/urlwarden/urlwarden.yaml", str(helper_config)),
                     ("http://127.0.0.1:8081/", f"http://127.0.0.1:{blockpage_port}/")):
        assert old in snippet, f"{CONTRIB} no longer contains {old!r}"
        snippet = snippet.replace(old, new)
    (workdir / "urlwarden.conf").write_text(snippet)
    (workdir / "hosts").write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in SQUID_NAMES))
    conf = workdir / "squid.conf"
    conf.write_text(f"""
http_port 127.0.0.1:{port}
pid_filename {workdir}/squid.pid
cache_log {workdir}/cache.log
access_log stdio:{workdir}/access.log
coredump_dir {workdir}
cache deny all
cache_mem 8 MB
hosts_file {workdir}/hosts
dns_nameservers 127.0.0.1
pinger_enable off
icp_port 0
htcp_port 0
shutdown_lifetime 1 seconds
visible_hostname squid.urlwarden.invalid
include {workdir}/urlwarden.conf
http_access allow localhost
http_access deny all
""")
    return conf


def squid_argv(conf: Path) -> list[str]:
    """Squid in the foreground. As root, inside a user namespace that maps an unprivileged user
    to our own uid: Squid refuses to run as root and, started as root, runs its helpers as
    cache_effective_user, who may not reach this venv's interpreter (it can live in a private
    home, e.g. /root/.pyenv). In the namespace Squid believes it is that user, so it switches
    to no one, while its files and helpers keep our access rights."""
    argv = [SQUID, "-N", "-f", str(conf)]
    if os.geteuid() != 0:
        return argv
    user = next((u for u in ("proxy", "nobody") if _user_exists(u)), None)
    if user is None or shutil.which("unshare") is None:
        pytest.skip("running as root: Squid needs an unprivileged user ('proxy' or 'nobody') and unshare "
                    "(util-linux) to run here")
    group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    return ["unshare", "--user", f"--map-user={user}", f"--map-group={group}", *argv]


@pytest.fixture(scope="module")
def squid_stack(origin):
    """(squid port, block page port, squid process, work directory) with Squid and the block
    page server running."""
    if SQUID is None:
        pytest.skip("squid is not installed (Debian: apt-get install squid; scripts/system-deps installs it)")
    workdir = Path(tempfile.mkdtemp(prefix="urlwarden-squid-"))
    try:
        helper_config = write_setup(workdir / "urlwarden", https="https:\n  intercept: none\n")
        port, blockpage_port = free_port(), free_port()
        conf = squid_config(workdir, port, helper_config, blockpage_port)
        with ProxyProcess([URLWARDEN, "blockpage-server", "--config", str(helper_config),
                           "--listen", f"127.0.0.1:{blockpage_port}"], blockpage_port, workdir=workdir / "blockpage"), \
             ProxyProcess(squid_argv(conf), port, workdir=workdir / "run") as proc:
            yield port, blockpage_port, proc, workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _squid_log(workdir: Path) -> str:
    text = ""
    for name in ("cache.log", "access.log"):
        path = workdir / name
        text += f"--- {name} ---\n" + (path.read_text(errors="replace")[-4000:] if path.exists() else "(none)\n")
    return text


@pytest.mark.e2e
def test_squid_blocks_with_the_block_page_and_never_contacts_the_origin(squid_stack, fresh_origin):
    port, blockpage_port, _, workdir = squid_stack
    url = fresh_origin.url("listed.test", "/page?x=1")
    r = curl("-H", "Accept: text/html", url, proxy=port)
    assert r.status == 302, _squid_log(workdir)
    location = urlsplit(r.header("location"))
    assert (location.hostname, location.port, location.path) == ("127.0.0.1", blockpage_port, "/blocked")
    assert parse_qs(location.query) == {"ref": ["block:L-1"]}

    page = curl("-H", "Accept: text/html", "-H", "Accept-Language: de", r.header("location"), proxy=port)
    assert page.status == 451
    assert "Squid Test Operator" in page.text and "block:L-1" in page.text
    assert page.header("content-language") == "de"
    image = curl("-L", "-H", "Sec-Fetch-Dest: image", fresh_origin.url("paths.test", "/%66older/a.jpg"), proxy=port)
    assert (image.status, image.header("content-type")) == (451, "image/svg+xml")
    assert [status for status, _ in image.blocks] == [302, 451]

    fresh_origin.wait_idle()
    assert fresh_origin.connections == []


@pytest.mark.e2e
def test_squid_passes_unlisted_urls_to_the_origin(squid_stack, fresh_origin):
    port, _, _, workdir = squid_stack
    r = curl(fresh_origin.url("origin.test", "/fine"), proxy=port)
    assert r.status == 200, _squid_log(workdir)
    assert r.text == f"origin ok origin.test:{fresh_origin.http_port}/fine"
    r = curl(fresh_origin.url("paths.test", "/other/page.html"), proxy=port)
    assert r.status == 200
    fresh_origin.wait_idle()
    assert [req.target for req in fresh_origin.requests] == ["/fine", "/other/page.html"]


@pytest.mark.e2e
def test_squid_connect(squid_stack, fresh_origin, test_pki):
    port, _, _, workdir = squid_stack
    for host in ("whole.test", "paths.test"):  # listed whole; path-level with intercept none + refuse
        r = curl("--cacert", str(test_pki.ca_cert), fresh_origin.url(host, "/", tls=True), proxy=port)
        assert r.exit_code != 0 and r.blocks and r.blocks[0][0] == 307, (host, r.stderr, _squid_log(workdir))
    fresh_origin.wait_idle()
    assert fresh_origin.connections == []
    r = curl("--cacert", str(test_pki.ca_cert), fresh_origin.url("origin.test", "/tls", tls=True), proxy=port)
    assert r.status == 200, _squid_log(workdir)
    fresh_origin.wait_idle()
    assert [(c.kind, c.sni) for c in fresh_origin.connections] == [("https", "origin.test")]


@pytest.mark.e2e
def test_squid_helpers_pick_up_a_changed_list(squid_stack, fresh_origin):
    port, _, _, workdir = squid_stack
    url = fresh_origin.url("later.test", "/soon-listed/page")  # a host no other test uses
    assert curl(url, proxy=port).status == 200
    lists = workdir / "urlwarden"
    replace_file(lists / "plain.txt", PLAIN_LIST + "later.test/soon-listed/\n")
    deadline = time.monotonic() + 20 * squid.CHECK_INTERVAL  # two checks and a load; bounded
    while (r := curl(url, proxy=port)).status != 302:
        assert r.status == 200, _squid_log(workdir)
        assert time.monotonic() < deadline, "the helper did not reload the changed list"
        time.sleep(0.2)
    assert parse_qs(urlsplit(r.header("location")).query)["ref"][0].startswith("plain:")
    fresh_origin.wait_idle()
    fresh_origin.reset()
    assert curl(url, proxy=port).status == 302
    fresh_origin.wait_idle()
    assert fresh_origin.connections == []
