"""Which protocols may reach a host, by what the lists say about the host. Free of mitmproxy.

urlwarden can only check what it parses: HTTP requests (HTTP/1, HTTP/2, HTTP/3, each request
line, Host and :authority), and the opening request of a WebSocket. Everything else a proxy can
carry is bytes it relays without reading them: raw TCP (mitmproxy's ``rawtcp`` fallback when the
first bytes of a tunnel do not look like HTTP), TLS passed through, the connection after an
HTTP ``Upgrade`` other than WebSocket, UDP and QUIC it does not parse. A listed path can hide in
any of those, so the rule is one table, applied where the proxy opens a server connection:

=========  ============  =========  ================  ===========  ==============  ======
host       checked HTTP  WebSocket  TLS passthrough   raw TCP      other Upgrade   UDP
=========  ============  =========  ================  ===========  ==============  ======
CLEAN      yes           yes        yes               yes          yes             yes
PATHS      yes           yes        only ``pass``     no           no              no
UNKNOWN    yes           yes        only ``pass``     no           no              no
WHOLE      no            no         no                no           no              no
=========  ============  =========  ================  ===========  ==============  ======

* CLEAN: no list names the host or a parent of it, so nothing on it can be blocked.
* PATHS: the host has path-level entries; only traffic checked request by request may reach
  it. ``only pass``: with ``https.intercept: none`` the operator may choose
  ``https.uninspected: pass`` (documented as under-blocking, and counted).
* UNKNOWN: a list without host keys cannot rule the host out; it is treated like PATHS.
  A host name that cannot even be parsed is UNKNOWN too: when in doubt, fail closed.
* WHOLE: every URL on the host is blocked: a connection to it carries nothing (an HTTP
  request to it gets the block page without any connection being opened).
"""

from __future__ import annotations

import enum

from urlwarden.core.matcher import HostStatus

__all__ = ["WEBSOCKET_TOKEN", "Carrier", "allowed_carriers", "may_reach", "may_upgrade"]


class Carrier(enum.Enum):
    """How bytes would reach a host through the proxy."""

    HTTP = "http"  # requests urlwarden parsed and checked, one by one
    WEBSOCKET = "websocket"  # a WebSocket whose opening request was checked
    TLS_PASSTHROUGH = "tls"  # a TLS connection relayed without interception
    TCP = "tcp"  # raw TCP: bytes that did not look like HTTP, relayed unread
    UPGRADE = "upgrade"  # the connection after an HTTP Upgrade other than WebSocket (h2c, ...)
    UDP = "udp"  # raw UDP and QUIC that is not parsed as HTTP/3


_CHECKED = frozenset({Carrier.HTTP, Carrier.WEBSOCKET})

_TABLE: dict[HostStatus, frozenset[Carrier]] = {
    HostStatus.CLEAN: frozenset(Carrier),
    HostStatus.PATHS: _CHECKED,
    HostStatus.UNKNOWN: _CHECKED,
    HostStatus.WHOLE: frozenset(),
}


def allowed_carriers(status: HostStatus, *, uninspected_pass: bool = False) -> frozenset[Carrier]:
    """The carriers that may reach a host of this status.

    `uninspected_pass`: the operator's ``https.intercept: none`` + ``https.uninspected: pass``,
    which lets TLS to a host with path-level entries through unread (never to a WHOLE host).
    """
    allowed = _TABLE[status]
    if uninspected_pass and status in (HostStatus.PATHS, HostStatus.UNKNOWN):
        allowed = allowed | {Carrier.TLS_PASSTHROUGH}
    return allowed


def may_reach(status: HostStatus, carrier: Carrier, *, uninspected_pass: bool = False) -> bool:
    """Whether `carrier` may carry bytes to a host of this status."""
    return carrier in allowed_carriers(status, uninspected_pass=uninspected_pass)


WEBSOCKET_TOKEN = "websocket"


def may_upgrade(status: HostStatus, upgrade_header: str | None) -> bool:
    """Whether a request with this ``Upgrade`` header value (None: none) may be sent to the host.

    Only a plain ``websocket`` (any case, surrounding blanks) is a checked WebSocket; any other
    value, a list of protocols included (``websocket, h2c``: the server may pick h2c), would
    turn the connection into bytes relayed unread after a 101.
    """
    if upgrade_header is None:
        return True
    if upgrade_header.strip().lower() == WEBSOCKET_TOKEN:
        return may_reach(status, Carrier.WEBSOCKET)
    return may_reach(status, Carrier.UPGRADE)
