"""Unit tests of WireGuard mode: the configuration section, key files, client configurations,
the ``urlwarden wireguard-client`` command, the mode arguments, and the tunnel addon's hooks.
tests/test_wireguard_netns.py drives a real WireGuard client through a real proxy."""

from __future__ import annotations

import base64
import ipaddress
import json
import stat

import pytest
from mitmproxy import dns
from mitmproxy.proxy import mode_specs, server_hooks
from mitmproxy.test import taddons, tflow

from urlwarden import cli
from urlwarden.frontends.proxy.addon import UrlWarden
from urlwarden.frontends.proxy.tunnel import DOH_CANARY, TunnelGuard, is_doh_canary, put_before, tunnel_options
from urlwarden.config import WireGuardConfig, parse_config, parse_endpoint
from urlwarden.errors import ConfigError
from urlwarden.frontends.proxy.runner import wireguard_mode_args
from urlwarden.frontends.wireguard import (
    client_config, default_route_address, devices, endpoint_for, endpoint_is_guessed, load_or_create_keys,
    public_key, qr_svg, qr_terminal,
)

# RFC 7748 section 6.1 (Alice): the X25519 public key of this private key
RFC7748_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def config(text: str = "", tmp_path=None):
    state = f"state_dir: {tmp_path}\n" if tmp_path is not None else ""
    return parse_config(state + text)


# --- configuration ----------------------------------------------------------------------------

def test_wireguard_defaults():
    wg = config("listen: 127.0.0.1:8080\n").wireguard
    assert wg == WireGuardConfig()
    assert not wg.enabled and wg.listen == ("0.0.0.0", 51820) and wg.devices == ("device",)


def test_wireguard_section_is_read():
    wg = config("""
wireguard:
  enabled: true
  listen: 192.168.1.10:51000
  endpoint: home.example:52000
  devices: [phone, tv]
  keys_dir: /var/lib/urlwarden/wg
  name_servers: [192.168.1.1, "2001:db8::53"]
""").wireguard
    assert wg.enabled and wg.listen == ("192.168.1.10", 51000) and wg.endpoint == ("home.example", 52000)
    assert wg.devices == ("phone", "tv") and wg.keys_dir == "/var/lib/urlwarden/wg"
    assert wg.name_servers == ("192.168.1.1", "2001:db8::53")


@pytest.mark.parametrize(("text", "message"), [
    ("wireguard:\n  port: 1\n", "unknown key 'port'"),
    ("wireguard:\n  enabled: yes please\n", "wireguard.enabled: must be true or false"),
    ("wireguard:\n  listen: 51820\n", "wireguard.listen: must be HOST:PORT"),
    ("wireguard:\n  endpoint: a b\n", "wireguard.endpoint: must be HOST or HOST:PORT"),
    ("wireguard:\n  endpoint: host:0\n", "wireguard.endpoint: port must be from 1 to 65535"),
    ("wireguard:\n  devices: []\n", "wireguard.devices: must be a list of 1 to 32"),
    ("wireguard:\n  devices: [a, a]\n", "a device name is used twice"),
    ("wireguard:\n  devices: [../x]\n", "wireguard.devices[0]: must be a name"),
    ("wireguard:\n  keys_dir: a@b\n", "wireguard.keys_dir: must not contain '@'"),
    ("wireguard:\n  name_servers: [dns.example]\n", "wireguard.name_servers[0]: not an IP address"),
    ("wireguard:\n  listen: 0.0.0.0:65535\n  devices: [a, b]\n", "need ports up to 65536"),
])
def test_bad_wireguard_sections_name_the_key(text, message):
    with pytest.raises(ConfigError, match=r"<config>:\d+: .*" + message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        config(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("192.168.1.10", ("192.168.1.10", None)),
    ("192.168.1.10:51820", ("192.168.1.10", 51820)),
    ("home.example", ("home.example", None)),
    ("[2001:db8::1]:51820", ("2001:db8::1", 51820)),
    ("[2001:db8::1]", ("2001:db8::1", None)),
    ("2001:db8::1", ("2001:db8::1", None)),
])
def test_parse_endpoint(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "host:x", "[::1]x", "a/b", "host:70000", "user@host"])
def test_parse_endpoint_refuses(text):
    with pytest.raises(ValueError):
        parse_endpoint(text)


# --- keys and client configuration ---------------------------------------------------------------

def test_public_key_is_x25519():
    private = base64.b64encode(RFC7748_PRIVATE).decode()
    assert base64.b64decode(public_key(private)) == RFC7748_PUBLIC


def test_keys_are_created_private_and_kept(tmp_path):
    path = tmp_path / "wg" / "phone.json"
    keys = load_or_create_keys(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert set(json.loads(path.read_text())) == {"server_key", "client_key"}  # mitmproxy's format
    assert load_or_create_keys(path) == keys and keys.server_key != keys.client_key
    assert "<secret>" in repr(keys) and keys.client_key not in repr(keys)


@pytest.mark.parametrize("content", ["not json", '{"server_key": "x"}', '{"server_key": "AAAA", "client_key": "AAAA"}'])
def test_a_bad_key_file_is_reported_and_never_replaced(tmp_path, content):
    path = tmp_path / "phone.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=f"{path}: not a WireGuard key file"):
        load_or_create_keys(path)
    assert path.read_text() == content


def test_devices_get_consecutive_ports_and_own_key_files(tmp_path):
    cfg = config("wireguard:\n  listen: 10.1.1.1:51820\n  devices: [phone, tv, laptop]\n", tmp_path)
    got = [(d.name, d.keys_path, d.host, d.port) for d in devices(cfg)]
    folder = tmp_path / "wireguard"
    assert got == [("phone", folder / "phone.json", "10.1.1.1", 51820), ("tv", folder / "tv.json", "10.1.1.1", 51821),
                   ("laptop", folder / "laptop.json", "10.1.1.1", 51822)]


@pytest.mark.parametrize(("section", "override", "expected"), [
    ("listen: 10.1.1.1:51820", None, ["10.1.1.1:51820", "10.1.1.1:51821"]),  # no endpoint: the listen address
    ("endpoint: 192.0.2.1", None, ["192.0.2.1:51820", "192.0.2.1:51821"]),  # the listen ports
    ("endpoint: home.example:40000", None, ["home.example:40000", "home.example:40001"]),  # a forwarded port
    ("endpoint: 192.0.2.1", ("2001:db8::1", 1000), ["[2001:db8::1]:1000", "[2001:db8::1]:1001"]),
])
def test_endpoint_for(tmp_path, section, override, expected):
    cfg = config(f"wireguard:\n  {section}\n  devices: [phone, tv]\n", tmp_path)
    assert [endpoint_for(cfg, d, override) for d in devices(cfg)] == expected


def test_a_wildcard_listener_uses_the_default_route_address(tmp_path):
    cfg = config("wireguard:\n  devices: [phone, tv]\n", tmp_path)
    assert endpoint_for(cfg, devices(cfg)[1], detect=lambda: "192.168.1.10") == "192.168.1.10:51821"
    assert endpoint_is_guessed(cfg, devices(cfg)[0])
    with pytest.raises(ConfigError, match="set wireguard.endpoint"):
        endpoint_for(cfg, devices(cfg)[0], detect=lambda: None)


def test_default_route_address_is_an_address_or_none():
    address = default_route_address()
    assert address is None or not ipaddress.ip_address(address).is_loopback


def test_client_config_is_wg_quick(tmp_path):
    keys = load_or_create_keys(tmp_path / "k.json")
    text = client_config(keys, "192.0.2.1:51820", "phone")
    assert text.splitlines() == [
        "# urlwarden: phone", "[Interface]", f"PrivateKey = {keys.client_key}", "Address = 10.0.0.1/32",
        "DNS = 10.0.0.53", "", "[Peer]", f"PublicKey = {public_key(keys.server_key)}",
        "AllowedIPs = 0.0.0.0/0, ::/0", "Endpoint = 192.0.2.1:51820",
    ]


def test_qr_codes():
    assert qr_svg("text").startswith("<svg") and 'class="segno"' in qr_svg("text")
    drawn = qr_terminal("text")
    assert len(drawn.splitlines()) >= 10 and set(drawn) <= set(" \n\u2580\u2584\u2588")


# --- the command ----------------------------------------------------------------------------------

def write_config(tmp_path, section: str) -> str:
    path = tmp_path / "urlwarden.yaml"
    path.write_text(f"state_dir: state\nwireguard:\n{section}")
    return str(path)


def test_wireguard_client_prints_the_chosen_device(tmp_path, capsys):
    path = write_config(tmp_path, "  enabled: true\n  endpoint: 192.0.2.1\n  devices: [phone, tv]\n")
    assert cli.main(["wireguard-client", "--config", path, "--device", "tv"]) == 0
    out = capsys.readouterr()
    assert "# urlwarden: tv" in out.out and "Endpoint = 192.0.2.1:51821" in out.out and out.err == ""
    assert (tmp_path / "state" / "wireguard" / "tv.json").exists()
    assert cli.main(["wireguard-client", "--config", path, "--endpoint", "198.51.100.7:9", "--qr"]) == 0
    out = capsys.readouterr().out
    assert "Endpoint = 198.51.100.7:9" in out and "\u2580" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "fridge"], "--device: no device 'fridge' in wireguard.devices (phone)"),
    (["--endpoint", "a b"], "--endpoint: must be HOST or HOST:PORT"),
])
def test_wireguard_client_errors_are_one_line(tmp_path, capsys, args, message):
    path = write_config(tmp_path, "  devices: [phone]\n")
    assert cli.main(["wireguard-client", "--config", path, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("urlwarden: ") and message in err and err.count("\n") == 1


def test_wireguard_client_says_when_wireguard_is_off(tmp_path, capsys):
    path = write_config(tmp_path, "  endpoint: 192.0.2.1\n")
    assert cli.main(["wireguard-client", "--config", path]) == 0
    assert "wireguard.enabled is off" in capsys.readouterr().err


@pytest.mark.parametrize(("mode", "expected"), [
    ("wireguard", (None, None)),
    ("wireguard@51999", (None, 51999)),
    ("wireguard@192.168.1.10:51999", ("192.168.1.10", 51999)),
    ("WireGuard@[::]:51999", ("::", 51999)),
])
def test_run_mode_wireguard(mode, expected):
    assert cli._wireguard_mode(mode) == expected


@pytest.mark.parametrize("mode", ["wireguard:/tmp/k.json", "wireguard@x", "wireguard@:51820"])
def test_run_mode_wireguard_refuses(mode):
    with pytest.raises(ConfigError):
        cli._wireguard_mode(mode)


def test_mode_arguments(tmp_path):
    cfg = config("wireguard:\n  listen: 127.0.0.1:51000\n  devices: [phone, tv]\n", tmp_path)
    assert wireguard_mode_args(cfg, None) == []  # not enabled
    folder = tmp_path / "wireguard"
    assert wireguard_mode_args(cfg, (None, 52000)) == [
        "--mode", "regular",
        "--mode", f"wireguard:{folder / 'phone.json'}@127.0.0.1:52000",
        "--mode", f"wireguard:{folder / 'tv.json'}@127.0.0.1:52001",
    ]
    for spec in wireguard_mode_args(cfg, (None, None))[1::2]:
        mode_specs.ProxyMode.parse(spec)  # mitmproxy reads them as written
    assert (folder / "phone.json").exists() and (folder / "tv.json").exists()  # keys exist before mitmproxy starts


# --- the tunnel addon --------------------------------------------------------------------------

def test_strip_ech_cannot_be_turned_off(caplog):
    guard = TunnelGuard()
    with taddons.context(guard) as tctx:
        from mitmproxy.addons.strip_dns_https_records import StripDnsHttpsRecords

        tctx.master.addons.add(StripDnsHttpsRecords())
        tctx.configure(guard, strip_ech=False)
        assert tctx.options.strip_ech is True
        assert "strip_ech stays on" in caplog.text


def dns_flow(name: str, mode: str = "wireguard"):
    flow = tflow.tdnsflow()
    flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse(mode)
    flow.request.questions = [dns.Question(name, dns.types.A, dns.classes.IN)]
    flow.response = None
    return flow


@pytest.mark.parametrize("name", [DOH_CANARY, "USE-Application-DNS.net.", DOH_CANARY + "."])
def test_doh_canary_gets_nxdomain(name):
    flow = dns_flow(name)
    TunnelGuard().dns_request(flow)
    assert flow.response.response_code == dns.response_codes.NXDOMAIN and flow.response.answers == []


@pytest.mark.parametrize("name", ["example.test", "www.use-application-dns.net", "use-application-dns.net.test"])
def test_other_names_are_left_to_the_resolver(name):
    flow = dns_flow(name)
    TunnelGuard().dns_request(flow)
    assert flow.response is None and not is_doh_canary(name)


def test_guard_runs_before_the_resolver():
    class Addons:
        def __init__(self):
            self.resolver, self.other, self.guard = object(), object(), object()
            self.chain = [self.other, self.resolver, self.guard]

        def get(self, name):
            return self.resolver if name == "dnsresolver" else None

    addons = Addons()
    put_before(addons, addons.guard, "dnsresolver")
    assert addons.chain == [addons.other, addons.guard, addons.resolver]
    put_before(addons, addons.guard, "missing")  # nothing to order against: unchanged
    assert addons.chain == [addons.other, addons.guard, addons.resolver]


def test_name_servers_become_mitmproxy_options():
    assert tunnel_options(WireGuardConfig()) == {}
    assert tunnel_options(WireGuardConfig(name_servers=("192.168.1.1",))) == {"dns_name_servers": ["192.168.1.1"]}


@pytest.mark.parametrize(("mode", "address", "admitted"), [
    ("wireguard", "10.0.0.1", True),  # a tunnel client holds a device key: admitted whatever its address
    ("regular", "10.0.0.1", False),  # the same address on the proxy port: loopback-only by default
    ("regular", "127.0.0.1", True),
])
def test_tunnel_clients_are_admitted_by_mode(tmp_path, mode, address, admitted):
    (tmp_path / "block.txt").write_text("listed.test/\n")
    (tmp_path / "c.yaml").write_text("lists:\n  - path: block.txt\n")
    addon = UrlWarden()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_config=str(tmp_path / "c.yaml"))
        client = tflow.tclient_conn()
        client.proxy_mode = mode_specs.ProxyMode.parse(mode)
        client.peername = (address, 40000)
        addon.client_connected(client)
        assert (client.error is None) == admitted


@pytest.mark.parametrize(("mode", "host", "refused"), [
    ("wireguard", "127.0.0.1", True),  # e.g. the loopback-only admin listener: it shows every device's key
    ("wireguard", "127.8.9.10", True),
    ("wireguard", "::1", True),
    ("wireguard", "::ffff:127.0.0.1", True),
    ("wireguard", "0.0.0.0", True),  # connecting to 0.0.0.0 reaches this machine too
    ("wireguard", "localhost", True),
    ("wireguard", "198.51.100.10", False),
    ("wireguard", "192.168.1.10", False),  # the machine's LAN address: what listens there is for the LAN
    ("regular", "127.0.0.1", False),  # proxy clients are governed by access.allowed_clients
])
def test_tunnel_clients_cannot_reach_this_machines_loopback(mode, host, refused):
    assert connect_refused(mode, (host, 9181)) == refused


def connect_refused(mode: str, address: tuple[str, int]) -> bool:
    guard = TunnelGuard()
    with taddons.context(guard) as tctx:
        from mitmproxy.addons.dns_resolver import DnsResolver

        tctx.master.addons.add(DnsResolver())
        tctx.options.dns_name_servers = ["127.0.0.53"]
        client = tflow.tclient_conn()
        client.proxy_mode = mode_specs.ProxyMode.parse(mode)
        server = tflow.tserver_conn()
        server.address = address
        guard.server_connect(server_hooks.ServerConnectionHookData(server, client))
        return server.error is not None


@pytest.mark.parametrize(("address", "refused"), [
    (("127.0.0.53", 53), False),  # the resolver the tunnel's DNS forwards to (systemd-resolved, Pi-hole...)
    (("127.0.0.53", 80), True),
    (("127.0.0.1", 53), True),  # not a configured name server
])
def test_dns_forwarding_to_a_loopback_resolver_is_allowed(address, refused):
    assert connect_refused("wireguard", address) == refused


def test_wireguard_listeners_are_outside_the_proxy_listen_rule():
    from urlwarden.frontends.proxy.addon import custom_mode_hosts

    # The proxy's own listen rule (urlwarden.frontends.proxy.listenscope) still sees a wider regular listener.
    assert custom_mode_hosts(["regular@0.0.0.0:8080", "wireguard:/k/phone.json@0.0.0.0:51820", "regular"]) == [
        ("regular@0.0.0.0:8080", "0.0.0.0")]
