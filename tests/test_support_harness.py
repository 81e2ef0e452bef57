"""Self-tests of the end-to-end harness (tests/support) against itself and a bare mitmdump.

No urlwarden code is involved. Tests that start processes (curl, mitmdump, Chromium) are marked
e2e. The mitmdump tests also pin down one mitmproxy fact a blocking proxy depends on: with the
default connection_strategy (eager) a CONNECT reaches the upstream before any request hook runs.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import socket
import ssl
import sys
import time

import pytest
from cryptography import x509

from tests.support import (
    ProxyProcess,
    ProxyStartError,
    curl,
    chromium_load,
    free_port,
    mitmdump_argv,
    raw_http,
    status_of,
    tls_handshake,
)
from tests.support.certs import CA_COMMON_NAME
from tests.support.fixtures import fresh_origin, origin, test_pki  # noqa: F401 (fixtures)
from tests.support.origin import WS_GUID

ORIGIN_HOSTS = {"origin.test": "127.0.0.1"}


# ----------------------------------------------------------------------------- certs
def test_pki_server_cert_carries_names_loopback_and_ca_issuer(test_pki):
    cert = x509.load_pem_x509_certificate(test_pki.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    assert {"origin.test", "*.listed.test", "*.test", "localhost"} <= set(dns)
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")} <= set(ips)
    ca = x509.load_pem_x509_certificate(test_pki.ca_cert.read_bytes())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)


# ----------------------------------------------------------------------------- origin alone
@pytest.mark.e2e
def test_origin_records_direct_curl_request_and_connection(fresh_origin):
    r = curl(fresh_origin.url("127.0.0.1", "/x?y=1"), "-H", "X-Test: a")
    fresh_origin.wait_idle()
    assert (r.exit_code, r.status) == (0, 200)
    assert r.header("x-origin") == "1"
    assert r.header("content-type").startswith("text/plain")
    assert r.body == f"origin ok 127.0.0.1:{fresh_origin.http_port}/x?y=1".encode()
    [conn] = fresh_origin.connections
    assert (conn.kind, conn.sni, conn.request_count) == ("http", None, 1)
    assert conn.closed_time is not None
    [req] = fresh_origin.requests
    assert (req.method, req.target, req.version, req.status) == ("GET", "/x?y=1", "HTTP/1.1", 200)
    assert req.hosts == [f"127.0.0.1:{fresh_origin.http_port}"]
    assert req.header("x-test") == "a"
    assert req.connection_id == conn.id


@pytest.mark.e2e
def test_https_origin_verifies_with_test_ca_and_records_sni(fresh_origin, test_pki):
    port = fresh_origin.https_port
    r = curl(
        "--cacert", str(test_pki.ca_cert), "--resolve", f"origin.test:{port}:127.0.0.1",
        fresh_origin.url("origin.test", "/s", tls=True),
    )
    fresh_origin.wait_idle()
    assert (r.exit_code, r.status) == (0, 200), r.stderr
    assert r.body == f"origin ok origin.test:{port}/s".encode()
    [conn] = fresh_origin.connections
    assert (conn.kind, conn.sni, conn.tls_ok, conn.alpn) == ("https", "origin.test", True, "http/1.1")
    assert fresh_origin.requests[0].sni == "origin.test"


def test_tls_handshake_direct_reads_origin_certificate_and_sni(fresh_origin, test_pki):
    t = tls_handshake(
        fresh_origin.https_port, None, "other.test", cafile=test_pki.ca_cert,
        http_host="third.test", http_path="/h",
    )
    assert t.handshake_ok, t.error
    assert t.connect_status is None
    assert t.issuer_cn == CA_COMMON_NAME
    assert "other.test" in t.sans and "127.0.0.1" in t.sans
    assert t.response_status == 200
    assert t.response.endswith(b"origin ok third.test/h")
    fresh_origin.wait_idle()
    assert [c.sni for c in fresh_origin.connections] == ["other.test"]
    assert fresh_origin.requests[0].host == "third.test"


def test_tls_handshake_reports_verification_failure(fresh_origin, test_pki):
    t = tls_handshake(fresh_origin.https_port, None, "not-in-cert.invalid", cafile=test_pki.ca_cert)
    assert not t.handshake_ok
    assert "certificate" in t.error.lower()


def test_websocket_upgrade_gets_101_with_correct_accept(fresh_origin):
    key = base64.b64encode(b"0123456789abcdef").decode()
    raw = raw_http(
        "127.0.0.1", fresh_origin.http_port,
        (f"GET /ws HTTP/1.1\r\nHost: origin.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode(),
        max_responses=None, timeout=5,
    )
    head, _, frames = raw.partition(b"\r\n\r\n")
    assert status_of(raw) == 101
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    assert f"Sec-WebSocket-Accept: {accept}".encode() in head
    assert frames.startswith(b"\x81") and b"origin ws origin.test/ws" in frames
    assert frames.endswith(b"\x88\x02\x03\xe8")  # close frame, 1000
    fresh_origin.wait_idle()
    assert fresh_origin.requests[0].status == 101


def test_origin_records_duplicate_hosts_keepalive_and_chunked_body(fresh_origin):
    data = (
        b"GET /a HTTP/1.1\r\nHost: one.test\r\nHost: two.test\r\n\r\n"
        b"POST http://abs.test/b?q HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    raw = raw_http("127.0.0.1", fresh_origin.http_port, data, max_responses=2)
    assert raw.count(b"HTTP/1.1 200 OK") == 2
    assert b"origin ok one.test/a" in raw and b"origin ok abs.test/b?q" in raw
    fresh_origin.wait_idle()
    first, second = fresh_origin.requests
    assert first.hosts == ["one.test", "two.test"]
    assert (second.method, second.target, second.host, second.body) == (
        "POST", "http://abs.test/b?q", None, b"abc")
    assert len(fresh_origin.connections) == 1


def test_origin_rejects_oversized_header_block(fresh_origin):
    big = b"GET / HTTP/1.1\r\nHost: origin.test\r\nX-Big: " + b"a" * (fresh_origin.max_header_bytes + 10) + b"\r\n\r\n"
    assert status_of(raw_http("127.0.0.1", fresh_origin.http_port, big)) == 431
    fresh_origin.wait_idle()
    assert fresh_origin.requests[0].status == 431


def test_origin_survives_clients_that_connect_and_hang_up(fresh_origin):
    for port in (fresh_origin.http_port, fresh_origin.https_port) * 5:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # A TLS client that sends half a request and leaves.
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", fresh_origin.https_port), timeout=2) as s:
        with ctx.wrap_socket(s, server_hostname="half.test") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: hal")
    # All of this test's connections end, and no thread outlives its connection.
    fresh_origin.wait_until(
        lambda o: len(o.connections) == 11 and all(c.closed_time for c in o.connections)
        and o.thread_count == o.open_connections,
        timeout=5,
    )
    conns = fresh_origin.connections
    assert len(conns) == 11
    assert {c.kind for c in conns} == {"http", "https"}
    assert fresh_origin.requests == []
    # Still serving.
    assert status_of(raw_http("127.0.0.1", fresh_origin.http_port, b"GET / HTTP/1.1\r\nHost: x.test\r\n\r\n")) == 200


# ----------------------------------------------------------------------------- ProxyProcess
@pytest.mark.e2e
def test_proxy_process_early_exit_fails_with_its_output(tmp_path):
    argv = [sys.executable, "-c", "import sys; print('boom out'); sys.exit(3)"]
    with pytest.raises(ProxyStartError, match=r"(?s)exited with 3.*boom out"):
        ProxyProcess(argv, free_port(), workdir=tmp_path).start()


@pytest.mark.e2e
def test_proxy_process_start_timeout_stops_the_process(tmp_path):
    argv = [sys.executable, "-c", "import time; print('waiting', flush=True); time.sleep(60)"]
    proxy = ProxyProcess(argv, free_port(), workdir=tmp_path, start_timeout=1.0, stop_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(ProxyStartError, match="not listening"):
        proxy.start()
    assert time.monotonic() - started < 10
    assert proxy.returncode is not None  # stopped, not left behind


@pytest.fixture(scope="module")
def mitmdump(tmp_path_factory):
    """A bare mitmdump (default options) that resolves origin.test to 127.0.0.1."""
    work = tmp_path_factory.mktemp("mitmdump")
    port = free_port()
    with ProxyProcess(mitmdump_argv(port, work / "conf"), port, hosts=ORIGIN_HOSTS, workdir=work) as proxy:
        proxy.port = port
        yield proxy


@pytest.mark.e2e
def test_curl_through_mitmdump_reaches_origin_with_its_host(fresh_origin, mitmdump):
    r = curl(fresh_origin.url("origin.test", "/x"), proxy=mitmdump.port)
    fresh_origin.wait_idle()
    assert (r.exit_code, r.status) == (0, 200), r.stderr + mitmdump.output()
    assert r.body == f"origin ok origin.test:{fresh_origin.http_port}/x".encode()
    [req] = fresh_origin.requests
    assert req.hosts == [f"origin.test:{fresh_origin.http_port}"]
    assert req.target == "/x"  # mitmproxy forwards origin-form


@pytest.mark.e2e
def test_bare_mitmdump_contacts_upstream_on_connect_before_any_request(fresh_origin, mitmdump):
    """connection_strategy=eager (the default): the CONNECT alone opens a TCP connection to the
    origin, before the client has sent a ClientHello or a request, i.e. before any request hook.
    A blocking proxy must run lazy (or answer in http_connect)."""
    with socket.create_connection(("127.0.0.1", mitmdump.port), timeout=5) as s:
        s.sendall(f"CONNECT origin.test:{fresh_origin.https_port} HTTP/1.1\r\n"
                  f"Host: origin.test:{fresh_origin.https_port}\r\n\r\n".encode())
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        fresh_origin.wait_until(lambda o: len(o.connections) >= 1, timeout=5)
    fresh_origin.wait_idle()
    assert [c.kind for c in fresh_origin.connections] == ["https"]
    assert fresh_origin.requests == []


@pytest.mark.e2e
def test_tls_passthrough_mitmdump_shows_origin_certificate(fresh_origin, test_pki, tmp_path):
    port = free_port()
    argv = mitmdump_argv(port, tmp_path / "conf", "--set", "ignore_hosts=.*")
    with ProxyProcess(argv, port, hosts=ORIGIN_HOSTS, workdir=tmp_path):
        target = f"origin.test:{fresh_origin.https_port}"
        t = tls_handshake(port, target, "origin.test", cafile=test_pki.ca_cert,
                          http_host=target, http_path="/p")
        # SNI, CONNECT target and Host may disagree: the passthrough forwards the client's SNI.
        odd = tls_handshake(port, target, "other.test", cafile=test_pki.ca_cert, http_host="third.test")
    assert (t.connect_status, t.handshake_ok) == (200, True), t.error
    assert t.issuer_cn == CA_COMMON_NAME
    assert "origin.test" in t.sans
    assert t.response.endswith(f"origin ok {target}/p".encode())
    assert odd.handshake_ok and odd.response.endswith(b"origin ok third.test/")
    fresh_origin.wait_idle()
    assert [c.sni for c in fresh_origin.connections] == ["origin.test", "other.test"]


@pytest.mark.e2e
def test_chromium_through_mitmdump_renders_origin_page(fresh_origin, mitmdump, tmp_path):
    page = chromium_load(fresh_origin.url("origin.test", "/page"), mitmdump.port, tmp_path, timeout=60)
    assert page.load_error is None
    assert page.text == f"origin ok origin.test:{fresh_origin.http_port}/page"
    png = page.screenshot_path.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    fresh_origin.wait_idle()
    # Only the page (twice: DOM run and screenshot run) and its favicon reached the origin.
    assert {r.host for r in fresh_origin.requests} == {f"origin.test:{fresh_origin.http_port}"}
    assert {r.target for r in fresh_origin.requests} <= {"/page", "/favicon.ico"}
    # And the browser asked the proxy for nothing else (no Google background traffic).
    flows = [line for line in mitmdump.output().splitlines() if ": GET " in line or ": POST " in line]
    assert all("origin.test" in line for line in flows), flows


@pytest.mark.e2e
def test_chromium_reports_a_refused_connect_as_load_error(mitmdump, tmp_path):
    """Eager mitmdump answers CONNECT to an unresolvable name with 502 (and a body). Chromium
    never renders a CONNECT answer's body: the result is a load error, not a page."""
    page = chromium_load("https://unresolvable.invalid/", mitmdump.port, tmp_path, timeout=60)
    assert page.load_error == "net::ERR_TUNNEL_CONNECTION_FAILED"
    assert page.screenshot_path is None and page.text == ""
