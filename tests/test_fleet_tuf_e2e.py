"""A TUF fleet end to end: one publisher, a real nginx, three real `urlwarden run` nodes.

The publisher downloads the licensor's list (`urlwarden update`) and runs `urlwarden export
snapshot REPO --every 1` (re-signing the timestamp); nginx serves REPO; three nodes with their
own state directories follow it through the ``tuf`` adapter (refresh 2 s here, 30 s by default).
A list change at the licensor, fetched once by the publisher, is blocked by every node (polled
with a generous bound; benchmarks/bench_fleet_freshness.py measures the figure with the default
settings), and each node's metrics show the new list version. Then the publisher stops and a
tampered timestamp is served: every node refuses it, keeps blocking with its list, and shows the
error. Skips, saying why, without nginx.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.support.feedserver import FeedServer, Reply
from tests.support.tufleet import (
    Publisher,
    admin_get,
    metric,
    node_config,
    run,
    start_node,
    status_code,
    wait_for,
)
from tests.test_fleet_e2e import Nginx, nginx_binary

pytestmark = pytest.mark.e2e

FIRST = b"listed.test/\n"
SECOND = b"listed.test/\nnew.test/\n"
BOUND = 60.0  # generous: a loaded CI machine; the freshness figure itself is in the benchmark


def feed_status(config) -> dict:
    done = run("status", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[0])


def test_three_nodes_follow_a_list_change_and_refuse_a_tampered_timestamp(tmp_path, fresh_origin):
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (scripts/system-deps installs it as root); the fleet test needs it")
    origin = fresh_origin
    repo = tmp_path / "repo"
    with FeedServer() as licensor:
        licensor.set_default("/hotline", Reply(body=FIRST, etag='"v1"'))
        publisher = Publisher(tmp_path / "publisher", licensor.url("/hotline"), repo, every=1)
        root = publisher.init_keys()
        publisher.update()
        with Nginx(binary, tmp_path / "nginx", repo) as nginx, publisher:
            wait_for(lambda: (repo / "timestamp.json").exists(), "the first publication", BOUND)
            nodes = []
            try:
                for name in ("b", "c", "d"):
                    config, admin = node_config(tmp_path / name, nginx.url("/"), root, refresh="2s")
                    nodes.append((start_node(tmp_path / name, config).start(), config, admin))
                for node, _config, admin in nodes:
                    wait_for(lambda a=admin: admin_get(a, "/readyz")[0] == 200, "a node's first list", BOUND)
                    assert status_code(node, origin.http_port, "listed.test") == 451
                    assert status_code(node, origin.http_port, "new.test") == 200
                    assert metric(admin, "urlwarden_list_version") == 1.0

                # the licensor's list changes; the publisher downloads it once
                licensor.set_default("/hotline", Reply(body=SECOND, etag='"v2"'))
                publisher.update()
                for node, _config, admin in nodes:
                    wait_for(lambda n=node: status_code(n, origin.http_port, "new.test") == 451,
                             "every node to block the new entry", BOUND)
                    wait_for(lambda a=admin: metric(a, "urlwarden_list_version") == 2.0, "list version 2", BOUND)
                    assert metric(admin, "urlwarden_list_in_force_timestamp_seconds") > 0
                assert len(licensor.requests_for("/hotline")) == 2  # one per publisher refresh, none from nodes

                # the publisher stops; a mirror serves a timestamp with a bumped version and a forged
                # signature: every node refuses it and keeps its list
                publisher.stop()
                stamp = json.loads((repo / "timestamp.json").read_text())
                stamp["signed"]["version"] += 1
                (repo / "timestamp.json").write_text(json.dumps(stamp))
                for node, config, _admin in nodes:
                    wait_for(lambda c=config: "not signed by the trusted keys" in (feed_status(c)["last_error"] or ""),
                             "the node to refuse the forged timestamp", BOUND)
                    assert status_code(node, origin.http_port, "new.test") == 451
                    assert feed_status(config)["entries"] == 2
                for _node, _config, admin in nodes:  # visible to monitoring, and still on version 2
                    assert metric(admin, "urlwarden_list_update_failures_total") >= 1
                    assert metric(admin, "urlwarden_list_version") == 2.0
            finally:
                for node, _config, _admin in nodes:
                    node.stop()
    assert re.search(r"timestamp v\d+", publisher.log())
    origin.wait_idle()
    hosts = [host for r in origin.requests for host in r.header_all("host")]
    assert hosts and all(host.startswith(("new.test:", "unlisted.test:")) for host in hosts)
