"""Network helpers shared by the configuration, the admin listener, the Squid block page server
and the http feed adapter (one definition of "loopback" for every rule that depends on it)."""

from __future__ import annotations

import ipaddress
import os
import socket

__all__ = ["cannot_listen", "is_loopback"]


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


def cannot_listen(host: str, port: int) -> str | None:
    """Why a TCP listener on (host, port) cannot be opened now, e.g. "address already in use";
    None when it can. Binds a socket with SO_REUSEADDR (as asyncio's and the admin listener's
    servers do, so a port in TIME_WAIT is not mistaken for one in use), then closes it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        return (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
    return None
