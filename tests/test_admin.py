"""urlwarden.frontends.admin: a real AdminServer on loopback, driven with real HTTP requests."""

from __future__ import annotations

import datetime as dt
import hmac
import http.client
import json
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from urlwarden.frontends import admin as admin_module
from urlwarden.frontends.admin import AdminServer, render_status_html, sanitize_status
from urlwarden.errors import ConfigError
from urlwarden.metrics import Metrics

TOKEN = "t0ken-Secret_value.42"
HTTP_TIMEOUT = 5.0
NOW = dt.datetime(2030, 3, 14, 12, 0, tzinfo=dt.timezone.utc).timestamp()

# Things that must never come out of any endpoint, fed in through every provider field that
# is not a shown fact.
SECRETS = (
    "http://listed.test/secret/page",
    "hidden-entry.test",
    "203.0.113.99",
    "entry-sample-7f3a",
    "feed-token-XYZ",
)


def status_provider():
    return {
        "version": "0.1.0",
        "started": NOW - 3600,
        "uptime_seconds": 3600,
        "ready": True,
        "clients": [SECRETS[2]],  # not a status key: dropped
        "feed_url": SECRETS[0],
        "lists": [
            {
                "name": "iwf",
                "kind": "block",
                "entries": 1200,
                "version": "2030-03-14.1",
                "format": "sha256",
                "last_success": NOW - 600,
                "last_error": None,
                "age_seconds": 600,
                "checksum": "ab" * 32,
                "stale": False,
                "sample_entries": [SECRETS[0], SECRETS[1]],  # not a list status key: dropped
                "source": f"https://feed.example/list?token={SECRETS[4]}",
                "debug": {"entry": SECRETS[3]},
            },
            {
                "name": "<script>alert(1)</script>",
                "kind": "block",
                "entries": 3,
                "last_error": f'download failed: 503 from {SECRETS[0]} "<b>"',
                "checksum": "\"><img src=x onerror=alert(2)>",
            },
            {"kind": "block", "entries": 1},  # no name: dropped
            "not a mapping",
        ],
    }


def make_metrics() -> Metrics:
    m = Metrics(mitmproxy_version="11.0.2", clock=lambda: NOW, tz=dt.timezone.utc)
    m.list_loaded("iwf", 1200)
    m.count_block("iwf")
    m.count_block("iwf")
    return m


@pytest.fixture
def metrics():
    return make_metrics()


READY_STATE = {"ready": True, "reasons": []}


@pytest.fixture
def ready_state():
    READY_STATE.update(ready=True, reasons=[])
    yield READY_STATE
    READY_STATE.update(ready=True, reasons=[])


def ready_provider():
    return READY_STATE["ready"], READY_STATE["reasons"]


@pytest.fixture(scope="module")
def server():
    """One server for the module (starting and stopping one costs a poll interval)."""
    with AdminServer("127.0.0.1", 0, TOKEN, make_metrics(), status_provider, ready_provider) as running:
        yield running


@pytest.fixture(scope="module")
def open_server():
    with AdminServer("127.0.0.1", 0, None, make_metrics(), status_provider, ready_provider) as running:
        yield running


class Reply:
    def __init__(self, response: http.client.HTTPResponse):
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


def get(server: AdminServer, path: str, *, token: str | None = TOKEN, method: str = "GET",
        headers: dict[str, str] | None = None, port: int | None = None) -> Reply:
    all_headers = dict(headers or {})
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(server.host, port or server.port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, headers=all_headers)
        return Reply(conn.getresponse())
    finally:
        conn.close()


def raw(server: AdminServer, data: bytes) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


# --- access control ---------------------------------------------------------------------------

PROTECTED = ["/metrics", "/readyz", "/status", "/nope", "/"]


def test_healthz_is_open_even_with_a_token(server):
    for token in (None, "wrong"):
        reply = get(server, "/healthz", token=token)
        assert reply.status == 200 and reply.text == "ok\n"


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer", "Bearer "],
    ids=["missing", "wrong", "longer", "shorter", "basic scheme", "no scheme", "empty", "blank"],
)
def test_everything_else_needs_the_token(server, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    reply = get(server, path, token=None, headers=headers)
    assert reply.status == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert reply.body == b"unauthorized\n"


@pytest.mark.parametrize(("path", "status"), [("/metrics", 200), ("/readyz", 200), ("/status", 200), ("/nope", 404)])
def test_the_right_token_opens_every_endpoint(server, path, status):
    assert get(server, path).status == status
    assert get(server, path, token=None, headers={"Authorization": f"bearer   {TOKEN}"}).status == status


def test_token_comparison_is_constant_time(server, monkeypatch):
    calls = []
    original = hmac.compare_digest

    def spy(a, b):
        calls.append((type(a), type(b)))
        return original(a, b)

    monkeypatch.setattr(admin_module.hmac, "compare_digest", spy)
    assert get(server, "/status", token="wrong").status == 401
    assert get(server, "/status").status == 200
    assert calls == [(bytes, bytes), (bytes, bytes)]


def test_without_a_token_loopback_endpoints_are_open(open_server):
    for path in ("/metrics", "/readyz", "/status", "/healthz"):
        assert get(open_server, path, token=None).status == 200


@pytest.mark.parametrize(
    ("host", "token"),
    [("0.0.0.0", None), ("192.0.2.1", None), ("::", None), ("127.0.0.1", ""), ("127.0.0.1", "two words"),
     ("127.0.0.1", "caf\u00e9"), ("127.0.0.1", "x" * 2000)],
)
def test_misconfigurations_are_refused(host, token):
    with pytest.raises(ConfigError):
        AdminServer(host, 0, token)


def test_a_port_in_use_is_a_config_error(server):
    other = AdminServer("127.0.0.1", server.port, TOKEN)
    with pytest.raises(ConfigError, match="cannot listen"):
        other.start()


# --- the endpoints ------------------------------------------------------------------------------

def test_metrics_is_the_prometheus_exposition(server):
    reply = get(server, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    assert "urlwarden_blocks" in families
    (sample,) = [s for s in families["urlwarden_blocks"].samples if s.name == "urlwarden_blocks_total"]
    assert sample.labels == {"list": "iwf"} and sample.value == 2


def test_metrics_without_a_metrics_object_is_404():
    with AdminServer("127.0.0.1", 0, None) as bare:
        assert get(bare, "/metrics", token=None).status == 404
        status = get(bare, "/status", token=None).json()
        assert status == {"lists": []}
        assert get(bare, "/readyz", token=None).status == 200


def test_readyz(server, ready_state):
    reply = get(server, "/readyz")
    assert (reply.status, reply.text) == (200, "ready\n")
    ready_state.update(ready=False, reasons=["iwf: stale", "feed ncmec: never updated",
                                             f"iwf: fetch of {SECRETS[0]} failed\nsecond line"])
    reply = get(server, "/readyz")
    assert reply.status == 503
    assert reply.text.splitlines() == [
        "not ready", "iwf: stale", "feed ncmec: never updated", "iwf: fetch of <url> failed second line"]
    ready_state.update(ready=False, reasons=[])
    assert get(server, "/readyz").text == "not ready\nnot ready\n"


def test_readyz_when_the_provider_fails():
    def broken():
        raise RuntimeError(SECRETS[0])

    with AdminServer("127.0.0.1", 0, None, None, None, broken) as running:
        reply = get(running, "/readyz", token=None)
    assert reply.status == 503 and reply.text == "not ready\nreadiness check failed\n"


def test_status_json(server):
    reply = get(server, "/status")
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    status = reply.json()
    assert set(status) == {"version", "started", "uptime_seconds", "ready", "lists", "today", "blocks_today"}
    assert status["today"] == "2030-03-14"
    assert status["blocks_today"] == {"iwf": 2}
    iwf, hostile = status["lists"]
    assert iwf == {
        "name": "iwf", "kind": "block", "entries": 1200, "version": "2030-03-14.1", "format": "sha256",
        "last_success": NOW - 600, "last_error": None, "age_seconds": 600, "checksum": "ab" * 32, "stale": False,
    }
    assert hostile["name"] == "<script>alert(1)</script>"
    assert hostile["last_error"] == 'download failed: 503 from <url> "<b>"'


@pytest.mark.parametrize("accept", ["text/html", "text/html,application/xhtml+xml,*/*;q=0.8"])
def test_status_html_for_a_browser(server, accept):
    reply = get(server, "/status", headers={"Accept": accept})
    assert reply.status == 200 and reply.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in reply.headers["content-security-policy"]
    page = reply.text
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "2030-03-14 11:50:00 UTC" in page  # last success
    assert "10 min 0 s" in page  # age
    assert ">2<" in page  # blocked today


def test_status_html_escapes_every_field():
    hostile = "<i>&\"'"
    status = {
        "version": hostile, "ready": hostile, "today": hostile,
        "lists": [{k: hostile for k in admin_module.LIST_STATUS_KEYS}], "blocks_today": {hostile: hostile},
    }
    page = render_status_html(status)
    assert "<i>" not in page
    assert "&lt;i&gt;&amp;&quot;&#x27;" in page


def test_status_when_the_provider_fails():
    def broken():
        raise RuntimeError(SECRETS[0])

    with AdminServer("127.0.0.1", 0, None, None, broken) as running:
        reply = get(running, "/status", token=None)
    assert reply.status == 500 and reply.body == b"status unavailable\n"


@pytest.mark.parametrize(
    "raw",
    [None, [], "text", {"lists": "not a list"}, {"lists": [{"name": 5}]}, {"version": float("nan"), "lists": None}],
)
def test_sanitize_status_survives_nonsense(raw):
    status = sanitize_status(raw)
    assert status.get("lists") == [] and "version" not in status


def test_sanitize_status_keeps_only_scalars_of_the_known_keys():
    status = sanitize_status({
        "version": ["a"], "ready": {"x": 1}, "extra": 1,
        "lists": [{"name": "a", "entries": [1, 2], "version": b"bytes", "checksum": "x" * 1000}],
    })
    (item,) = status["lists"]
    assert set(status) == {"lists"}
    assert set(item) == {"name", "checksum"}
    assert len(item["checksum"]) == admin_module.MAX_VALUE_CHARS


def test_no_endpoint_ever_returns_what_the_providers_did_not_declare(server, ready_state):
    ready_state.update(ready=False, reasons=[SECRETS[0], f"stale ({SECRETS[0]})"])
    outputs = [get(server, path).body for path in ("/metrics", "/readyz", "/status", "/healthz", "/nope")]
    outputs.append(get(server, "/status", headers={"Accept": "text/html"}).body)
    outputs.append(get(server, "/status", headers={"Accept": "application/json"}).body)
    blob = b"\n".join(outputs).decode("utf-8")
    for secret in SECRETS:
        assert secret not in blob


# --- protocol hygiene ---------------------------------------------------------------------------

def test_head_has_the_headers_but_no_body(server):
    full = get(server, "/status")
    head = get(server, "/status", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-length"] == str(len(full.body))


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_only_get_and_head(server, method):
    reply = get(server, "/status", method=method)
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD"


def test_query_strings_are_ignored_and_unknown_paths_are_404(server):
    assert get(server, "/status?x=1").status == 200
    assert get(server, "/status/").status == 404
    assert get(server, "/lists").status == 404
    assert get(server, "/healthz/../status", token=None).status == 401


def test_common_headers(server):
    reply = get(server, "/healthz")
    assert reply.headers["cache-control"] == "no-store"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["connection"] == "close"
    assert reply.headers["server"] == "urlwarden-admin"


def test_an_oversized_request_head_is_refused(server):
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    data = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + filler * 20 + b"\r\n"
    answer = raw(server, data)
    assert answer.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize(
    "data",
    [b"garbage\r\n\r\n", b"GET /healthz HTTP/9.9\r\n\r\n", b"GET /healthz HTTP/2.0\r\n\r\n", b"\r\n\r\n",
     b"GET /healthz\r\n\r\n"],
)
def test_malformed_requests_get_short_answers(server, data):
    answer = raw(server, data)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5")
    assert b"garbage" not in answer.partition(b"\r\n")[2]
    assert get(server, "/healthz").status == 200  # still serving


def test_a_silent_client_is_dropped(server, monkeypatch):
    from urlwarden.frontends import httpserve

    monkeypatch.setattr(httpserve, "REQUEST_TIMEOUT", 0.3)  # (shared with the block page server)
    with socket.create_connection((server.host, server.port), timeout=HTTP_TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # never finishes its head
        assert sock.recv(100) == b""  # closed by the server, not by our timeout


def test_connections_over_the_limit_are_closed(metrics, monkeypatch):
    monkeypatch.setattr(admin_module, "MAX_CONNECTIONS", 2)
    with AdminServer("127.0.0.1", 0, None, metrics) as running:
        idle = [socket.create_connection((running.host, running.port), timeout=HTTP_TIMEOUT) for _ in range(2)]
        try:
            time.sleep(0.2)  # let the server accept both (ordering only, nothing is timed)
            assert raw(running, b"GET /healthz HTTP/1.1\r\n\r\n") == b""
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + HTTP_TIMEOUT
        while True:  # the slots come back once the idle handlers notice the close
            answer = raw(running, b"GET /healthz HTTP/1.1\r\n\r\n")
            if answer or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200 ")


def test_nothing_is_logged_to_stderr(server, capfd):
    get(server, "/status")
    get(server, "/nope")
    get(server, "/status", token="wrong")
    raw(server, b"garbage\r\n\r\n")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_stop_closes_the_port(metrics):
    running = AdminServer("127.0.0.1", 0, None, metrics)
    running.start()
    port = running.port
    assert get(running, "/healthz", token=None).status == 200
    running.stop()
    running.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT).close()
    with pytest.raises(RuntimeError):
        running.port


def test_ipv6_loopback(metrics):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        running = AdminServer("::1", 0, None, metrics)
        running.start()
    except ConfigError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert running.url.startswith("http://[::1]:")
        assert get(running, "/healthz", token=None).status == 200
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("host", "status"),
    [("127.0.0.1:9181", 200), ("localhost", 200), ("LOCALHOST:1", 200), ("[::1]:9181", 200), ("127.1.2.3", 200),
     ("attacker.example", 403), ("attacker.example:9181", 403), ("192.0.2.1", 403), ("[2001:db8::1]:80", 403)],
)
def test_without_a_token_the_host_header_must_be_loopback(open_server, host, status):
    assert get(open_server, "/status", token=None, headers={"Host": host}).status == status
    assert get(open_server, "/healthz", token=None, headers={"Host": host}).status == 200


def test_with_a_token_any_host_header_is_fine(server):
    assert get(server, "/status", headers={"Host": "urlwarden.example:9181"}).status == 200


# --- module hygiene (for all of the operations modules) ----------------------------------------

OPERATIONS_MODULES = ["urlwarden.frontends.admin", "urlwarden.metrics", "urlwarden.logs", "urlwarden.frontends.sdnotify",
                      "urlwarden.selftest"]


@pytest.mark.parametrize("name", OPERATIONS_MODULES)
def test_all_is_honest(name):
    import importlib

    module = importlib.import_module(name)
    assert len(module.__all__) == len(set(module.__all__))
    for exported in module.__all__:
        assert hasattr(module, exported), exported


def test_the_operations_modules_do_not_import_mitmproxy():
    import subprocess
    import sys

    code = ("import sys; import " + ", ".join(OPERATIONS_MODULES) +
            "; bad = sorted(m for m in sys.modules if m.split('.')[0] == 'mitmproxy'); print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
