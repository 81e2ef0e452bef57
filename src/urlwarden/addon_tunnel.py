"""The addon's part for devices that send everything through a tunnel (WireGuard mode).

A phone or TV in WireGuard mode has no proxy setting: its browser resolves names with the
tunnel's DNS (answered by the proxy, see `urlwarden.wireguard`) and opens TLS connections to
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
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, dns
from mitmproxy.connection import Client
from mitmproxy.proxy import mode_specs

from .config import WireGuardConfig

__all__ = ["DOH_CANARY", "TunnelGuard", "is_doh_canary", "is_tunnel_client", "put_before", "tunnel_options"]

log = logging.getLogger("urlwarden")

DOH_CANARY = "use-application-dns.net"
"""Firefox's canary name: no address for it means "this network filters, keep DoH off"."""


def is_tunnel_client(client: Client) -> bool:
    """Whether `client` came in through a WireGuard listener (authenticated by its key)."""
    return isinstance(getattr(client, "proxy_mode", None), mode_specs.WireGuardMode)


def is_doh_canary(name: str | None) -> bool:
    return isinstance(name, str) and name.rstrip(".").lower() == DOH_CANARY


def tunnel_options(wireguard: WireGuardConfig) -> dict[str, object]:
    """mitmproxy options that follow from the ``wireguard`` configuration section."""
    if wireguard.name_servers:
        return {"dns_name_servers": list(wireguard.name_servers)}
    return {}


def put_before(addons, addon, name: str) -> None:
    """Move `addon` (already added) in front of the addon called `name` in the chain, so its hooks
    run first; a no-op when either is missing."""
    chain = addons.chain
    other = addons.get(name)
    if addon in chain and other in chain:
        chain.remove(addon)
        chain.insert(chain.index(other), addon)


class TunnelGuard:
    """Keeps ``strip_ech`` on and answers the DoH canary with NXDOMAIN (see the module docstring)."""

    def configure(self, updated: set[str]) -> None:
        if "strip_ech" in ctx.options and not ctx.options.strip_ech:
            log.warning("strip_ech stays on: without it browsers may encrypt the host name (ECH) and "
                        "urlwarden could not see which site a connection is for")
            ctx.options.update(strip_ech=True)

    def dns_request(self, flow: dns.DNSFlow) -> None:
        try:
            question = flow.request.question
            if question is not None and is_doh_canary(question.name):
                flow.error = None
                flow.response = flow.request.fail(dns.response_codes.NXDOMAIN)
        except Exception as exc:  # a malformed query: leave it to mitmproxy (it answers FORMERR)
            log.error("internal error in dns_request (%s)", type(exc).__name__)
