"""End to end: bodies stream through a real `urlwarden run`, and nothing of them stays behind.

A real origin on loopback generates large responses as it sends them and checksums uploads as
they arrive (tests/support/origin.py, /stream/<n> and /sink), so neither end holds a body whole;
the proxy's resident memory is sampled from /proc while the bytes pass. The bound is generous
(idle + MEMORY_SLACK) so that the tests do not flake; a proxy that buffered the body would exceed
it several times over. A listed URL with a large request body is answered before the body is
sent, and the origin sees nothing.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.certs import make_test_pki
from tests.support.origin import Origin, pattern_chunks, pattern_sha256
from tests.support.procmem import PeakRss
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
BODY_BYTES = 512 * 1024 * 1024
"""Larger than the proxy may hold: at ~100-300 MB/s through mitmproxy on loopback, a few seconds."""
RAW_TCP_BYTES = 256 * 1024 * 1024
MEMORY_SLACK_KB = 150 * 1024
"""Resident memory the proxy may gain over its idle figure while a body passes."""
TRANSFER_TIMEOUT = 60.0
NAMES = ["clean.test", "listed.test", "paths.test"]
BLOCK_LIST = "listed.test/\npaths.test/secret/\n"
CONFIG = """
https:
  intercept: listed-hosts
lists:
  - name: hotline
    path: block.txt
    reason: Listed by the test hotline.
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"), NAMES)


@pytest.fixture(scope="module")
def origin(pki):
    with Origin(pki, idle_timeout=20.0) as running:
        yield running


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, pki):
    workdir = tmp_path_factory.mktemp("proxy")
    (workdir / "block.txt").write_text(BLOCK_LIST)
    config = workdir / "urlwarden.yaml"
    config.write_text(CONFIG)
    port = free_port()
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={workdir / 'conf'}", "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}"]
    with ProxyProcess(argv, port, hosts={n: "127.0.0.1" for n in NAMES}, workdir=workdir) as process:
        process.port = port
        process.ca = workdir / "conf" / "mitmproxy-ca-cert.pem"
        yield process


def assert_bounded(rss: PeakRss, what: str) -> None:
    assert rss.growth_kb < MEMORY_SLACK_KB, f"{what}: the proxy grew {rss.describe()}"


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(response head, body bytes read past it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed before a response head: {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def read_body(sock: socket.socket, first: bytes, length: int) -> tuple[int, str]:
    digest = hashlib.sha256(first)
    got = len(first)
    while got < length:
        data = sock.recv(1 << 20)
        if not data:
            break
        digest.update(data)
        got += len(data)
    return got, digest.hexdigest()


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


def proxied(proxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=TRANSFER_TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


def test_large_download_over_http_streams_intact_in_flat_memory(proxy, origin):
    expected = pattern_sha256(BODY_BYTES)
    with PeakRss(proxy.pid) as rss, proxied(proxy) as sock:
        sock.sendall(f"GET http://clean.test:{origin.http_port}/stream/{BODY_BYTES} HTTP/1.1\r\n"
                     f"Host: clean.test:{origin.http_port}\r\nConnection: close\r\n\r\n".encode())
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        assert content_length(head) == BODY_BYTES
        got, digest = read_body(sock, rest, BODY_BYTES)
    assert (got, digest) == (BODY_BYTES, expected)
    assert_bounded(rss, "HTTP download")


def test_large_download_over_intercepted_https_http2_streams_intact_in_flat_memory(proxy, origin):
    """paths.test has path entries, so its HTTPS is intercepted; curl speaks HTTP/2 to the proxy."""
    expected = pattern_sha256(BODY_BYTES)
    url = f"https://paths.test:{origin.https_port}/stream/{BODY_BYTES}"
    argv = ["curl", "-sS", "--http2", "--max-time", str(int(TRANSFER_TIMEOUT)), "--proxy",
            f"http://127.0.0.1:{proxy.port}", "--cacert", str(proxy.ca), "-o", "-",
            "-w", "%{stderr}%{http_version} %{http_code}", url]
    digest, got = hashlib.sha256(), 0
    with PeakRss(proxy.pid) as rss:
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as curl:
            while chunk := curl.stdout.read(1 << 20):
                digest.update(chunk)
                got += len(chunk)
            err = curl.stderr.read().decode()
    assert curl.returncode == 0, err
    assert err.strip() == "2 200", "curl should have spoken HTTP/2 to the intercepting proxy"
    assert (got, digest.hexdigest()) == (BODY_BYTES, expected)
    assert origin.connections and origin.connections[-1].kind == "https"
    assert_bounded(rss, "intercepted HTTPS (HTTP/2) download")


def test_large_upload_streams_intact_in_flat_memory(proxy, origin):
    expected = pattern_sha256(BODY_BYTES)
    with PeakRss(proxy.pid) as rss, proxied(proxy) as sock:
        sock.sendall(f"POST http://clean.test:{origin.http_port}/sink HTTP/1.1\r\n"
                     f"Host: clean.test:{origin.http_port}\r\nContent-Length: {BODY_BYTES}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        for piece in pattern_chunks(BODY_BYTES):
            sock.sendall(piece)
        head, rest = read_head(sock)
        answer = read_body_text(sock, rest, content_length(head))
    assert head.startswith(b"HTTP/1.1 200"), head
    assert answer == f"received {BODY_BYTES} {expected}"
    assert_bounded(rss, "HTTP upload")


def read_body_text(sock: socket.socket, first: bytes, length: int) -> str:
    body = first
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            break
        body += data
    return body.decode()


@pytest.mark.parametrize("path", ["/upload", "/secret/upload"])
def test_listed_url_with_large_body_is_answered_before_the_body_and_never_sent(proxy, origin, path):
    """The client sends only the headers of a 512 MB POST; the block page comes back anyway."""
    host = "listed.test" if path == "/upload" else "paths.test"
    origin.reset()
    with PeakRss(proxy.pid) as rss, proxied(proxy) as sock:
        sock.settimeout(10)
        sock.sendall(f"POST http://{host}:{origin.http_port}{path} HTTP/1.1\r\nHost: {host}:{origin.http_port}\r\n"
                     f"Content-Length: {BODY_BYTES}\r\nAccept: text/html\r\n\r\n".encode())
        head, _ = read_head(sock)  # nothing of the body has been sent yet
        # ...and what the client goes on to send is not read: the proxy has closed the connection.
        with pytest.raises(OSError):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                sock.sendall(b"x" * 65536)
    assert head.split(b" ")[1] in (b"403", b"451"), head
    origin.wait_idle()
    assert origin.connections == [], "the origin was contacted for a listed URL"
    assert_bounded(rss, "blocked upload")


def test_raw_tcp_connection_keeps_no_message_history(proxy):
    """One long raw TCP connection (CONNECT, then bytes that are neither HTTP nor TLS) to a clean host.

    The client sends RAW_TCP_BYTES in 1 MiB steps, each acknowledged by the far end, so that
    what could pile up in the proxy is the connection's message history (mitmproxy keeps every
    message in the flow unless urlwarden_keep_messages is off), not bytes in transit.
    """
    step = 1 << 20
    received = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TRANSFER_TIMEOUT)

    def sink() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(TRANSFER_TIMEOUT)
            total = acked = 0
            while total < RAW_TCP_BYTES and (data := conn.recv(step)):
                total += len(data)
                while total - acked >= step:
                    acked += step
                    conn.sendall(b"k")
            received.append(total)

    thread = threading.Thread(target=sink, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    with listener, PeakRss(proxy.pid) as rss, proxied(proxy) as sock:
        sock.sendall(f"CONNECT clean.test:{port} HTTP/1.1\r\nHost: clean.test:{port}\r\n\r\n".encode())
        head, _ = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
        chunk = b"\x00raw" * (step // 4)  # neither HTTP nor TLS: mitmproxy relays it as raw TCP
        for _ in range(RAW_TCP_BYTES // step):
            sock.sendall(chunk)
            assert sock.recv(1) == b"k"
        thread.join(TRANSFER_TIMEOUT)
    assert received == [RAW_TCP_BYTES]
    assert_bounded(rss, "raw TCP connection")


def test_listed_url_with_large_body_over_http2_is_answered_and_the_stream_reset(proxy, origin, tmp_path):
    """Intercepted HTTPS, HTTP/2 to the proxy: the block page, then the stream ends; the origin sees nothing."""
    body = tmp_path / "upload.bin"
    with open(body, "wb") as f:
        f.truncate(BODY_BYTES)  # sparse: nothing of it is held in memory here
    origin.reset()
    argv = ["curl", "-sS", "--http2", "--max-time", "20", "--proxy", f"http://127.0.0.1:{proxy.port}",
            "--cacert", str(proxy.ca), "-o", "/dev/null", "-w", "%{http_version} %{http_code} %{size_upload}",
            "--data-binary", f"@{body}", f"https://paths.test:{origin.https_port}/secret/upload"]
    with PeakRss(proxy.pid) as rss:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    version, status, uploaded = done.stdout.split()
    assert (done.returncode, version, status) == (0, "2", "451"), done.stderr
    assert int(uploaded) < BODY_BYTES, "the whole body was sent: the proxy read it"
    origin.wait_idle()
    assert origin.connections == [], "the origin was contacted for a listed URL"
    assert_bounded(rss, "blocked HTTP/2 upload")
