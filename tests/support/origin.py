"""A real HTTP and HTTPS origin server on 127.0.0.1 that records everything it sees.

Usage::

    with Origin(pki) as origin:                       # pki from certs.make_test_pki / test_pki
        url = origin.url("origin.test", "/x")          # http://origin.test:<http_port>/x
        surl = origin.url("origin.test", "/x", tls=True)
        ...drive a client / proxy at it...
        origin.wait_idle()                             # let in-flight work finish
        assert [c.kind for c in origin.connections] == ["http"]
        assert origin.requests[0].host == f"origin.test:{origin.http_port}"
        origin.reset()                                 # forget the records

(Within pytest, use the `origin` / `fresh_origin` fixtures of `tests.support.fixtures`.)

What it does
- Two listening sockets on 127.0.0.1 with ephemeral ports: `http_port` (plain) and
  `https_port` (TLS with the test PKI's server certificate, ALPN ``http/1.1`` only).
- Every accepted TCP connection is recorded as a `ConnectionRecord` (monotonic time, kind
  ``"http"``/``"https"``, client port, the TLS SNI read by the ``sni_callback``, handshake
  outcome). A connection that only opens and closes is still recorded: that is how a test proves
  that a proxy did, or did not, contact the origin.
- Every request (also malformed ones) is recorded as a `RequestRecord`: method, raw request
  target, version, all header lines in order as sent (so duplicate Host headers are visible),
  the body, and the status the origin answered.
- Answer: ``200``, ``Content-Type: text/plain; charset=utf-8``, ``X-Origin: 1``, body
  ``origin ok <host><path>`` where <host> is the first Host header exactly as received (with
  its port, if the client sent one) and <path> is the origin-form target (for an absolute-form
  target, its path and query). HEAD gets no body. Keep-alive follows HTTP/1.1 rules.
  Also ``X-Origin-Kind: http|https`` and ``Cache-Control: no-store``.
- Bulk endpoints, for streaming tests, that never hold a body whole:
  ``GET /stream/<n>`` answers ``n`` bytes of `pattern_chunks` (deterministic, generated as sent,
  with ``Content-Length``); ``POST /sink`` reads a ``Content-Length`` body of any size in
  chunks (``max_body_bytes`` does not apply), hashes it, and answers (and records, as the
  request's body) ``received <length> <sha256 hex>``.
- A WebSocket upgrade (``Upgrade: websocket`` + ``Sec-WebSocket-Key``) gets ``101`` with the
  right ``Sec-WebSocket-Accept``, then one text frame ``origin ws <host><path>``, then after
  `ws_hold` seconds a close frame (1000), then the socket is closed.
- Errors: header block over `max_header_bytes` -> 431; a body over `max_body_bytes` -> 413;
  unparsable request -> 400; not HTTP/1.x -> 505; all of them close the connection.

Robustness: each connection has its own daemon thread; every socket operation is bounded by
`idle_timeout`; a client that connects and hangs up (or never speaks) costs one short-lived
thread; more than `max_connections` open at once are closed on accept. `close()` shuts every
socket down and joins every thread (bounded).

All times are `time.monotonic()` values, comparable with the test's own `time.monotonic()`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .certs import TestPKI

__all__ = ["Origin", "ConnectionRecord", "RequestRecord", "WS_GUID", "pattern_chunks", "pattern_sha256"]

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B5B"
DEFAULT_IDLE_TIMEOUT = 5.0  # seconds a connection may stay silent (also bounds each recv/send)
DEFAULT_WS_HOLD = 0.5  # seconds a WebSocket stays open after the 101
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
ACCEPT_POLL = 0.2  # seconds between checks of the stop flag in the accept loop
JOIN_TIMEOUT = 5.0  # seconds close() waits for all threads together
RECV_SIZE = 65536
STREAM_PATH = "/stream/"
SINK_PATH = "/sink"
# A prime length, so that the pattern's period lines up with no buffer or chunk size on the way:
# a dropped, repeated or reordered chunk changes the checksum.
_PATTERN = random.Random(15).randbytes(65521)


def pattern_chunks(size: int, chunk: int = 4 * len(_PATTERN)):
    """`size` deterministic bytes, in chunks of at most `chunk` bytes, generated as they are asked for."""
    block = _PATTERN * (chunk // len(_PATTERN) or 1)
    left = size
    while left > 0:
        piece = block[:left]
        left -= len(piece)
        yield piece


def pattern_sha256(size: int) -> str:
    """The SHA-256 (hex) of the first `size` bytes of `pattern_chunks`."""
    digest = hashlib.sha256()
    for piece in pattern_chunks(size):
        digest.update(piece)
    return digest.hexdigest()


@dataclass(frozen=True)
class ConnectionRecord:
    """One TCP connection accepted by the origin (a snapshot; see `Origin.connections`)."""

    id: int
    time: float  # time.monotonic() at accept
    kind: str  # "http" or "https"
    peer_port: int  # the client's source port on 127.0.0.1
    sni: str | None = None  # server_name from the ClientHello; None: none sent (or plain http)
    tls_ok: bool | None = None  # https: handshake outcome; None: plain http or not attempted
    alpn: str | None = None
    tls_version: str | None = None
    request_count: int = 0
    error: str | None = None  # TLS failure, timeout, parse error, "over capacity", ...
    closed_time: float | None = None  # time.monotonic() at close; None while still open


@dataclass(frozen=True)
class RequestRecord:
    """One request received by the origin."""

    connection_id: int
    time: float  # time.monotonic() when the request head was complete
    kind: str  # "http" or "https"
    sni: str | None  # SNI of the connection it came on
    method: str
    target: str  # raw request target: "/x?y", "http://h/x", "*", ...
    version: str  # "HTTP/1.1"
    headers: tuple[tuple[str, str], ...]  # (name as sent, value) in order; latin-1 decoded
    body: bytes
    status: int  # what the origin answered (200, 101, 400, 413, 431, 505)

    def header_all(self, name: str) -> list[str]:
        """All values of a header (case-insensitive name), in order."""
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        values = self.header_all(name)
        return values[0] if values else None

    @property
    def hosts(self) -> list[str]:
        """Every Host header value (more than one means the client sent duplicates)."""
        return self.header_all("host")

    @property
    def host(self) -> str | None:
        """The first Host header value, exactly as received (including any port)."""
        return self.header("host")


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    400: "Bad Request",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    505: "HTTP Version Not Supported",
}


class _Conn:
    """Mutable per-connection state; only touched under Origin._lock."""

    def __init__(self, record: ConnectionRecord, sock: socket.socket):
        self.record = record
        self.sock = sock
        self.busy = False
        self.visible = True  # False once reset() has forgotten it (it stays tracked while open)


class Origin:
    """Real HTTP + HTTPS origin on 127.0.0.1 (ephemeral ports) that records all it sees."""

    def __init__(
        self,
        pki: TestPKI,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        ws_hold: float = DEFAULT_WS_HOLD,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ):
        self.pki = pki
        self.idle_timeout = idle_timeout
        self.ws_hold = ws_hold
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._conns: dict[int, _Conn] = {}  # every recorded connection, open or closed
        self._requests: list[RequestRecord] = []
        self._next_id = 1
        self._last_event = time.monotonic()
        self._threads: set[threading.Thread] = set()
        self._listeners: dict[str, socket.socket] = {}
        self._acceptor: threading.Thread | None = None
        self._tls_local = threading.local()

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = self._sni_callback
        self._ssl_ctx = ctx

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> Origin:
        if self._listeners:
            return self
        for kind in ("http", "https"):
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            lsock.bind(("127.0.0.1", 0))
            lsock.listen(128)
            lsock.setblocking(False)
            self._listeners[kind] = lsock
        self._acceptor = threading.Thread(target=self._accept_loop, name="origin-accept", daemon=True)
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop accepting, shut every connection down, join all threads (bounded)."""
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(JOIN_TIMEOUT)
        for lsock in self._listeners.values():
            lsock.close()
        with self._lock:
            open_socks = [c.sock for c in self._conns.values() if c.record.closed_time is None]
            threads = list(self._threads)
        for sock in open_socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + JOIN_TIMEOUT
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Origin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- public API
    @property
    def http_port(self) -> int:
        return self._listeners["http"].getsockname()[1]

    @property
    def https_port(self) -> int:
        return self._listeners["https"].getsockname()[1]

    def url(self, host: str = "127.0.0.1", path: str = "/", *, tls: bool = False) -> str:
        """``http(s)://host:port/path`` for this origin (host is only a name; see ProxyProcess)."""
        if tls:
            return f"https://{host}:{self.https_port}{path}"
        return f"http://{host}:{self.http_port}{path}"

    @property
    def connections(self) -> list[ConnectionRecord]:
        """Snapshot of every connection recorded since the last reset(), in accept order."""
        with self._lock:
            return [c.record for c in self._conns.values() if c.visible]

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of every request recorded since the last reset(), in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._conns.values() if c.record.closed_time is None)

    @property
    def thread_count(self) -> int:
        """Live per-connection threads (for leak checks)."""
        with self._lock:
            return sum(1 for t in self._threads if t.is_alive())

    def reset(self) -> None:
        """Forget all records. Connections still open keep being served; their later requests
        are recorded (with a connection_id that no longer appears in `connections`)."""
        with self._lock:
            self._conns = {k: c for k, c in self._conns.items() if c.record.closed_time is None}
            for c in self._conns.values():
                c.visible = False
            self._requests = []
            self._last_event = time.monotonic()
            self._changed.notify_all()

    def wait_idle(self, quiet: float = 0.2, timeout: float = 5.0) -> None:
        """Wait until no request or TLS handshake is in progress and nothing new has happened for
        `quiet` seconds. Raises TimeoutError after `timeout` seconds.

        Proves a negative ("the origin was not contacted") only up to `quiet`: call it after the
        client has its answer, so the proxy already had its chance."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                now = time.monotonic()
                busy = sum(1 for c in self._conns.values() if c.busy)
                calm_for = now - self._last_event
                if busy == 0 and calm_for >= quiet:
                    return
                if now >= deadline:
                    raise TimeoutError(
                        f"origin not idle after {timeout}s: {busy} busy connection(s), "
                        f"last event {calm_for:.2f}s ago"
                    )
                wait = deadline - now if busy else min(quiet - calm_for, deadline - now)
                self._changed.wait(max(0.01, min(wait, 0.1)))

    def wait_until(self, predicate: Callable[[Origin], bool], timeout: float = 5.0) -> None:
        """Wait until predicate(origin) is true; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"origin: condition not met within {timeout}s")
            with self._changed:
                self._changed.wait(0.05)

    # ----------------------------------------------------------------- recording
    def _event(self) -> None:  # caller holds the lock
        self._last_event = time.monotonic()
        self._changed.notify_all()

    def _update(self, cid: int, **fields) -> None:
        with self._lock:
            conn = self._conns.get(cid)
            if conn is not None:
                conn.record = dataclasses.replace(conn.record, **fields)
                self._event()

    def _set_busy(self, cid: int, busy: bool) -> None:
        with self._lock:
            conn = self._conns.get(cid)
            if conn is not None and conn.busy != busy:
                conn.busy = busy
                self._event()

    def _record_request(self, cid: int, rec: RequestRecord) -> None:
        with self._lock:
            self._requests.append(rec)
            conn = self._conns.get(cid)
            if conn is not None:
                conn.record = dataclasses.replace(
                    conn.record, request_count=conn.record.request_count + 1
                )
            self._event()

    # ----------------------------------------------------------------- accepting
    def _accept_loop(self) -> None:
        by_fd = {lsock.fileno(): (kind, lsock) for kind, lsock in self._listeners.items()}
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select(list(by_fd), [], [], ACCEPT_POLL)
            except (OSError, ValueError):
                return
            for fd in readable:
                kind, lsock = by_fd[fd]
                try:
                    sock, peer = lsock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                self._admit(kind, sock, peer)

    def _admit(self, kind: str, sock: socket.socket, peer) -> None:
        sock.setblocking(True)
        sock.settimeout(self.idle_timeout)
        with self._lock:
            cid = self._next_id
            self._next_id += 1
            record = ConnectionRecord(id=cid, time=time.monotonic(), kind=kind, peer_port=peer[1])
            open_now = sum(1 for c in self._conns.values() if c.record.closed_time is None)
            conn = _Conn(record, sock)
            self._conns[cid] = conn
            self._event()
            refuse = open_now >= self.max_connections or self._stop.is_set()
            if not refuse:
                thread = threading.Thread(
                    target=self._serve, args=(cid, kind, sock), name=f"origin-{kind}-{cid}", daemon=True
                )
                self._threads.add(thread)
        if refuse:
            self._update(cid, error="over capacity", closed_time=time.monotonic())
            sock.close()
            return
        thread.start()

    # ----------------------------------------------------------------- serving
    def _sni_callback(self, sslobj, server_name, ctx) -> None:
        self._tls_local.sni = server_name
        return None

    def _wait_readable(self, sock: socket.socket) -> bool:
        """Wait (bounded by idle_timeout, interrupted by close()) until sock has bytes or EOF."""
        deadline = time.monotonic() + self.idle_timeout
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            readable, _, _ = select.select([sock], [], [], min(left, ACCEPT_POLL))
            if readable:
                return True
        return False

    def _serve(self, cid: int, kind: str, sock: socket.socket) -> None:
        sni: str | None = None
        try:
            if kind == "https":
                if not self._wait_readable(sock):
                    self._update(cid, error="no ClientHello before idle timeout")
                    return
                self._set_busy(cid, True)
                self._tls_local.sni = None
                tls = self._ssl_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                with self._lock:
                    self._conns[cid].sock = tls
                try:
                    tls.do_handshake()
                except (ssl.SSLError, OSError) as exc:
                    self._update(cid, sni=self._tls_local.sni, tls_ok=False, error=f"TLS: {exc}")
                    return
                sni = self._tls_local.sni
                self._update(
                    cid, sni=sni, tls_ok=True, alpn=tls.selected_alpn_protocol(), tls_version=tls.version()
                )
                self._set_busy(cid, False)
                sock = tls
            self._serve_http(cid, kind, sni, sock)
        except Exception as exc:  # noqa: BLE001 - record and end this connection only
            self._update(cid, error=f"{type(exc).__name__}: {exc}")
        finally:
            try:
                sock.close()
            except OSError:
                pass
            with self._lock:
                conn = self._conns.get(cid)
                if conn is not None:
                    conn.busy = False
                    conn.record = dataclasses.replace(conn.record, closed_time=time.monotonic())
                self._threads.discard(threading.current_thread())
                self._event()

    def _serve_http(self, cid: int, kind: str, sni: str | None, sock: socket.socket) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            # Idle phase: wait for the first byte of the next request (not "busy").
            if not buf:
                try:
                    data = sock.recv(RECV_SIZE)
                except (TimeoutError, socket.timeout):
                    self._update(cid, error="idle timeout")
                    return
                except (OSError, ssl.SSLError):
                    return
                if not data:
                    return
                buf += data
            self._set_busy(cid, True)
            first = bytes(buf[:1024])
            try:
                head = self._read_head(sock, buf)
                if head is None:
                    return  # client went away mid-request
                method, target, version, headers = self._parse_head(head)
                if method == "POST" and target.split("?")[0] == SINK_PATH:
                    body = self._sink_body(sock, buf, headers)
                else:
                    body = self._read_body(sock, buf, headers)
            except _BadRequest as bad:
                self._reject(cid, kind, sni, sock, bad, first)
                return
            keep = self._respond(cid, kind, sni, sock, method, target, version, headers, body)
            self._set_busy(cid, False)
            if not keep:
                return

    def _recv_more(self, sock: socket.socket, buf: bytearray) -> bool:
        try:
            data = sock.recv(RECV_SIZE)
        except (TimeoutError, socket.timeout, OSError, ssl.SSLError):
            return False
        if not data:
            return False
        buf += data
        return True

    def _read_head(self, sock: socket.socket, buf: bytearray) -> bytes | None:
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                if end + 4 > self.max_header_bytes:
                    raise _BadRequest(431, "header block too large")
                head = bytes(buf[:end])
                del buf[: end + 4]
                return head
            if len(buf) > self.max_header_bytes:
                raise _BadRequest(431, "header block too large")
            if not self._recv_more(sock, buf):
                return None

    @staticmethod
    def _parse_head(head: bytes):
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise _BadRequest(400, f"bad request line {lines[0]!r}")
        method, target, version = parts
        if not version.startswith("HTTP/1."):
            raise _BadRequest(505, f"unsupported version {version!r}")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # obsolete line folding
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, f"bad header line {line!r}")
            headers.append((name, value.strip(" \t")))
        return method, target, version, headers

    def _read_body(self, sock: socket.socket, buf: bytearray, headers) -> bytes:
        te = [v.strip().lower() for n, v in headers if n.lower() == "transfer-encoding"]
        cls = {v.strip() for n, v in headers if n.lower() == "content-length"}
        if te:
            if te[-1].split(",")[-1].strip() != "chunked":
                raise _BadRequest(400, "unsupported transfer-encoding")
            return self._read_chunked(sock, buf)
        if not cls:
            return b""
        if len(cls) > 1 or not next(iter(cls)).isdigit():
            raise _BadRequest(400, "bad content-length")
        length = int(next(iter(cls)))
        if length > self.max_body_bytes:
            raise _BadRequest(413, "body too large")
        while len(buf) < length:
            if not self._recv_more(sock, buf):
                raise _BadRequest(400, "body truncated")
        body = bytes(buf[:length])
        del buf[:length]
        return body

    def _sink_body(self, sock: socket.socket, buf: bytearray, headers) -> bytes:
        """Read a Content-Length body of any size without holding it; returns its summary line."""
        cls = {v.strip() for n, v in headers if n.lower() == "content-length"}
        if len(cls) != 1 or not next(iter(cls)).isdigit():
            raise _BadRequest(400, "sink needs one content-length")
        left = int(next(iter(cls)))
        digest = hashlib.sha256()
        received = 0
        while left > 0:
            if not buf and not self._recv_more(sock, buf):
                raise _BadRequest(400, "body truncated")
            piece = bytes(buf[:left])
            del buf[: len(piece)]
            digest.update(piece)
            received += len(piece)
            left -= len(piece)
        return f"received {received} {digest.hexdigest()}".encode("ascii")

    def _send_stream(self, sock: socket.socket, size: int, keep: bool) -> None:
        self._send(sock, 200, [
            ("Content-Type", "application/octet-stream"), ("Content-Length", str(size)),
            ("X-Origin", "1"), ("Cache-Control", "no-store"), ("Connection", "keep-alive" if keep else "close"),
        ], b"")
        for piece in pattern_chunks(size):
            sock.sendall(piece)

    def _read_line(self, sock: socket.socket, buf: bytearray) -> bytes:
        while True:
            end = buf.find(b"\r\n")
            if end >= 0:
                line = bytes(buf[:end])
                del buf[: end + 2]
                return line
            if len(buf) > self.max_header_bytes or not self._recv_more(sock, buf):
                raise _BadRequest(400, "bad chunked encoding")

    def _read_chunked(self, sock: socket.socket, buf: bytearray) -> bytes:
        body = bytearray()
        while True:
            line = self._read_line(sock, buf)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "bad chunk size") from None
            if size == 0:
                while self._read_line(sock, buf):  # trailer fields, up to the empty line
                    pass
                return bytes(body)
            if len(body) + size > self.max_body_bytes:
                raise _BadRequest(413, "body too large")
            while len(buf) < size + 2:
                if not self._recv_more(sock, buf):
                    raise _BadRequest(400, "chunk truncated")
            body += buf[:size]
            del buf[: size + 2]

    @staticmethod
    def _host_and_path(target: str, headers) -> tuple[str, str]:
        host = next((v for n, v in headers if n.lower() == "host"), None)
        path = target
        if not target.startswith("/") and "://" in target:
            parts = urlsplit(target)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            if host is None:
                host = parts.netloc
        return host or "", path

    @staticmethod
    def _send(sock: socket.socket, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        lines += [f"{n}: {v}" for n, v in headers]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _reject(self, cid, kind, sni, sock, bad: _BadRequest, first: bytes | None) -> None:
        """Answer an error and close. Unless `first` is None (already recorded), record the bad
        request with empty method/target/version and, as its body, the first KiB it sent."""
        if first is not None:
            self._record_request(
                cid,
                RequestRecord(
                    connection_id=cid, time=time.monotonic(), kind=kind, sni=sni, method="",
                    target="", version="", headers=(), body=first, status=bad.status,
                ),
            )
        self._update(cid, error=f"{bad.status}: {bad.reason}")
        body = f"origin error {bad.status}: {bad.reason}\n".encode("latin-1", "replace")
        try:
            self._send(
                sock,
                bad.status,
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                 ("X-Origin", "1"), ("Connection", "close")],
                body,
            )
            # Drain (bounded) what the client is still sending, so closing does not reset the
            # connection before it has read the error.
            sock.settimeout(0.2)
            deadline = time.monotonic() + 1.0
            drained = 0
            while time.monotonic() < deadline and drained < self.max_body_bytes:
                data = sock.recv(RECV_SIZE)
                if not data:
                    break
                drained += len(data)
        except (OSError, ssl.SSLError):
            pass

    def _respond(self, cid, kind, sni, sock, method, target, version, headers, body) -> bool:
        tokens = {
            t.strip().lower() for n, v in headers if n.lower() == "connection" for t in v.split(",")
        }
        upgrade = {
            t.strip().lower() for n, v in headers if n.lower() == "upgrade" for t in v.split(",")
        }
        ws_key = next((v for n, v in headers if n.lower() == "sec-websocket-key"), None)
        host, path = self._host_and_path(target, headers)
        is_ws = "websocket" in upgrade and method == "GET"
        status = 101 if is_ws and ws_key else (400 if is_ws else 200)
        self._record_request(
            cid,
            RequestRecord(
                connection_id=cid, time=time.monotonic(), kind=kind, sni=sni, method=method,
                target=target, version=version, headers=tuple(headers), body=body, status=status,
            ),
        )
        if is_ws:
            if not ws_key:
                self._reject(cid, kind, sni, sock, _BadRequest(400, "websocket without key"), None)
                return False
            self._websocket(sock, ws_key, f"origin ws {host}{path}".encode("latin-1", "replace"))
            return False
        if version == "HTTP/1.1":
            keep = "close" not in tokens
        else:
            keep = "keep-alive" in tokens
        if method == "GET" and path.startswith(STREAM_PATH) and path[len(STREAM_PATH):].isdigit():
            try:
                self._send_stream(sock, int(path[len(STREAM_PATH):]), keep)
            except OSError:
                return False
            return keep
        if method == "POST" and path == SINK_PATH:
            payload = body
        else:
            payload = f"origin ok {host}{path}".encode("latin-1", "replace")
        out_headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(payload))),
            ("X-Origin", "1"),
            ("X-Origin-Kind", kind),
            ("Cache-Control", "no-store"),
            ("Connection", "keep-alive" if keep else "close"),
        ]
        try:
            self._send(sock, 200, out_headers, b"" if method == "HEAD" else payload)
        except OSError:
            return False
        return keep

    def _websocket(self, sock: socket.socket, key: str, text: bytes) -> None:
        accept = base64.b64encode(hashlib.sha1((key.strip() + WS_GUID).encode("ascii")).digest())
        try:
            self._send(
                sock,
                101,
                [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                 ("Sec-WebSocket-Accept", accept.decode("ascii")), ("X-Origin", "1")],
                b"",
            )
            sock.sendall(bytes([0x81, len(text)]) + text if len(text) < 126 else
                         bytes([0x81, 126]) + len(text).to_bytes(2, "big") + text)
            self._stop.wait(self.ws_hold)
            sock.sendall(bytes([0x88, 0x02, 0x03, 0xE8]))  # close, 1000 normal closure
        except OSError:
            pass
