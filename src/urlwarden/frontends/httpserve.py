"""HTTP plumbing shared by the admin listener and the block page server.

Both answer small GET/HEAD requests on their own threads, apart from the proxy: one request per
connection, its head read within `REQUEST_TIMEOUT` and refused with 431 past `MAX_REQUEST_BYTES`,
at most a fixed number of connections at once, no host-name lookups and no access log (it would
record client addresses and request targets). `OneRequestHandler` does the reading and the
refusals; a subclass says how to `answer` a parsed request and how to `send_plain` a short
answer in its own style.
"""

from __future__ import annotations

import io
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["MAX_REQUEST_BYTES", "REQUEST_TIMEOUT", "BoundedHTTPServer", "HeadTooLarge", "OneRequestHandler",
           "read_head"]

log = logging.getLogger("urlwarden")

MAX_REQUEST_BYTES = 16 * 1024
"""A request head (request line and headers) larger than this is refused with 431."""
REQUEST_TIMEOUT = 10.0
"""Seconds a client has to send its request head."""


class HeadTooLarge(Exception):
    """A request head over MAX_REQUEST_BYTES."""


def read_head(sock: socket.socket, deadline: float) -> bytes:
    """The request line and headers (up to the blank line), read within `deadline`."""
    data = bytearray()
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request head not complete in time")
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise HeadTooLarge
    return bytes(data)


class OneRequestHandler(BaseHTTPRequestHandler):
    """One GET or HEAD request per connection, its head bounded in size and time."""

    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def handle(self) -> None:
        self.close_connection = True
        self.request_version = "HTTP/1.1"  # for error answers sent before parsing
        self.command = None
        self.requestline = ""
        try:
            head = read_head(self.connection, time.monotonic() + REQUEST_TIMEOUT)
        except HeadTooLarge:
            self.send_plain(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE.value, b"request head too large\n")
            return
        except OSError:  # timeouts included
            return
        if not head:
            return
        self.connection.settimeout(REQUEST_TIMEOUT)
        self.rfile.close()
        self.rfile = io.BytesIO(head)
        self.raw_requestline = self.rfile.readline(MAX_REQUEST_BYTES + 1)
        if not self.parse_request() or self.request_version == "HTTP/0.9":
            return  # (0.9: no headers to answer with)
        try:
            if self.command not in ("GET", "HEAD"):
                self.send_plain(HTTPStatus.METHOD_NOT_ALLOWED.value, b"only GET and HEAD\n", (("Allow", "GET, HEAD"),))
                return
            self.answer()
        except OSError:
            pass  # the client went away

    def answer(self) -> None:
        """Answer the parsed request (`self.command`, `self.path`, `self.headers`)."""
        raise NotImplementedError

    def send_plain(self, status: int, body: bytes, extra: Sequence[tuple[str, str]] = ()) -> None:
        """Send a short plain-text answer with `extra` headers."""
        raise NotImplementedError

    def send_error(self, code, message=None, explain=None) -> None:
        """Errors found by the stdlib parser: a short plain answer that echoes nothing."""
        try:
            status = HTTPStatus(code)
        except ValueError:
            status = HTTPStatus.BAD_REQUEST
        self.close_connection = True
        self.request_version = "HTTP/1.1"  # the parser's 0.9 default would drop the status line
        self.send_plain(status.value, f"{status.value} {status.phrase}\n".encode())

    def log_message(self, format, *args) -> None:
        """No access log: it would record client addresses and request targets."""


class BoundedHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that serves at most `max_connections` at once (others are closed),
    looks up no host name, and logs a handler's unexpected error by type only (no client address).
    Shared by the admin listener and the block page server."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    log_name = "urlwarden"

    def __init__(self, address: tuple[str, int], family: int, handler: type, max_connections: int,
                 activate: bool = True):
        """Binds `address`; with `activate` False it does not listen yet (call server_activate):
        the port is held, but no connection is accepted, not even into the kernel's backlog."""
        self.address_family = family
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler, bind_and_activate=False)
        try:
            self.server_bind()
            if activate:
                self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host name up (socket.getfqdn): not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        log.error("%s: error while answering a request (%s)", self.log_name,
                  getattr(sys.exc_info()[0], "__name__", "unknown"))
