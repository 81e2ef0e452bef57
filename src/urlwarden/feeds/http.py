"""The ``http`` feed adapter: a list (or diff) over HTTPS, with the protections a licensed feed needs.

Policy:

* Transport. One `requests.Session` per adapter, ``trust_env`` off (no proxy, netrc or CA
  bundle taken from the environment; ``proxy`` and ``ca_bundle`` are explicit options). TLS is
  always verified (system store, or ``ca_bundle``). ``https`` is required unless the host is a
  loopback address or ``localhost``. Redirects are never followed (a redirect could carry a
  custom auth header to another host); configure the final URL.
* Authentication (``auth``): ``none``, ``bearer`` (``Authorization: Bearer <token>``),
  ``basic`` (``username`` + password), ``header`` (``header_name: <token>``); independently a
  client certificate (``client_cert``, ``client_key``: PEM files, key unencrypted). Secrets come
  from an environment variable (``token_env``, ``password_env``) or a file (``token_file``,
  ``password_file``; trailing whitespace stripped), re-read on every fetch so rotated tokens are
  picked up; the constructor checks that they are there. Secrets never appear in a message,
  a log line or a ``repr()``, and messages show a URL without its query string.
* Conditional GET: ``If-None-Match`` / ``If-Modified-Since`` from the ``since`` version; 304
  gives not_modified. ``X-Urlwarden-Since: <serial>`` asks the server for a diff from that
  serial (it may answer with a full list anyway). Response headers ``X-Urlwarden-Serial`` and
  ``X-Urlwarden-SHA256`` give the body's serial and expected checksum.
* Bounds: ``connect_timeout`` and ``read_timeout`` (per socket operation), ``download_timeout``
  (one whole attempt, so a server dripping bytes cannot hold a refresh forever), ``max_bytes``
  on the decoded body (a gzip body is counted after decompression; a Content-Length above the
  limit fails before reading).
* Retries: connection errors, timeouts, bodies cut short, HTTP 429 and 5xx are retried up to
  ``retries`` times. The delay is full-jitter exponential backoff,
  ``rng() * min(backoff_max, backoff_base * 2**attempt)``, unless the response has
  ``Retry-After`` (seconds or an HTTP-date), which is honoured exactly; a Retry-After above
  ``retry_after_max`` ends the fetch (the manager's own backoff takes over). TLS failures, other
  4xx, oversize and undecodable bodies are not retried. ``sleep``, ``rng`` and ``clock`` are
  injectable (tests never sleep).
* Signature: from the response header ``signature_header`` or a second GET of ``signature_url``
  (same auth and limits), only when a body (not a 304) was received.
"""

from __future__ import annotations

import base64
import email.utils
import math
import os
import random
import re
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.auth
import requests.exceptions

from urlwarden import __version__
from urlwarden.errors import FeedError
from urlwarden.core.netutil import is_loopback
from urlwarden.feeds import FeedAdapter, FeedPayload, FeedVersion

__all__ = [
    "AUTH_KINDS",
    "CHECKSUM_HEADER",
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DOWNLOAD_TIMEOUT",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_READ_TIMEOUT",
    "DEFAULT_RETRIES",
    "DEFAULT_RETRY_AFTER_MAX",
    "MAX_RETRIES",
    "SERIAL_HEADER",
    "SINCE_HEADER",
    "HttpAdapter",
]

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_DOWNLOAD_TIMEOUT = 900.0
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_RETRIES = 3
MAX_RETRIES = 10
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_MAX = 60.0
DEFAULT_RETRY_AFTER_MAX = 300.0
MAX_TIMEOUT = 24 * 3600.0
"""Upper bound for every time option (seconds): none is infinite."""

MAX_SIGNATURE_BYTES = 4096
MAX_SECRET_LENGTH = 8192
MAX_VALIDATOR_LENGTH = 1024
"""Longest ETag / Last-Modified kept (they are sent back to the server)."""

CHUNK_SIZE = 64 * 1024

SINCE_HEADER = "X-Urlwarden-Since"
SERIAL_HEADER = "X-Urlwarden-Serial"
CHECKSUM_HEADER = "X-Urlwarden-SHA256"

AUTH_KINDS = ("none", "bearer", "basic", "header")

_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_ENV_NAME_SHOWN = re.compile(r"[A-Z_][A-Z0-9_]{0,63}\Z")
_SERIAL = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")
_RETRY_STATUS = frozenset({429, *range(500, 600)})
_CAUSE_DEPTH = 8


class _Retryable(Exception):
    """One failed attempt that may be retried (internal); `delay` is the server's wish, if any."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.message = message
        self.delay = delay


@dataclass(frozen=True)
class _Secret:
    """Where a credential comes from (never the credential itself)."""

    option: str  # "token" or "password"
    env: str | None
    file: str | None


class _HeaderAuth(requests.auth.AuthBase):
    """Sets one header to a secret value; its repr never shows the value."""

    def __init__(self, name: str, value: str):
        self._name = name
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self._name] = self._value
        return request

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name}: ***>"


class HttpAdapter(FeedAdapter):
    """Fetches a feed over HTTP(S); see the module docstring for the policy.

    url               the list URL (required; https unless loopback; no user:password@)
    auth              one of AUTH_KINDS (default "none")
    token_env / token_file          bearer token or custom header value
    username, password_env / password_file   basic auth
    header_name       the custom header for auth="header"
    client_cert, client_key         mTLS client certificate and key (PEM files)
    ca_bundle         CA certificates to verify the server with (default: system store)
    proxy             an egress proxy URL (default: none; the environment is ignored)
    connect_timeout, read_timeout, download_timeout   seconds
    max_bytes         largest decoded body accepted
    retries, backoff_base, backoff_max, retry_after_max   the retry policy
    signature_url / signature_header   where the detached signature comes from
    user_agent        the User-Agent header
    sleep, rng, clock   injectable time.sleep, random.random and time.time (for tests)
    """

    source = "network"

    def __init__(
        self,
        *,
        url: str,
        feed_name: str = "feed",
        auth: str = "none",
        token_env: str | None = None,
        token_file: str | None = None,
        username: str | None = None,
        password_env: str | None = None,
        password_file: str | None = None,
        header_name: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        ca_bundle: str | None = None,
        proxy: str | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        download_timeout: float = DEFAULT_DOWNLOAD_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        retries: int = DEFAULT_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        retry_after_max: float = DEFAULT_RETRY_AFTER_MAX,
        signature_url: str | None = None,
        signature_header: str | None = None,
        user_agent: str = f"urlwarden/{__version__} (feed)",
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(feed_name=feed_name)
        self.url = self._checked_url("url", url)
        self.signature_url = (
            self._checked_url("signature_url", signature_url) if signature_url is not None else None
        )
        if signature_header is not None and not _is_token(signature_header):
            raise self.error("option 'signature_header' must be an HTTP header name")
        if signature_url is not None and signature_header is not None:
            raise self.error("set only one of the options 'signature_url' and 'signature_header'")
        self.signature_header = signature_header
        self.connect_timeout = self._seconds("connect_timeout", connect_timeout)
        self.read_timeout = self._seconds("read_timeout", read_timeout)
        self.download_timeout = self._seconds("download_timeout", download_timeout)
        self.backoff_base = self._seconds("backoff_base", backoff_base, allow_zero=True)
        self.backoff_max = self._seconds("backoff_max", backoff_max, allow_zero=True)
        self.retry_after_max = self._seconds("retry_after_max", retry_after_max, allow_zero=True)
        self.max_bytes = self._count("max_bytes", max_bytes, minimum=1)
        self.retries = self._count("retries", retries, minimum=0, maximum=MAX_RETRIES)
        if not isinstance(user_agent, str) or not user_agent.isprintable():
            raise self.error("option 'user_agent' must be printable text")
        self.user_agent = user_agent
        for name, fn in (("sleep", sleep), ("rng", rng), ("clock", clock)):
            if not callable(fn):
                raise self.error(f"option {name!r} must be callable")
        self._sleep, self._rng, self._clock = sleep, rng, clock
        self.auth = auth
        self._secrets, self._auth_header = self._checked_auth(
            auth, token_env, token_file, username, password_env, password_file, header_name
        )
        self.username = username
        self._cert = self._checked_cert(client_cert, client_key)
        if ca_bundle is not None and (not isinstance(ca_bundle, str) or not os.path.exists(ca_bundle)):
            raise self.error(f"option 'ca_bundle': no such file or directory: {ca_bundle!r}")
        self._verify: bool | str = ca_bundle if ca_bundle is not None else True
        if proxy is not None and (
            not isinstance(proxy, str) or urlsplit(proxy).scheme not in ("http", "https", "socks5", "socks5h")
        ):
            raise self.error("option 'proxy' must be an http(s):// or socks5:// URL")
        self._session = requests.Session()
        self._session.trust_env = False
        if proxy is not None:
            self._session.proxies = {"http": proxy, "https": proxy}
        self._session.headers["User-Agent"] = user_agent
        self._closed = False

    # --- public API -----------------------------------------------------------------------

    def fetch(self, since: FeedVersion | None) -> FeedPayload:
        if self._closed:
            raise self.error("adapter is closed")
        secrets = self._read_secrets()
        try:
            return self._fetch(since, secrets)
        except FeedError as exc:
            raise FeedError(_redact(str(exc), secrets)) from None

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._session.close()

    def __repr__(self) -> str:
        return f"HttpAdapter(feed={self.feed_name!r}, url={_display_url(self.url)!r}, auth={self.auth!r})"

    # --- fetching -------------------------------------------------------------------------

    def _fetch(self, since: FeedVersion | None, secrets: dict[str, str]) -> FeedPayload:
        headers = {"Accept-Encoding": "gzip"}
        if since is not None:
            if since.etag:
                headers["If-None-Match"] = since.etag
            if since.last_modified:
                headers["If-Modified-Since"] = since.last_modified
            if since.serial:
                headers[SINCE_HEADER] = since.serial
        auth = self._make_auth(secrets)
        response_headers, status, body = self._with_retries(
            self.url, headers, auth, self.max_bytes, allow_304=since is not None
        )
        if status == 304:
            assert since is not None
            etag = _validator(response_headers.get("ETag")) or since.etag
            return FeedPayload(
                body=b"", version=FeedVersion(etag, since.last_modified, since.serial), not_modified=True
            )
        version = FeedVersion(
            etag=_validator(response_headers.get("ETag")),
            last_modified=_validator(response_headers.get("Last-Modified")),
            serial=self._serial_header(response_headers.get(SERIAL_HEADER)),
        )
        return FeedPayload(
            body=body,
            version=version,
            signature=self._signature(response_headers, auth),
            content_type=response_headers.get("Content-Type"),
            checksum=self._checksum_header(response_headers.get(CHECKSUM_HEADER)),
        )

    def _signature(
        self, headers: requests.structures.CaseInsensitiveDict, auth: requests.auth.AuthBase | None
    ) -> bytes | None:
        if self.signature_header is not None:
            value = headers.get(self.signature_header)
            return value.strip().encode("ascii", "replace") if value else None
        if self.signature_url is not None:
            _, _, body = self._with_retries(
                self.signature_url, {}, auth, MAX_SIGNATURE_BYTES, allow_304=False, what="signature"
            )
            return body
        return None

    def _with_retries(
        self,
        url: str,
        headers: dict[str, str],
        auth: requests.auth.AuthBase | None,
        limit: int,
        *,
        allow_304: bool,
        what: str = "list",
    ) -> tuple[requests.structures.CaseInsensitiveDict, int, bytes]:
        """(headers, status, body) of the first good attempt; `FeedError` when none succeeds."""
        for attempt in range(self.retries + 1):
            try:
                return self._attempt(url, headers, auth, limit, allow_304, what)
            except _Retryable as failure:
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                if attempt == self.retries:
                    raise self.error(f"{failure.message}{tries}") from None
                if failure.delay is not None:
                    if failure.delay > self.retry_after_max:
                        raise self.error(
                            f"{failure.message}; server asks to retry after {failure.delay:.0f}s "
                            f"(more than retry_after_max={self.retry_after_max:g}s){tries}"
                        ) from None
                    delay = failure.delay
                else:
                    delay = self._rng() * min(self.backoff_max, self.backoff_base * 2.0**attempt)
                self._sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _attempt(
        self,
        url: str,
        headers: dict[str, str],
        auth: requests.auth.AuthBase | None,
        limit: int,
        allow_304: bool,
        what: str,
    ) -> tuple[requests.structures.CaseInsensitiveDict, int, bytes]:
        shown = _display_url(url)
        try:
            response = self._session.get(
                url,
                headers=headers,
                auth=auth,
                timeout=(self.connect_timeout, self.read_timeout),
                verify=self._verify,
                cert=self._cert,
                stream=True,
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(f"GET {shown}", exc) from None
        with response:
            status = response.status_code
            if status == 304 and allow_304:
                return response.headers, status, b""
            if status != 200:
                reason = _printable(response.reason or "", 80)
                message = f"GET {shown}: HTTP {status} {reason}".rstrip()
                if status in _RETRY_STATUS:
                    raise _Retryable(message, self._retry_after(response.headers.get("Retry-After")))
                if 300 <= status < 400:
                    message += " (redirects are not followed; configure the final URL)"
                raise self.error(message)
            try:
                body = self._read_body(response, limit, shown, what)
            except requests.exceptions.RequestException as exc:
                raise self._transport_error(f"GET {shown}: reading the {what}", exc) from None
            return response.headers, status, body

    def _read_body(self, response: requests.Response, limit: int, shown: str, what: str) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise self.error(f"GET {shown}: {what} of {declared} bytes is larger than max_bytes={limit}")
        deadline = time.monotonic() + self.download_timeout
        body = bytearray()
        chunks: Iterator[bytes] = response.iter_content(chunk_size=CHUNK_SIZE)
        for chunk in chunks:  # bounded: each chunk grows body, which is capped at limit
            body += chunk
            if len(body) > limit:
                raise self.error(f"GET {shown}: {what} larger than max_bytes={limit} (after decompression)")
            if time.monotonic() > deadline:
                raise self.error(
                    f"GET {shown}: {what} download took longer than "
                    f"download_timeout={self.download_timeout:g}s"
                )
        return bytes(body)

    def _transport_error(self, context: str, exc: requests.exceptions.RequestException) -> Exception:
        """A retryable failure for transient errors, a final `FeedError` for the others."""
        description = _describe(exc, self.read_timeout)
        message = f"{context}: {description}"
        if isinstance(exc, requests.exceptions.SSLError):
            return self.error(message)
        if isinstance(
            exc,
            (
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ),
        ):
            return _Retryable(message)
        return self.error(message)

    def _retry_after(self, value: str | None) -> float | None:
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return float(int(value))
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - self._clock())

    def _serial_header(self, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not _SERIAL.match(value):
            raise self.error(f"invalid {SERIAL_HEADER} header {_printable(value, 70)!r}")
        return value

    def _checksum_header(self, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not _HEX64.match(value):
            raise self.error(f"invalid {CHECKSUM_HEADER} header (64 hex digits expected)")
        return value.lower()

    # --- configuration checks -------------------------------------------------------------

    def _checked_url(self, option: str, url: object) -> str:
        if not isinstance(url, str) or not url:
            raise self.error(f"option {option!r} must be a URL")
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - validates the port
        except ValueError as exc:
            raise self.error(f"option {option!r}: invalid URL ({exc})") from None
        if parts.username is not None or parts.password is not None:
            raise self.error(f"option {option!r}: credentials in the URL are not allowed (use auth options)")
        if parts.scheme not in ("http", "https") or not host:
            raise self.error(f"option {option!r}: {_display_url(url)!r} is not an http(s) URL with a host")
        if parts.scheme == "http" and not is_loopback(host):  # (hostname is lower case)
            raise self.error(f"option {option!r}: https is required ({_display_url(url)!r} is not loopback)")
        return url

    def _seconds(self, option: str, value: object, *, allow_zero: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (0 <= value <= MAX_TIMEOUT) or (value == 0 and not allow_zero):
            low = "0" if allow_zero else "a positive number"
            raise self.error(f"option {option!r} must be {low} up to {MAX_TIMEOUT:g} seconds, got {value!r}")
        return float(value)

    def _count(self, option: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(f"option {option!r} must be an integer {bound}, got {value!r}")
        return value

    def _checked_auth(
        self,
        auth: str,
        token_env: str | None,
        token_file: str | None,
        username: str | None,
        password_env: str | None,
        password_file: str | None,
        header_name: str | None,
    ) -> tuple[tuple[_Secret, ...], str | None]:
        if auth not in AUTH_KINDS:
            raise self.error(f"option 'auth' must be one of {', '.join(AUTH_KINDS)}, got {auth!r}")
        token = _Secret("token", token_env, token_file)
        password = _Secret("password", password_env, password_file)
        used = {
            "token": token_env is not None or token_file is not None,
            "password": password_env is not None or password_file is not None,
        }
        wanted = {"none": (), "bearer": ("token",), "header": ("token",), "basic": ("password",)}[auth]
        for kind, present in used.items():
            if present and kind not in wanted:
                raise self.error(f"options '{kind}_env'/'{kind}_file' are set but auth is {auth!r}")
        if (username is not None) != (auth == "basic"):
            raise self.error("option 'username' belongs with auth 'basic' (and is required there)")
        if username is not None and (
            not isinstance(username, str) or not username or ":" in username or not username.isprintable()
        ):
            raise self.error("option 'username' must be printable text without ':'")
        if (header_name is not None) != (auth == "header"):
            raise self.error("option 'header_name' belongs with auth 'header' (and is required there)")
        if header_name is not None and not _is_token(header_name):
            raise self.error("option 'header_name' must be an HTTP header name")
        secrets = tuple(s for s in (token, password) if s.option in wanted)
        for secret in secrets:
            if (secret.env is None) == (secret.file is None):
                raise self.error(
                    f"auth {auth!r} needs exactly one of the options "
                    f"'{secret.option}_env' and '{secret.option}_file'"
                )
            self._read_secret(secret)  # fail at configuration time when it is missing
        return secrets, header_name

    def _checked_cert(self, client_cert: str | None, client_key: str | None) -> str | tuple[str, str] | None:
        if client_key is not None and client_cert is None:
            raise self.error("option 'client_key' needs 'client_cert'")
        for option, path in (("client_cert", client_cert), ("client_key", client_key)):
            if path is not None and (not isinstance(path, str) or not os.path.isfile(path)):
                raise self.error(f"option {option!r}: no such file: {path!r}")
        if client_cert is None:
            return None
        return (client_cert, client_key) if client_key is not None else client_cert

    # --- credentials ----------------------------------------------------------------------

    def _read_secrets(self) -> dict[str, str]:
        return {secret.option: self._read_secret(secret) for secret in self._secrets}

    def _read_secret(self, secret: _Secret) -> str:
        """The credential's current value; `FeedError` (never showing it) when unusable."""
        if secret.env is not None:
            option = f"{secret.option}_env"
            if not isinstance(secret.env, str) or not secret.env:
                raise self.error(f"option {option!r} must name an environment variable")
            value = os.environ.get(secret.env)
            where = (
                f"environment variable {secret.env}"
                if _ENV_NAME_SHOWN.match(secret.env)
                else "its environment variable"
            )
            if not value:
                raise self.error(f"option {option!r}: {where} is not set or empty")
        else:
            option = f"{secret.option}_file"
            if not isinstance(secret.file, str) or not secret.file:
                raise self.error(f"option {option!r} must be a file path")
            where = f"file {secret.file}"
            try:
                with open(secret.file, encoding="utf-8") as f:
                    value = f.read(MAX_SECRET_LENGTH + 1).rstrip("\r\n\t ")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                raise self.error(f"option {option!r}: cannot read {where} ({reason})") from None
            if not value:
                raise self.error(f"option {option!r}: {where} is empty")
        if len(value) > MAX_SECRET_LENGTH or not value.isprintable():
            raise self.error(
                f"option {option!r}: the {secret.option} in {where} is too long or has control characters"
            )
        return value

    def _make_auth(self, secrets: dict[str, str]) -> requests.auth.AuthBase | None:
        if self.auth == "bearer":
            return _HeaderAuth("Authorization", f"Bearer {secrets['token']}")
        if self.auth == "header":
            assert self._auth_header is not None
            return _HeaderAuth(self._auth_header, secrets["token"])
        if self.auth == "basic":
            assert self.username is not None
            pair = f"{self.username}:{secrets['password']}".encode()
            return _HeaderAuth("Authorization", "Basic " + base64.b64encode(pair).decode("ascii"))
        return None


# --- module helpers ------------------------------------------------------------------------------


def _is_token(value: object) -> bool:
    return isinstance(value, str) and _TOKEN_CHARS.match(value) is not None


def _display_url(url: str) -> str:
    """scheme://host[:port]/path: no userinfo, query or fragment (they may hold secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    suffix = "?..." if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{suffix}"


def _validator(value: str | None) -> str | None:
    """An ETag / Last-Modified value fit to be sent back, or None."""
    if value is None or len(value) > MAX_VALIDATOR_LENGTH or not value.isascii() or not value.isprintable():
        return None
    return value


def _printable(text: str, limit: int) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _redact(text: str, secrets: dict[str, str]) -> str:
    for value in secrets.values():
        if value:
            text = text.replace(value, "***")
    return text


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps (cause, context, args, urllib3 `reason`), breadth first, bounded."""
    queue = [exc]
    seen: set[int] = set()
    while queue and len(seen) < _CAUSE_DEPTH * 4:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        queue.extend(item for item in linked if isinstance(item, BaseException))


def _describe(exc: requests.exceptions.RequestException, read_timeout: float) -> str:
    """A short, secret-free description of a transport failure."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"read timed out (read_timeout={read_timeout:g}s)"
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed ({cause.verify_message or cause.reason})"
    for cause in causes:
        if isinstance(cause, ssl.SSLEOFError):
            return "TLS connection closed by the server (does it require a client certificate?)"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error ({cause.reason or type(cause).__name__})"
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(cause, TimeoutError) or type(cause).__name__ == "ReadTimeoutError":
            return f"read timed out (read_timeout={read_timeout:g}s)"
        if "IncompleteRead" in type(cause).__name__:
            return "connection closed before the whole body arrived"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection closed before the whole body arrived"
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return "body could not be decoded (bad gzip data)"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return f"connection failed ({cause.strerror})"
    return f"request failed ({type(exc).__name__})"
