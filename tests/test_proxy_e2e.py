"""End to end: a real `urlwarden run` process, a real origin on loopback, real curl and Chromium.

Every blocked case also proves the listed host was never contacted: the origin records every TCP
connection it accepts, and all test names resolve to it (ProxyProcess mounts a private
/etc/hosts for the proxy only). Names not in that file do not resolve at all, so a block of an
unresolvable listed name also shows that no DNS lookup was needed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.support.certs import CA_COMMON_NAME, make_test_pki, spki_sha256
from tests.support.clients import chromium_load, curl, raw_http, status_of, tls_handshake
from tests.support.proxyproc import MITMDUMP, ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
ADDON_SCRIPT = str(Path(__file__).resolve().parents[1] / "addons" / "urlwarden.py")

BLOCK_LIST = """\
# synthetic test list
listed.test/
paths.test/folder/
paths.test/page.html
paths.test/q.php?id=7
127.0.0.66/bad/
b\u00fccher.test/
xn--idn-punycode-entry-vl3h.test/
deep.test/1/2/3/4/5/
"""
ALLOW_LIST = "paths.test/folder/ok.html\n"
NAMES = [
    "listed.test", "www.listed.test", "a.b.c.listed.test", "paths.test", "www.paths.test", "unlisted.test",
    "xlisted.test", "listed.test.example", "deep.test", "xn--bcher-kva.test",
]
PKI_NAMES = NAMES + ["*.listed.test", "*.paths.test"]
BLOCK_STATUS = 451


def write_config(directory: Path, *, intercept: str = "listed-hosts", mode: str = "splash") -> Path:
    (directory / "block.txt").write_text(BLOCK_LIST, encoding="utf-8")
    (directory / "allow.txt").write_text(ALLOW_LIST)
    config = directory / "urlwarden.yaml"
    config.write_text(
        f"""
operator:
  name: Test Operator
  url: https://operator.example/about
  appeal_url: https://operator.example/appeal
https:
  intercept: {intercept}
lists:
  - name: hotline
    path: block.txt
    reason: Listed by the test hotline.
    mode: {mode}
allow:
  - name: exceptions
    path: allow.txt
"""
    )
    return config


def urlwarden_argv(port: int, config: Path, confdir: Path, pki) -> list[str]:
    return [
        URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
        "--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
    ]


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory):
    """The origin's certificate names every test host (verifiers do not let *.test match a.test)."""
    return make_test_pki(tmp_path_factory.mktemp("pki"), PKI_NAMES)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, test_pki, origin):
    workdir = tmp_path_factory.mktemp("proxy")
    port = free_port()
    config = write_config(workdir)
    argv = urlwarden_argv(port, config, workdir / "conf", test_pki)
    with ProxyProcess(argv, port, hosts={n: "127.0.0.1" for n in NAMES}, workdir=workdir) as process:
        process.port = port
        process.ca = workdir / "conf" / "mitmproxy-ca-cert.pem"
        yield process


def assert_blocked_without_contact(origin, status: int | None, detail: str = "") -> None:
    origin.wait_idle()
    assert status == BLOCK_STATUS, detail
    assert origin.connections == [], f"the origin was contacted: {origin.connections}"


def test_startup_banner_says_where_and_what(proxy):
    deadline = time.monotonic() + 10  # printed from the running hook, just after the port opens
    while "CA certificate:" not in proxy.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = proxy.output()
    assert f"listening on 127.0.0.1:{proxy.port}" in out
    assert "block list hotline: 8 entries" in out
    assert "allow list exceptions: 1 entries" in out
    assert "CA certificate:" in out and "mitmproxy-ca-cert.pem" in out


# --- the evasion table: each variant is blocked and the origin never sees a connection -------

def _evasions(p: str) -> list[tuple[str, list[str]]]:
    """(id, curl args) with {p} the origin's HTTP port. curl keeps the target as given (-g, --path-as-is)."""
    return [
        ("plain", [f"http://listed.test:{p}/"]),
        ("upper-case host", [f"http://LISTED.TEST:{p}/x"]),
        ("mixed-case host", [f"http://LiStEd.TeSt:{p}/x"]),
        ("upper-case scheme", ["--path-as-is", f"HTTP://listed.test:{p}/x"]),
        ("trailing dot", [f"http://listed.test.:{p}/"]),
        ("subdomain", [f"http://www.listed.test:{p}/"]),
        ("deep subdomain", [f"http://a.b.c.listed.test:{p}/x"]),
        ("unresolvable subdomain", [f"http://nx.listed.test:{p}/x"]),
        ("no path", [f"http://listed.test:{p}"]),
        ("explicit default port", ["http://listed.test:80/"]),
        ("other port", ["http://listed.test:8443/"]),
        ("HEAD", ["-I", f"http://listed.test:{p}/"]),
        ("POST", ["-d", "a=b", f"http://listed.test:{p}/form"]),
        ("folder", [f"http://paths.test:{p}/folder/a"]),
        ("folder with query", [f"http://paths.test:{p}/folder/?a=b"]),
        ("folder on subdomain", [f"http://www.paths.test:{p}/folder/x/y"]),
        ("percent-encoded path", [f"http://paths.test:{p}/%66older/x"]),
        ("percent-encoded slash", [f"http://paths.test:{p}/folder%2Fx"]),
        ("double-encoded path", [f"http://paths.test:{p}/%2566older/x"]),
        ("dot-segments", ["--path-as-is", f"http://paths.test:{p}/x/../folder/a"]),
        ("dot-segment self", ["--path-as-is", f"http://paths.test:{p}/./folder/a"]),
        ("encoded dot-segments", [f"http://paths.test:{p}/x/%2E%2E/folder/a"]),
        ("doubled slashes", ["--path-as-is", f"http://paths.test:{p}//folder//a"]),
        ("page", [f"http://paths.test:{p}/page.html"]),
        ("page with any query", [f"http://paths.test:{p}/page.html?utm=1"]),
        ("page with empty query", [f"http://paths.test:{p}/page.html?"]),
        ("encoded page name", [f"http://paths.test:{p}/%70age.html"]),
        ("exact query", [f"http://paths.test:{p}/q.php?id=7"]),
        ("deep folder entry", [f"http://deep.test:{p}/1/2/3/4/5/6/7/8/x"]),
        ("IPv4 dotted", [f"http://127.0.0.66:{p}/bad/x"]),
        ("IPv4 decimal", [f"http://2130706498:{p}/bad/x"]),
        ("IPv4 octal", [f"http://0177.0.0.0102:{p}/bad/x"]),
        ("IPv4 hex", [f"http://0x7f.0x0.0x0.0x42:{p}/bad/x"]),
        ("IPv4 hex single", [f"http://0x7f000042:{p}/bad/x"]),
        ("IPv4 short", [f"http://127.66:{p}/bad/x"]),
        ("IPv4-mapped IPv6", [f"http://[::ffff:127.0.0.66]:{p}/bad/x"]),
        ("IPv4-mapped IPv6 hex", [f"http://[::ffff:7f00:42]:{p}/bad/x"]),
        ("IDN as punycode", [f"http://xn--bcher-kva.test:{p}/"]),
        ("WebSocket upgrade", ["-H", "Connection: Upgrade", "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
                               "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", f"http://listed.test:{p}/chat"]),
        ("Host header disagrees", ["-H", "Host: listed.test", f"http://unlisted.test:{p}/"]),
    ]


EVASION_IDS = [row[0] for row in _evasions("0")]


@pytest.mark.parametrize("case", EVASION_IDS)
def test_evasion_variants_are_blocked_without_contact(proxy, fresh_origin, case):
    args = dict(_evasions(str(fresh_origin.http_port)))[case]
    result = curl(*args, proxy=proxy.port)
    assert_blocked_without_contact(fresh_origin, result.status, f"{case}: {result.status} {result.stderr}")
    assert result.header("link") == '<https://operator.example/about>; rel="blocked-by"'


def _raw_evasions(p: int) -> list[tuple[str, bytes]]:
    return [
        ("userinfo in absolute URL", f"GET http://user:pw@listed.test:{p}/ HTTP/1.1\r\nHost: listed.test:{p}\r\n\r\n".encode()),
        ("duplicate Host headers", f"GET http://unlisted.test:{p}/ HTTP/1.1\r\nHost: unlisted.test:{p}\r\nHost: listed.test\r\n\r\n".encode()),
        ("absolute URL listed, Host clean", f"GET http://listed.test:{p}/ HTTP/1.1\r\nHost: unlisted.test:{p}\r\n\r\n".encode()),
        ("fragment in target", f"GET http://paths.test:{p}/folder/a#frag HTTP/1.1\r\nHost: paths.test\r\n\r\n".encode()),
        ("tab in target", f"GET http://paths.test:{p}/fol\tder/a HTTP/1.1\r\nHost: paths.test\r\n\r\n".encode()),
        ("IDN in UTF-8", f"GET http://b\u00fccher.test:{p}/ HTTP/1.1\r\nHost: xn--bcher-kva.test\r\n\r\n".encode()),
        ("percent-encoded host", f"GET http://%6cisted.test:{p}/ HTTP/1.1\r\nHost: unlisted.test\r\n\r\n".encode()),
        ("doubled dots in host", f"GET http://listed..test:{p}/ HTTP/1.1\r\nHost: unlisted.test\r\n\r\n".encode()),
        ("fullwidth dot in Host", f"GET http://unlisted.test:{p}/ HTTP/1.1\r\nHost: listed\u3002test\r\n\r\n".encode()),
    ]


RAW_IDS = [row[0] for row in _raw_evasions(0)]


@pytest.mark.parametrize("case", RAW_IDS)
def test_raw_request_variants_are_blocked_without_contact(proxy, fresh_origin, case):
    data = dict(_raw_evasions(fresh_origin.http_port))[case]
    response = raw_http("127.0.0.1", proxy.port, data)
    status = status_of(response)
    if status == 400:
        # mitmproxy's own parser refused the request before any hook: equally never sent upstream.
        fresh_origin.wait_idle()
        assert fresh_origin.connections == []
        return
    assert_blocked_without_contact(fresh_origin, status, f"{case}: {response[:200]!r}")


@pytest.mark.parametrize(
    "path",
    ["/folderx/a", "/", "/folder", "/page.htm", "/page.html/x", "/q.php?id=8", "/q.php", "/folder/ok.html"],
    ids=["sibling folder", "parent of folder", "folder without slash", "sibling page", "below a page",
         "other query", "query entry without query", "allow list exception"],
)
def test_near_misses_on_a_listed_host_pass_untouched(proxy, fresh_origin, path):
    result = curl(f"http://paths.test:{fresh_origin.http_port}{path}", proxy=proxy.port)
    assert result.status == 200, result.stderr
    assert result.header("x-origin") == "1"
    (request,) = fresh_origin.requests
    assert request.host == f"paths.test:{fresh_origin.http_port}"


@pytest.mark.parametrize("host", ["xlisted.test", "listed.test.example", "unlisted.test"])
def test_look_alike_hosts_pass_untouched(proxy, fresh_origin, host):
    result = curl(f"http://{host}:{fresh_origin.http_port}/x?y=1", proxy=proxy.port)
    assert result.status == 200
    assert result.body == f"origin ok {host}:{fresh_origin.http_port}/x?y=1".encode()


# --- the block page ---------------------------------------------------------------------------

def test_block_page_content_and_headers(proxy, fresh_origin):
    hostile = "/folder/<script>alert(1)</script>?q=\"'><img/src=x/onerror=alert(2)>"
    response = raw_http("127.0.0.1", proxy.port, (
        f"GET http://paths.test:{fresh_origin.http_port}{hostile} HTTP/1.1\r\n"
        f"Host: paths.test<script>\r\nAccept: text/html\r\nAccept-Language: de-CH, en;q=0.5<b>\r\n\r\n"
    ).encode())
    assert_blocked_without_contact(fresh_origin, status_of(response))
    head, _, body = response.partition(b"\r\n\r\n")
    head = head.decode("latin-1").lower()
    assert "cache-control: no-store" in head
    assert "content-language: de" in head
    assert "content-type: text/html" in head
    page = body.decode("utf-8")
    assert "Test Operator" in page and "Listed by the test hotline." in page
    assert "hotline" in page and "https://operator.example/appeal" in page
    for leaked in ("paths.test", "folder", "<script>alert", "onerror", "alert(1)"):
        assert leaked not in page


@pytest.mark.parametrize(
    ("headers", "content_type"),
    [
        (["Accept: image/avif,image/webp,*/*", "Sec-Fetch-Dest: image"], "image/svg+xml"),
        (["Accept: */*", "Sec-Fetch-Dest: script"], "text/javascript"),
        (["Accept: application/json", "Sec-Fetch-Dest: empty", "Sec-Fetch-Mode: cors"], "application/json"),
        (["Accept: text/css,*/*;q=0.1", "Sec-Fetch-Dest: style"], "text/css"),
    ],
)
def test_block_response_fits_the_request_type(proxy, fresh_origin, headers, content_type):
    args = [a for h in headers for a in ("-H", h)]
    result = curl(*args, f"http://listed.test:{fresh_origin.http_port}/asset", proxy=proxy.port)
    assert_blocked_without_contact(fresh_origin, result.status)
    assert result.header("content-type").startswith(content_type)
    assert b"<html" not in result.body.lower()


# --- HTTPS -------------------------------------------------------------------------------------

def test_https_unlisted_host_passes_through_with_the_origins_certificate(proxy, fresh_origin, test_pki):
    result = curl("--cacert", str(test_pki.ca_cert), fresh_origin.url("unlisted.test", "/tls", tls=True),
                  proxy=proxy.port)
    assert result.status == 200, result.stderr  # verified against the origin's own test CA
    handshake = tls_handshake(proxy.port, f"unlisted.test:{fresh_origin.https_port}", "unlisted.test",
                              cafile=test_pki.ca_cert)
    assert handshake.handshake_ok, handshake.error
    assert handshake.issuer_cn == CA_COMMON_NAME  # the origin's own certificate: not intercepted
    assert len(fresh_origin.connections) == 2 and "unlisted.test" in [c.sni for c in fresh_origin.connections]


def test_https_listed_host_gets_the_block_page(proxy, fresh_origin):
    result = curl("--cacert", str(proxy.ca), "-H", "Accept: text/html",
                  fresh_origin.url("listed.test", "/secret", tls=True), proxy=proxy.port)
    assert_blocked_without_contact(fresh_origin, result.status, result.stderr)
    assert "Test Operator" in result.text


def test_https_path_entry_host_is_intercepted_and_only_the_path_blocked(proxy, fresh_origin):
    blocked = curl("--cacert", str(proxy.ca), fresh_origin.url("paths.test", "/folder/x", tls=True), proxy=proxy.port)
    assert_blocked_without_contact(fresh_origin, blocked.status, blocked.stderr)
    allowed = curl("--cacert", str(proxy.ca), fresh_origin.url("paths.test", "/other", tls=True), proxy=proxy.port)
    assert allowed.status == 200, allowed.stderr
    assert allowed.header("x-origin-kind") == "https"


def test_http2_request_is_blocked(proxy, fresh_origin):
    result = curl("--http2", "--cacert", str(proxy.ca), "-v",
                  fresh_origin.url("paths.test", "/folder/h2", tls=True), proxy=proxy.port)
    assert_blocked_without_contact(fresh_origin, result.status, result.stderr)
    assert "HTTP/2 451" in result.stderr  # curl -v shows the protocol the answer came in
    handshake = tls_handshake(proxy.port, f"paths.test:{fresh_origin.https_port}", "paths.test",
                              cafile=proxy.ca, alpn=("h2", "http/1.1"))
    assert handshake.alpn == "h2"


@pytest.mark.parametrize(
    ("connect_target", "sni", "http_host"),
    [
        ("unlisted.test", "listed.test", "unlisted.test"),  # SNI listed, the rest clean
        ("listed.test", "unlisted.test", "unlisted.test"),  # CONNECT target listed
        ("listed.test", None, "listed.test"),  # no SNI at all
        ("paths.test", "paths.test", "listed.test"),  # intercepted host, Host header listed
    ],
)
def test_tls_name_disagreements_are_blocked(proxy, fresh_origin, connect_target, sni, http_host):
    result = tls_handshake(proxy.port, f"{connect_target}:{fresh_origin.https_port}", sni, cafile=None,
                           http_host=http_host, http_path="/x")
    assert result.connect_status == 200
    assert result.handshake_ok, result.error
    assert_blocked_without_contact(fresh_origin, result.response_status, repr(result.response[:200]))


# --- real browser --------------------------------------------------------------------------------

def test_chromium_shows_the_block_page(proxy, fresh_origin, tmp_path):
    page = chromium_load(f"http://listed.test:{fresh_origin.http_port}/", proxy.port, tmp_path)
    assert page.load_error is None, page.stderr[-2000:]
    assert "Test Operator" in page.text
    assert "hotline" in page.text
    assert page.screenshot_path is not None and page.screenshot_path.stat().st_size > 1000
    fresh_origin.wait_idle()
    assert fresh_origin.connections == []


def test_chromium_https_block_page_with_trusted_ca(proxy, fresh_origin, tmp_path):
    page = chromium_load(fresh_origin.url("paths.test", "/folder/page", tls=True), proxy.port, tmp_path,
                         ignore_cert_spki=spki_sha256(proxy.ca), extra_args=["--lang=fr"])
    assert page.load_error is None, page.stderr[-2000:]
    assert "Test Operator" in page.text
    fresh_origin.wait_idle()
    assert fresh_origin.connections == []


# --- other modes and entry points ----------------------------------------------------------------

@pytest.mark.parametrize(("mode", "expected"), [("notfound", 404), ("close", None)])
def test_notfound_and_close_modes(tmp_path, test_pki, origin, mode, expected):
    origin.reset()
    port = free_port()
    config = write_config(tmp_path, mode=mode)
    with ProxyProcess(urlwarden_argv(port, config, tmp_path / "conf", test_pki), port,
                      hosts={n: "127.0.0.1" for n in NAMES}, workdir=tmp_path):
        result = curl(f"http://listed.test:{origin.http_port}/", proxy=port)
        origin.wait_idle()
        assert result.status == expected
        if mode == "notfound":
            assert result.header("link") is None and b"blocked" not in result.body.lower()
        else:
            assert result.exit_code != 0  # the connection was dropped
        assert origin.connections == []


def test_plain_mitmdump_with_the_addon_script(tmp_path, test_pki, origin):
    origin.reset()
    port = free_port()
    config = write_config(tmp_path)
    argv = [MITMDUMP, "-s", ADDON_SCRIPT, "--listen-host", "127.0.0.1", "-p", str(port),
            "--set", f"urlwarden_config={config}", "--set", f"confdir={tmp_path / 'conf'}"]
    with ProxyProcess(argv, port, hosts={n: "127.0.0.1" for n in NAMES}, workdir=tmp_path) as process:
        blocked = curl(f"http://listed.test:{origin.http_port}/", proxy=port)
        origin.wait_idle()
        assert blocked.status == BLOCK_STATUS and origin.connections == []
        allowed = curl(f"http://unlisted.test:{origin.http_port}/page", proxy=port)
        assert allowed.status == 200
        # urlwarden_private_logs (on by default): mitmdump prints neither relayed URLs nor client addresses
        output = process.output()
        assert "unlisted.test" not in output and "127.0.0.1:" not in output
        block_lines = [json.loads(line) for line in process.stdout().splitlines() if '"event":"block"' in line]
        assert [(b["list"], b["decision"], b["mode"]) for b in block_lines] == [("hotline", "block", "splash")]
        assert "listed.test" not in output


def test_bad_config_stops_with_one_line(tmp_path):
    import subprocess

    bad = tmp_path / "bad.yaml"
    bad.write_text("lists:\n  - path: nope.txt\n    status: 200\n")
    done = subprocess.run([URLWARDEN, "run", "--config", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"urlwarden: {bad}:3: lists[0].status: must be an integer from 400 to 599, not '200'"]


def test_sighup_reloads_and_a_bad_config_keeps_the_running_one(tmp_path, test_pki, origin):
    import signal

    origin.reset()
    port = free_port()
    config = write_config(tmp_path)
    with ProxyProcess(urlwarden_argv(port, config, tmp_path / "conf", test_pki), port,
                      hosts={n: "127.0.0.1" for n in NAMES}, workdir=tmp_path) as process:
        assert curl(f"http://xlisted.test:{origin.http_port}/", proxy=port).status == 200
        (tmp_path / "block.txt").write_text(BLOCK_LIST + "xlisted.test/\n", encoding="utf-8")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while "reloaded" not in process.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "block list hotline: 9 entries" in process.output()
        origin.reset()
        assert curl(f"http://xlisted.test:{origin.http_port}/", proxy=port).status == BLOCK_STATUS
        config.write_text("lists:\n  - path: block.txt\n    mode: sideways\n")
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while "reload rejected" not in process.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"{config}:3: lists[0].mode: must be one of splash" in process.output()
        assert curl(f"http://xlisted.test:{origin.http_port}/", proxy=port).status == BLOCK_STATUS
        assert process.returncode is None  # still running
        origin.wait_idle()
        assert origin.connections == []
