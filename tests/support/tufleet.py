"""A TUF fleet on loopback, for tests/test_fleet_tuf_e2e.py and benchmarks/bench_fleet_freshness.py.

    licensor (FeedServer) --one download per refresh--> publisher: `urlwarden update`, and
        `urlwarden export snapshot REPO --every N` (a long-running process re-signing the timestamp)
    nginx (real, loopback, own prefix) serves REPO
    nodes: real `urlwarden run` processes, each with its own state directory and a tuf feed on nginx

Every process is started here and stopped by its own pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.clients import curl
from tests.support.proxyproc import ProxyProcess, free_port

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
TOKEN = "fleet-admin-token-for-tests"
HOSTS = ("listed.test", "new.test", "unlisted.test")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([URLWARDEN, *args], capture_output=True, text=True, timeout=120)


class Publisher:
    """The one node that talks to the licensor and publishes the TUF repository."""

    def __init__(self, directory: Path, licensor_url: str, repo: Path, every: float | None):
        self.directory, self.repo, self.every = directory, repo, every
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "urlwarden.yaml"
        self.config.write_text(f"""
state_dir: state
lists:
  - name: hotline
    format: plain
    feed:
      adapter: http
      options: {{url: "{licensor_url}"}}
      required: true
export:
  snapshot:
    keys_dir: keys
""")
        self.proc: subprocess.Popen | None = None

    def init_keys(self) -> Path:
        done = run("export", "keys", "init", str(self.directory / "keys"), "--config", str(self.config))
        assert done.returncode == 0, done.stderr
        return self.directory / "keys" / "metadata" / "1.root.json"

    def update(self) -> None:
        done = run("update", "--config", str(self.config))
        assert done.returncode == 0, done.stderr

    def start(self) -> Publisher:
        argv = [URLWARDEN, "export", "snapshot", str(self.repo), "--config", str(self.config)]
        if self.every is not None:
            argv += ["--every", str(self.every)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.directory / "publisher.stderr", "wb"), start_new_session=True)
        return self

    def log(self) -> str:
        path = self.directory / "publisher.stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def node_config(directory: Path, repo_url: str, root: Path, refresh: str | None) -> tuple[Path, int]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(TOKEN + "\n")
    admin_port = free_port()
    config = directory / "urlwarden.yaml"
    refresh_line = f"      refresh: {refresh}\n" if refresh else ""
    config.write_text(f"""
state_dir: state
admin:
  listen: 127.0.0.1:{admin_port}
  token_file: token
lists:
  - name: hotline
    format: sha256
    feed:
      adapter: tuf
      options:
        url: "{repo_url}"
        root_file: {root}
        metadata_path: state/tuf-hotline
        timeout: 5
{refresh_line}      required: true
""")
    return config, admin_port


def start_node(directory: Path, config: Path, hosts=HOSTS) -> ProxyProcess:
    port = free_port()
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={directory / 'conf'}"]
    node = ProxyProcess(argv, port, hosts={h: "127.0.0.1" for h in hosts}, workdir=directory)
    node.port = port
    return node


def status_code(node: ProxyProcess, origin_port: int, host: str) -> int | None:
    return curl(f"http://{host}:{origin_port}/x", proxy=node.port).status


def admin_get(port: int, path: str) -> tuple[int | None, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""


def metric(admin_port: int, name: str) -> float | None:
    """The value of a ``name{list="hotline"}`` series on the node's /metrics, None if absent."""
    status, text = admin_get(admin_port, "/metrics")
    if status != 200:
        return None
    prefix = f'{name}{{list="hotline"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


def wait_for(predicate, what: str, timeout: float, poll: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
