"""A mitmdump script: where a new connection's time to first byte goes, step by step.

Loaded into a proxy (``mitmdump -s benchmarks/engine_timeline.py``, or ``urlwarden run -- -s
...``), it notes the wall-clock time of each event of a client connection (accepted, CONNECT
read, TLS ClientHello read, TLS with the client done, request headers read, upstream connect
asked, upstream TCP open, upstream TLS done, response headers read) and, at the response
headers, appends one JSON line of the steps' durations in milliseconds to the file named by
``URLWARDEN_TIMELINE`` (bench_bulk.py ``--timeline`` reads them). Only times are written: no
host, address or URL.
"""

import json
import os
import time

STEPS = ("accepted", "connect", "clienthello", "client_tls", "request_headers", "server_connect", "server_tcp",
         "server_tls", "response_headers")


class Timeline:
    def __init__(self) -> None:
        self.marks: dict[str, dict[str, float]] = {}
        self.path = os.environ.get("URLWARDEN_TIMELINE")

    def _mark(self, client_id: str, step: str) -> None:
        self.marks.setdefault(client_id, {}).setdefault(step, time.time())

    def client_connected(self, client) -> None:
        self.marks[client.id] = {"accepted": time.time()}

    def client_disconnected(self, client) -> None:
        self.marks.pop(client.id, None)

    def http_connect(self, flow) -> None:
        self._mark(flow.client_conn.id, "connect")

    def tls_clienthello(self, data) -> None:
        self._mark(data.context.client.id, "clienthello")

    def tls_established_client(self, data) -> None:
        self._mark(data.context.client.id, "client_tls")

    def requestheaders(self, flow) -> None:
        self._mark(flow.client_conn.id, "request_headers")

    def server_connect(self, data) -> None:
        self._mark(data.client.id, "server_connect")

    def server_connected(self, data) -> None:
        self._mark(data.client.id, "server_tcp")

    def tls_established_server(self, data) -> None:
        self._mark(data.context.client.id, "server_tls")

    def responseheaders(self, flow) -> None:
        marks = self.marks.get(flow.client_conn.id)
        if marks is None or "response_headers" in marks or not self.path:
            return
        marks["response_headers"] = time.time()
        steps, previous = {}, marks["accepted"]
        for step in STEPS[1:]:
            if step in marks:
                steps[step] = round((marks[step] - previous) * 1000, 3)
                previous = marks[step]
        with open(self.path, "a") as out:
            out.write(json.dumps(steps) + "\n")


addons = [Timeline()]
