"""Unit tests of the admin home page: rendering (`urlwarden.frontends.homepage`) and serving (`/`, `/ca.pem`
on `urlwarden.frontends.admin.AdminServer`). tests/test_homepage_e2e.py looks at it in Chromium."""

from __future__ import annotations

import base64
import http.client

import pytest

from urlwarden.frontends.admin import AdminServer
from urlwarden.frontends.homepage import protection_state, render_home
from urlwarden.metrics import Metrics

TOKEN = "t0ken-for-the-home-page"
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(("ready", "reasons", "state"), [
    (True, [], "on"),
    (False, ["hotline: stale"], "degraded"),
    (False, ["hotline: stale", "other: stale"], "degraded"),
    (False, ["hotline: not loaded"], "off"),
    (False, ["hotline: stale", "other: not loaded"], "off"),
    (False, ["proxy not running"], "off"),
    (False, [], "off"),
])
def test_protection_state(ready, reasons, state):
    assert protection_state(ready, reasons) == state


def test_every_value_is_escaped():
    evil = '<img src=x onerror=alert(1)>"'
    page = render_home({
        "ready": False, "reasons": [evil], "lists": [{"name": evil, "entries": 1, "version": evil, "last_error": evil}],
        "missing_lists": [evil], "proxy": evil, "pac_url": evil, "ca_url": evil, "version": evil,
        "wireguard": [{"name": evil, "listen": evil, "endpoint": evil, "config": evil}],
    })
    assert "<img" not in page and "&lt;img" in page


def test_counts_and_lists():
    page = render_home({
        "ready": True, "blocks_today": 1234, "blocks_since_start": 56789,
        "lists": [{"name": "hotline", "kind": "block", "entries": 1000000, "version": "v7", "last_success": 0,
                   "age_seconds": 7200},
                  {"name": "exceptions", "kind": "allow", "entries": 2}],
    })
    assert 'id="blocks-today">1\u202f234<' in page and 'id="blocks-since-start">56\u202f789<' in page
    assert "<span>hotline</span>" in page and ">1\u202f000\u202f000<" in page and "1970-01-01 00:00 UTC" in page and ">2 h<" in page
    assert "<span>exceptions <small>(allow list)</small></span>" in page


def test_without_wireguard_the_page_says_how_to_turn_it_on():
    page = render_home({"ready": True})
    assert "WireGuard is off" in page and "--mode wireguard" in page and "<svg" not in page
    assert "No list is loaded" in page


def test_a_wireguard_problem_is_shown():
    page = render_home({"ready": True, "wireguard_problem": "set wireguard.endpoint"})
    assert "set wireguard.endpoint" in page


def test_no_script_and_both_colour_schemes():
    page = render_home({"ready": True, "wireguard": [{"name": "phone", "listen": "0.0.0.0:51820",
                                                      "endpoint": "192.0.2.1:51820", "config": "[Interface]\n"}]})
    assert "<script" not in page and "prefers-color-scheme:dark" in page and 'name="viewport"' in page
    assert page.count("<svg") == 1


# --- served by the admin listener -----------------------------------------------------------------

def get(server: AdminServer, path: str, headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


@pytest.fixture
def ca_file(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_bytes(PEM)
    return path


@pytest.fixture
def server(ca_file):
    metrics = Metrics()
    metrics.lists_from_snapshot([])
    home = {"version": "9.9", "proxy": "127.0.0.1:8080", "wireguard": []}
    with AdminServer("127.0.0.1", 0, TOKEN, metrics, lambda: {"lists": []}, lambda: (True, []),
                     pac_proxy="127.0.0.1:8080", home_provider=lambda: home, ca_cert_path=str(ca_file)) as running:
        yield running


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode()}


def test_home_needs_the_token_and_a_browser_is_offered_basic(server):
    status, headers, _ = get(server, "/")
    challenges = [v for k, v in headers if k.lower() == "www-authenticate"]
    assert status == 401 and challenges[0].startswith("Basic ") and challenges[1].startswith("Bearer ")
    assert get(server, "/", basic("wrong"))[0] == 401
    assert get(server, "/", {"Authorization": "Basic !!!"})[0] == 401
    status, headers, body = get(server, "/", basic(TOKEN))
    assert status == 200 and dict(headers)["Content-Type"].startswith("text/html")
    assert "script-src" not in dict(headers)["Content-Security-Policy"]  # default-src 'none': no script runs
    assert b"urlwarden 9.9" in body


def test_basic_works_for_the_other_endpoints_too(server):
    assert get(server, "/status", basic(TOKEN))[0] == 200


def test_the_pac_address_follows_the_host_the_browser_used(server):
    body = get(server, "/", {"Authorization": f"Bearer {TOKEN}", "Host": "192.168.1.10:9181"})[2]
    assert b"http://192.168.1.10:9181/proxy.pac" in body
    body = get(server, "/", {"Authorization": f"Bearer {TOKEN}", "Host": "<evil>"})[2]
    assert server.url.encode() + b"/proxy.pac" in body and b"evil" not in body


def test_ca_is_public_and_only_a_certificate(server, ca_file):
    status, headers, body = get(server, "/ca.pem")
    assert status == 200 and body == PEM and "attachment" in dict(headers)["Content-Disposition"]
    ca_file.write_bytes(b"PRIVATE KEY")  # never serve anything that is not a certificate
    assert get(server, "/ca.pem")[0] == 404
    ca_file.unlink()
    assert get(server, "/ca.pem")[0] == 404


def test_a_failing_home_provider_is_a_500(ca_file):
    def broken():
        raise RuntimeError("boom")

    with AdminServer("127.0.0.1", 0, None, Metrics(), lambda: {"lists": []}, lambda: (True, []),
                     home_provider=broken) as running:
        assert get(running, "/")[0] == 500
