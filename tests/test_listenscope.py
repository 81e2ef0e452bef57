"""urlwarden.frontends.proxy.listenscope: the proxy never listens wider than the configuration's listen."""

from __future__ import annotations

import pytest

from urlwarden.errors import ConfigError
from urlwarden.frontends.proxy.listenscope import ListenPlan, ListenTooWide, plan_listen, within

SOURCE = "/etc/urlwarden/urlwarden.yaml"


@pytest.mark.parametrize(("host", "configured", "expected"), [
    # the same address, however it is written
    ("127.0.0.1", "127.0.0.1", True),
    ("192.168.1.10", "192.168.1.10", True),
    ("[::1]", "::1", True),
    ("2001:DB8::0:1", "2001:db8::1", True),
    ("Proxy.Home.Arpa", "proxy.home.arpa", True),
    # loopback is never wider: only this machine reaches it
    ("127.0.0.2", "192.168.1.10", True),
    ("::1", "127.0.0.1", True),
    ("localhost", "192.168.1.10", True),
    # a configuration that says every address allows anything
    ("::", "0.0.0.0", True),
    ("192.168.1.10", "::", True),
    ("", "0.0.0.0", True),
    ("0.0.0.0", "", True),
    # wider, or elsewhere
    ("", "127.0.0.1", False),
    ("0.0.0.0", "127.0.0.1", False),
    ("::", "127.0.0.1", False),
    ("[::]", "::1", False),
    ("192.168.1.10", "127.0.0.1", False),
    ("192.168.1.11", "192.168.1.10", False),
    ("proxy.home.arpa", "192.168.1.10", False),
])
def test_within(host, configured, expected):
    assert within(host, configured) is expected


def test_options_the_user_did_not_set_take_the_configuration():
    assert plan_listen(("127.0.0.1", 8080), SOURCE, None, None) == ListenPlan("127.0.0.1", 8080)


def test_options_the_user_set_are_kept_when_not_wider():
    assert plan_listen(("127.0.0.1", 8080), SOURCE, "127.0.0.2", 3128) == ListenPlan(None, None)
    assert plan_listen(("127.0.0.1", 8080), SOURCE, None, 3128) == ListenPlan("127.0.0.1", None)
    assert plan_listen(("192.168.1.10", 8080), SOURCE, "192.168.1.10", None) == ListenPlan(None, 8080)
    # ISP set-up (docs/isp.md): --listen 0.0.0.0:8080 -- --mode transparent --mode transparent@:::8080
    assert plan_listen(("0.0.0.0", 8080), "urlwarden run --listen", "0.0.0.0", 8080,
                       [("transparent@:::8080", "::")]) == ListenPlan(None, None)
    assert plan_listen(("127.0.0.1", 8080), SOURCE, None, None, [("regular@127.0.0.1:3128", "127.0.0.1")]) \
        == ListenPlan("127.0.0.1", 8080)


@pytest.mark.parametrize(("user_host", "modes", "message"), [
    ("0.0.0.0", [], "listen_host 0.0.0.0 is wider than listen 127.0.0.1:8080 (/etc/urlwarden/urlwarden.yaml); "
                    "to listen more widely, change that listen"),
    ("192.168.1.10", [], "listen_host 192.168.1.10 is wider than listen 127.0.0.1:8080"),
    (None, [("regular@0.0.0.0:3128", "0.0.0.0")], "mode regular@0.0.0.0:3128 listens on 0.0.0.0, wider than "
                                                  "listen 127.0.0.1:8080 (/etc/urlwarden/urlwarden.yaml)"),
    (None, [("socks5@:1080", "")], "mode socks5@:1080 listens on every address, wider than listen 127.0.0.1:8080"),
])
def test_wider_is_refused_with_one_line(user_host, modes, message):
    with pytest.raises(ListenTooWide) as caught:
        plan_listen(("127.0.0.1", 8080), SOURCE, user_host, None, modes)
    assert isinstance(caught.value, ConfigError)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --- the addon applies it (mitmproxy's option machinery, no proxy process) -----------------------

def addon_context(tmp_path, listen: str):
    from mitmproxy.test import taddons

    from urlwarden.frontends.proxy.addon import UrlWarden

    config = tmp_path / "urlwarden.yaml"
    config.write_text(f"listen: {listen}\n")
    addon = UrlWarden()
    return addon, config, taddons.context(addon)


def test_the_addon_applies_the_configured_listen_before_the_servers_start(tmp_path):
    addon, config, context = addon_context(tmp_path, "127.0.0.2:3128")
    with context as tctx:
        assert tctx.options.listen_host == "" and tctx.options.listen_port is None  # mitmproxy's defaults
        tctx.configure(addon, urlwarden_config=str(config))
        assert (tctx.options.listen_host, tctx.options.listen_port) == ("127.0.0.2", 3128)
        tctx.configure(addon, listen_port=8081)  # the user's port is kept, the host stays
        assert (tctx.options.listen_host, tctx.options.listen_port) == ("127.0.0.2", 8081)


def test_the_addon_refuses_a_wider_listen_at_start_up_with_one_logged_line(tmp_path, caplog):
    addon, config, context = addon_context(tmp_path, "127.0.0.1:3128")
    with context as tctx:
        tctx.configure(addon, listen_host="0.0.0.0", urlwarden_config=str(config))
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert errors == ["urlwarden: listen_host 0.0.0.0 is wider than listen 127.0.0.1:3128 "
                          f"({config}); to listen more widely, change that listen"]
        assert tctx.options.listen_host == "127.0.0.1"  # and nothing would bind wider anyway


def test_once_running_a_wider_mode_is_rejected_and_rolled_back(tmp_path, monkeypatch):
    from mitmproxy import exceptions

    addon, config, context = addon_context(tmp_path, "127.0.0.1:3128")
    with context as tctx:
        tctx.configure(addon, urlwarden_config=str(config))
        monkeypatch.setattr("urlwarden.frontends.proxy.addon.proxy_running", lambda: True)
        with pytest.raises(exceptions.OptionsError, match="mode regular@0.0.0.0:9000 listens on 0.0.0.0"):
            tctx.configure(addon, mode=["regular", "regular@0.0.0.0:9000"])
        assert tctx.options.mode == ["regular"]
        tctx.configure(addon, mode=["regular", "regular@127.0.0.1:9000"])  # not wider: accepted
