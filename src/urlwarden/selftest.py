"""``urlwarden selftest``: prove through the live proxy that each list is in force.

Each configured test URL (``lists[].test_url``) is requested through the running proxy, like
a client would, and the answer must be urlwarden's block for that list:

=========  =================================================================================
mode       counts as blocked
=========  =================================================================================
splash     the list's status (451 by default) with ``Link: <...>; rel="blocked-by"``; when the
           body is urlwarden's JSON block answer (the request asks for JSON), it must name
           this list, so a test URL that another list blocks does not pass for this one
notfound   404 without a ``Link: rel="blocked-by"`` header (the mode hides the block)
close      the proxy closes the connection without any response
=========  =================================================================================

Why this also shows that the origin was never contacted: test URLs are synthetic names under
``.test`` (or ``.invalid``) that do not resolve. urlwarden decides before any upstream
connection (``connection_strategy=lazy``), so its block answer proves the decision came first;
a request that got through unblocked makes mitmproxy try the name, fail, and answer ``502``
("Cannot connect", name resolution), reported as "not blocked: the proxy tried to reach the
origin (502)". An HTTPS test URL on a host the lists do not name is passed through untouched,
so the client sees the TLS connection end instead ("not blocked: the TLS connection was
passed through ...").

HTTPS test URLs need the proxy's CA (``<confdir>/mitmproxy-ca-cert.pem``) as `ca_bundle`.
With ``https.intercept: none`` a host listed whole is refused at CONNECT (403), which counts as
blocked for any mode, since no page can be shown without interception.

Reasons are one line each and never contain the test URL or its host (a test URL is a list
entry too); results name the list only.
"""

from __future__ import annotations

import json
import os
import re
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.client import RemoteDisconnected
from urllib.parse import urlsplit

import requests

from urlwarden import __version__

__all__ = [
    "DEFAULT_TIMEOUT",
    "SelftestCase",
    "SelftestResult",
    "cases_from_config",
    "check_response",
    "run_selftest",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds each test request may take (connect and read each)."""

MAX_BODY_BYTES = 64 * 1024
"""At most this much of an answer's body is read (a block answer is far smaller)."""

NOT_BLOCKED_502 = "not blocked: the proxy tried to reach the origin (502)"
ERROR_503_BODY = b"urlwarden could not check this request"

_TUNNEL_STATUS = re.compile(r"Tunnel connection failed: (\d{3})")
_MAX_CHAIN = 16

# Ask for urlwarden's JSON block answer: it names the list that blocked the request.
_HEADERS = {
    "Accept": "application/json",
    "Sec-Fetch-Dest": "empty",
    "Sec-Fetch-Mode": "cors",
    "Cache-Control": "no-cache",
    "User-Agent": f"urlwarden-selftest/{__version__}",
}


@dataclass(frozen=True)
class SelftestCase:
    """One list's test: its test URL and what its block answer looks like."""

    list_name: str
    test_url: str
    mode: str = "splash"  # splash | notfound | close (the list's ``mode``)
    status: int = 451  # the list's ``status`` (splash mode)


@dataclass(frozen=True)
class SelftestResult:
    list_name: str
    ok: bool
    reason: str  # one line, never the URL or host


def cases_from_config(config) -> list[SelftestCase]:
    """One case per block list of a `config.Config` that has a ``test_url``, with the list's
    mode and status."""
    return [
        SelftestCase(lc.name, lc.test_url, lc.policy.mode, lc.policy.status)
        for lc in config.lists
        if lc.test_url
    ]


def _as_case(item: SelftestCase | tuple[str, str]) -> SelftestCase:
    if isinstance(item, SelftestCase):
        return item
    list_name, test_url = item
    return SelftestCase(list_name, test_url)


def run_selftest(
    proxy_url: str,
    tests: Iterable[SelftestCase | tuple[str, str]],
    timeout: float = DEFAULT_TIMEOUT,
    ca_bundle: str | os.PathLike[str] | None = None,
) -> list[SelftestResult]:
    """Request each test URL through the proxy at `proxy_url` (``http://127.0.0.1:8080``) and
    check that it is blocked (see the module docstring). `tests` holds `SelftestCase` values or
    ``(list_name, test_url)`` pairs (mode splash, status 451). `ca_bundle`: the proxy's CA
    certificate (PEM), needed for HTTPS test URLs. One result per test, in order; the caller
    exits non-zero when any is not ok. Environment proxy settings are ignored.
    """
    return [_run_one(proxy_url, _as_case(item), timeout, ca_bundle) for item in tests]


def _run_one(proxy_url: str, case: SelftestCase, timeout: float, ca_bundle) -> SelftestResult:
    try:
        scheme = urlsplit(case.test_url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        return SelftestResult(case.list_name, False, "the test URL is not an http(s) URL")
    with requests.Session() as session:
        session.trust_env = False  # no HTTP_PROXY / NO_PROXY / .netrc / REQUESTS_CA_BUNDLE
        try:
            response = session.get(
                case.test_url,
                proxies={"http": proxy_url, "https": proxy_url},
                headers=_HEADERS,
                timeout=(timeout, timeout),
                allow_redirects=False,
                verify=str(ca_bundle) if ca_bundle is not None else True,
                stream=True,
            )
        except requests.RequestException as exc:
            return SelftestResult(case.list_name, *_classify_failure(case, scheme, exc, timeout))
        with response:
            try:
                body = response.raw.read(MAX_BODY_BYTES, decode_content=True) or b""
            except Exception:  # a body cut short says nothing more about the decision
                body = b""
            headers = [(k, v) for k, v in response.headers.items()]
            return check_response(case, response.status_code, headers, body)


def _has_blocked_by(headers: Sequence[tuple[str, str]]) -> bool:
    for name, value in headers:
        if name.lower() == "link" and re.search(r'rel\s*=\s*"?blocked-by"?', value, re.IGNORECASE):
            return True
    return False


def _json_list(body: bytes) -> str | None:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(data, dict) and data.get("blocked") is True and isinstance(data.get("list"), str):
        return data["list"]
    return None


def check_response(case: SelftestCase, status: int, headers: Sequence[tuple[str, str]],
                   body: bytes) -> SelftestResult:
    """The verdict on one answer the proxy gave to a test URL (pure; `run_selftest` uses it)."""
    name = case.list_name

    def result(ok: bool, reason: str) -> SelftestResult:
        return SelftestResult(name, ok, reason)

    link = _has_blocked_by(headers)
    if status == 502:
        return result(False, NOT_BLOCKED_502)
    if status == 503 and body.startswith(ERROR_503_BODY):
        return result(False, "the proxy could not decide (503, on_error: block): see its log")
    if status == 407:
        return result(False, "the proxy asks for credentials (407)")
    if case.mode == "splash":
        if status == case.status and link:
            blocked_by = _json_list(body)
            if blocked_by is not None and blocked_by != name:
                return result(False, f"blocked, but by list {blocked_by!r}, not by this one")
            return result(True, f'blocked ({status} with Link rel="blocked-by")')
        if status == case.status:
            return result(False, f'{status} without a Link rel="blocked-by" header: not urlwarden\'s '
                                 "block page (is operator.url a plain http(s) URL?)")
        if link:
            return result(False, f"blocked with status {status}, expected {case.status}")
        return result(False, f"not blocked: the proxy answered {status}, expected {case.status}")
    if case.mode == "notfound":
        if status == 404 and not link:
            return result(True, "blocked (404, mode notfound)")
        return result(False, f"not blocked: the proxy answered {status}, expected 404 (mode notfound)")
    if case.mode == "close":
        return result(False, f"not blocked: the proxy answered {status}, expected the connection "
                             "to be closed (mode close)")
    return result(False, f"unknown mode {case.mode!r}")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it wraps (causes, contexts, urllib3 reasons, args)."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(found) < _MAX_CHAIN:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or any(item is seen for seen in found):
            continue
        found.append(item)
        todo += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return found


def _classify_failure(case: SelftestCase, scheme: str, exc: requests.RequestException,
                      timeout: float) -> tuple[bool, str]:
    """(ok, reason) when the request raised instead of answering."""
    chain = _chain(exc)
    for item in chain:
        match = _TUNNEL_STATUS.search(str(item.args[0]) if item.args else "")
        if match:
            status = int(match.group(1))
            if status == 403:
                return True, "blocked (the proxy refused the CONNECT with 403: HTTPS not inspected)"
            if status == 502:
                return False, NOT_BLOCKED_502
            return False, f"the proxy answered the CONNECT with {status}"
    if any(isinstance(item, ConnectionRefusedError) for item in chain):
        return False, "cannot connect to the proxy (connection refused): is it running?"
    if isinstance(exc, requests.Timeout) or any(isinstance(item, TimeoutError) for item in chain):
        return False, f"no answer from the proxy within {timeout:g} s"
    closed = any(isinstance(item, (RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                 for item in chain)
    if case.mode == "close" and closed:
        return True, "blocked (connection closed without a response, mode close)"
    if any(isinstance(item, (ssl.SSLError, requests.exceptions.SSLError)) for item in chain):
        if any(isinstance(item, ssl.SSLCertVerificationError) for item in chain):
            return False, ("the proxy's TLS certificate is not trusted: pass its CA "
                           "(<confdir>/mitmproxy-ca-cert.pem) as the CA bundle")
        if scheme == "https":
            return False, ("not blocked: the TLS connection was passed through towards the origin "
                           "(not intercepted, so the host is on no list)")
    if closed:
        return False, "the proxy closed the connection without a response"
    return False, f"the request failed ({type(exc).__name__})"
