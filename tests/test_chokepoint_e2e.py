"""End to end: which protocols reach a host (urlwarden.runtime.protocols), and names that cannot be parsed.

A real `urlwarden run`, a real origin that records every connection and request it sees, and
raw sockets. Every refused case proves that no byte reached the origin: it records a connection
even when nothing is sent on it.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.certs import make_test_pki
from tests.support.clients import raw_http, status_of
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
BLOCK_LIST = "listed.test/\npaths.test/private/\n"
NAMES = ["listed.test", "paths.test", "clean.test"]
READ_TIMEOUT = 3.0
GAP = 0.3  # seconds between the pieces of a split write: mitmproxy decides on its first read


def write_config(directory: Path, on_error: str = "block", admin_port: int | None = None) -> Path:
    (directory / "block.txt").write_text(BLOCK_LIST)
    config = directory / "urlwarden.yaml"
    admin = f"admin:\n  listen: 127.0.0.1:{admin_port}\n" if admin_port else ""
    config.write_text(f"on_error: {on_error}\n{admin}lists:\n  - name: hotline\n    path: block.txt\n")
    return config


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"), NAMES)


def start_proxy(workdir: Path, pki, on_error: str = "block") -> ProxyProcess:
    port, admin_port = free_port(), free_port()
    argv = [URLWARDEN, "run", "--config", str(write_config(workdir, on_error, admin_port)), "--listen", f"127.0.0.1:{port}",
            "--", "--set", f"confdir={workdir / 'conf'}", "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}"]
    process = ProxyProcess(argv, port, hosts={n: "127.0.0.1" for n in NAMES}, workdir=workdir).start()
    process.port = port
    process.admin_port = admin_port
    process.ca = workdir / "conf" / "mitmproxy-ca-cert.pem"
    return process


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, test_pki, origin):
    process = start_proxy(tmp_path_factory.mktemp("proxy"), test_pki)
    yield process
    process.stop()


def read_all(sock, timeout: float = READ_TIMEOUT) -> bytes:
    """What arrives until close or `timeout`."""
    sock.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(data) < 1 << 20:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            continue
        except (OSError, ssl.SSLError):
            break
        if not chunk:
            break
        data += chunk
    return data


def connect_tunnel(proxy_port: int, target: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=5)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, f"proxy closed the CONNECT: {head!r}"
        head += chunk
    assert status_of(head) == 200, head
    return sock


def send_pieces(sock, pieces: list[bytes]) -> bytes:
    for piece in pieces:
        try:
            sock.sendall(piece)
        except OSError:
            break
        time.sleep(GAP)
    return read_all(sock)


def request_bytes(host: str, path: str = "/private/a.jpg") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def odd_writes(host: str) -> dict[str, list[bytes]]:
    """First bytes inside a tunnel that mitmproxy does not take for HTTP (it relays them raw)."""
    req = request_bytes(host)
    return {
        "split request line": [req[:1], req[1:]],
        "leading empty line": [b"\r\n" + req],
        "tab separator": [req.replace(b" ", b"\t", 1)],
        "fewer than three bytes first": [req[:2], req[2:]],
    }


CASES = list(odd_writes("x"))


@pytest.mark.parametrize("case", CASES)
def test_raw_tcp_to_a_host_with_path_entries_is_refused(proxy, fresh_origin, case):
    with connect_tunnel(proxy.port, f"paths.test:{fresh_origin.http_port}") as sock:
        answer = send_pieces(sock, odd_writes("paths.test")[case])
    fresh_origin.wait_idle()
    assert b"origin ok" not in answer
    assert fresh_origin.connections == [], f"{case}: the origin was contacted"


@pytest.mark.parametrize("case", CASES)
def test_raw_tcp_to_a_host_listed_whole_is_refused(proxy, fresh_origin, case):
    with connect_tunnel(proxy.port, f"listed.test:{fresh_origin.http_port}") as sock:
        answer = send_pieces(sock, odd_writes("listed.test")[case])
    fresh_origin.wait_idle()
    assert b"origin ok" not in answer
    assert fresh_origin.connections == []


@pytest.mark.parametrize("case", ["split request line", "tab separator"])
def test_raw_tcp_to_a_clean_host_passes(proxy, fresh_origin, case):
    with connect_tunnel(proxy.port, f"clean.test:{fresh_origin.http_port}") as sock:
        send_pieces(sock, odd_writes("clean.test")[case])
    fresh_origin.wait_idle()
    assert len(fresh_origin.connections) == 1  # relayed as it came (the origin may reject a tab)


def tls_no_alpn(proxy_port: int, target: str, sni: str, cafile) -> ssl.SSLSocket:
    sock = connect_tunnel(proxy_port, target)
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False  # (a clean host passes through: the origin's certificate)
    context.verify_mode = ssl.CERT_NONE
    tls = context.wrap_socket(sock, server_hostname=sni)  # no set_alpn_protocols: no ALPN
    assert tls.selected_alpn_protocol() is None
    return tls


def test_tls_without_alpn_to_a_host_with_path_entries_carries_only_checked_http(proxy, fresh_origin):
    target = f"paths.test:{fresh_origin.https_port}"
    with tls_no_alpn(proxy.port, target, "paths.test", proxy.ca) as tls:
        req = request_bytes("paths.test")
        answer = send_pieces(tls, [req[:1], req[1:]])  # raw TCP inside the intercepted TLS
    fresh_origin.wait_idle()
    assert b"origin ok" not in answer
    assert fresh_origin.connections == []
    with tls_no_alpn(proxy.port, target, "paths.test", proxy.ca) as tls:
        answer = send_pieces(tls, [request_bytes("paths.test", "/public/b.jpg")])  # plain HTTP: checked
    assert status_of(answer) == 200 and b"origin ok paths.test/public/b.jpg" in answer


def test_tls_without_alpn_to_a_clean_host_passes(proxy, fresh_origin, test_pki):
    with tls_no_alpn(proxy.port, f"clean.test:{fresh_origin.https_port}", "clean.test", test_pki.ca_cert) as tls:
        req = request_bytes("clean.test")
        answer = send_pieces(tls, [req[:1], req[1:]])
    assert b"origin ok clean.test/private/a.jpg" in answer


@pytest.mark.parametrize("upgrade", ["H2C", "websocket, h2c", "foo", "h2c"])
def test_upgrades_other_than_websocket_to_a_host_with_path_entries_are_refused(proxy, fresh_origin, upgrade):
    request = (f"GET http://paths.test:{fresh_origin.http_port}/public HTTP/1.1\r\nHost: paths.test\r\n"
               f"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    answer = raw_http("127.0.0.1", proxy.port, request.encode())
    fresh_origin.wait_idle()
    assert status_of(answer) in (400, 403), answer[:200]  # (mitmproxy itself answers exact "h2c")
    assert fresh_origin.connections == []


def test_upgrade_to_a_clean_host_is_relayed(proxy, fresh_origin):
    request = (f"GET http://clean.test:{fresh_origin.http_port}/x HTTP/1.1\r\nHost: clean.test\r\n"
               "Connection: Upgrade\r\nUpgrade: foo\r\n\r\n")
    answer = raw_http("127.0.0.1", proxy.port, request.encode())
    assert status_of(answer) == 200  # the origin ignores the upgrade
    assert fresh_origin.requests[0].header("upgrade") == "foo"


def websocket_request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET http://{host}:{port}{path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: Upgrade\r\n"
            f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n").encode()


def test_checked_websocket_to_a_host_with_path_entries(proxy, fresh_origin):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(websocket_request("paths.test", fresh_origin.http_port, "/public/ws"))
        answer = read_all(sock)
    assert status_of(answer) == 101 and b"origin ws paths.test" in answer
    fresh_origin.reset()
    answer = raw_http("127.0.0.1", proxy.port, websocket_request("paths.test", fresh_origin.http_port, "/private/ws"))
    fresh_origin.wait_idle()
    assert status_of(answer) == 451
    assert fresh_origin.connections == []


def test_websocket_to_a_host_listed_whole_is_blocked(proxy, fresh_origin):
    answer = raw_http("127.0.0.1", proxy.port, websocket_request("listed.test", fresh_origin.http_port, "/ws"))
    fresh_origin.wait_idle()
    assert status_of(answer) == 451
    assert fresh_origin.connections == []


def metric(proxy, name: str, **labels: str) -> float:
    """One sample off the admin listener's /metrics (0 when the series does not exist yet)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proxy.admin_port}/metrics", timeout=5) as response:
        for family in text_string_to_metric_families(response.read().decode()):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return s.value
    return 0.0


def test_refusals_are_counted_without_naming_the_host(proxy, fresh_origin):
    before = metric(proxy, "urlwarden_refused_connections_total", carrier="tcp")
    with connect_tunnel(proxy.port, f"paths.test:{fresh_origin.http_port}") as sock:
        send_pieces(sock, odd_writes("paths.test")["split request line"])
    assert metric(proxy, "urlwarden_refused_connections_total", carrier="tcp") == before + 1
    assert "paths.test" not in proxy.output()  # never a host name in logs


# --- names that cannot be parsed ----------------------------------------------------------------

BAD_HOSTS = ["[junk", ":80", "a]b", "..", "[::1", ".", "[]"]


@pytest.fixture(scope="module", params=["block", "allow"])
def proxy_on_error(request, tmp_path_factory, test_pki, origin):
    process = start_proxy(tmp_path_factory.mktemp(f"proxy-{request.param}"), test_pki, request.param)
    yield process
    process.stop()


@pytest.mark.parametrize("bad", BAD_HOSTS)
def test_unparseable_host_header_is_a_400_without_contact(proxy_on_error, fresh_origin, bad):
    p = fresh_origin.http_port
    for second in ("", "Host: listed.test\r\n"):
        request = f"GET http://clean.test:{p}/x HTTP/1.1\r\nHost: {bad}\r\n{second}\r\n".encode()
        answer = raw_http("127.0.0.1", proxy_on_error.port, request)
        fresh_origin.wait_idle()
        assert status_of(answer) in (400, 451), answer[:200]
        assert fresh_origin.connections == [], f"{bad!r} {second!r}: the origin was contacted"
        assert b"could not check" not in answer


def test_unparseable_names_are_counted_as_bad_requests(proxy_on_error, fresh_origin):
    before = metric(proxy_on_error, "urlwarden_requests_total", decision="bad_request")
    errors = metric(proxy_on_error, "urlwarden_internal_errors_total", kind="request")
    request = f"GET http://clean.test:{fresh_origin.http_port}/ HTTP/1.1\r\nHost: [junk\r\n\r\n".encode()
    answer = raw_http("127.0.0.1", proxy_on_error.port, request)
    assert status_of(answer) == 400 and answer.endswith(b"not a host name.\n")
    assert metric(proxy_on_error, "urlwarden_requests_total", decision="bad_request") == before + 1
    assert metric(proxy_on_error, "urlwarden_internal_errors_total", kind="request") == errors


def test_obs_fold_host_is_a_400_without_contact(proxy_on_error, fresh_origin):
    p = fresh_origin.http_port
    request = f"GET http://clean.test:{p}/x HTTP/1.1\r\nHost: clean.test\r\n listed.test\r\n\r\n".encode()
    answer = raw_http("127.0.0.1", proxy_on_error.port, request)
    fresh_origin.wait_idle()
    assert status_of(answer) in (400, 451), answer[:200]
    assert fresh_origin.connections == []


@pytest.mark.parametrize("bad", ["[junk", "a]b"])
def test_unparseable_connect_target_is_a_400(proxy_on_error, fresh_origin, bad):
    answer = raw_http("127.0.0.1", proxy_on_error.port,
                      f"CONNECT {bad}:{fresh_origin.http_port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    fresh_origin.wait_idle()
    assert status_of(answer) == 400, answer[:200]
    assert fresh_origin.connections == []


# --- UDP: a mode that carries it cheaply on loopback (reverse:udp) ---------------------------------

@pytest.mark.parametrize(("origin_addr", "reached"), [("127.0.0.3", False), ("127.0.0.4", True)],
                         ids=["host with path entries", "clean host"])
def test_udp_reaches_only_clean_hosts(tmp_path, origin_addr, reached):
    """`reverse:udp` relays datagrams unread (a UDPLayer, like raw UDP or QUIC in transparent or
    WireGuard mode): to a host with path-level entries nothing may arrive."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((origin_addr, 0))
    receiver.settimeout(0.2)
    origin_port = receiver.getsockname()[1]
    (tmp_path / "block.txt").write_text("127.0.0.3/private/\n")
    config = tmp_path / "urlwarden.yaml"
    config.write_text("lists:\n  - name: hotline\n    path: block.txt\n")
    port, udp_port = free_port(), free_port()
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={tmp_path / 'conf'}", "--mode", "regular",
            "--mode", f"reverse:udp://{origin_addr}:{origin_port}@127.0.0.1:{udp_port}"]
    with receiver, ProxyProcess(argv, port, workdir=tmp_path), \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        got = []
        deadline = time.monotonic() + READ_TIMEOUT
        while time.monotonic() < deadline and not got:
            client.sendto(b"GET /private/a.jpg HTTP/1.1\r\n\r\n", ("127.0.0.1", udp_port))
            try:
                got.append(receiver.recv(2048))
            except (TimeoutError, socket.timeout):
                pass
    assert bool(got) == reached


# --- a server that answers 101 to something that is not a WebSocket ------------------------------

class UpgradingOrigin:
    """A one-connection origin that answers any request with ``101`` and ``Upgrade: h2c`` (as a
    server that picks h2c from ``websocket, h2c`` would), then records every byte it receives."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(READ_TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.head = b""
        self.after = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(READ_TIMEOUT)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.head, _, self.after = data.partition(b"\r\n\r\n")
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
            self.after += read_all(conn)

    def close(self):
        self.thread.join(READ_TIMEOUT * 3)
        self.listener.close()


def test_a_101_that_is_not_a_websocket_relays_nothing_after_it(proxy):
    upstream = UpgradingOrigin()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(websocket_request("paths.test", upstream.port, "/public/ws"))
            time.sleep(GAP)
            try:
                sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET /private/a.jpg\r\n")  # what h2c would carry
            except OSError:
                pass
            answer = read_all(sock)
    finally:
        upstream.close()
    assert upstream.head.startswith(b"GET /public/ws")  # the checked request went out...
    assert status_of(answer) != 101 and answer == b""  # ...the 101 did not come back,
    assert upstream.after == b""  # and not one byte followed it
