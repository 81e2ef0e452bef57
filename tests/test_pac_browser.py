"""What a real browser does with urlwarden's PAC file while urlwarden is up and while it is down.

Headless Chromium is configured only by a PAC (as a user's browser would be), Chromium's own
resolver maps the listed name to the recording origin on loopback, and the origin records every
connection. So "the listed page does not load" is checked where it matters: nothing reached the
origin. Set-ups (docs/home.md):

* ``data``: the PAC as a data: URL (`urlwarden pac --data-url`): fails closed.
* ``separate``: the PAC served by a separate always-on web server (here a small one in the test):
  fails closed while that server is up.
* ``mandatory``: the PAC served by urlwarden's admin listener, made mandatory by a managed
  Chromium policy (ProxySettings with ProxyPacMandatory): fails closed. Runs in a private mount
  namespace (root); skipped otherwise.
* ``served``: the PAC URL of urlwarden's admin listener, nothing else: FAILS OPEN (the known-bad
  set-up, pinned so that the documentation's warning stays true).
* ``file``: a file:// PAC URL: Chromium refuses the scheme and goes DIRECT even while urlwarden runs.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.clients import chromium_pac_load
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
OPERATOR = "PAC Test Operator"
PROXY_DOWN = "net::ERR_PROXY_CONNECTION_FAILED"
MANDATORY_PAC_FAILED = "net::ERR_MANDATORY_PROXY_CONFIGURATION_FAILED"


class _PacServer(ThreadingHTTPServer):
    daemon_threads = True


def serve_pac(pac: bytes) -> _PacServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ns-proxy-autoconfig")
            self.send_header("Content-Length", str(len(pac)))
            self.end_headers()
            self.wfile.write(pac)

        def log_message(self, *args):
            pass

    server = _PacServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def urlwarden_pac(config: Path, *args: str) -> str:
    done = subprocess.run([URLWARDEN, "pac", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def urlwarden(tmp_path_factory):
    """urlwarden run with its admin listener (which serves /proxy.pac); stopped by `stopped`."""
    work = tmp_path_factory.mktemp("pac-browser")
    port, admin_port = free_port(), free_port()
    (work / "block.txt").write_text("listed.test/\n")
    config = work / "urlwarden.yaml"
    config.write_text(f"""
listen: 127.0.0.1:{port}
operator:
  name: {OPERATOR}
admin:
  listen: 127.0.0.1:{admin_port}
lists:
  - name: hotline
    path: block.txt
""")
    argv = [URLWARDEN, "run", "--config", str(config), "--", "--set", f"confdir={work / 'conf'}"]
    process = ProxyProcess(argv, port, hosts={"listed.test": "127.0.0.1"}, workdir=work)
    process.start()
    pac = urlwarden_pac(config)
    separate = serve_pac(pac.encode("ascii"))
    (work / "proxy.pac").write_text(pac)
    served = f"http://127.0.0.1:{admin_port}/proxy.pac"
    process.pac_urls = {
        "data": urlwarden_pac(config, "--data-url").strip(),
        "separate": f"http://127.0.0.1:{separate.server_address[1]}/proxy.pac",
        "served": served,
        "file": (work / "proxy.pac").as_uri(),
    }
    process.mandatory_policy = {"ProxySettings": {"ProxyMode": "pac_script", "ProxyPacUrl": served,
                                                  "ProxyPacMandatory": True}}
    try:
        yield process
    finally:
        process.stop()
        separate.shutdown()
        separate.server_close()


@pytest.fixture(scope="module")
def stopped(urlwarden):
    """The same urlwarden, stopped: its proxy and admin ports are closed from here on."""
    assert urlwarden.stop() is not None
    return urlwarden


def load(proxy, setup: str, origin):
    url = f"http://listed.test:{origin.http_port}/page"
    if setup == "mandatory":
        return chromium_pac_load(url, None, resolve={"listed.test": "127.0.0.1"},
                                 managed_policy=proxy.mandatory_policy)
    return chromium_pac_load(url, proxy.pac_urls[setup], resolve={"listed.test": "127.0.0.1"})


def origin_requests(origin) -> list[str]:
    origin.wait_idle()
    return [f"{r.method} {r.target}" for r in origin.requests]


# --- urlwarden up: the block page ------------------------------------------------------------------

@pytest.mark.parametrize("setup", ["data", "mandatory"])
def test_proxy_up_the_listed_page_gets_the_block_page(urlwarden, fresh_origin, setup):
    page = load(urlwarden, setup, fresh_origin)
    assert page.load_error is None, page.stderr[-2000:]
    assert OPERATOR in page.text and "hotline" in page.text
    assert origin_requests(fresh_origin) == []


def test_a_file_pac_is_refused_by_chromium_which_then_goes_direct(urlwarden, fresh_origin):
    """Known bad: even with urlwarden running, nothing is filtered (ERR_DISALLOWED_URL_SCHEME)."""
    page = load(urlwarden, "file", fresh_origin)
    assert page.load_error is None
    assert "origin ok listed.test" in page.text
    assert "GET /page" in origin_requests(fresh_origin)


# --- urlwarden down: the listed page must not load --------------------------------------------------

@pytest.mark.parametrize(("setup", "error"), [
    ("data", PROXY_DOWN),
    ("separate", PROXY_DOWN),
    ("mandatory", MANDATORY_PAC_FAILED),
])
def test_proxy_down_the_listed_page_does_not_load(stopped, fresh_origin, setup, error):
    page = load(stopped, setup, fresh_origin)
    assert page.load_error == error, page.stderr[-2000:]
    assert "origin ok" not in page.text
    assert origin_requests(fresh_origin) == []
    assert fresh_origin.connections == []


def test_proxy_down_a_pac_served_by_urlwarden_alone_fails_open(stopped, fresh_origin):
    """Known bad, and why docs/home.md does not recommend it: the browser cannot fetch the PAC
    from the stopped process, so it goes DIRECT and the listed page loads."""
    page = load(stopped, "served", fresh_origin)
    assert page.load_error is None
    assert "origin ok listed.test" in page.text
    assert "GET /page" in origin_requests(fresh_origin)
