"""End to end: the shipped HAProxy configuration in front of two real `urlwarden run` workers.

HAProxy runs from contrib/haproxy/haproxy.cfg, templated only for test ports (a loopback
frontend and the two workers' ports; see tests/support/haproxy.py), in TCP mode as shipped.
Each worker has the same lists and CA directory as the other and its own admin listener, whose
/metrics counts show which worker decided what. The workers resolve the test names to the
recording origin through a private /etc/hosts, so a block also proves the origin was never
contacted. Skipped when haproxy is not installed (scripts/system-deps installs it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.certs import CA_COMMON_NAME, make_test_pki
from tests.support.clients import curl, tls_handshake
from tests.support.haproxy import HAPROXY_CONFIG, haproxy_argv, haproxy_unavailable_reason, render_haproxy_config
from tests.support.proxyproc import ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
NAMES = {"listed.test": "127.0.0.1", "paths.test": "127.0.0.1", "unlisted.test": "127.0.0.1"}
BLOCK_LIST = "listed.test/\npaths.test/folder/\n"
BLOCK_STATUS = 451
SPREAD_REQUESTS = 8  # new connections, one request each; leastconn breaks ties round robin
METRICS_TIMEOUT = 5.0


def worker_config(directory: Path, admin_port: int) -> Path:
    config = directory / "urlwarden.yaml"
    config.write_text(
        f"""
operator:
  name: Test Operator
  url: https://operator.example/about
lists:
  - name: hotline
    path: {directory.parent / "block.txt"}
    reason: Listed by the test hotline.
admin:
  listen: 127.0.0.1:{admin_port}
"""
    )
    return config


class Worker:
    def __init__(self, process: ProxyProcess, port: int, admin_port: int):
        self.process, self.port, self.admin_port = process, port, admin_port

    def counts(self) -> dict[str, float]:
        """urlwarden_requests_total by decision, from this worker's /metrics."""
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT) as answer:
            text = answer.read().decode()
        pattern = r'^urlwarden_requests_total\{decision="(\w+)"\} (\S+)$'
        return {m[1]: float(m[2]) for m in re.finditer(pattern, text, re.M)}


@pytest.fixture(scope="module")
def test_pki(tmp_path_factory):
    """The origin's certificate names every test host (verifiers do not let *.test match a.test)."""
    return make_test_pki(tmp_path_factory.mktemp("pki"), list(NAMES))


@pytest.fixture(scope="module")
def farm(tmp_path_factory, origin):
    """Two workers (same lists, one shared CA directory) behind HAProxy; yields (haproxy process, workers)."""
    reason = haproxy_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("farm")
    (base / "block.txt").write_text(BLOCK_LIST)
    confdir = base / "conf"  # one CA for all workers, as urlwarden@.service shares its state directory
    workers: list[Worker] = []
    try:
        for i in (1, 2):
            workdir = base / f"w{i}"
            workdir.mkdir()
            port, admin_port = free_port(), free_port()
            argv = [URLWARDEN, "run", "--config", str(worker_config(workdir, admin_port)),
                    "--listen", f"127.0.0.1:{port}", "--", "--set", f"confdir={confdir}"]
            # one after the other: the first creates the CA that the second then reads
            workers.append(Worker(ProxyProcess(argv, port, hosts=NAMES, workdir=workdir).start(), port, admin_port))
        front = free_port()
        config = base / "haproxy.cfg"
        config.write_text(render_haproxy_config(HAPROXY_CONFIG.read_text(), front, [w.port for w in workers]))
        with ProxyProcess(haproxy_argv(config), front, workdir=base / "haproxy") as haproxy:
            haproxy.port = front
            yield haproxy, workers
    finally:
        for worker in workers:
            worker.process.stop()


def test_shipped_config_is_valid_haproxy():
    reason = haproxy_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    done = subprocess.run([haproxy_argv(HAPROXY_CONFIG)[0], "-c", "-f", str(HAPROXY_CONFIG)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_listed_url_gets_the_block_page_without_contacting_the_origin(farm, fresh_origin):
    haproxy, _ = farm
    for url in (fresh_origin.url("listed.test", "/x"), fresh_origin.url("paths.test", "/folder/a")):
        r = curl("-H", "Accept: text/html", url, proxy=haproxy.port)
        assert r.status == BLOCK_STATUS, (url, r.status, r.stderr)
        assert "Test Operator" in r.text
    fresh_origin.wait_idle()
    assert fresh_origin.connections == [], f"the origin was contacted: {fresh_origin.connections}"


def test_unlisted_url_passes(farm, fresh_origin):
    haproxy, _ = farm
    r = curl(fresh_origin.url("paths.test", "/other"), proxy=haproxy.port)
    assert r.status == 200 and r.header("x-origin") == "1", (r.status, r.stderr)
    assert r.text == f"origin ok paths.test:{fresh_origin.http_port}/other"


def test_https_through_haproxy_passes_an_unlisted_host_through(farm, fresh_origin, test_pki):
    haproxy, _ = farm
    t = tls_handshake(haproxy.port, f"unlisted.test:{fresh_origin.https_port}", "unlisted.test",
                      cafile=test_pki.ca_cert, http_host="unlisted.test")
    assert t.handshake_ok, t.error
    assert t.issuer_cn == CA_COMMON_NAME  # the origin's own certificate: not intercepted
    assert t.response_status == 200


def test_connections_are_spread_over_both_workers(farm, fresh_origin):
    haproxy, workers = farm
    before = [w.counts() for w in workers]
    for i in range(SPREAD_REQUESTS):
        r = curl(fresh_origin.url("unlisted.test", f"/spread/{i}"), proxy=haproxy.port)
        assert r.status == 200, (i, r.status, r.stderr)
    after = [w.counts() for w in workers]
    handled = [a.get("allow", 0) - b.get("allow", 0) for a, b in zip(after, before)]
    assert sum(handled) == SPREAD_REQUESTS
    assert all(n > 0 for n in handled), f"requests per worker: {handled}"


def test_a_stopped_worker_is_routed_around(farm, fresh_origin):
    """Runs last: it stops worker 1 for good. HAProxy retries a refused connection on the other
    worker at once (option redispatch 1), before its health check has even noticed."""
    haproxy, workers = farm
    workers[0].process.stop()
    before = workers[1].counts().get("allow", 0)
    for i in range(SPREAD_REQUESTS):
        r = curl(fresh_origin.url("unlisted.test", f"/failover/{i}"), proxy=haproxy.port)
        assert r.status == 200, (i, r.status, r.stderr)
    assert workers[1].counts().get("allow", 0) - before == SPREAD_REQUESTS
