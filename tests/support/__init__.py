"""End-to-end test harness for urlwarden: real processes on loopback, no fakes.

    certs      make_test_pki(dir, names) -> TestPKI(ca_cert, ca_key, server_cert, server_key)
    origin     Origin(pki): HTTP + HTTPS origin on 127.0.0.1 recording connections and requests
    proxyproc  ProxyProcess(argv, listen_port, hosts, workdir, env): a proxy subprocess with a
               private /etc/hosts; free_port(); mitmdump_argv(port, confdir, *extra)
    clients    curl(...), raw_http(...), tls_handshake(...), chromium_load(...)
    fixtures   test_pki (session), origin (module), fresh_origin (function)

Every wait is bounded, every host name is synthetic (.test/.example/.invalid), every socket is
on loopback, and only processes the harness started (by their own process group) are signalled.
Each module's docstring shows its usage. The fixtures are not imported here, so importing
`tests.support` does not register fixtures by accident; see `tests.support.fixtures`.
"""

from .certs import TestPKI, make_test_pki, spki_sha256
from .clients import (
    BrowserResult,
    CurlResult,
    TlsResult,
    chromium_load,
    curl,
    raw_http,
    status_of,
    tls_handshake,
)
from .origin import ConnectionRecord, Origin, RequestRecord
from .proxyproc import ProxyProcess, ProxyStartError, free_port, mitmdump_argv

__all__ = [
    "TestPKI",
    "make_test_pki",
    "spki_sha256",
    "Origin",
    "ConnectionRecord",
    "RequestRecord",
    "ProxyProcess",
    "ProxyStartError",
    "free_port",
    "mitmdump_argv",
    "CurlResult",
    "curl",
    "raw_http",
    "status_of",
    "TlsResult",
    "tls_handshake",
    "BrowserResult",
    "chromium_load",
]
