"""WireGuard mode with a real WireGuard client (wireguard-go + wg) in a network namespace.

    client namespaces                             proxy namespace ("px")
    "cl" (device phone)  10.77.0.2 --- veth ---   10.77.0.1   urlwarden run --mode wireguard
    "c2" (device tv)     10.77.1.2 --- veth ---   10.77.1.1     WireGuard (UDP) on 0.0.0.0:51820 (phone)
    "c3" (device laptop) 10.77.2.2 --- veth ---   10.77.2.1     and :51821 (tv); proxy 127.0.0.1:8080
    each: a wireguard-go interface, 10.0.0.1/32,              a second one with https.intercept none:
    routes 198.51.100.10, 10.0.0.53 -> it                       WireGuard :51830 (laptop); proxy :8081
                                                              origin 198.51.100.10 (on lo): HTTP :80, HTTPS :443

The client is configured only from ``urlwarden wireguard-client`` output (``wg setconf`` takes
the [Interface]/[Peer] keys; Address and DNS, which are wg-quick's, are applied with ``ip``).
It knows no proxy: it connects to the origin's address through the tunnel, and mitmproxy's
WireGuard server connects to that address in the proxy's namespace, where the origin listens.
Two devices of one proxy (phone and tv) are used in turn, each with its own keys and port; the
third client shows the ``https.intercept: none`` behaviour over WireGuard.
The proxy keeps the embedded default's loopback-only ``access.allowed_clients``: tunnel
clients must be admitted by their mode. ``--set strip_ech=false`` is passed on purpose: it must
be overridden.

Needs root, iproute2, wireguard-go and wireguard-tools (scripts/system-deps) and /dev/net/tun;
skipped otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.certs import make_test_pki
from tests.support.netns import (
    Lab, NetnsOrigin, NetnsProxyProcess, netns_unavailable_reason, ns_curl, ns_curl_sha256,
)
from tests.support.origin import pattern_sha256
from tests.support.procmem import PeakRss

_REASON = netns_unavailable_reason()
if _REASON is None:
    for _program, _package in (("wireguard-go", "wireguard-go"), ("wg", "wireguard-tools")):
        if shutil.which(_program) is None:
            _REASON = f"`{_program}` not found (install {_package}; scripts/system-deps does)"
if _REASON is None and not os.path.exists("/dev/net/tun"):
    _REASON = "/dev/net/tun is missing (wireguard-go needs a TUN device)"
if _REASON is not None:
    pytest.skip(f"WireGuard namespace tests: {_REASON}", allow_module_level=True)

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
LINKS = {"cl": ("10.77.0.2", "10.77.0.1"), "c2": ("10.77.1.2", "10.77.1.1"), "c3": ("10.77.2.2", "10.77.2.1")}
PROXY_ADDR = LINKS["cl"][1]
ORIGIN_ADDR = "198.51.100.10"
TUNNEL_ADDR, TUNNEL_DNS = "10.0.0.1/32", "10.0.0.53"
WG_PORT, PROXY_PORT = 51820, 8080
WG_PORT_NONE, PROXY_PORT_NONE = 51830, 8081
BLOCK_STATUS = 451
CURL_TIMEOUT = 8
WG_START_TIMEOUT = 10.0

BLOCK_LIST = """\
# synthetic test list
listed.test/
paths.test/folder/
"""
HOSTS = {name: ORIGIN_ADDR for name in ("listed.test", "paths.test", "unlisted.test")}


def write_config(directory: Path, *, proxy_port: int, wg_port: int, devices: str, https: str = "") -> Path:
    (directory / "block.txt").write_text(BLOCK_LIST)
    config = directory / "urlwarden.yaml"
    config.write_text(f"""
listen: 127.0.0.1:{proxy_port}
operator:
  name: Test Home
  url: https://operator.example/about
state_dir: state
{https}
wireguard:
  listen: 0.0.0.0:{wg_port}
  endpoint: {PROXY_ADDR}
  devices: [{devices}]
lists:
  - name: hotline
    path: block.txt
""")
    return config


def setconf_text(wg_quick: str) -> tuple[str, list[str]]:
    """wg-quick text -> (what `wg setconf` accepts, the Address values)."""
    kept, addresses = [], []
    for line in wg_quick.splitlines():
        key = line.partition("=")[0].strip().lower()
        if key == "address":
            addresses += [a.strip() for a in line.partition("=")[2].split(",")]
        elif key not in ("dns", "mtu"):
            kept.append(line)
    return "\n".join(kept) + "\n", addresses


def dns_query(sock, name: str, qtype: int = 1) -> tuple[int, int]:
    """Send one DNS query over `sock` (UDP, connected); (response code, answer count)."""
    ident = random.randrange(1 << 16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    sock.send(struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, 1))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = sock.recv(4096)
        got_id, flags, _, answers = struct.unpack("!HHHH", data[:8])
        if got_id == ident:
            return flags & 0xF, answers
    raise AssertionError(f"no DNS answer for {name}")


class UpstreamDnsRecorder:
    """A UDP socket on 127.0.0.1:53 in the proxy's namespace (where its resolv.conf points) that
    records every query reaching it and answers none."""

    def __init__(self, ns):
        self.queries: list[bytes] = []
        self._sock = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 53))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upstream-dns", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.queries.append(self._sock.recv(4096))
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"), list(HOSTS))


@pytest.fixture(scope="module")
def lab():
    with Lab(prefix="uwwg") as running:
        proxy_ns = running.namespace("px")
        running.clients = {}
        for role, (client_addr, proxy_addr) in LINKS.items():
            client = running.namespace(role)
            running.link(client, "px0", f"{client_addr}/24", proxy_ns, f"{role}0", f"{proxy_addr}/24")
            client.etc_hosts(HOSTS)
            running.clients[role] = client
        proxy_ns.ip("addr", "add", f"{ORIGIN_ADDR}/32", "dev", "lo")
        proxy_ns.etc_hosts(HOSTS)  # the tunnel's DNS: the proxy machine's resolver (its hosts file)
        running.proxy_ns = proxy_ns
        running.upstream_dns = UpstreamDnsRecorder(proxy_ns)  # the resolver's "nameserver 127.0.0.1"
        running.client = running.clients["cl"]
        try:
            yield running
        finally:
            running.upstream_dns.close()


@pytest.fixture(scope="module")
def origin(lab, pki):
    with NetnsOrigin(pki, lab.proxy_ns) as running:
        yield running


@pytest.fixture
def fresh_origin(origin):
    origin.reset()
    return origin


def start_proxy(lab, pki, workdir: Path, config: Path, port: int, *extra: str) -> NetnsProxyProcess:
    argv = [URLWARDEN, "run", "--config", str(config), "--mode", "wireguard", "--",
            "--set", f"confdir={workdir / 'conf'}",
            "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}", *extra]
    process = NetnsProxyProcess(lab.proxy_ns, argv, port, workdir=workdir)
    process.start()
    process.config = config
    process.ca = workdir / "conf" / "mitmproxy-ca-cert.pem"
    return process


@pytest.fixture(scope="module")
def proxy(lab, pki, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("px")
    config = write_config(workdir, proxy_port=PROXY_PORT, wg_port=WG_PORT, devices="phone, tv")
    process = start_proxy(lab, pki, workdir, config, PROXY_PORT, "--set", "strip_ech=false")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def proxy_none(lab, pki, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("px-none")
    config = write_config(workdir, proxy_port=PROXY_PORT_NONE, wg_port=WG_PORT_NONE, devices="laptop",
                          https="https:\n  intercept: none\n  uninspected: pass")
    process = start_proxy(lab, pki, workdir, config, PROXY_PORT_NONE)
    try:
        yield process
    finally:
        process.stop()


def connect_device(lab, proxy, role: str, device: str):
    """wireguard-go in a client namespace, configured from `urlwarden wireguard-client`."""
    endpoint = LINKS[role][1]
    done = subprocess.run([URLWARDEN, "wireguard-client", "--config", str(proxy.config), "--device", device,
                           "--endpoint", endpoint], capture_output=True, text=True, timeout=30, check=True)
    setconf, addresses = setconf_text(done.stdout)
    assert addresses == [TUNNEL_ADDR] and f"Endpoint = {endpoint}:" in done.stdout
    conf_file = proxy.workdir / f"{role}-wg.conf"
    conf_file.write_text(setconf)
    conf_file.chmod(0o600)
    client = lab.clients[role]
    # wireguard-go's control socket (/var/run/wireguard/NAME.sock) is shared by every namespace:
    # the interface name must be unique on the machine.
    ifname = f"uwwg{os.getpid() % 100000}{role}"
    env = {**os.environ, "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    client.popen(["wireguard-go", "-f", ifname], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + WG_START_TIMEOUT
    while client.ip("link").stdout.find(f" {ifname}:") < 0:
        assert time.monotonic() < deadline, f"wireguard-go did not create {ifname}"
        time.sleep(0.05)
    client.run(["wg", "setconf", ifname, str(conf_file)])
    for address in addresses:
        client.ip("addr", "add", address, "dev", ifname)
    client.ip("link", "set", ifname, "up")
    client.ip("route", "add", f"{ORIGIN_ADDR}/32", "dev", ifname)
    client.ip("route", "add", f"{TUNNEL_DNS}/32", "dev", ifname)
    return client


@pytest.fixture(scope="module")
def tunnel(lab, proxy):
    return connect_device(lab, proxy, "cl", "phone")


@pytest.fixture(scope="module")
def tunnel_tv(lab, proxy):
    return connect_device(lab, proxy, "c2", "tv")


@pytest.fixture(scope="module")
def tunnel_none(lab, proxy_none):
    return connect_device(lab, proxy_none, "c3", "laptop")


def tunnel_curl(lab, *args: str, role: str = "cl"):
    return ns_curl(lab.clients[role], "--connect-timeout", "5", *args, timeout=CURL_TIMEOUT)


def test_the_client_configuration_is_complete(proxy):
    done = subprocess.run([URLWARDEN, "wireguard-client", "--config", str(proxy.config), "--qr"],
                          capture_output=True, text=True, timeout=30, check=True)
    for key in ("[Interface]", "PrivateKey = ", "Address = 10.0.0.1/32", "DNS = 10.0.0.53", "[Peer]",
                "PublicKey = ", "AllowedIPs = 0.0.0.0/0, ::/0", f"Endpoint = {PROXY_ADDR}:{WG_PORT}"):
        assert key in done.stdout
    assert "\u2580" in done.stdout or "\u2584" in done.stdout  # the QR code's half blocks
    key_file = proxy.config.parent / "state" / "wireguard" / "phone.json"
    assert key_file.stat().st_mode & 0o077 == 0  # the device key is private to its owner


def test_listed_url_gets_the_block_page_and_the_origin_sees_nothing(tunnel, lab, fresh_origin):
    result = tunnel_curl(lab, "-H", "Accept: text/html", "http://listed.test/")
    fresh_origin.wait_idle()
    assert result.status == BLOCK_STATUS, f"{result.status} exit {result.exit_code}: {result.stderr}"
    assert "Test Home" in result.text
    assert fresh_origin.connections == []


def test_unlisted_url_reaches_its_origin(tunnel, lab, fresh_origin):
    result = tunnel_curl(lab, "http://unlisted.test/page")
    assert result.status == 200, f"{result.status} exit {result.exit_code}: {result.stderr}"
    fresh_origin.wait_idle()
    assert [(r.host, r.target) for r in fresh_origin.requests] == [("unlisted.test", "/page")]


def test_https_with_the_ca_gets_the_block_page(tunnel, lab, proxy, fresh_origin):
    result = tunnel_curl(lab, "--cacert", str(proxy.ca), "-H", "Accept: text/html", "https://paths.test/folder/x")
    fresh_origin.wait_idle()
    assert result.status == BLOCK_STATUS, f"{result.status} exit {result.exit_code}: {result.stderr}"
    assert fresh_origin.requests == []


def test_https_without_the_ca_listed_host_is_refused_without_contact(tunnel, lab, pki, fresh_origin):
    # The device trusts only the origin's own CA: interception cannot show a page it accepts.
    result = tunnel_curl(lab, "--cacert", str(pki.ca_cert), "https://listed.test/")
    fresh_origin.wait_idle()
    assert result.status is None and result.exit_code != 0
    assert fresh_origin.connections == []


def test_https_unlisted_host_passes_through_untouched(tunnel, lab, pki, fresh_origin):
    result = tunnel_curl(lab, "--cacert", str(pki.ca_cert), "https://unlisted.test/")
    assert result.status == 200, f"{result.status} exit {result.exit_code}: {result.stderr}"
    fresh_origin.wait_idle()
    (conn,) = fresh_origin.connections
    assert conn.sni == "unlisted.test" and conn.tls_ok


def test_tunnel_dns_answers_names_but_not_the_doh_canary(tunnel, lab):
    sock = lab.client.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(5)
        sock.connect((TUNNEL_DNS, 53))
        assert dns_query(sock, "unlisted.test") == (0, 1)  # NOERROR, one address: the DNS path works
        for qtype in (1, 28):  # A, AAAA
            rcode, answers = dns_query(sock, "use-application-dns.net", qtype)
            assert (rcode, answers) == (3, 0)  # NXDOMAIN: Firefox keeps automatic DoH off
    finally:
        sock.close()
    # answered before mitmproxy's resolver could ask upstream for it
    assert not [q for q in lab.upstream_dns.queries if b"use-application-dns" in q]


def test_strip_ech_cannot_be_turned_off(proxy, tunnel):
    assert "strip_ech stays on" in proxy.output()


def test_two_devices_are_served_side_by_side(tunnel, tunnel_tv, lab, fresh_origin):
    # One client key shared by two devices would take turns: each handshake steals the other's
    # replies. Each device has its own listener, so both keep working, in any order.
    for role in ("cl", "c2", "cl", "c2"):
        result = tunnel_curl(lab, f"http://unlisted.test/{role}", role=role)
        assert result.status == 200, f"{role}: {result.status} exit {result.exit_code}: {result.stderr}"
    blocked = tunnel_curl(lab, "-H", "Accept: text/html", "http://listed.test/", role="c2")
    assert blocked.status == BLOCK_STATUS
    fresh_origin.wait_idle()
    assert [r.target for r in fresh_origin.requests] == ["/cl", "/c2", "/cl", "/c2"]


def test_intercept_none_whole_listed_host_is_refused(tunnel_none, lab, pki, fresh_origin):
    result = tunnel_curl(lab, "--cacert", str(pki.ca_cert), "https://listed.test/", role="c3")
    fresh_origin.wait_idle()
    assert result.status is None and result.exit_code != 0
    assert fresh_origin.connections == []


def test_intercept_none_path_listed_host_passes_uninspected(tunnel_none, lab, pki, fresh_origin):
    # uninspected: pass (documented: under-blocks); the device sees the origin's own certificate
    result = tunnel_curl(lab, "--cacert", str(pki.ca_cert), "https://paths.test/folder/x", role="c3")
    assert result.status == 200, f"{result.status} exit {result.exit_code}: {result.stderr}"
    fresh_origin.wait_idle()
    (conn,) = fresh_origin.connections
    assert conn.sni == "paths.test" and conn.tls_ok


def test_intercept_none_plain_http_is_still_inspected(tunnel_none, lab, fresh_origin):
    result = tunnel_curl(lab, "-H", "Accept: text/html", "http://paths.test/folder/x", role="c3")
    fresh_origin.wait_idle()
    assert result.status == BLOCK_STATUS and fresh_origin.connections == []


STREAM_BYTES = 64 * 1024 * 1024
"""Through wireguard-go (userspace) and mitmproxy's WireGuard stack: a few seconds."""
STREAM_MEMORY_SLACK_KB = 100 * 1024


@pytest.mark.parametrize("scheme, host", [("http", "unlisted.test"), ("https", "paths.test")])
def test_large_download_streams_through_the_tunnel_in_flat_memory(tunnel, lab, proxy, fresh_origin, scheme, host):
    """WireGuard traffic reaches the same HTTP layer (intercepted HTTPS here: paths.test has
    listed paths): its bodies stream too, checksummed end to end, the proxy's memory flat."""
    with PeakRss(proxy.pid) as rss:
        received = ns_curl_sha256(lab.client, f"{scheme}://{host}/stream/{STREAM_BYTES}", "--cacert", str(proxy.ca),
                                  timeout=90)
    assert received == (STREAM_BYTES, pattern_sha256(STREAM_BYTES))
    fresh_origin.wait_idle()
    assert [(r.host, r.target) for r in fresh_origin.requests] == [(host, f"/stream/{STREAM_BYTES}")]
    assert rss.growth_kb < STREAM_MEMORY_SLACK_KB, f"the proxy grew {rss.describe()}"
