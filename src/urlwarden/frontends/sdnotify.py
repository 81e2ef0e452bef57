"""systemd's sd_notify protocol, without a dependency: tell the service manager our state.

With ``Type=notify`` systemd considers the service started only when it sends ``READY=1``, so
a unit ordered after urlwarden starts once the lists are loaded and the proxy listens. The
protocol (sd_notify(3)): one datagram of newline-separated ``KEY=VALUE`` assignments, sent to
the AF_UNIX datagram socket named by ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the
abstract namespace (the ``@`` stands for a leading NUL byte).

Usage::

    sdnotify.ready()                         # lists loaded, proxy listening
    sdnotify.status("3 lists, 120000 entries")
    sdnotify.reloading()                     # on SIGHUP, before reloading; then ready() again
    sdnotify.stopping()                      # on SIGTERM

Every function returns True when the message was sent and False otherwise: without
``$NOTIFY_SOCKET`` (not run by systemd, or not ``Type=notify``), with an address this module
does not speak (``vsock:``), or when sending failed. It never raises and never blocks for long
(`SEND_TIMEOUT`). The variable is left in the environment, so a later reload can notify too.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

__all__ = ["SEND_TIMEOUT", "notify", "ready", "reloading", "status", "stopping"]

SEND_TIMEOUT = 1.0
"""Seconds one notification may take; systemd reads its socket promptly."""

MAX_STATUS_CHARS = 1024
"""A ``STATUS=`` text is cut to this length (systemd shows one line in ``systemctl status``)."""


def _address(name: str) -> str | bytes | None:
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    if name.startswith("/"):
        return name
    return None  # "vsock:..." and anything else: not spoken here


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `state` (``"READY=1"``, or several assignments separated by newlines) to the
    socket in ``$NOTIFY_SOCKET`` (read from `env`, default ``os.environ``). True when sent."""
    name = (os.environ if env is None else env).get("NOTIFY_SOCKET")
    if not name:
        return False
    address = _address(name)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except (OSError, UnicodeError):
        return False
    return True


def ready(env: Mapping[str, str] | None = None) -> bool:
    """``READY=1``: startup (or a reload) is complete."""
    return notify("READY=1", env)


def reloading(env: Mapping[str, str] | None = None) -> bool:
    """``RELOADING=1`` with ``MONOTONIC_USEC`` (CLOCK_MONOTONIC in µs), as systemd 253+ expects
    of ``Type=notify-reload`` services (older ones ignore the extra field). Send `ready` when
    the reload is done, whether it succeeded or the old configuration stays."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}", env)


def stopping(env: Mapping[str, str] | None = None) -> bool:
    """``STOPPING=1``: shutdown has begun."""
    return notify("STOPPING=1", env)


def status(text: str, env: Mapping[str, str] | None = None) -> bool:
    """``STATUS=<text>``: a one-line state shown by ``systemctl status`` (newlines become
    spaces; at most `MAX_STATUS_CHARS` characters). Never put a URL or host name in it."""
    line = " ".join(text.splitlines())[:MAX_STATUS_CHARS]
    return notify(f"STATUS={line}", env)
