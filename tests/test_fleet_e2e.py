"""Fleet distribution end to end: one node downloads, nginx serves its signed snapshot to the others.

    licensor (FeedServer) --1 download--> node A: `urlwarden update`, then
                                          `urlwarden export snapshot DIR --key key.pem`
    nginx (real, loopback, own prefix and pid file) serves DIR
    nodes B, C: real `urlwarden run` with an http feed on nginx (signature_url + public_key)

B and C block a listed URL without contacting the origin, and the licensor saw one download.
Then one byte of the published list is changed: B keeps its good list, and a fresh node D loads
nothing and is not ready. Skips, saying why, without nginx (scripts/system-deps installs it).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.clients import curl
from tests.support.feedserver import FeedServer, Reply
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
LIST = b"listed.test/\npaths.test/folder/\n"
SERIAL = "2030-01-01.1"
WAIT = 20.0
NGINX_START_TIMEOUT = 10.0
NGINX_STOP_TIMEOUT = 5.0


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


class Nginx:
    """A real nginx serving `root` on 127.0.0.1:`port`, in the foreground (daemon off) with its own
    prefix, configuration and pid file; stopped by its pid (process group), never by name."""

    def __init__(self, binary: str, prefix: Path, root: Path):
        self.binary = binary
        self.prefix = prefix
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def config(self) -> str:
        p = self.prefix
        temp = "".join(f"  {kind}_temp_path {p / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                         "scgi"))
        # As root the workers would run as nobody, who cannot enter pytest's private temp directory.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        return (f"{user}daemon off;\nworker_processes 1;\npid {p / 'nginx.pid'};\nerror_log {p / 'error.log'} warn;\n"
                "events { worker_connections 64; }\n"
                f"http {{\n  access_log {p / 'access.log'};\n{temp}  default_type application/octet-stream;\n"
                f"  server {{\n    listen 127.0.0.1:{self.port};\n    root {self.root};\n"
                "    location / { autoindex off; }\n  }\n}\n")

    def start(self) -> Nginx:
        self.prefix.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / "error.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.prefix / "stderr", "wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + NGINX_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx not listening after {NGINX_START_TIMEOUT}s: {self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGQUIT)  # graceful stop of the master we started
            try:
                proc.wait(NGINX_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # our own group: workers left behind, if any
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(NGINX_STOP_TIMEOUT)
        self.proc = None

    def log(self) -> str:
        parts = [(self.prefix / name) for name in ("stderr", "error.log")]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())

    def requests_for(self, path: str) -> int:
        log = self.prefix / "access.log"
        return sum(f'"GET {path} ' in line for line in log.read_text().splitlines()) if log.exists() else 0

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([URLWARDEN, *args], capture_output=True, text=True, timeout=60)


def wait_for(predicate, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def make_key(directory: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = directory / "key.pem", directory / "key.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def fetching_node_config(directory: Path, licensor_url: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "urlwarden.yaml"
    config.write_text(f"""
state_dir: state
lists:
  - name: hotline
    format: plain
    feed:
      adapter: http
      options: {{url: "{licensor_url}"}}
      required: true
""")
    return config


def consumer_config(directory: Path, nginx: Nginx, public_key: Path) -> tuple[Path, int]:
    directory.mkdir(parents=True, exist_ok=True)
    admin_port = free_port()
    config = directory / "urlwarden.yaml"
    config.write_text(f"""
state_dir: state
admin:
  listen: 127.0.0.1:{admin_port}
lists:
  - name: hotline
    format: sha256
    feed:
      adapter: http
      options:
        url: "{nginx.url('/hotline.sha256')}"
        signature_url: "{nginx.url('/hotline.sha256.sig')}"
        retries: 0
      public_key: {public_key}
      required: true
""")
    return config, admin_port


def start_node(directory: Path, config: Path) -> ProxyProcess:
    port = free_port()
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={directory / 'conf'}"]
    node = ProxyProcess(argv, port, hosts={"listed.test": "127.0.0.1", "unlisted.test": "127.0.0.1"},
                        workdir=directory)
    node.port = port
    return node


def status_code(node: ProxyProcess, origin, host: str) -> int | None:
    return curl(f"http://{host}:{origin.http_port}/x", proxy=node.port).status


def feed_status(config: Path) -> dict:
    done = run("status", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[0])


def readyz(admin_port: int) -> tuple[int, str]:
    """(status, body) of the node's /readyz; (0, reason) while its admin listener is not up yet."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        return response.status, response.read().decode()
    except OSError as exc:
        return 0, str(exc)
    finally:
        conn.close()


def tamper_one_byte(path: Path) -> None:
    """Change one byte in a comment line (the checksum cannot see it, only the signature), atomically."""
    body = bytearray(path.read_bytes())
    at = body.index(b"hashed list")
    body[at] ^= 0x01
    temp = path.with_name(".tamper.tmp")
    temp.write_bytes(bytes(body))
    temp.chmod(0o644)
    os.replace(temp, path)


def test_one_download_serves_a_fleet_and_tampering_is_rejected(tmp_path, fresh_origin):
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (scripts/system-deps installs it as root); the fleet test needs it")
    origin = fresh_origin
    snapshot = tmp_path / "snapshot"
    key, public_key = make_key(tmp_path)
    with FeedServer() as licensor:
        licensor.set_default("/hotline", Reply(body=LIST, etag='"v1"', headers={"X-Urlwarden-Serial": SERIAL}))
        config_a = fetching_node_config(tmp_path / "a", licensor.url("/hotline"))
        done = run("update", "--config", str(config_a))
        assert done.returncode == 0, done.stderr
        done = run("export", "snapshot", str(snapshot), "--config", str(config_a), "--key", str(key))
        assert done.returncode == 0, done.stderr
        assert sorted(p.name for p in snapshot.iterdir()) == ["hotline.sha256", "hotline.sha256.sig", "index.json",
                                                              "index.json.sig"]
        for path in snapshot.iterdir():  # hashed: no listed host leaves node A in clear
            assert b"listed.test" not in path.read_bytes() and b"paths.test" not in path.read_bytes()
        checksum_a = feed_status(config_a)["checksum"]

        with Nginx(binary, tmp_path / "nginx", snapshot) as nginx:
            config_b, admin_b = consumer_config(tmp_path / "b", nginx, public_key)
            config_c, admin_c = consumer_config(tmp_path / "c", nginx, public_key)
            with start_node(tmp_path / "b", config_b) as node_b, start_node(tmp_path / "c", config_c) as node_c:
                # Until its first list is in, a node blocks nothing: wait for /readyz, as a load balancer would.
                for admin in (admin_b, admin_c):
                    wait_for(lambda a=admin: readyz(a)[0] == 200, "the snapshot's list")
                for node in (node_b, node_c):
                    assert status_code(node, origin, "listed.test") == 451
                assert status_code(node_b, origin, "unlisted.test") == 200  # the nodes do pass other traffic
                for config in (config_b, config_c):
                    status = feed_status(config)
                    assert (status["entries"], status["checksum"], status["version"]) == (2, checksum_a, SERIAL)
                assert nginx.requests_for("/hotline.sha256") >= 2 and nginx.requests_for("/hotline.sha256.sig") >= 2

                # one byte of the published list changes: B refuses the update and keeps blocking
                tamper_one_byte(snapshot / "hotline.sha256")
                node_b.send_signal(signal.SIGHUP)
                wait_for(lambda: "bad signature" in node_b.output(), "node B to reject the tampered list")
                assert status_code(node_b, origin, "listed.test") == 451
                assert feed_status(config_b)["checksum"] == checksum_a

            # a fresh node D never loads the tampered list and is not ready
            config_d, admin_d = consumer_config(tmp_path / "d", nginx, public_key)
            with start_node(tmp_path / "d", config_d):
                wait_for(lambda: "bad signature" in (feed_status(config_d)["last_error"] or ""),
                         "node D to reject the tampered list")
                assert feed_status(config_d)["entries"] == 0
                status, text = readyz(admin_d)
                assert status == 503 and "hotline: not loaded" in text
        assert len(licensor.requests_for("/hotline")) == 1  # the licensor counted one download: node A's
    origin.wait_idle()
    hosts = [host for r in origin.requests for host in r.header_all("host")]
    assert hosts and all(host.startswith("unlisted.test:") for host in hosts)  # the listed host never reached it
