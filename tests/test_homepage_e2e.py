"""The admin home page in real headless Chromium, served by a real `urlwarden run`.

Two proxies: a healthy one (static lists, two WireGuard devices on loopback, an admin token,
one request blocked before the page is loaded) and one whose required feeds fail (one never
loaded, one stale). Screenshots are taken at desktop size, 390 px wide, and 390 px wide in dark
mode (set URLWARDEN_SCREENSHOTS=DIR to keep them); the DOM is checked for the facts the page
promises, and for what it must never hold (list contents, URLs).

Chromium reaches the healthy proxy's admin listener through that proxy (a browser set up with
the proxy does just that; the harness sends loopback through the proxy too), and the failing
one's directly (that proxy lets nothing through).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.clients import chromium_load, curl
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
TOKEN = "home-page-test-token"
BLOCK_LIST = "listed.test/\npaths.test/folder/\n"
SECRET_HOST = "listed.test"  # a list entry: it must never appear on the page


def free_udp_ports(count: int) -> int:
    """A first port of `count` consecutive UDP ports on 127.0.0.1 that were free a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        sockets = []
        try:
            for port in range(first, first + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no consecutive free UDP ports")


def start(workdir: Path, config_text: str) -> tuple[ProxyProcess, int]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "block.txt").write_text(BLOCK_LIST)
    (workdir / "token").write_text(TOKEN + "\n")
    proxy_port, admin_port = free_port(), free_port()
    config = workdir / "urlwarden.yaml"
    config.write_text(f"listen: 127.0.0.1:{proxy_port}\nstate_dir: state\n"
                      f"admin:\n  listen: 127.0.0.1:{admin_port}\n  token_file: token\n" + config_text)
    argv = [URLWARDEN, "run", "--config", str(config), "--", "--set", f"confdir={workdir / 'conf'}"]
    process = ProxyProcess(argv, proxy_port, workdir=workdir)
    process.start()
    # The admin listener accepts only once start-up has succeeded (mitmproxy's `running`), which
    # can come a moment after the proxy port listens: wait for it, bounded.
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", admin_port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.stop()
                raise
            time.sleep(0.05)
    return process, admin_port


def admin_get(port: int, path: str, auth: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if auth:
        request.add_header("Authorization", auth)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, list(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, list(exc.headers.items()), exc.read()


def keep(result, name: str) -> None:
    target = os.environ.get("URLWARDEN_SCREENSHOTS")
    if target and result.screenshot_path:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(result.screenshot_path, Path(target) / f"{name}.png")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("home")
    wg_port = free_udp_ports(2)
    process, admin_port = start(workdir, f"""
wireguard:
  enabled: true
  listen: 127.0.0.1:{wg_port}
  endpoint: 192.0.2.10
  devices: [phone, tv]
lists:
  - name: hotline
    path: block.txt
""")
    process.admin_port, process.wg_port = admin_port, wg_port
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    """Two required feeds: `stale-feed` loaded once (by `urlwarden update`), then its file gone and
    its max_age passed; `missing-feed` never had a list."""
    workdir = tmp_path_factory.mktemp("home-failing")
    feed_file = workdir / "feed.txt"
    feed_file.write_text(BLOCK_LIST)
    feeds = """
lists:
  - name: stale-feed
    feed: {adapter: file, options: {path: feed.txt}, required: true, max_age: 1s, refresh: 1h}
  - name: missing-feed
    feed: {adapter: file, options: {path: nowhere.txt}, required: true}
"""
    config = workdir / "update.yaml"
    config.write_text("state_dir: state\n" + feeds)
    subprocess.run([URLWARDEN, "update", "--config", str(config)], cwd=workdir, capture_output=True, timeout=60)
    feed_file.unlink()
    process, admin_port = start(workdir, feeds)
    process.admin_port = admin_port
    time.sleep(1.2)  # past stale-feed's max_age of 1 s
    try:
        yield process
    finally:
        process.stop()


def test_home_page_needs_the_token_and_offers_basic_to_browsers(healthy):
    status, headers, _ = admin_get(healthy.admin_port, "/")
    assert status == 401
    challenges = [v for k, v in headers if k.lower() == "www-authenticate"]
    assert any(c.startswith("Basic ") for c in challenges) and any(c.startswith("Bearer ") for c in challenges)
    basic = "Basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()
    assert admin_get(healthy.admin_port, "/", basic)[0] == 200
    assert admin_get(healthy.admin_port, "/", f"Bearer {TOKEN}")[0] == 200
    assert admin_get(healthy.admin_port, "/", "Basic " + base64.b64encode(b"me:wrong").decode())[0] == 401


def test_ca_certificate_is_served_without_the_token(healthy):
    status, headers, body = admin_get(healthy.admin_port, "/ca.pem")
    assert status == 200 and body.startswith(b"-----BEGIN CERTIFICATE-----")
    assert body == (healthy.workdir / "conf" / "mitmproxy-ca-cert.pem").read_bytes()


def test_home_page_in_chromium_shows_the_facts(healthy, tmp_path):
    blocked = curl("-H", "Accept: text/html", "http://listed.test/", proxy=healthy.listen_port)
    assert blocked.status == 451
    url = f"http://me:{TOKEN}@127.0.0.1:{healthy.admin_port}/"
    page = chromium_load(url, healthy.listen_port, tmp_path / "desktop", window_size=(1280, 1600))
    assert page.load_error is None, page.stderr[-2000:]
    keep(page, "home-desktop")
    dom = page.dom
    assert 'data-state="on"' in dom and "Protection is on" in page.text
    assert re.search(r'id="blocks-today">1<', dom) and re.search(r'id="blocks-since-start">1<', dom)
    assert "hotline" in page.text and re.search(r'data-label="entries"[^>]*>2<', dom)
    assert "last update" in page.text and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", page.text)
    assert f"127.0.0.1:{healthy.listen_port}" in page.text  # the proxy
    for i, name in enumerate(("phone", "tv")):  # each device: endpoint, listener, QR code
        assert f"WireGuard ({name})" in page.text and f"192.0.2.10:{healthy.wg_port + i}" in page.text
        assert re.search(rf'id="wg-{name}".*?<svg[^>]*class="segno"', dom, re.S)
    assert 'href="/ca.pem"' in dom
    assert f"http://127.0.0.1:{healthy.admin_port}/proxy.pac" in page.text
    assert "PrivateKey = " in dom and "Endpoint = 192.0.2.10:" in dom
    assert SECRET_HOST not in dom and "folder" not in dom  # never the lists' contents
    assert "<script" not in dom.lower()
    assert urlwarden_version() in page.text


def test_home_page_fits_a_phone_in_light_and_dark(healthy, tmp_path):
    url = f"http://me:{TOKEN}@127.0.0.1:{healthy.admin_port}/"
    for name, extra in (("home-phone", []), ("home-phone-dark", ["--blink-settings=preferredColorScheme=0"])):
        page = chromium_load(url, healthy.listen_port, tmp_path / name, window_size=(390, 844), extra_args=extra)
        assert page.load_error is None and page.screenshot_path is not None
        keep(page, name)
        assert "Protection is on" in page.text
        assert 'name="viewport"' in page.dom


def test_home_page_shows_failing_and_stale_required_feeds(failing, tmp_path):
    url = f"http://me:{TOKEN}@127.0.0.1:{failing.admin_port}/"
    # Directly, not through this proxy: while a required list is missing it lets nothing through,
    # its own admin listener included (docs/home.md says so).
    page = chromium_load(url, failing.listen_port, tmp_path / "failing", window_size=(1280, 1000),
                         extra_args=["--no-proxy-server"])
    assert page.load_error is None, page.stderr[-2000:]
    keep(page, "home-failing")
    assert 'data-state="off"' in page.dom and "Protection is OFF" in page.text
    reasons = re.search(r'<ul id="reasons">(.*?)</ul>', page.dom, re.S).group(1)
    assert "missing-feed: not loaded" in reasons
    assert "stale-feed: stale" in reasons
    row = re.search(r"<tr class=\"bad\"><td[^>]*><span>stale-feed<.*?</tr>", page.dom, re.S)
    assert row is not None and ">stale<" in row.group(0)
    row = re.search(r"<tr class=\"bad\"><td[^>]*>missing-feed<.*?</tr>", page.dom, re.S)
    assert row is not None and ">not loaded<" in row.group(0)
    assert "WireGuard is off" in page.text


def urlwarden_version() -> str:
    from urlwarden import __version__

    return __version__
