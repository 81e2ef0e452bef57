"""The PAC file (urlwarden.exports.pac): served at /proxy.pac without the token, printed by
``urlwarden pac`` (also as a data: URL), without DIRECT fallback, and free of list contents.
What browsers do with it when the proxy is down is tested in test_pac_browser.py.

The PAC's logic is run for real with ``node`` when it is installed (scripts/system-deps installs
it), against stub PAC helpers that refuse to resolve names; without node that test skips.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import subprocess

import pytest

from urlwarden.frontends.admin import AdminServer
from urlwarden.cli import main
from urlwarden.exports.pac import PAC_CONTENT_TYPE, default_pac_proxy, pac_data_url, parse_pac_proxy, render_pac
from urlwarden.config import default_config_path, load_config
from urlwarden.errors import ConfigError
from urlwarden.exports.export import list_hosts

TOKEN = "pac-test-token.1"
PROXY = "127.0.0.1:8080"
HTTP_TIMEOUT = 5.0


def get(server: AdminServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=HTTP_TIMEOUT)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def status_provider():
    # list contents a careless PAC generator might pick up; none may appear in the PAC
    return {"lists": [{"name": "sample-block", "entries": 6, "last_error": "listed.test/secret.html"}]}


@pytest.fixture(scope="module")
def server():
    with AdminServer("127.0.0.1", 0, TOKEN, None, status_provider, None, pac_proxy=PROXY) as running:
        yield running


@pytest.fixture(scope="module")
def open_server():
    with AdminServer("127.0.0.1", 0, None, None, status_provider, None, pac_proxy=PROXY) as running:
        yield running


# --- serving --------------------------------------------------------------------------------------

def test_the_pac_needs_no_token(server):
    status, headers, body = get(server, "/proxy.pac")
    assert status == 200
    assert headers["content-type"] == PAC_CONTENT_TYPE == "application/x-ns-proxy-autoconfig"
    assert body.decode("ascii") == render_pac(PROXY)
    assert headers["content-length"] == str(len(body))
    assert get(server, "/status")[0] == 401  # the rest still needs it


@pytest.mark.parametrize("host", ["127.0.0.1:9181", "urlwarden.home.arpa:9181", "192.0.2.1"])
def test_the_pac_is_served_whatever_the_host_header(open_server, host):
    status, _, body = get(open_server, "/proxy.pac", headers={"Host": host})
    assert status == 200 and b"FindProxyForURL" in body
    assert get(open_server, "/status", headers={"Host": "urlwarden.home.arpa"})[0] == 403


def test_head_and_query_strings(server):
    status, headers, body = get(server, "/proxy.pac", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert get(server, "/proxy.pac?v=2")[0] == 200


def test_without_pac_proxy_there_is_no_pac():
    with AdminServer("127.0.0.1", 0, None, None) as running:
        status, _, body = get(running, "/proxy.pac")
    assert status == 404 and b"pac_proxy" in body


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:8080", "127.0.0.1:8080"),
    ("[::1]:3128", "[::1]:3128"),
    ("[2001:DB8::0:1]:8080", "[2001:db8::1]:8080"),
    ("Proxy.Home.Arpa:8080", "proxy.home.arpa:8080"),
    ("localhost:1", "localhost:1"),
])
def test_pac_proxy_values(value, expected):
    assert parse_pac_proxy(value) == expected
    assert f'var proxy = "PROXY {expected}";' in render_pac(value)


@pytest.mark.parametrize(("value", "message"), [
    ("0.0.0.0:8080", "not an address clients can reach"),
    ("[::]:8080", "not an address clients can reach"),
    ("::1:8080", "in brackets"),
    ("[fe80::1%eth0]:8080", "zone index"),
    ("127.0.0.1", "HOST:PORT"),
    ("127.0.0.1:0", "port from 1 to 65535"),
    ("127.0.0.1:65536", "port from 1 to 65535"),
    ('proxy";alert(1);".test:80', "neither an IP address nor a host name"),
    ("proxy test:80", "neither an IP address nor a host name"),
    ("[proxy.test]:80", "neither an IP address nor a host name"),
    ("-bad.test:80", "neither an IP address nor a host name"),
])
def test_bad_pac_proxy_values_are_config_errors(value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_pac_proxy(value)
    with pytest.raises(ConfigError):
        AdminServer("127.0.0.1", 0, None, None, pac_proxy=value)


# --- what the file says ------------------------------------------------------------------------------

def test_the_pac_has_no_direct_fallback():
    text = render_pac(PROXY)
    returns = re.findall(r"return ([^;]+);", text)
    assert set(returns) == {"proxy", '"DIRECT"'}
    assert 'var proxy = "PROXY 127.0.0.1:8080";' in text
    assert "DIRECT" not in text.split("var proxy = ", 1)[1].split(";", 1)[0]  # no "PROXY x; DIRECT" fallback
    assert text.rstrip().endswith("return proxy;\n}")


def test_the_pac_never_makes_the_browser_resolve_a_name():
    text = render_pac(PROXY)
    for helper in ("dnsResolve", "myIpAddress", "isResolvable", "isInNetEx", "dnsResolveEx", "shExpMatch"):
        assert helper not in text
    ipv4_block = text.split(r"if (/^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/.test(host)) {", 1)[1].split("return proxy;", 1)[0]
    assert text.count("isInNet(") == ipv4_block.count("isInNet(") == 5  # only for IPv4 literals


def test_the_pac_reveals_no_list_contents():
    """Generated from the proxy address alone: no listed host or entry of the configured lists appears."""
    config = load_config(default_config_path())
    hosts = set()
    entries = set()
    for lc in config.lists + config.allow:
        hosts |= list_hosts(lc.spec) or set()
        for line in open(lc.spec.path, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#"):
                entries.add(line.split(",")[0])
    assert hosts and entries
    text = render_pac(PROXY).lower()
    for item in hosts | entries:
        if item.lower() in ("url",):  # the csv header cell
            continue
        assert item.lower() not in text, item


# --- urlwarden pac -------------------------------------------------------------------------------------

def test_the_data_url_holds_the_same_bytes():
    text = render_pac(PROXY)
    url = pac_data_url(text)
    prefix = "data:application/x-ns-proxy-autoconfig;base64,"
    assert url.startswith(prefix) and url.isascii() and "\n" not in url
    assert base64.b64decode(url[len(prefix):], validate=True).decode("ascii") == text


@pytest.mark.parametrize(("listen", "expected"), [
    (("127.0.0.1", 8080), "127.0.0.1:8080"),
    (("::1", 3128), "[::1]:3128"),
    (("proxy.home.arpa", 8080), "proxy.home.arpa:8080"),
    (("0.0.0.0", 8080), None),
    (("::", 8080), None),
    (("", 8080), None),
])
def test_default_pac_proxy_is_the_listen_address(listen, expected):
    assert default_pac_proxy(listen) == expected


def write(tmp_path, text: str):
    path = tmp_path / "urlwarden.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("config", "proxy"), [
    (None, "127.0.0.1:8080"),  # the embedded default: listen 127.0.0.1:8080
    ("listen: 127.0.0.2:3128\n", "127.0.0.2:3128"),
    ("listen: 0.0.0.0:3128\nadmin:\n  pac_proxy: 192.168.1.10:3128\n", "192.168.1.10:3128"),
])
def test_urlwarden_pac_prints_the_file_and_its_data_url(tmp_path, capsys, config, proxy):
    args = [] if config is None else ["--config", write(tmp_path, config)]
    assert main(["pac", *args]) == 0
    assert capsys.readouterr().out == render_pac(proxy)
    assert main(["pac", *args, "--data-url"]) == 0
    assert capsys.readouterr().out == pac_data_url(render_pac(proxy)) + "\n"
    assert main(["pac", *args, "--proxy", "[2001:db8::1]:8080"]) == 0
    assert capsys.readouterr().out == render_pac("[2001:db8::1]:8080")


@pytest.mark.parametrize(("config", "proxy", "message"), [
    ("listen: 0.0.0.0:3128\n", None, "listens on every address (0.0.0.0:3128); give the address browsers use"),
    (None, "0.0.0.0:8080", "--proxy: 0.0.0.0 is not an address clients can reach"),
    (None, "proxy test:80", "--proxy: 'proxy test' is neither an IP address nor a host name"),
])
def test_urlwarden_pac_refuses_what_browsers_cannot_use(tmp_path, capsys, config, proxy, message):
    args = [] if config is None else ["--config", write(tmp_path, config)]
    args += [] if proxy is None else ["--proxy", proxy]
    assert main(["pac", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("urlwarden: ") and message in captured.err


# --- what the file does (node) ----------------------------------------------------------------------

STUBS = r"""
function isPlainHostName(host) { return host.indexOf(".") < 0; }
function dnsDomainIs(host, domain) {
  return host.length >= domain.length && host.substring(host.length - domain.length) == domain;
}
function toNumber(text) {
  var parts = text.split(".");
  if (parts.length != 4) { throw new Error("not an IPv4 literal: " + text); }
  var n = 0;
  for (var i = 0; i < 4; i++) {
    if (!/^[0-9]+$/.test(parts[i]) || Number(parts[i]) > 255) { throw new Error("not an IPv4 literal: " + text); }
    n = n * 256 + Number(parts[i]);
  }
  return n;
}
function isInNet(host, pattern, mask) {
  if (!/^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/.test(host)) {
    throw new Error("isInNet would resolve the name " + host);
  }
  var m = toNumber(mask);
  return (toNumber(host) & m) >>> 0 == (toNumber(pattern) & m) >>> 0;
}
function dnsResolve(host) { throw new Error("dnsResolve called for " + host); }
function myIpAddress() { throw new Error("myIpAddress called"); }
"""

RUNNER = r"""
var cases = JSON.parse(process.argv[2]);
var out = [];
for (var i = 0; i < cases.length; i++) {
  try { out.push(FindProxyForURL(cases[i][0], cases[i][1])); } catch (e) { out.push("ERROR " + e.message); }
}
console.log(JSON.stringify(out));
"""

P, D = "PROXY 127.0.0.1:8080", "DIRECT"
CASES = [
    # listed and ordinary sites: always through the proxy
    ("http://listed.test/x", "listed.test", P),
    ("https://www.example/", "www.example", P),
    ("http://local.test/", "local.test", P),
    ("http://a.local.test/", "a.local.test", P),
    ("http://xlocal.test/", "xlocal.test", P),
    ("http://home.arpa.test/", "home.arpa.test", P),
    ("http://printer./", "printer.", P),
    # local names
    ("http://printer/", "printer", D),
    ("http://localhost:8000/", "localhost", D),
    ("http://LOCALHOST/", "LOCALHOST", D),
    ("http://app.localhost/", "app.localhost", D),
    ("http://nas.local/", "nas.local", D),
    ("http://router.home.arpa/", "router.home.arpa", D),
    # IPv4 literals
    ("http://127.0.0.1:9181/", "127.0.0.1", D),
    ("http://127.255.0.9/", "127.255.0.9", D),
    ("http://10.1.2.3/", "10.1.2.3", D),
    ("http://172.16.0.1/", "172.16.0.1", D),
    ("http://172.31.255.254/", "172.31.255.254", D),
    ("http://172.32.0.1/", "172.32.0.1", P),
    ("http://172.15.255.255/", "172.15.255.255", P),
    ("http://192.168.1.1/", "192.168.1.1", D),
    ("http://192.169.0.1/", "192.169.0.1", P),
    ("http://169.254.1.1/", "169.254.1.1", D),
    ("http://100.64.0.1/", "100.64.0.1", P),
    ("http://192.0.2.1/", "192.0.2.1", P),
    ("http://203.0.113.9/", "203.0.113.9", P),
    ("http://999.1.1.1/", "999.1.1.1", "ERROR"),  # no browser passes this; the stub refuses it
    # addresses written as one number are not plain host names
    ("http://3405803777/", "3405803777", P),
    ("http://0xcb007101/", "0xcb007101", P),
    ("http://2130706433/", "2130706433", P),
    # IPv6 literals, with and without brackets
    ("http://[2001:db8::1]/", "2001:db8::1", P),
    ("http://[2001:db8::1]/", "[2001:db8::1]", P),
    ("http://[::1]/", "::1", D),
    ("http://[::1]/", "[::1]", D),
    ("http://[fe80::1]/", "fe80::1", D),
    ("http://[febf::1]/", "febf::1", D),
    ("http://[fec0::1]/", "fec0::1", P),
    ("http://[fe8::1]/", "fe8::1", P),
    ("http://[fd12:3456::1]/", "fd12:3456::1", D),
    ("http://[fc00::1]/", "FC00::1", D),
    ("http://[ff02::1]/", "ff02::1", P),
    ("http://[::ffff:192.168.1.1]/", "::ffff:192.168.1.1", P),
]


def test_find_proxy_for_url_with_node(tmp_path):
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed (scripts/system-deps installs nodejs); the PAC logic was not run")
    script = tmp_path / "pac.js"
    script.write_text(STUBS + render_pac(PROXY) + RUNNER)
    cases = [[url, host] for url, host, _ in CASES]
    done = subprocess.run([node, str(script), json.dumps(cases)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    got = [(host, "ERROR" if result.startswith("ERROR") else result) for (_, host, _), result in zip(CASES, results)]
    assert got == [(host, expected) for _, host, expected in CASES]
