"""Bodies pass through; nothing of a finished (or long-running) connection is kept.

urlwarden decides on names and URLs, before any body exists, so it never needs a body. mitmproxy,
though, holds every request and response body whole in memory unless told to stream, and keeps
every message of a raw TCP, UDP or WebSocket connection in its flow for as long as the connection
lasts. One large download (or one long WebSocket) could then take the proxy's memory, and with
it everyone's protection. This module is the part of the addon layer that prevents both:

* ``urlwarden_stream_bodies`` (default ``0``: every body streams from its first byte) sets
  mitmproxy's own ``stream_large_bodies``. A size (``10m``) keeps bodies up to that size whole
  for the operator's own addons; ``off`` buffers every body (mitmproxy's default).
* ``urlwarden_keep_messages`` (default off) trims each TCP, UDP and WebSocket flow to its latest
  message as it passes, so that a long connection costs the same memory as a short one.
* Streaming makes mitmproxy's engine log one INFO line per streamed message, naming the host.
  mitmproxy turns every log record into an ``add_log`` event for every addon, which cost a small
  request about 9 % more instructions (benchmarks/bench_instructions.py); with
  ``urlwarden_private_logs`` (default on) nothing below error is shown anyway, so the engine's
  logger is set to drop records below warning before they are made.
* A request answered at its headers (a block page, a 503 while not ready, a proxy-auth 407)
  is answered at once, without reading its body: mitmproxy 11 would read a body it then throws
  away (and whole, into memory, or refuse to: "Can't set a response and enable streaming at the
  same time"). `install_answer_before_body` teaches mitmproxy's HTTP stream that one step; the
  connection (HTTP/1) or stream (HTTP/2, HTTP/3) is then closed, so the client stops sending.

Only mitmproxy's HTTP layer is patched, once, and only where a response is already set while
the request body has not been read; every other path is mitmproxy's own.
"""

from __future__ import annotations

import functools
import logging
import time

from mitmproxy import ctx, exceptions
from mitmproxy.utils import human

STREAM_ALL = "0"
"""Stream every body from its first byte (mitmproxy streams bodies larger than this many bytes)."""
STREAM_OFF = "off"
EARLY_ANSWER_MESSAGE = "answered before its body: the request body was not read"
ENGINE_LOGGER = "mitmproxy.proxy.server"
"""mitmproxy's per-connection logger: it writes "Streaming response from HOST" for every streamed message."""
PRIVATE_ENGINE_LOG_LEVEL = logging.WARNING


def stream_large_bodies_value(text: str) -> str | None:
    """The ``stream_large_bodies`` value for a ``urlwarden_stream_bodies`` setting.

    ``off`` (or empty) gives None: mitmproxy then buffers every body. Anything else must be a
    size in mitmproxy's syntax (``0``, ``512k``, ``10m``, ``1g``); raises ValueError otherwise.
    """
    value = text.strip().lower()
    if value in ("", STREAM_OFF):
        return None
    size = human.parse_size(value)
    if size is None or size < 0:
        raise ValueError(f"not a size: {text!r}")
    return value


class BodyStreaming:
    """Streams bodies and keeps no message history; see the module docstring."""

    def load(self, loader) -> None:
        loader.add_option(
            "urlwarden_stream_bodies", str, STREAM_ALL,
            "Stream request and response bodies larger than this size, with mitmproxy's "
            "stream_large_bodies syntax (it sets that option): 0 streams every body from its first "
            "byte (memory flat, whatever the size); 10m keeps bodies up to 10 MB whole in memory "
            "for addons that read flow.request.content or flow.response.content; off buffers every "
            "body whole (a 1 GB download then takes 1 GB of memory before its first byte reaches "
            "the client).",
        )
        loader.add_option(
            "urlwarden_keep_messages", bool, False,
            "Keep every TCP, UDP and WebSocket message of a connection in its flow until the "
            "connection ends (mitmproxy's default; memory grows with the connection's traffic). "
            "Off: each flow keeps only its latest message, which addons still see in their "
            "tcp_message, udp_message and websocket_message hooks.",
        )
        install_answer_before_body()

    def __init__(self) -> None:
        self._configured = False

    def configure(self, updated: set[str]) -> None:
        # mitmproxy reports only the options that changed: the defaults must be applied once too.
        if "urlwarden_private_logs" in ctx.options and (not self._configured or "urlwarden_private_logs" in updated):
            private = ctx.options.urlwarden_private_logs
            logging.getLogger(ENGINE_LOGGER).setLevel(PRIVATE_ENGINE_LOG_LEVEL if private else logging.NOTSET)
        if self._configured and "urlwarden_stream_bodies" not in updated:
            return
        try:
            wanted = stream_large_bodies_value(ctx.options.urlwarden_stream_bodies)
        except ValueError:
            raise exceptions.OptionsError(
                f"urlwarden_stream_bodies: {ctx.options.urlwarden_stream_bodies!r} is not a size "
                "(e.g. 0, 512k, 10m) or 'off'") from None
        self._configured = True
        if "stream_large_bodies" in ctx.options and ctx.options.stream_large_bodies != wanted:
            ctx.options.update(stream_large_bodies=wanted)

    # The hooks run after the message was appended and before it is relayed; the layer relays
    # its own reference to the message, so trimming the list here changes nothing on the wire.
    def tcp_message(self, flow) -> None:
        if not ctx.options.urlwarden_keep_messages:
            del flow.messages[:-1]

    def udp_message(self, flow) -> None:
        if not ctx.options.urlwarden_keep_messages:
            del flow.messages[:-1]

    def websocket_message(self, flow) -> None:
        if not ctx.options.urlwarden_keep_messages and flow.websocket is not None:
            del flow.websocket.messages[:-1]


def install_answer_before_body() -> bool:
    """Let mitmproxy answer a request whose response is set at its headers without reading its body.

    Idempotent. Returns False (and changes nothing) when this mitmproxy's HTTP layer does not have
    the shape this was written against (mitmproxy 11); requests are then answered after their
    body, as mitmproxy does by itself.
    """
    from mitmproxy.proxy.layers import http as layers_http

    stream_class = getattr(layers_http, "HttpStream", None)
    needed = ("state_wait_for_request_headers", "start_request_stream", "state_consume_request_body",
              "state_errored", "send_response", "check_killed")
    if stream_class is None or not all(hasattr(stream_class, name) for name in needed):
        return False
    if getattr(stream_class, "_urlwarden_answers_before_body", False):
        return True
    wait_for_headers = stream_class.state_wait_for_request_headers
    start_stream = stream_class.start_request_stream

    @functools.wraps(wait_for_headers)
    def state_wait_for_request_headers(self, event):
        yield from wait_for_headers(self, event)
        # mitmproxy has just chosen to consume (buffer) the body of a request that is answered.
        if (self.flow is not None and self.flow.response is not None and not event.end_stream
                and self.client_state == self.state_consume_request_body):
            yield from _answer_before_body(self, layers_http)

    @functools.wraps(start_stream)
    def start_request_stream(self):
        if self.flow.response is not None:  # mitmproxy raises NotImplementedError here
            yield from _answer_before_body(self, layers_http)
        else:
            yield from start_stream(self)

    stream_class.state_wait_for_request_headers = state_wait_for_request_headers
    stream_class.start_request_stream = start_request_stream
    stream_class._urlwarden_answers_before_body = True
    return True


def _answer_before_body(stream, layers_http):
    """Send the flow's response now, then end the request without reading the rest of its body."""
    from mitmproxy.net.http import status_codes

    flow = stream.flow
    stream.client_state = stream.state_errored  # body bytes that still arrive are dropped unread
    flow.response.timestamp_start = time.time()
    yield layers_http.HttpResponseHeadersHook(flow)
    if (yield from stream.check_killed(True)):
        return
    yield from stream.send_response()
    if stream.server_state == stream.state_errored:  # killed in the response hook
        return
    client = stream.context.client
    yield layers_http.SendHttp(layers_http.ResponseEndOfMessage(stream.stream_id), client)
    # HTTP/1: close the connection (the rest of the body is never read); HTTP/2 and 3: reset
    # the stream. NO_RESPONSE: the response is already out, no error page follows it.
    yield layers_http.SendHttp(
        layers_http.ResponseProtocolError(stream.stream_id, EARLY_ANSWER_MESSAGE, status_codes.NO_RESPONSE),
        client,
    )
    flow.live = False
    yield layers_http.DropStream(stream.stream_id)
