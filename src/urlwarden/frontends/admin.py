"""The admin listener: health, readiness, metrics and status over HTTP, apart from the proxy.

Endpoints (GET and HEAD only; any other method is 405, any other path 404)::

    /          the home page for a person (`urlwarden.frontends.homepage`): protection on or off and why,
               lists, block counts, addresses, and how to add a device (CA, PAC address, one
               WireGuard QR code per device: it holds device keys, so it needs the token like
               /status); Basic authentication with the token as password works too, so that a
               browser can ask for it
    /ca.pem    the proxy's CA certificate (public by nature: every intercepted connection shows
               it), when the proxy has created it; never needs the token
    /healthz   200 "ok" while the process is alive; never needs the token
    /readyz    200 "ready", or 503 "not ready" and one reason per line (list or feed names and
               words like "stale", from `ready_provider`)
    /metrics   the Prometheus text exposition of `Metrics`
    /status    the facts of ``urlwarden status``: per list name, kind, entries, version, last
               success, last error, age, checksum, and today's blocks; HTML for a browser
               (``Accept: text/html``), JSON otherwise
    /proxy.pac the proxy auto-config file for browsers (`render_pac`), when `pac_proxy` is set
               (404 otherwise); never needs the token

Access control: with a `token`, every endpoint but /healthz, /proxy.pac and /ca.pem needs
``Authorization: Bearer <token>`` (or ``Basic`` with the token as password), compared in constant time (`hmac.compare_digest`); without it
the answer is 401 with ``WWW-Authenticate: Bearer``. Listening on a non-loopback address without
a token is refused (`ConfigError`): the admin port is for a monitoring system or the operator,
not the network. Without a token, a request whose Host header names anything but a loopback
address or ``localhost`` is refused with 403 (except /healthz and /proxy.pac, which hold
nothing to steal, and /ca.pem), so a web page in a local browser cannot read the status through DNS
rebinding.

The PAC file is `urlwarden.exports.pac.render_pac` for `pac_proxy`: generated from the proxy
address and fixed local ranges only, never from the lists, so it cannot reveal what is listed.
Served from here it does NOT make a browser fail closed: while urlwarden is down the browser
cannot fetch it either, and most browsers then go DIRECT (see `urlwarden.exports.pac`).

Privacy: no endpoint can return list contents, a URL, a host name or a client address.
`status_provider`'s dict passes through `sanitize_status`, which keeps only the keys in
`STATUS_KEYS` and `LIST_STATUS_KEYS` with scalar values, strips control characters, cuts long
strings and replaces anything that looks like a URL with ``<url>``; readiness reasons get the
same treatment. The server logs no requests (no access log, no client addresses); a failing
provider is logged once per call with its exception type only.

Robustness: a request head larger than `MAX_REQUEST_BYTES` is refused with 431, a request
must arrive within `REQUEST_TIMEOUT` seconds, at most `MAX_CONNECTIONS` are served at once
(more are closed on accept), each connection serves one request, and the request body (if
any) is never read. The server runs in one daemon thread plus one short-lived thread per
connection (`start` / `stop`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hmac
import html
import json
import logging
import math
import re
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from urllib.parse import urlsplit

from urlwarden.errors import ConfigError
from urlwarden.frontends.httpserve import (
    MAX_REQUEST_BYTES,
    REQUEST_TIMEOUT,
    BoundedHTTPServer,
    OneRequestHandler,
)
from urlwarden.core.netutil import is_loopback
from urlwarden.exports.pac import PAC_CONTENT_TYPE, render_pac

__all__ = [
    "AdminServer",
    "LIST_STATUS_KEYS",
    "MAX_CONNECTIONS",
    "MAX_REQUEST_BYTES",
    "PAC_CONTENT_TYPE",
    "PAC_PATH",
    "REQUEST_TIMEOUT",
    "STATUS_KEYS",
    "render_status_html",
    "sanitize_reasons",
    "sanitize_status",
]

log = logging.getLogger("urlwarden")



MAX_CONNECTIONS = 32
"""Connections served at the same time; more are closed as soon as they are accepted."""

STOP_TIMEOUT = 5.0
"""Seconds `stop` waits for the server thread."""

POLL_INTERVAL = 0.25
"""Seconds between the server thread's checks for `stop`."""

STATUS_KEYS = ("version", "started", "uptime_seconds", "ready", "lists")
"""Top-level keys of `status_provider`'s dict that are shown; every other key is dropped."""

LIST_STATUS_KEYS = (
    "name", "kind", "entries", "version", "format", "last_success", "last_error",
    "age_seconds", "checksum", "stale",
)
"""Keys of each ``lists`` item that are shown; every other key is dropped (so a provider
cannot leak list contents by adding a field)."""

MAX_STATUS_LISTS = 256
MAX_REASONS = 32
MAX_VALUE_CHARS = 256
"""A string value (or readiness reason) longer than this is cut."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}://\S*")
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]{1,1024}\Z")

_COMMON_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
_HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"

PAC_PATH = "/proxy.pac"
CA_PATH = "/ca.pem"
CA_CONTENT_TYPE = "application/x-pem-file"
MAX_CA_BYTES = 64 * 1024
_HOST_HEADER = re.compile(r"[A-Za-z0-9.:\[\]-]{1,262}\Z")


# --- sanitising what the providers return ------------------------------------------------------

def _clean_text(value: str) -> str:
    text = _URL_LIKE.sub("<url>", _CONTROL.sub(" ", value))
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "\u2026"


def _scalar(value: object) -> tuple[bool, object]:
    """(True, the value to show) for a scalar worth showing, (False, None) otherwise."""
    if value is None or isinstance(value, bool):
        return True, value
    if isinstance(value, int):
        return True, value
    if isinstance(value, float):
        return (True, value) if math.isfinite(value) else (False, None)
    if isinstance(value, str):
        return True, _clean_text(value)
    return False, None


def _pick(raw: Mapping, keys: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in keys:
        if key in raw:
            ok, value = _scalar(raw[key])
            if ok:
                out[key] = value
    return out


def sanitize_status(raw: object) -> dict[str, object]:
    """Only the shown facts of a status dict: `STATUS_KEYS` at the top, `LIST_STATUS_KEYS` in
    each ``lists`` item (a list item without a string ``name`` is dropped), scalar values only
    (str, int, finite float, bool, None), strings cleaned (see the module docstring)."""
    if not isinstance(raw, Mapping):
        return {"lists": []}
    status = _pick(raw, [k for k in STATUS_KEYS if k != "lists"])
    lists = []
    items = raw.get("lists")
    if isinstance(items, Sequence) and not isinstance(items, (str, bytes)):
        for item in items[:MAX_STATUS_LISTS]:
            if isinstance(item, Mapping):
                picked = _pick(item, LIST_STATUS_KEYS)
                if isinstance(picked.get("name"), str):
                    lists.append(picked)
    status["lists"] = lists
    return status


def sanitize_reasons(reasons: object) -> list[str]:
    """At most `MAX_REASONS` readiness reasons, each a cleaned string."""
    if isinstance(reasons, str) or not isinstance(reasons, Sequence):
        reasons = [reasons] if isinstance(reasons, str) else []
    return [_clean_text(r) for r in list(reasons)[:MAX_REASONS] if isinstance(r, str)]


# --- the HTML status page ----------------------------------------------------------------------

def _iso(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            stamp = _dt.datetime.fromtimestamp(value, _dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return str(value)
        return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def _duration(value: object) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "" if value is None else str(value)
    seconds = int(value)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


def render_status_html(status: Mapping[str, object]) -> str:
    """The status page for a person: every value escaped (`html.escape`, quotes too).

    `status` is the JSON shape `/status` serves (`sanitize_status` output plus ``today`` and
    ``blocks_today``)."""
    e = lambda value: html.escape("" if value is None else str(value), quote=True)  # noqa: E731
    today = status.get("blocks_today") if isinstance(status.get("blocks_today"), Mapping) else {}
    facts = [
        ("version", status.get("version")),
        ("started", _iso(status.get("started"))),
        ("uptime", _duration(status.get("uptime_seconds"))),
        ("ready", status.get("ready")),
        ("today", status.get("today")),
    ]
    fact_rows = "".join(
        f"<tr><th>{e(name)}</th><td>{e(value)}</td></tr>" for name, value in facts if value not in (None, "")
    )
    rows = []
    for item in status.get("lists") or []:
        stale = " class=\"stale\"" if item.get("stale") else ""
        rows.append(
            f"<tr{stale}><td>{e(item.get('name'))}</td><td>{e(item.get('kind'))}</td>"
            f"<td class=\"n\">{e(item.get('entries'))}</td><td>{e(item.get('version'))}</td>"
            f"<td>{e(_iso(item.get('last_success')))}</td><td>{e(_duration(item.get('age_seconds')))}</td>"
            f"<td>{e(item.get('last_error'))}</td><td><code>{e(item.get('checksum'))}</code></td>"
            f"<td class=\"n\">{e(today.get(item.get('name'), 0))}</td></tr>"
        )
    list_rows = "".join(rows) or '<tr><td colspan="9">no lists loaded</td></tr>'
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"robots\" content=\"noindex\"><title>urlwarden status</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}td.n{text-align:right}"
        "tr.stale td{background:#fde8e8}code{font-size:.85em}</style></head><body>"
        "<h1>urlwarden status</h1>"
        f"<table>{fact_rows}</table>"
        "<table><thead><tr><th>list</th><th>kind</th><th>entries</th><th>version</th>"
        "<th>last success</th><th>age</th><th>last error</th><th>checksum</th><th>blocked today</th>"
        f"</tr></thead><tbody>{list_rows}</tbody></table></body></html>\n"
    )


# --- the server --------------------------------------------------------------------------------

class _Handler(OneRequestHandler):
    server_version = "urlwarden-admin"
    server: _Server

    def answer(self) -> None:
        self._route()

    def send_plain(self, status: int, body: bytes, extra: Sequence[tuple[str, str]] = ()) -> None:
        self._send(HTTPStatus(status), body, extra=extra)

    def _route(self) -> None:
        admin = self.server.admin
        try:
            path = urlsplit(self.path).path
        except ValueError:
            path = ""
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n")
            return
        if path == PAC_PATH:  # public by nature (browsers fetch it without credentials); holds no secret
            if admin.pac is None:
                self._send(HTTPStatus.NOT_FOUND, b"no proxy auto-config here (pac_proxy is not set)\n")
            else:
                self._send(HTTPStatus.OK, admin.pac, PAC_CONTENT_TYPE)
            return
        if path == CA_PATH:  # public by nature; a new device fetches it before anything else
            pem = admin.ca_certificate()
            if pem is None:
                self._send(HTTPStatus.NOT_FOUND, b"no CA certificate yet (the proxy creates it when it starts)\n")
            else:
                self._send(HTTPStatus.OK, pem, CA_CONTENT_TYPE,
                           extra=(("Content-Disposition", 'attachment; filename="urlwarden-ca.pem"'),))
            return
        if admin.token is None and not _local_host_header(self.headers.get("Host")):
            # Without a token only loopback can reach us, but a web page in a local browser could
            # still, through DNS rebinding, make it fetch /status under its own host name.
            self._send(HTTPStatus.FORBIDDEN, b"forbidden: use a loopback address\n")
            return
        if not self._authorized(admin.token, basic_challenge=path == "/"):
            return
        if path == "/":
            self._home(admin)
        elif path == "/metrics":
            self._metrics(admin)
        elif path == "/readyz":
            self._readyz(admin)
        elif path == "/status":
            self._status(admin)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n")

    def _authorized(self, token: bytes | None, basic_challenge: bool = False) -> bool:
        if token is None:
            return True
        header = self.headers.get("Authorization") or ""
        scheme, _, credentials = header.strip().partition(" ")
        given = credentials.strip().encode("latin-1", "replace")
        if scheme.lower() == "basic":  # a browser's login prompt: any user name, the token as password
            try:
                given = base64.b64decode(given, validate=True).partition(b":")[2]
            except ValueError:
                given = b""
        # compare_digest even when the scheme is wrong, so the timing says nothing either way
        good = hmac.compare_digest(given, token) and scheme.lower() in ("bearer", "basic")
        if not good:
            challenges = [("WWW-Authenticate", 'Bearer realm="urlwarden"' + (', error="invalid_token"' if header else ""))]
            if basic_challenge:  # browsers ask for a password only when offered Basic
                challenges.insert(0, ("WWW-Authenticate", 'Basic realm="urlwarden admin token", charset="UTF-8"'))
            self._send(HTTPStatus.UNAUTHORIZED, b"unauthorized\n", extra=challenges)
        return good

    def _home(self, admin: AdminServer) -> None:
        host = (self.headers.get("Host") or "").strip()
        base = f"http://{host}" if _HOST_HEADER.match(host) else admin.url
        facts = admin.home(base)
        if facts is None:
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"home page unavailable\n")
            return
        from urlwarden.frontends.homepage import render_home  # (segno is imported only when the page is asked for)

        body = render_home(facts).encode("utf-8")
        self._send(HTTPStatus.OK, body, _HTML, extra=(("Content-Security-Policy", _HTML_CSP),))

    def _metrics(self, admin: AdminServer) -> None:
        if admin.metrics is None:
            self._send(HTTPStatus.NOT_FOUND, b"no metrics\n")
            return
        body, content_type = admin.metrics.render()
        self._send(HTTPStatus.OK, body, content_type)

    def _readyz(self, admin: AdminServer) -> None:
        ready, reasons = admin.readiness()
        if ready:
            self._send(HTTPStatus.OK, b"ready\n")
        else:
            text = "not ready\n" + "".join(f"{reason}\n" for reason in reasons)
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, text.encode("utf-8"))

    def _status(self, admin: AdminServer) -> None:
        status = admin.status()
        if status is None:
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"status unavailable\n")
            return
        accept = (self.headers.get("Accept") or "").lower()
        if "text/html" in accept:
            body = render_status_html(status).encode("utf-8")
            self._send(HTTPStatus.OK, body, _HTML, extra=(("Content-Security-Policy", _HTML_CSP),))
        else:
            text = json.dumps(status, ensure_ascii=True, sort_keys=True, indent=2) + "\n"
            self._send(HTTPStatus.OK, text.encode("ascii"), _JSON)

    def _send(self, code: HTTPStatus, body: bytes, content_type: str = _TEXT,
              extra: Sequence[tuple[str, str]] = ()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (*_COMMON_HEADERS, *extra, ("Connection", "close")):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(BoundedHTTPServer):
    log_name = "urlwarden: admin listener"

    def __init__(self, address: tuple[str, int], family: int, admin: AdminServer, activate: bool = True):
        self.admin = admin
        super().__init__(address, family, _Handler, MAX_CONNECTIONS, activate)


def _local_host_header(value: str | None) -> bool:
    """True for a missing Host header or one naming a loopback address or ``localhost``."""
    if value is None:
        return True
    host = value.strip().lower()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return is_loopback(host)


class AdminServer:
    """The admin HTTP listener (see the module docstring).

    `host` must be an IP address (or ``localhost``); `port` 0 picks a free port (read it from
    `port` after `start`). `metrics` is a `metrics.Metrics` (None: /metrics is 404, /status has
    no block counts). `status_provider()` returns a dict in the shape described by
    `sanitize_status` (anything else it holds is dropped); `ready_provider()` returns
    ``(ready, reasons)``. Both are called on the server's threads, once per request: they must
    be quick and thread-safe (reading an immutable snapshot is). `pac_proxy` (``HOST:PORT``,
    the proxy as clients reach it) turns on /proxy.pac. `home_provider()` adds the facts of the
    home page that only the proxy knows (see `homepage.HomeFacts`: version, proxy, wireguard);
    `ca_cert_path` is served at /ca.pem once it exists. Raises `ConfigError` for an empty or
    malformed token, a non-loopback `host` without a token, or a bad `pac_proxy`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        metrics=None,
        status_provider: Callable[[], Mapping[str, object]] | None = None,
        ready_provider: Callable[[], tuple[bool, Sequence[str]]] | None = None,
        pac_proxy: str | None = None,
        home_provider: Callable[[], Mapping[str, object]] | None = None,
        ca_cert_path: str | None = None,
    ) -> None:
        if token is not None and not _TOKEN_CHARS.match(token):
            raise ConfigError("admin token: must be 1 to 1024 printable ASCII characters without spaces")
        if token is None and not is_loopback(host.strip("[]")):
            raise ConfigError(f"admin listener on {host}: a token is required off loopback")
        self.host = host.strip("[]")
        self.requested_port = port
        self.token = None if token is None else token.encode("ascii")
        self.metrics = metrics
        self.status_provider = status_provider
        self.ready_provider = ready_provider
        self.pac = None if pac_proxy is None else render_pac(pac_proxy).encode("ascii")
        self.home_provider = home_provider
        self.ca_cert_path = ca_cert_path
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def bind(self) -> None:
        """Take the address without accepting connections yet (`start` does). Raises
        `ConfigError` when the address cannot be bound (in use, not local, ...)."""
        if self._server is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._server = _Server((self.host, self.requested_port), family, self, activate=False)
        except OSError as exc:
            raise ConfigError(
                f"admin listener {self.host}:{self.requested_port}: cannot listen: {exc.strerror or exc}"
            ) from None

    def start(self) -> None:
        """Bind (unless `bind` did) and serve in a daemon thread; raises `ConfigError` like `bind`."""
        if self._thread is not None:
            return
        self.bind()
        server = self._server
        try:
            server.server_activate()
        except OSError as exc:
            self._server = None
            server.server_close()
            raise ConfigError(
                f"admin listener {self.host}:{self.requested_port}: cannot listen: {exc.strerror or exc}"
            ) from None
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
            name="urlwarden-admin", daemon=True,
        )
        self._thread = thread
        thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (waits up to `STOP_TIMEOUT` for the thread)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        if thread is not None:  # (serve_forever runs only once started; shutdown waits for it)
            server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(STOP_TIMEOUT)

    def __enter__(self) -> AdminServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port listened on (after `start`)."""
        if self._server is None:
            raise RuntimeError("the admin listener is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """``http://host:port`` of the running listener."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- what the endpoints serve ----------------------------------------------------------------

    def readiness(self) -> tuple[bool, list[str]]:
        """(ready, cleaned reasons); not ready when the provider fails."""
        if self.ready_provider is None:
            return True, []
        try:
            ready, reasons = self.ready_provider()
        except Exception as exc:  # a broken provider must not take the listener down
            log.error("urlwarden: admin listener: readiness check failed (%s)", type(exc).__name__)
            return False, ["readiness check failed"]
        reasons = sanitize_reasons(reasons)
        if not ready and not reasons:
            reasons = ["not ready"]
        return bool(ready), reasons

    def status(self) -> dict[str, object] | None:
        """The /status document, or None when the provider failed."""
        raw: object = {}
        if self.status_provider is not None:
            try:
                raw = self.status_provider()
            except Exception as exc:
                log.error("urlwarden: admin listener: status provider failed (%s)", type(exc).__name__)
                return None
        status = sanitize_status(raw)
        if self.metrics is not None:
            status["today"] = self.metrics.today().isoformat()
            status["blocks_today"] = self.metrics.blocks_today()
        return status

    def ca_certificate(self) -> bytes | None:
        """The CA certificate (PEM) to hand to devices, or None while there is none."""
        if self.ca_cert_path is None:
            return None
        try:
            with open(self.ca_cert_path, "rb") as f:
                pem = f.read(MAX_CA_BYTES + 1)
        except OSError:
            return None
        return pem if b"-----BEGIN CERTIFICATE-----" in pem and len(pem) <= MAX_CA_BYTES else None

    def home(self, base_url: str) -> dict[str, object] | None:
        """The home page's facts (`homepage.HomeFacts`); `base_url` is this listener as the
        browser reached it (for the PAC address). None when a provider failed."""
        status = self.status()
        if status is None:
            return None
        extra: Mapping[str, object] = {}
        if self.home_provider is not None:
            try:
                extra = self.home_provider()
            except Exception as exc:
                log.error("urlwarden: admin listener: home page provider failed (%s)", type(exc).__name__)
                return None
        ready, reasons = self.readiness()
        today = status.get("blocks_today") or {}
        facts: dict[str, object] = dict(extra)
        facts.update(
            ready=ready, reasons=reasons, lists=status.get("lists", []), started=status.get("started"),
            blocks_today=sum(v for v in today.values() if isinstance(v, int)),
            blocks_since_start=self.metrics.blocks_since_start() if self.metrics is not None else 0,
            pac_url=f"{base_url}{PAC_PATH}" if self.pac is not None else None,
            ca_url=CA_PATH if self.ca_certificate() is not None else None,
        )
        return facts
