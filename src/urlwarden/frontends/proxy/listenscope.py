"""Where the proxy may listen: never wider than the configuration's ``listen``.

The configuration's ``listen`` (or ``urlwarden run --listen``) says where the proxy listens,
also when the addon runs inside plain mitmproxy (``mitmdump -s addons/urlwarden.py``), whose
own default is every address. mitmproxy's options decide the actual sockets: ``listen_host``,
``listen_port``, and a ``MODE@HOST:PORT`` suffix on a ``mode``. The rule, applied before the
proxy binds (`plan_listen`):

* An option the user did not set takes the configuration's value.
* A host the user did set (``listen_host`` or a mode's ``@HOST``) is kept when it is no wider
  than the configuration's: the same address, a loopback address (only this machine can reach
  it), or anything when the configuration itself says every address (``0.0.0.0``, ``::``).
  Otherwise start-up is refused with one line (`ListenTooWide`): widening what the
  configuration says takes an edit of the configuration, not a command-line option that may
  have been left in a unit file or a mitmproxy config.yaml.
* Ports are the user's to choose: a port changes where the proxy is, not who can reach it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from urlwarden.errors import ConfigError
from urlwarden.core.netutil import is_loopback

__all__ = ["ListenPlan", "ListenTooWide", "WILDCARD_HOSTS", "plan_listen", "within"]

WILDCARD_HOSTS = ("", "0.0.0.0", "::")
"""Hosts that mean "every address" to mitmproxy (the empty string is its default)."""


class ListenTooWide(ConfigError):
    """A listen address the user set would expose the proxy beyond the configuration's."""


@dataclass(frozen=True)
class ListenPlan:
    """What to set mitmproxy's ``listen_host`` and ``listen_port`` to; None: leave the user's."""

    host: str | None
    port: int | None


def _normalize(host: str) -> str:
    host = host.strip().strip("[]").lower()
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def within(host: str, configured: str) -> bool:
    """Whether listening on `host` reaches no more clients than listening on `configured`."""
    host, configured = _normalize(host), _normalize(configured)
    return configured in WILDCARD_HOSTS or host == configured or is_loopback(host)


def _shown(host: str) -> str:
    return "every address" if host == "" else host


def plan_listen(
    configured: tuple[str, int],
    source: str,
    user_host: str | None,
    user_port: int | None,
    mode_hosts: Sequence[tuple[str, str]] = (),
) -> ListenPlan:
    """The listen options to apply for `configured` (the ``listen`` that `source` names: the
    configuration file, or ``urlwarden run --listen``), given the host and port the user set (None: not set) and the ``(mode spec,
    @HOST)`` of each mode with its own host. Raises `ListenTooWide` naming the first one wider
    than `configured`."""
    host, port = configured
    where = f"listen {host}:{port} ({source})"
    if user_host is not None and not within(user_host, host):
        raise ListenTooWide(f"listen_host {_shown(user_host)} is wider than {where}; "
                            "to listen more widely, change that listen")
    for spec, mode_host in mode_hosts:
        if not within(mode_host, host):
            raise ListenTooWide(f"mode {spec} listens on {_shown(mode_host)}, wider than {where}; "
                                "to listen more widely, change that listen")
    return ListenPlan(host=host if user_host is None else None, port=port if user_port is None else None)
