"""Unit tests of single addon hooks with mitmproxy's test helpers (taddons, tflow).

These sit beside the end-to-end tests in test_proxy_e2e.py, which drive a real mitmdump.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import connection, exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow, tutils
from mitmproxy.tls import ClientHello, ClientHelloData

from urlwarden.frontends.proxy.addon import UrlWarden
from urlwarden.runtime.offload import GIL_SWITCH_INTERVAL

LIST = "listed.test/\npaths.test/folder/\n"


@pytest.fixture
def config_file(tmp_path):
    (tmp_path / "block.txt").write_text(LIST)
    (tmp_path / "allow.txt").write_text("listed.test/ok.html\n")
    path = tmp_path / "urlwarden.yaml"
    path.write_text(
        "lists:\n  - name: hot\n    path: block.txt\n    reason: Listed.\n"
        "allow:\n  - name: exc\n    path: allow.txt\n"
    )
    return path


@pytest.fixture
def addon_ctx(config_file):
    addon = UrlWarden()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_config=str(config_file))
        yield addon, tctx


def flow_for(url: str, **headers):
    f = tflow.tflow()
    f.request = tutils.treq()
    f.request.url = url
    for name, value in headers.items():
        f.request.headers[name.replace("_", "-")] = value
    return f


@pytest.mark.parametrize(
    ("url", "headers", "blocked"),
    [
        ("http://listed.test/x", {}, True),
        ("http://www.listed.test:8080/x", {}, True),
        ("https://paths.test/folder/a", {}, True),
        ("http://paths.test/other", {}, False),
        ("http://unlisted.test/", {}, False),
        ("http://listed.test/ok.html", {}, False),  # allow list
        ("http://unlisted.test/", {"host": "listed.test"}, True),  # Host disagrees with the URL
        ("http://listed.test/ok.html", {"host": "paths.test"}, False),
    ],
)
def test_requestheaders(addon_ctx, url, headers, blocked):
    addon, _ = addon_ctx
    f = flow_for(url)
    for name, value in headers.items():
        f.request.headers[name] = value
    addon.requestheaders(f)
    assert (f.response is not None) == blocked
    if blocked:
        assert f.response.status_code == 451
        assert f.metadata["urlwarden"]["list"] == "hot"
        assert b"listed.test" not in f.response.content


def test_duplicate_host_headers_are_all_checked(addon_ctx):
    addon, _ = addon_ctx
    f = flow_for("http://unlisted.test/")
    f.request.headers.set_all("host", ["unlisted.test", "listed.test"])
    addon.requestheaders(f)
    assert f.response is not None and f.response.status_code == 451


def test_flow_already_answered_is_left_alone(addon_ctx):
    addon, _ = addon_ctx
    f = flow_for("http://listed.test/")
    f.response = tutils.tresp(status_code=204)
    addon.requestheaders(f)
    assert f.response.status_code == 204
    assert "urlwarden" not in f.metadata


@pytest.mark.parametrize(("on_error", "status"), [("block", 503), ("allow", None)])
def test_internal_error_applies_on_error(tmp_path, caplog, on_error, status):
    (tmp_path / "b.txt").write_text(LIST)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"on_error: {on_error}\nlists:\n  - path: b.txt\n")
    addon = UrlWarden()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_config=str(cfg))

        class Broken:
            def match(self, url):
                raise RuntimeError("boom")

        current = addon.runtime.current
        addon.runtime._current = dataclasses.replace(current, state=dataclasses.replace(current.state, snapshot=Broken()))
        for _ in range(3):
            f = flow_for("http://unlisted.test/")
            addon.requestheaders(f)
            assert (f.response.status_code if f.response else None) == status
        assert addon.metrics.registry.get_sample_value("urlwarden_internal_errors_total", {"kind": "request"}) == 3
        assert sum("internal error" in r.getMessage() for r in caplog.records) == 1  # once per kind


def test_configure_forces_lazy_connections_and_rejects_bad_config(config_file, tmp_path):
    addon = UrlWarden()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.options.connection_strategy = "eager"
        tctx.configure(addon, urlwarden_config=str(config_file))
        assert tctx.options.connection_strategy == "lazy"
        good = addon.state
        bad = tmp_path / "bad.yaml"
        bad.write_text("lists:\n  - path: missing.txt\n")
        with pytest.raises(exceptions.OptionsError, match="missing.txt"):
            tctx.configure(addon, urlwarden_config=str(bad))
        # mitmproxy rolls back by configuring the old values again: the old lists stay in force
        assert addon.state.config == good.config
        assert addon.state.snapshot.stats == good.snapshot.stats


def client_hello_data(sni: str | None, target: tuple[str, int] | None):
    client = tflow.tflow().client_conn
    client.sni = sni
    context = type("Ctx", (), {})()
    context.client = client
    context.server = connection.Server(address=target)
    hello = ClientHello.__new__(ClientHello)
    hello._client_hello = type("Raw", (), {"extensions": [], "cipher_suites": []})()
    data = ClientHelloData(context=context, client_hello=hello)
    data.client_hello = type("Hello", (), {"sni": sni})()
    return data


@pytest.mark.parametrize(
    ("intercept", "sni", "target", "ignored", "refused"),
    [
        ("listed-hosts", "unlisted.test", ("unlisted.test", 443), True, False),
        ("listed-hosts", "paths.test", ("paths.test", 443), False, False),
        ("listed-hosts", "listed.test", ("unlisted.test", 443), False, False),  # SNI disagrees: intercept
        ("listed-hosts", None, ("listed.test", 443), False, False),
        ("all", "unlisted.test", ("unlisted.test", 443), False, False),
        ("none", "unlisted.test", ("unlisted.test", 443), True, False),
        ("none", "listed.test", ("listed.test", 443), True, True),
        ("none", "paths.test", ("paths.test", 443), True, True),
    ],
)
def test_tls_clienthello(tmp_path, intercept, sni, target, ignored, refused):
    (tmp_path / "b.txt").write_text(LIST)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"https:\n  intercept: {intercept}\nlists:\n  - path: b.txt\n")
    addon = UrlWarden()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_config=str(cfg))
        data = client_hello_data(sni, target)
        addon.tls_clienthello(data)
        assert data.ignore_connection == ignored
        hook = server_hooks.ServerConnectionHookData(client=data.context.client, server=connection.Server(address=target))
        addon.server_connect(hook)
        listed_whole = "listed.test" in (sni, target[0])
        # a host with path-level entries is reached only by requests urlwarden checked: none here
        unchecked_paths = "paths.test" in (sni, target[0])
        assert (hook.server.error is not None) == (refused or listed_whole or unchecked_paths)


def test_http_connect_refused_without_interception(tmp_path):
    (tmp_path / "b.txt").write_text(LIST)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("https:\n  intercept: none\nlists:\n  - path: b.txt\n")
    addon = UrlWarden()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_config=str(cfg))
        f = tflow.tflow()
        f.request = tutils.treq(method=b"CONNECT", host="www.listed.test", port=443, path=b"")
        addon.http_connect(f)
        assert f.response is not None and f.response.status_code == 403
        f2 = tflow.tflow()
        f2.request = tutils.treq(method=b"CONNECT", host="unlisted.test", port=443, path=b"")
        addon.http_connect(f2)
        assert f2.response is None


@pytest.mark.parametrize(
    ("path_len", "headers", "status"),
    [(20_000, 1, 414), (100, 300, 431), (100, 1, None)],
)
def test_oversized_requests_are_answered_before_any_decision(addon_ctx, path_len, headers, status):
    addon, _ = addon_ctx
    f = flow_for("http://unlisted.test/" + "a" * path_len)
    for i in range(headers):
        f.request.headers.add(f"x-h{i}", "v")
    addon.requestheaders(f)
    assert (f.response.status_code if f.response else None) == status


def test_running_shortens_the_gil_switch_interval(addon_ctx):
    addon, _ = addon_ctx
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)  # CPython's default
        addon.running()
        assert sys.getswitchinterval() <= GIL_SWITCH_INTERVAL < 0.005
    finally:
        addon.done()
        sys.setswitchinterval(before)


# --- what may reach a host (urlwarden.runtime.protocols), unparseable names ------------------------------

def sample(addon, name: str, **labels) -> float:
    return addon.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("make_flow", "hook", "host", "refused", "carrier"),
    [
        (tflow.ttcpflow, "tcp_start", "paths.test", True, "tcp"),
        (tflow.ttcpflow, "tcp_start", "listed.test", True, "tcp"),
        (tflow.ttcpflow, "tcp_start", "unlisted.test", False, "tcp"),
        (tflow.tudpflow, "udp_start", "paths.test", True, "udp"),
        (tflow.tudpflow, "udp_start", "listed.test", True, "udp"),
        (tflow.tudpflow, "udp_start", "unlisted.test", False, "udp"),
    ],
)
def test_raw_tcp_and_udp_reach_only_clean_hosts(addon_ctx, make_flow, hook, host, refused, carrier):
    addon, _ = addon_ctx
    f = make_flow()
    f.server_conn = connection.Server(address=(host, 443))  # not connected yet (lazy)
    f.client_conn.sni = None
    getattr(addon, hook)(f)
    assert (f.server_conn.error is not None) == refused  # mitmproxy then never opens it
    assert sample(addon, "urlwarden_refused_connections_total", carrier=carrier) == (1 if refused else 0)


def test_raw_tcp_on_an_open_server_connection_relays_nothing(addon_ctx):
    addon, _ = addon_ctx
    f = tflow.ttcpflow()  # its server connection is open already (as after a 101)
    f.server_conn.address = ("paths.test", 80)
    f.client_conn.sni = None
    addon.tcp_start(f)
    f.messages[-1].content = b"GET /folder/x HTTP/1.1\r\n\r\n"
    addon.tcp_message(f)
    assert f.messages[-1].content == b""


def server_hook(client, host: str, port: int = 80):
    return server_hooks.ServerConnectionHookData(client=client, server=connection.Server(address=(host, port)))


def test_server_connect_opens_a_host_with_path_entries_only_for_checked_requests(addon_ctx):
    addon, _ = addon_ctx
    f = flow_for("http://paths.test/other")
    unchecked = server_hook(f.client_conn, "paths.test")
    addon.server_connect(unchecked)
    assert unchecked.server.error is not None  # nobody checked a request for it: raw
    addon.requestheaders(f)
    assert f.response is None
    checked = server_hook(f.client_conn, "paths.test")
    addon.server_connect(checked)
    assert checked.server.error is None
    other_client = server_hook(tflow.tclient_conn(), "paths.test")
    addon.server_connect(other_client)
    assert other_client.server.error is not None
    clean = server_hook(tflow.tclient_conn(), "unlisted.test")
    addon.server_connect(clean)
    assert clean.server.error is None


@pytest.mark.parametrize(
    ("host", "upgrade", "status"),
    [
        ("paths.test", "h2c", 403), ("paths.test", "H2C", 403), ("paths.test", "websocket, h2c", 403),
        ("paths.test", "foo", 403), ("paths.test", "websocket", None), ("unlisted.test", "H2C", None),
    ],
)
def test_requestheaders_refuses_upgrades_but_websocket_to_hosts_that_are_not_clean(addon_ctx, host, upgrade, status):
    addon, _ = addon_ctx
    f = flow_for(f"http://{host}/other", upgrade=upgrade, connection="Upgrade")
    addon.requestheaders(f)
    assert (f.response.status_code if f.response else None) == status


@pytest.mark.parametrize(
    ("host", "request_upgrade", "response_upgrade", "killed"),
    [
        ("paths.test", "websocket", "websocket", False),
        ("paths.test", "websocket", "h2c", True),  # the server picked something else: raw after 101
        ("paths.test", "h2c", "h2c", True),
        ("paths.test", "websocket", "WebSocket, h2c", True),
        ("unlisted.test", "h2c", "h2c", False),
    ],
)
def test_responseheaders_kills_a_101_that_is_not_a_checked_websocket(addon_ctx, host, request_upgrade,
                                                                     response_upgrade, killed):
    addon, _ = addon_ctx
    f = flow_for(f"http://{host}/other", upgrade=request_upgrade, sec_websocket_version="13")
    f.server_conn.address = (host, 80)
    f.client_conn.sni = None
    f.response = tutils.tresp(status_code=101)
    f.response.headers["upgrade"] = response_upgrade
    addon.responseheaders(f)
    assert (f.error is not None and f.error.msg == f.error.KILLED_MESSAGE) == killed


@pytest.mark.parametrize("on_error", ["block", "allow"])
@pytest.mark.parametrize("bad", ["[junk", ":80", "a]b", "..", "[::1", ".", "clean.test\r\n listed.test"])
def test_unparseable_host_is_a_400_whatever_on_error_says(tmp_path, on_error, bad):
    (tmp_path / "b.txt").write_text(LIST)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"on_error: {on_error}\nlists:\n  - path: b.txt\n")
    addon = UrlWarden()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_config=str(cfg))
        f = flow_for("http://unlisted.test/")
        f.request.headers.set_all("host", [bad, "unlisted.test"])
        addon.requestheaders(f)
        assert f.response is not None and f.response.status_code == 400
        assert sample(addon, "urlwarden_requests_total", decision="bad_request") == 1
        assert sample(addon, "urlwarden_internal_errors_total", kind="request") == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=st.text(max_size=40) | st.from_regex(r"[\[\]:.a-z0-9 \t]{0,12}", fullmatch=True))
def test_any_host_header_is_decided_or_a_400_never_an_internal_error(addon_ctx, host):
    addon, _ = addon_ctx
    f = flow_for("http://unlisted.test/")
    f.request.headers.set_all("host", [host])
    addon.requestheaders(f)
    assert f.response is None or f.response.status_code in (400, 451)
    assert sample(addon, "urlwarden_internal_errors_total", kind="request") == 0


@pytest.mark.parametrize("sni", ["[junk", "a]b", ".."])
def test_tls_with_an_unparseable_sni_is_refused(addon_ctx, sni):
    addon, _ = addon_ctx
    data = client_hello_data(sni, ("unlisted.test", 443))
    addon.tls_clienthello(data)
    hook = server_hooks.ServerConnectionHookData(client=data.context.client, server=connection.Server(address=("unlisted.test", 443)))
    addon.server_connect(hook)
    assert hook.server.error is not None
    assert sample(addon, "urlwarden_requests_total", decision="bad_request") == 1
