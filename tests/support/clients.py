"""Real clients for end-to-end tests: curl, raw sockets, a CONNECT+TLS prober, headless Chromium.

Usage::

    r = curl(origin.url("listed.test", "/x"), proxy=proxy_port)
    r.status, r.header("x-origin"), r.body, r.exit_code, r.stderr
    r = curl("--cacert", ca, "--http2", "https://listed.test/", proxy=proxy_port)

    raw = raw_http("127.0.0.1", proxy_port,
                   b"GET http://a.test/ HTTP/1.1\\r\\nHost: b.test\\r\\n\\r\\n")
    status_of(raw)  # -> 200

    t = tls_handshake(proxy_port, "listed.test:443", sni="other.test", cafile=mitm_ca,
                      http_host="third.test")
    t.connect_status, t.handshake_ok, t.issuer_cn, t.sans, t.error, t.response

    page = chromium_load(origin.url("listed.test", "/"), proxy_port, tmp_path)
    page.text, page.screenshot_path

    page = chromium_pac_load(url, "data:application/x-ns-proxy-autoconfig;base64,...",
                             resolve={"listed.test": "127.0.0.1"},
                             managed_policy={"ProxySettings": {...}})   # optional
    page.text, page.load_error

Every call is bounded by its `timeout`. The programs are looked up on PATH (Chromium at
/usr/bin/chromium); when one is missing the calling test is skipped with a message saying so
(``scripts/system-deps`` installs them).

curl runs with ``-q`` (no ~/.curlrc), ``-g`` (no URL globbing, so ``[::1]`` works) and without
any ``*_proxy`` environment variables: it goes direct unless `proxy` (or ``--proxy``) is given.

Chromium runs with a fresh profile, the proxy for every URL including loopback
(``--proxy-bypass-list=<-loopback>``), background networking and component updates off, its
Google sign-in and updater URLs pointed at a closed loopback port (without that, Chromium 156
sends a CONNECT to its vendor's account service and POSTs to its update service to the
proxy on every start), and ``--host-resolver-rules`` that make every name Chromium itself would
resolve fail (it resolves nothing when it uses the proxy), so it can only ever talk to the proxy.
Run the proxy with ``ProxyProcess(hosts=...)`` anyway: its private resolv.conf is the second
wall that keeps anything a browser asks for on loopback.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = [
    "CurlResult",
    "curl",
    "raw_http",
    "status_of",
    "TlsResult",
    "tls_handshake",
    "BrowserResult",
    "chromium_load",
    "chromium_pac_load",
    "CHROMIUM",
]

CHROMIUM = "/usr/bin/chromium"
CURL_GRACE = 5.0  # seconds the subprocess timeout exceeds curl's own --max-time
MAX_READ = 16 * 1024 * 1024  # bytes any raw reader accepts before it stops
MAX_CONNECT_HEAD = 64 * 1024
KILL_WAIT = 5.0

_LOAD_FAILED = re.compile(r"Page load failed: (\S+)")
_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)?\s+(\d{3})")


def _no_proxy_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def _proxy_url(proxy: int | str) -> str:
    if isinstance(proxy, int):
        return f"http://127.0.0.1:{proxy}"
    return proxy


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group we created for proc (start_new_session=True)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(KILL_WAIT)
    except subprocess.TimeoutExpired:
        pass


def _run_bounded(argv: list[str], timeout: float, *, reap_group: bool = False, **kw) -> subprocess.CompletedProcess:
    """subprocess.run in a new session (its own process group); on timeout that group is
    killed and TimeoutExpired re-raised. reap_group: also kill what is left of the group after
    a normal exit (helpers a browser may leave behind)."""
    proc = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise
    if reap_group:
        _kill_group(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# ----------------------------------------------------------------------------- curl
@dataclass(frozen=True)
class CurlResult:
    status: int | None  # status of the last response; None when there was none
    headers: list[tuple[str, str]]  # of the last response; names lower-cased, in order
    body: bytes
    exit_code: int  # curl's exit code (0 ok, 7 connect failed, 28 timeout, 35/60 TLS, ...)
    stderr: str
    blocks: list[tuple[int, list[tuple[str, str]]]] = field(default_factory=list)
    # every response head curl saw, in order (a proxy's CONNECT answer, 1xx, redirects...)

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for n, v in self.headers if n == lname]

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _parse_header_dump(raw: bytes) -> list[tuple[int, list[tuple[str, str]]]]:
    blocks: list[tuple[int, list[tuple[str, str]]]] = []
    for line in raw.split(b"\n"):
        line = line.rstrip(b"\r")
        m = _STATUS_LINE.match(line)
        if m:
            blocks.append((int(m.group(1)), []))
        elif blocks and b":" in line:
            name, _, value = line.partition(b":")
            blocks[-1][1].append((name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()))
    return blocks


def curl(*args: str, proxy: int | str | None = None, timeout: float = 10) -> CurlResult:
    """Run the real curl with `args` (URL(s) and options, passed through as given).

    `proxy`: a port on 127.0.0.1 or a proxy URL (adds ``--proxy``). Adds ``-sS -q -g``,
    ``--max-time timeout``, ``-D`` and ``-o`` to temporary files. The last response head is the
    result's status and headers; all heads are in `blocks`."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not installed (scripts/system-deps installs it)")
    with tempfile.TemporaryDirectory(prefix="urlwarden-curl-") as tmp:
        head_file = Path(tmp, "headers")
        body_file = Path(tmp, "body")
        argv = [exe, "-q", "-sS", "-g", "--max-time", str(timeout), "-D", str(head_file), "-o", str(body_file)]
        if proxy is not None:
            argv += ["--proxy", _proxy_url(proxy)]
        argv += [str(a) for a in args]
        try:
            done = _run_bounded(
                argv, timeout + CURL_GRACE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=_no_proxy_env(),
            )
        except subprocess.TimeoutExpired:
            raise AssertionError(f"curl did not finish within {timeout + CURL_GRACE}s: {argv}") from None
        blocks = _parse_header_dump(head_file.read_bytes() if head_file.exists() else b"")
        body = body_file.read_bytes() if body_file.exists() else b""
    status, headers = blocks[-1] if blocks else (None, [])
    return CurlResult(
        status=status, headers=headers, body=body, exit_code=done.returncode,
        stderr=done.stderr.decode("utf-8", "replace"), blocks=blocks,
    )


# ----------------------------------------------------------------------------- raw sockets
def _response_end(data: bytes, head_only: bool) -> int | None:
    """Offset just past the first complete HTTP/1.x response in data, or None if incomplete
    (or delimited by close). 1xx other than 101 are skipped as part of the response."""
    pos = 0
    while True:
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            return None
        head = data[pos:end]
        m = _STATUS_LINE.match(head)
        if not m:
            return None
        status = int(m.group(1))
        body_start = end + 4
        if 100 <= status < 200 and status != 101:
            pos = body_start
            continue
        if head_only or status in (101, 204, 304):
            return body_start
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields.setdefault(name.strip().lower(), value.strip())
        if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            return _chunked_end(data, body_start)
        if b"content-length" in fields:
            try:
                length = int(fields[b"content-length"])
            except ValueError:
                return None
            return body_start + length if len(data) >= body_start + length else None
        return None  # delimited by close


def _chunked_end(data: bytes, pos: int) -> int | None:
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(data[pos:eol].split(b";")[0].strip(), 16)
        except ValueError:
            return None
        pos = eol + 2
        if size == 0:
            while True:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return eol + 2
                pos = eol + 2
        pos += size + 2
        if pos > len(data):
            return None


def _read_responses(sock: socket.socket, deadline: float, max_responses: int | None,
                    head_only: bool, initial: bytes = b"") -> bytes:
    data = bytearray(initial)
    while len(data) < MAX_READ:
        if max_responses is not None:
            pos, count = 0, 0
            while count < max_responses:
                end = _response_end(bytes(data[pos:]), head_only and count == 0)
                if end is None:
                    break
                pos += end
                count += 1
            if count >= max_responses:
                return bytes(data)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        except (ConnectionResetError, ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def raw_http(host: str, port: int, data: bytes, timeout: float = 5, *,
             max_responses: int | None = 1) -> bytes:
    """Send `data` as is on a new TCP connection and return what comes back.

    Reading stops at close, at `timeout`, or once `max_responses` complete HTTP/1.x responses
    (by Content-Length / chunked; a 101 ends at its head) have arrived; None reads until close
    or timeout. A request starting with ``HEAD`` makes the first response head-only."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        return _read_responses(sock, deadline, max_responses, data.startswith(b"HEAD "))


def status_of(response: bytes) -> int | None:
    """Status code of the first non-1xx response in raw bytes, or None."""
    for line in response.split(b"\r\n"):
        m = _STATUS_LINE.match(line)
        if m and not (100 <= int(m.group(1)) < 200 and m.group(1) != b"101"):
            return int(m.group(1))
    return None


# ----------------------------------------------------------------------------- CONNECT + TLS
@dataclass(frozen=True)
class TlsResult:
    connect_status: int | None  # status of the CONNECT answer; None when no CONNECT was sent
    connect_response: bytes  # the proxy's CONNECT answer (head and any body it sent)
    handshake_ok: bool
    error: str | None  # why the CONNECT / handshake failed
    issuer_cn: str | None = None  # of the certificate the peer presented
    subject_cn: str | None = None
    sans: list[str] = field(default_factory=list)  # DNS names and IP addresses, as text
    tls_version: str | None = None
    alpn: str | None = None
    response: bytes | None = None  # answer to the optional request, raw

    @property
    def response_status(self) -> int | None:
        return status_of(self.response) if self.response else None


def _cert_summary(der: bytes | None) -> tuple[str | None, str | None, list[str]]:
    if not der:
        return None, None, []
    cert = x509.load_der_x509_certificate(der)

    def cn(name: x509.Name) -> str | None:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else None

    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += ext.get_values_for_type(x509.DNSName)
        sans += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    return cn(cert.issuer), cn(cert.subject), sans


def tls_handshake(
    proxy_port: int,
    connect_target: str | None,
    sni: str | None,
    cafile: str | os.PathLike[str] | None = None,
    timeout: float = 5,
    *,
    proxy_host: str = "127.0.0.1",
    check_hostname: bool | None = None,
    alpn: Iterable[str] | None = ("http/1.1",),
    http_host: str | None = None,
    http_path: str = "/",
    http_request: bytes | None = None,
) -> TlsResult:
    """CONNECT `connect_target` through the proxy at proxy_host:proxy_port, then handshake TLS.

    `sni` is sent as server_name (None: no SNI). With `cafile` the chain is verified against it,
    and, unless `check_hostname` says otherwise, the certificate must match `sni`; without
    `cafile` nothing is verified (the certificate is still read). `connect_target=None` skips
    the CONNECT and handshakes directly with the port (an origin, a transparent proxy).
    After a good handshake, `http_host` sends ``GET http_path HTTP/1.1`` with that Host header
    and ``Connection: close`` (or `http_request` sends raw bytes) and `response` holds the answer.
    The whole call is bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((proxy_host, proxy_port), timeout=timeout)
    except OSError as exc:
        return TlsResult(None, b"", False, f"TCP connect to {proxy_host}:{proxy_port}: {exc}")
    with sock:
        connect_status: int | None = None
        connect_response = b""
        if connect_target is not None:
            sock.sendall(
                f"CONNECT {connect_target} HTTP/1.1\r\nHost: {connect_target}\r\n\r\n".encode("latin-1")
            )
            head = bytearray()
            while b"\r\n\r\n" not in head and len(head) < MAX_CONNECT_HEAD:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    # One byte at a time: nothing of the TLS stream may be swallowed.
                    byte = sock.recv(1)
                except OSError as exc:
                    return TlsResult(None, bytes(head), False, f"reading the CONNECT answer: {exc}")
                if not byte:
                    break
                head += byte
            connect_response = bytes(head)
            connect_status = status_of(connect_response)
            if connect_status != 200:
                # Whatever else the proxy says (a block page?) belongs to the answer.
                connect_response = _read_responses(sock, deadline, 1, False, connect_response)
                return TlsResult(
                    connect_status, connect_response, False,
                    f"CONNECT answered {connect_status}" if connect_status else "no CONNECT answer",
                )

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if cafile is not None:
            ctx.load_verify_locations(cafile=str(cafile))
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.check_hostname = (sni is not None) if check_hostname is None else check_hostname
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            # server_hostname both sets SNI and is what check_hostname compares against.
            # Python sends no SNI for an IP address, as TLS requires.
            tls = ctx.wrap_socket(sock, server_hostname=sni, do_handshake_on_connect=True)
        except (ssl.SSLError, ssl.CertificateError, OSError, ValueError) as exc:
            return TlsResult(connect_status, connect_response, False, f"TLS: {exc}")
        with tls:
            issuer, subject, sans = _cert_summary(tls.getpeercert(binary_form=True))
            response = None
            if http_request is None and http_host is not None:
                http_request = (
                    f"GET {http_path} HTTP/1.1\r\nHost: {http_host}\r\nConnection: close\r\n\r\n"
                ).encode("latin-1")
            if http_request is not None:
                try:
                    tls.sendall(http_request)
                    response = _read_responses(tls, deadline, 1, http_request.startswith(b"HEAD "))
                except OSError as exc:
                    response = f"(send failed: {exc})".encode()
            return TlsResult(
                connect_status, connect_response, True, None, issuer, subject, sans,
                tls.version(), tls.selected_alpn_protocol(), response,
            )


# ----------------------------------------------------------------------------- Chromium
@dataclass(frozen=True)
class BrowserResult:
    text: str  # visible text of the loaded page (tags, scripts, styles stripped; spaces collapsed)
    screenshot_path: Path | None  # None when the page failed to load (see load_error)
    dom: str  # the serialized DOM as --dump-dom printed it ("" when the load failed)
    load_error: str | None = None  # e.g. "net::ERR_TUNNEL_CONNECTION_FAILED"; None: it loaded
    stderr: str = ""  # Chromium's log of the screenshot run (mostly D-Bus noise)


class _TextExtractor(html.parser.HTMLParser):
    _HIDDEN = {"script", "style", "noscript", "template", "head", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self._HIDDEN:
            self._hidden_depth += 1

    def handle_endtag(self, tag):
        if tag in self._HIDDEN and self._hidden_depth:
            self._hidden_depth -= 1

    def handle_data(self, data):
        if not self._hidden_depth:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    parser = _TextExtractor()
    parser.feed(dom)
    parser.close()
    return " ".join(" ".join(parser.parts).split())


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-dev-shm-usage",
    "--no-pings",
    "--dns-prefetch-disable",
    "--metrics-recording-only",
    "--safebrowsing-disable-auto-update",
    "--password-store=basic",
    "--use-mock-keychain",
    "--hide-scrollbars",
    "--mute-audio",
    "--disable-features=OptimizationHints,MediaRouter,Translate,NetworkTimeServiceQuerying,"
    "CertificateTransparencyComponentUpdater,AutofillServerCommunication,InterestFeedContentSuggestions",
    "--disable-component-extensions-with-background-pages",
    "--disable-search-engine-choice-screen",
    # Even with the switches above Chromium 156 still asks accounts.google.com (GAIA) and
    # update.googleapis.com (component updater) through the proxy; point both at a closed
    # loopback port instead.
    "--gaia-url=http://127.0.0.1:9/",
    "--component-updater=url-source=http://127.0.0.1:9/",
    "--proxy-bypass-list=<-loopback>",
    # Chromium resolves nothing itself when it uses the proxy; make sure it never could.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def chromium_load(
    url: str,
    proxy: int | str,
    out_dir: str | os.PathLike[str],
    timeout: float = 60,
    *,
    ignore_certificate_errors: bool = False,
    ignore_cert_spki: str | Iterable[str] | None = None,
    window_size: tuple[int, int] = (1024, 768),
    extra_args: Iterable[str] = (),
) -> BrowserResult:
    """Load `url` in real headless Chromium through the HTTP proxy (a port on 127.0.0.1 or a
    proxy URL): once with --dump-dom (-> `text`, `dom`), once with --screenshot
    (-> ``out_dir/page.png``). Each run gets a new profile directory, removed afterwards.

    For HTTPS through an intercepting proxy, pass the proxy CA's SPKI hash
    (`certs.spki_sha256(ca_pem)`; mitmproxy signs every leaf with its CA's key, so it matches)
    as `ignore_cert_spki`, or `ignore_certificate_errors=True`. `timeout` bounds both runs
    together; on expiry Chromium's process group is killed and the test fails.

    A page that fails to load is a result, not an error: `load_error` holds Chromium's net error
    (a proxy answering CONNECT with anything but 200 gives ``net::ERR_TUNNEL_CONNECTION_FAILED``;
    Chromium never shows the body of such an answer), `screenshot_path` is None and `text`/`dom`
    are empty. Chromium exiting non-zero, or writing no screenshot without a load error, fails."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/system-deps installs chromium)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    screenshot = out / "page.png"
    screenshot.unlink(missing_ok=True)
    flags = [*CHROMIUM_FLAGS, f"--proxy-server={_proxy_url(proxy)}"]
    if ignore_certificate_errors:
        flags.append("--ignore-certificate-errors")
    if ignore_cert_spki:
        pins = [ignore_cert_spki] if isinstance(ignore_cert_spki, str) else list(ignore_cert_spki)
        flags.append(f"--ignore-certificate-errors-spki-list={','.join(pins)}")
    flags += list(extra_args)
    deadline = time.monotonic() + timeout

    def run(mode_flags: list[str]) -> subprocess.CompletedProcess:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"chromium_load({url}) ran out of its {timeout}s")
        with tempfile.TemporaryDirectory(prefix="urlwarden-chromium-") as profile:
            argv = [CHROMIUM, *flags, f"--user-data-dir={profile}", *mode_flags, url]
            try:
                done = _run_bounded(
                    argv, left, reap_group=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=_no_proxy_env(),
                )
            except subprocess.TimeoutExpired:
                raise AssertionError(f"chromium did not finish within {timeout}s: {argv}") from None
        if done.returncode != 0:
            raise AssertionError(
                f"chromium exited {done.returncode} for {url}:\n"
                f"{done.stderr.decode('utf-8', 'replace')[-4000:]}"
            )
        return done

    dumped = run(["--dump-dom"])
    dom = dumped.stdout.decode("utf-8", "replace")
    shot = run([f"--screenshot={screenshot}", f"--window-size={window_size[0]},{window_size[1]}"])
    log = shot.stderr.decode("utf-8", "replace")
    failed = _LOAD_FAILED.search(dumped.stderr.decode("utf-8", "replace")) or _LOAD_FAILED.search(log)
    load_error = failed.group(1) if failed else None
    if not screenshot.exists() and load_error is None:
        raise AssertionError(f"chromium wrote no screenshot for {url}:\n{log[-4000:]}")
    return BrowserResult(
        text=visible_text(dom),
        screenshot_path=screenshot if screenshot.exists() else None,
        dom=dom,
        load_error=load_error,
        stderr=log,
    )


CHROMIUM_POLICY_DIR = Path("/etc/chromium")  # Debian's Chromium reads policies/managed/*.json here

# Runs inside a private mount namespace: a copy of /etc/chromium with the test's policy file is
# bind-mounted over the real one for this process tree only; the machine's own directory is
# never written to.
_POLICY_NS_SCRIPT = 'set -e; mount --bind "$1" "$2"; shift 2; exec "$@"'


def chromium_pac_load(
    url: str,
    pac_url: str | None,
    *,
    resolve: dict[str, str] | None = None,
    managed_policy: dict | None = None,
    timeout: float = 60,
) -> BrowserResult:
    """Load `url` once (--dump-dom) in real headless Chromium configured by a PAC URL instead of
    a fixed proxy, as a user's browser would be: no implicit loopback rule is removed, and a PAC
    that cannot be loaded leaves Chromium free to go DIRECT. `resolve` maps host names to
    addresses for Chromium's own resolver (every other name fails to resolve), so that a DIRECT
    attempt at a listed name reaches a local origin and is seen there.

    `managed_policy` (the JSON object of a policy file) runs Chromium with that policy as a
    machine-wide managed policy: in a private mount namespace a temporary copy of /etc/chromium
    holding ``policies/managed/urlwarden-test.json`` is mounted over the real one. That needs
    root and util-linux's unshare; the test is skipped otherwise.

    Returns `BrowserResult` with `screenshot_path` None (no screenshot run); a page that fails to
    load has `load_error` set (e.g. ``net::ERR_PROXY_CONNECTION_FAILED``)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (scripts/system-deps installs chromium)")
    rules = [f"MAP {name} {address}" for name, address in (resolve or {}).items()]
    rules.append("MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith(("--proxy-bypass-list=", "--host-resolver-rules="))]
    flags.append(f"--host-resolver-rules={', '.join(rules)}")
    if pac_url is not None:
        flags.append(f"--proxy-pac-url={pac_url}")
    with tempfile.TemporaryDirectory(prefix="urlwarden-chromium-") as work:
        profile = Path(work) / "profile"
        argv = [CHROMIUM, *flags, f"--user-data-dir={profile}", "--dump-dom", url]
        if managed_policy is not None:
            reason = _policy_namespace_unavailable_reason()
            if reason is not None:
                pytest.skip(f"chromium_pac_load(managed_policy=...): {reason}")
            etc = Path(work) / "etc-chromium"
            shutil.copytree(CHROMIUM_POLICY_DIR, etc, symlinks=True)
            (etc / "policies" / "managed").mkdir(parents=True, exist_ok=True)
            (etc / "policies" / "managed" / "urlwarden-test.json").write_text(json.dumps(managed_policy))
            argv = ["unshare", "--mount", "--propagation", "private", "--",
                    "sh", "-c", _POLICY_NS_SCRIPT, "sh", str(etc), str(CHROMIUM_POLICY_DIR), *argv]
        try:
            done = _run_bounded(argv, timeout, reap_group=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=_no_proxy_env())
        except subprocess.TimeoutExpired:
            raise AssertionError(f"chromium did not finish within {timeout}s: {argv}") from None
    log = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        raise AssertionError(f"chromium exited {done.returncode} for {url}:\n{log[-4000:]}")
    dom = done.stdout.decode("utf-8", "replace")
    failed = _LOAD_FAILED.search(log)
    return BrowserResult(text=visible_text(dom), screenshot_path=None, dom=dom,
                         load_error=failed.group(1) if failed else None, stderr=log)


def _policy_namespace_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "a private managed-policy directory needs root (unshare --mount + mount --bind)"
    if shutil.which("unshare") is None:
        return "a private managed-policy directory needs util-linux's unshare; not found"
    if not CHROMIUM_POLICY_DIR.is_dir():
        return f"{CHROMIUM_POLICY_DIR} does not exist, so there is nothing to mount a private copy over"
    return None
