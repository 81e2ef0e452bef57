"""The addon's part for devices that send everything through a tunnel (WireGuard mode).

A phone or TV in WireGuard mode has no proxy setting: its browser resolves names with the
tunnel's DNS (answered by the proxy, see `urlwarden.frontends.wireguard`) and opens TLS connections to
addresses. Filtering then depends on two things the browser could otherwise take away:

* **The SNI.** urlwarden decides per host at the TLS ClientHello. With Encrypted ClientHello
  (ECH) the real host name is encrypted and only a provider's shared front name is visible.
  Browsers use ECH only when the DNS HTTPS record carries an ECH key, and mitmproxy's
  ``strip_ech`` option (on by default) removes those keys from the DNS answers it relays.
  `TunnelGuard.configure` keeps it on: a configuration that turns it off is overridden, with a
  warning.
* **The DNS.** Firefox turns on DNS over HTTPS by itself in some regions; then it no longer
  asks the tunnel's DNS at all (and could get ECH keys from its DoH provider). It keeps
  automatic DoH off when the network's resolver says that the canary name
  ``use-application-dns.net`` does not exist (NXDOMAIN, or no A/AAAA record); `TunnelGuard`
  answers every query for it with NXDOMAIN, before mitmproxy's resolver would ask upstream.

Clients that came in through a WireGuard listener are admitted whatever ``access.allowed_clients``
says (`is_tunnel_client`): the WireGuard handshake has already proven they hold a device key, and
their tunnel address (10.0.0.1) is the same for every device.

A tunnel client chooses the destination address of every packet it sends, and mitmproxy connects
to that address from the proxy machine itself. A device could thus address 127.0.0.1 and reach
services that listen on the proxy machine's loopback only, the admin listener among them (its
home page shows every device's key). `TunnelGuard.server_connect` refuses server connections of
tunnel clients to loopback and unspecified addresses, except DNS to the name servers the tunnel's
DNS is answered with (mitmproxy forwards queries other than A/AAAA there, and a machine's
resolver is often on loopback: systemd-resolved, a local Pi-hole).
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from mitmproxy import ctx, dns
from mitmproxy.connection import Client
from mitmproxy.proxy import mode_specs, server_hooks

from urlwarden.config import Config, WireGuardConfig
from urlwarden.errors import UrlwardenError
from urlwarden.frontends.wireguard import Device, client_config, endpoint_for, load_or_create_keys

__all__ = [
    "DOH_CANARY", "TunnelGuard", "is_doh_canary", "is_this_machine_only", "is_tunnel_client", "listeners",
    "put_before", "tunnel_options", "wireguard_devices",
]

log = logging.getLogger("urlwarden")

DOH_CANARY = "use-application-dns.net"
"""Firefox's canary name: no address for it means "this network filters, keep DoH off"."""


def is_tunnel_client(client: Client) -> bool:
    """Whether `client` came in through a WireGuard listener (authenticated by its key)."""
    return isinstance(getattr(client, "proxy_mode", None), mode_specs.WireGuardMode)


def is_this_machine_only(host: object) -> bool:
    """Whether a destination address reaches only the proxy machine itself: loopback
    (127.0.0.0/8, ::1, IPv4-mapped too), ``localhost``, or unspecified (0.0.0.0, ::)."""
    if not isinstance(host, str):
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    ip = mapped or ip
    return ip.is_loopback or ip.is_unspecified


def is_doh_canary(name: str | None) -> bool:
    return isinstance(name, str) and name.rstrip(".").lower() == DOH_CANARY


def tunnel_options(wireguard: WireGuardConfig) -> dict[str, object]:
    """mitmproxy options that follow from the ``wireguard`` configuration section."""
    if wireguard.name_servers:
        return {"dns_name_servers": list(wireguard.name_servers)}
    return {}


def listeners(master) -> list[tuple[object, tuple[str, int]]]:
    """(mode, (host, port)) of every running proxy listener."""
    proxyserver = master.addons.get("proxyserver")
    out = []
    for server in getattr(proxyserver, "servers", []):
        for address in getattr(server, "listen_addrs", ()):
            out.append((server.mode, (address[0], address[1])))
    return out


def wireguard_devices(config: Config, running: list[tuple[object, tuple[str, int]]],
                      confdir: str) -> tuple[list[dict[str, str]], str | None]:
    """The running WireGuard listeners as home page facts (name, listen, endpoint, client
    configuration), and why none can be shown (None when all is well)."""
    devices, problem = [], None
    wireguard = [(mode, address) for mode, address in running if isinstance(mode, mode_specs.WireGuardMode)]
    for index, (mode, (host, port)) in enumerate(wireguard):
        keys_path = Path(mode.data).expanduser() if mode.data else Path(confdir).expanduser() / "wireguard.conf"
        device = Device(keys_path.stem, keys_path, host, port)
        try:
            endpoint = endpoint_for(config, device, index=index)
            text = client_config(load_or_create_keys(keys_path), endpoint, device.name)
        except UrlwardenError as exc:
            problem = str(exc)
            continue
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        devices.append({"name": device.name, "listen": listen, "endpoint": endpoint, "config": text})
    return devices, problem


def _name_servers() -> list[str]:
    """The name servers mitmproxy's resolver forwards to (its own list when it is loaded)."""
    resolver = ctx.master.addons.get("dnsresolver") if getattr(ctx, "master", None) else None
    if resolver is not None:
        return list(resolver.name_servers())
    return list(ctx.options.dns_name_servers) if "dns_name_servers" in ctx.options else []


def put_before(addons, addon, name: str) -> None:
    """Move `addon` (already added) in front of the addon called `name` in the chain, so its hooks
    run first; a no-op when either is missing."""
    chain = addons.chain
    other = addons.get(name)
    if addon in chain and other in chain:
        chain.remove(addon)
        chain.insert(chain.index(other), addon)


class TunnelGuard:
    """Keeps ``strip_ech`` on, answers the DoH canary with NXDOMAIN, and keeps tunnel clients off
    the proxy machine's loopback (see the module docstring)."""

    def configure(self, updated: set[str]) -> None:
        if "strip_ech" in ctx.options and not ctx.options.strip_ech:
            log.warning("strip_ech stays on: without it browsers may encrypt the host name (ECH) and "
                        "urlwarden could not see which site a connection is for")
            ctx.options.update(strip_ech=True)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        try:
            address = data.server.address
            refuse = is_tunnel_client(data.client) and address is not None and is_this_machine_only(address[0])
            if refuse and address[1] == 53 and address[0] in _name_servers():
                refuse = False  # the tunnel's own DNS, forwarded by mitmproxy's resolver
        except Exception as exc:  # refuse when unsure: the destination is the proxy machine's own
            log.error("internal error in tunnel server_connect (%s)", type(exc).__name__)
            refuse = True
        if refuse:
            data.server.error = "refused by urlwarden: a tunnel client may not reach this machine's loopback"

    def dns_request(self, flow: dns.DNSFlow) -> None:
        try:
            question = flow.request.question
            if question is not None and is_doh_canary(question.name):
                flow.error = None
                flow.response = flow.request.fail(dns.response_codes.NXDOMAIN)
        except Exception as exc:  # a malformed query: leave it to mitmproxy (it answers FORMERR)
            log.error("internal error in dns_request (%s)", type(exc).__name__)
