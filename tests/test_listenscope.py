"""urlwarden.listenscope: the proxy never listens wider than the configuration's listen."""

from __future__ import annotations

import pytest

from urlwarden.errors import ConfigError
from urlwarden.listenscope import ListenPlan, ListenTooWide, plan_listen, within

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
