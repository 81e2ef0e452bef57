"""Network helpers shared by the configuration, the admin listener, the Squid block page server
and the http feed adapter (one definition of "loopback" for every rule that depends on it)."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether `host` is ``localhost`` or a loopback address (127.0.0.0/8, ::1).

    `host` is a bare host: no brackets around an IPv6 address, no port, and ``localhost`` in
    lower case (callers normalize what they read: a Host header, a URL, a listen address).
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
