"""Private, structured logs: JSON lines on stdout, for journald and log shippers.

Privacy rules (docs/operations.md repeats them for operators):

* A log line never carries a URL, a host name, a list entry, a secret, or a client address.
  A block is identified by list name and entry id (`block_event`), which is enough to find the
  entry in the licensed list and to answer an appeal, without repeating what was asked for.
* Client addresses appear only when the operator turns ``log_clients`` on, and then only as
  their network (`anonymize_ip`: IPv4 /24, IPv6 /48), never the address itself.
* An exception logged with ``exc_info`` is reduced to its type and its stack frames (file,
  line, function): exception messages often quote their input (a URL, a host), so they are left
  out. Configuration secrets can be removed from any text with `redact`.

Nothing can stop a caller from writing ``log.info("blocked %s", url)``; the formatter cannot
tell a URL in a message from a list name. The addon's calls are reviewed against these rules,
and `block_event` returns only `BLOCK_EVENT_KEYS`.

Format: one JSON object per line::

    {"ts": "2030-01-01T12:00:00.123Z", "level": "info", "logger": "urlwarden",
     "msg": "blocked", "event": "block", "list": "iwf", "entry": "4711", "decision": "block",
     "mode": "splash"}

``ts`` is ISO 8601 in UTC with milliseconds; ``level`` is lowercase; fields given as
``extra={"event": {...}}`` are merged in at the top level (a field named like one of
`RESERVED_KEYS` is dropped, so a caller cannot forge the time stamp or level).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import logging
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import IO

from urlwarden.errors import ConfigError

__all__ = [
    "BLOCK_EVENT_KEYS",
    "INVALID_ADDRESS",
    "JsonFormatter",
    "LEVELS",
    "LOGGER_NAME",
    "REDACTED",
    "RESERVED_KEYS",
    "anonymize_ip",
    "block_event",
    "configure_logging",
    "redact",
]

LOGGER_NAME = "urlwarden"
LEVELS = ("debug", "info", "warning", "error", "critical")
RESERVED_KEYS = ("ts", "level", "logger", "msg", "exc_type", "exc_frames")
BLOCK_EVENT_KEYS = frozenset({"event", "list", "entry", "decision", "mode", "client"})
"""Every key `block_event` may return; nothing else can be in a block log line's fields."""

INVALID_ADDRESS = "invalid"
REDACTED = "[redacted]"

IPV4_PREFIX = 24
IPV6_PREFIX = 48
MAX_ADDRESS_CHARS = 128
"""Longer input to `anonymize_ip` is "invalid" without being parsed."""

MAX_FRAMES = 32
"""At most this many (innermost) stack frames of a logged exception."""


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, Mapping):
            for key, value in event.items():
                key = str(key)
                if key not in RESERVED_KEYS:
                    line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _exc, tb = record.exc_info
            line["exc_type"] = exc_type.__name__
            frames = traceback.extract_tb(tb)[-MAX_FRAMES:]
            line["exc_frames"] = [f"{_short_file(f.filename)}:{f.lineno} in {f.name}" for f in frames]
        # ensure_ascii: control characters and line separators can never split the line.
        return json.dumps(line, ensure_ascii=True, default=str, separators=(",", ":"))


def _iso_utc(created: float) -> str:
    stamp = _dt.datetime.fromtimestamp(created, _dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _short_file(path: str) -> str:
    """The file name from its package directory on (``urlwarden/core/matcher.py``), not the full
    path (which may hold a user name)."""
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def configure_logging(level: str = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Send the ``urlwarden`` logger's records, as JSON lines, to `stream` (default stdout:
    journald records a service's stdout; no colour, no local time).

    Replaces any handler an earlier call installed on that
    logger, sets its level, and stops propagation to the root logger (whose handlers, e.g.
    mitmproxy's, print plain text). Returns the handler. Raises `ConfigError` for a level that
    is not one of `LEVELS` (any case).
    """
    name = level.lower() if isinstance(level, str) else level
    if name not in LEVELS:
        raise ConfigError(f"log level {level!r}: must be one of {', '.join(LEVELS)}")
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        if getattr(old, "urlwarden", False):
            logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.urlwarden = True  # marks ours, so that a second call replaces it instead of adding one
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(name.upper())
    logger.propagate = False
    return handler


def anonymize_ip(addr: object) -> str:
    """The network of a client address, for logs that must not identify a person.

    IPv4: the /24 (``192.0.2.77`` -> ``192.0.2.0/24``). IPv6: the /48. An IPv4-mapped IPv6
    address (``::ffff:192.0.2.77``) follows the IPv4 rule. Brackets, a zone (``%eth0``) and a
    (host, port, ...) tuple as mitmproxy gives peer names are accepted. Anything else, including
    a host name, is ``"invalid"`` (never echoed back).
    """
    if isinstance(addr, tuple) and addr:
        addr = addr[0]
    if isinstance(addr, bytes):
        try:
            addr = addr.decode("ascii")
        except UnicodeDecodeError:
            return INVALID_ADDRESS
    if not isinstance(addr, str) or len(addr) > MAX_ADDRESS_CHARS:
        return INVALID_ADDRESS
    text = addr.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.partition("%")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return INVALID_ADDRESS
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def block_event(
    list_name: str,
    entry_id: str,
    decision: str,
    mode: str,
    client: object = None,
    log_clients: bool = False,
) -> dict[str, str]:
    """The structured fields of a block log line: ``log.info("blocked", extra={"event": ...})``.

    Only `BLOCK_EVENT_KEYS`: ``event`` ("block"), ``list``, ``entry`` (the opaque entry id),
    ``decision``, ``mode``, and ``client`` only when `log_clients` is on, then anonymised
    (`anonymize_ip`). There is no parameter for a URL or host, on purpose.
    """
    event = {
        "event": "block",
        "list": str(list_name),
        "entry": str(entry_id),
        "decision": str(decision),
        "mode": str(mode),
    }
    if log_clients and client is not None:
        event["client"] = anonymize_ip(client)
    return event


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every occurrence of each non-empty secret replaced by ``[redacted]``.

    Longer secrets are replaced first, so one that contains another is removed whole. Every
    non-empty secret counts, however short: a short token still must not be printed (the price
    is that a one-character secret garbles the text).
    """
    wanted = sorted({s for s in secrets if isinstance(s, str) and s}, key=len, reverse=True)
    for secret in wanted:
        text = text.replace(secret, REDACTED)
    return text
