"""A real HTTP/HTTPS feed server on loopback whose answers each test scripts, faults included.

Usage::

    with FeedServer() as server:                               # plain HTTP on 127.0.0.1
        server.script("/iwf", Reply(body=b"a.test/\\n", etag='"v1"'))
        server.script("/iwf", Reply(status=500), Reply(body=...))   # queued, served in order
        url = server.url("/iwf")                               # http://127.0.0.1:<port>/iwf
        ...
        server.requests_for("/iwf")[0].headers["authorization"]

    with FeedServer(pki=pki, client_ca=pki.ca_cert) as server: # HTTPS, client cert required
        server.url("/iwf")                                     # https://127.0.0.1:<port>/iwf

Answers. Each path has a queue of `Reply` values (`script`) and a default (`set_default`): a
request takes the next queued reply, else the default, else gets 404. A `Reply` sets the status,
headers, body, and faults:

    delay         seconds to wait before answering (interrupted when the server stops)
    reset_after   send the headers and this many body bytes, then reset the connection (RST)
    truncate_to   announce the full Content-Length but send only this many bytes, then close
    etag          sent as ETag; a request whose If-None-Match equals it gets 304 instead
    gzip          send the body gzip-compressed with Content-Encoding: gzip
    chunks        send the body in this many writes, `chunk_interval` seconds apart (a slow
                  download); `chunks_sent(path)` counts the writes made so far
    last_chunk_gate  a `threading.Event` the last chunk waits for (at most IDLE_TIMEOUT), so a
                  test decides when a slow download ends

Records. Every request is kept as a `RequestRecord` (method, path, query, lower-cased headers,
the client certificate's common name under mTLS), in arrival order.

Bounds: every connection socket has `IDLE_TIMEOUT`; delays end when the server stops; `stop()`
closes the listening socket, cuts open keep-alive connections (so a stopped server refuses
like one that is down) and joins the serving thread with a timeout. Only 127.0.0.1 is bound.
"""

from __future__ import annotations

import gzip as gzip_module
import socket
import ssl
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .certs import TestPKI

__all__ = ["FeedServer", "Reply", "RequestRecord"]

IDLE_TIMEOUT = 10.0
JOIN_TIMEOUT = 5.0
POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class Reply:
    """One scripted answer; see the module docstring."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    reset_after: int | None = None
    truncate_to: int | None = None
    etag: str | None = None
    gzip: bool = False
    chunks: int = 1
    chunk_interval: float = 0.0
    last_chunk_gate: threading.Event | None = None


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    client_cn: str | None  # common name of the client certificate (mTLS), else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: FeedServer, context: ssl.SSLContext | None):
        self.owner = owner
        self.context = context
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.settimeout(IDLE_TIMEOUT)
        if self.context is not None:
            # The handshake happens in the handler's thread, at its first read.
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.connections_lock:
            self.open_connections.add(sock)
        return sock, addr

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Cut every open keep-alive connection (a stopped server must look down)."""
        with self.connections_lock:
            connections = list(self.open_connections)
            self.open_connections.clear()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        pass  # faults are the point here; tests look at what the client saw


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        record = RequestRecord(
            method="GET",
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            client_cn=self._client_cn(),
        )
        reply = owner._take(record)
        if reply.delay and owner._stopping.wait(reply.delay):
            self.close_connection = True
            return
        if reply.etag is not None and self.headers.get("If-None-Match") == reply.etag:
            self.send_response(304)
            self.send_header("ETag", reply.etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = gzip_module.compress(reply.body) if reply.gzip else reply.body
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.etag is not None:
            self.send_header("ETag", reply.etag)
        if reply.gzip:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        if reply.reset_after is not None or reply.truncate_to is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.reset_after is not None:
            self.wfile.write(body[: reply.reset_after])
            self.wfile.flush()
            self._reset()
            return
        if reply.truncate_to is not None:
            self.wfile.write(body[: reply.truncate_to])
            self.wfile.flush()
            self.close_connection = True
            return
        if reply.chunks > 1 or reply.last_chunk_gate is not None:
            self._write_slowly(owner, record.path, body, reply)
            return
        self.wfile.write(body)

    def _write_slowly(self, owner: FeedServer, path: str, body: bytes, reply: Reply) -> None:
        size = -(-len(body) // reply.chunks)
        pieces = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            if index and owner._stopping.wait(reply.chunk_interval):
                self.close_connection = True
                return
            if last and reply.last_chunk_gate is not None:
                reply.last_chunk_gate.wait(IDLE_TIMEOUT)
            self.wfile.write(piece)
            self.wfile.flush()
            owner._count_chunk(path)

    def _client_cn(self) -> str | None:
        getpeercert = getattr(self.connection, "getpeercert", None)
        cert = getpeercert() if getpeercert is not None else None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def _reset(self) -> None:
        """Close with SO_LINGER 0, so the client sees a reset rather than an orderly close."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw = self.connection
            if isinstance(raw, ssl.SSLSocket):
                raw = socket.socket(fileno=raw.detach())
            raw.close()
        except OSError:
            pass

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass


class FeedServer:
    """See the module docstring."""

    def __init__(self, *, pki: TestPKI | None = None, client_ca: str | Path | None = None):
        context = None
        if pki is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
            if client_ca is not None:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(str(client_ca))
        self.tls = context is not None
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._requests: list[RequestRecord] = []
        self._chunks_sent: dict[str, int] = {}
        self._stopping = threading.Event()
        self._server = _Server(self, context)
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FeedServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL},
            name=f"feedserver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(JOIN_TIMEOUT)
            self._thread = None
        self._server.server_close()
        self._server.drop_connections()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- scripting ------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Queue replies for `path`, served once each in order."""
        with self._lock:
            self._queues.setdefault(path, deque()).extend(replies)

    def set_default(self, path: str, reply: Reply) -> None:
        """The reply for `path` whenever its queue is empty."""
        with self._lock:
            self._defaults[path] = reply

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path]

    def pending(self, path: str) -> int:
        """Queued replies not served yet."""
        with self._lock:
            return len(self._queues.get(path, ()))

    def reset(self) -> None:
        with self._lock:
            self._queues.clear()
            self._defaults.clear()
            self._requests.clear()

    def chunks_sent(self, path: str) -> int:
        """Body writes made so far for `path` by replies with ``chunks`` (all requests together)."""
        with self._lock:
            return self._chunks_sent.get(path, 0)

    def _count_chunk(self, path: str) -> None:
        with self._lock:
            self._chunks_sent[path] = self._chunks_sent.get(path, 0) + 1

    def _take(self, record: RequestRecord) -> Reply:
        with self._lock:
            self._requests.append(record)
            queue = self._queues.get(record.path)
            if queue:
                return queue.popleft()
            return self._defaults.get(record.path, Reply(status=404, body=b"not found\n"))
