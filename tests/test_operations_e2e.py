"""Operations end to end with a real `urlwarden run`: admin listener, metrics, private logs,
access control, proxy authentication, oversized requests, systemd notifications, selftest."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.clients import curl, raw_http, status_of
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
NAMES = ["listed.test", "paths.test", "unlisted.test"]
TOKEN = "s3cr3t-admin-token-for-tests"
LIST = "listed.test/\npaths.test/folder/\n"


def write_config(directory: Path, extra: str = "", test_url: str = "http://listed.test/selftest") -> Path:
    (directory / "block.txt").write_text(LIST)
    (directory / "token").write_text(TOKEN + "\n")
    config = directory / "urlwarden.yaml"
    config.write_text(f"""
lists:
  - name: hotline
    path: block.txt
    test_url: {test_url}
{extra}
""")
    return config


def start(directory: Path, config: Path, env: dict | None = None) -> ProxyProcess:
    port = free_port()
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={directory / 'conf'}"]
    process = ProxyProcess(argv, port, hosts={n: "127.0.0.1" for n in NAMES}, workdir=directory, env=env)
    process.port = port
    return process


def admin_get(port: int, path: str, token: str | None = None, accept: str = "application/json"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept": accept})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""  # not listening (yet)


def wait_until(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_admin_endpoints_metrics_and_privacy(tmp_path, origin):
    admin_port = free_port()
    config = write_config(tmp_path, f"admin:\n  listen: 127.0.0.1:{admin_port}\n  token_file: token\n"
                                    "logging:\n  client_addresses: true\n")
    origin.reset()
    with start(tmp_path, config) as proxy:
        wait_until(lambda: admin_get(admin_port, "/healthz")[0] == 200, "the admin listener")
        assert curl(f"http://listed.test:{origin.http_port}/secret-path", proxy=proxy.port).status == 451
        assert curl(f"http://unlisted.test:{origin.http_port}/private-path", proxy=proxy.port).status == 200

        assert admin_get(admin_port, "/metrics")[0] == 401
        assert admin_get(admin_port, "/metrics", token="wrong")[0] == 401
        status, metrics = admin_get(admin_port, "/metrics", token=TOKEN)
        assert status == 200
        assert 'urlwarden_blocks_total{list="hotline"} 1.0' in metrics
        assert 'urlwarden_requests_total{decision="allow"} 1.0' in metrics
        assert 'urlwarden_list_entries{list="hotline"} 2.0' in metrics
        assert "urlwarden_decision_duration_seconds_bucket" in metrics
        assert admin_get(admin_port, "/readyz", token=TOKEN)[0] == 200
        status, body = admin_get(admin_port, "/status", token=TOKEN)
        record = json.loads(body)
        assert status == 200 and record["ready"] is True
        assert [(x["name"], x["entries"]) for x in record["lists"]] == [("hotline", 2)]
        html = admin_get(admin_port, "/status", token=TOKEN, accept="text/html")[1]
        assert "hotline" in html

        everything = metrics + body + html + proxy.output()
        for secret in ("listed.test", "paths.test", "unlisted.test", "secret-path", "private-path", TOKEN):
            assert secret not in everything, secret
        events = [json.loads(line) for line in proxy.stdout().splitlines() if line.startswith("{")]
        (block,) = [e for e in events if e.get("event") == "block"]
        assert block["client"] == "127.0.0.0/24" and block["list"] == "hotline"


def test_client_outside_allowed_clients_is_refused_before_upstream_contact(tmp_path, origin):
    config = write_config(tmp_path, "access:\n  allowed_clients: [192.0.2.0/24]\n")
    origin.reset()
    with start(tmp_path, config) as proxy:
        result = curl(f"http://unlisted.test:{origin.http_port}/", proxy=proxy.port)
        assert result.status is None and result.exit_code != 0
        origin.wait_idle()
        assert origin.connections == []


def test_proxy_authentication(tmp_path, origin):
    from passlib.apache import HtpasswdFile

    htpasswd = HtpasswdFile(str(tmp_path / "htpasswd"), new=True)
    htpasswd.set_password("family", "correct horse")
    htpasswd.save()
    config = write_config(tmp_path, "access:\n  proxy_auth_file: htpasswd\n")
    origin.reset()
    with start(tmp_path, config) as proxy:
        assert curl(f"http://unlisted.test:{origin.http_port}/", proxy=proxy.port).status == 407
        authed = ["--proxy-user", "family:correct horse"]
        assert curl(*authed, f"http://unlisted.test:{origin.http_port}/", proxy=proxy.port).status == 200
        origin.reset()
        assert curl(*authed, f"http://listed.test:{origin.http_port}/", proxy=proxy.port).status == 451
        origin.wait_idle()
        assert origin.connections == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET http://unlisted.test/" + b"a" * 200_000 + b" HTTP/1.1\r\nHost: unlisted.test\r\n\r\n",
        b"GET http://unlisted.test/ HTTP/1.1\r\nHost: unlisted.test\r\nX-Big: " + b"b" * 300_000 + b"\r\n\r\n",
        b"GET http://unlisted.test/ HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20_000)) + b"\r\n",
    ],
    ids=["oversized request line", "oversized header", "too many headers"],
)
def test_oversized_requests_are_refused_cleanly(tmp_path, origin, request_bytes):
    config = write_config(tmp_path)
    origin.reset()
    with start(tmp_path, config) as proxy:
        response = raw_http("127.0.0.1", proxy.port, request_bytes.replace(b"unlisted.test/", b"unlisted.test:%d/" % origin.http_port))
        status = status_of(response)
        assert status is None or 400 <= status < 500, response[:200]
        origin.wait_idle()
        assert origin.connections == []
        # and the proxy goes on serving
        assert curl(f"http://unlisted.test:{origin.http_port}/after", proxy=proxy.port).status == 200


def test_systemd_notifications_on_start_and_reload(tmp_path):
    notify_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(15)
    config = write_config(tmp_path)
    try:
        with start(tmp_path, config, env={"NOTIFY_SOCKET": str(notify_path)}) as proxy:
            assert sock.recv(4096) == b"READY=1"
            assert sock.recv(4096).startswith(b"STATUS=1 block list, 2 entries; last update ")
            proxy.send_signal(signal.SIGHUP)
            reloading = sock.recv(4096).decode()
            assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC=")
            assert sock.recv(4096) == b"READY=1"
            assert sock.recv(4096).startswith(b"STATUS=1 block list, 2 entries; last update ")
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        sock.close()


def test_selftest_command(tmp_path):
    good = write_config(tmp_path)
    with start(tmp_path, good) as proxy:
        done = subprocess.run([URLWARDEN, "selftest", "--proxy", f"http://127.0.0.1:{proxy.port}", "--config", str(good)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("PASS hotline:")
        bad_dir = tmp_path / "bad"
        bad_dir.mkdir()
        bad = write_config(bad_dir, test_url="http://unlisted.test/not-on-the-list")
        done = subprocess.run([URLWARDEN, "selftest", "--proxy", f"http://127.0.0.1:{proxy.port}", "--config", str(bad)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert done.stdout.startswith("FAIL hotline: not blocked")
        assert "unlisted.test" not in done.stdout
