#!/usr/bin/env python3
"""Fleet freshness: how long a list change on the publisher takes to be in force on every node.

Set-up (synthetic, loopback only), the deployment of docs/isp.md section 7 with its defaults:

    licensor   a throwaway feed server on 127.0.0.1 (FeedServer), counting downloads
    publisher  `urlwarden update` (one licensor download per refresh), and
               `urlwarden export snapshot REPO --every 10` running throughout (the recommended
               publishing loop: re-signs the 5-minute timestamp, publishes a changed list)
    nginx      a real nginx serving REPO on 127.0.0.1
    nodes      `--nodes` real `urlwarden run` processes (default 3), own state directories, a
               ``tuf`` feed on nginx with the adapter's default refresh (30 s, jitter 10 %)

Measured, `--rounds` times: the licensor's list gains one entry ``new-<round>.fleet.test/``;
the publisher's `urlwarden update` returns (t0: the new list is the publisher's last-known-good);
then each node is asked every 0.25 s, through the proxy, for ``http://new-<round>.fleet.test/``
until it answers 451. Printed: per node the seconds from t0 to its first 451, the slowest node
per round, and the worst over all rounds, with the licensor's download count (must be one per
publisher refresh). The worst case by construction is about every + refresh (10 + 30 s) plus a
refresh's work; the target is 60 s.

Run: ``.venv/bin/python benchmarks/bench_fleet_freshness.py`` (``--nodes``, ``--rounds``,
``--every``). Needs nginx and curl. Takes about 1 min per round.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.feedserver import FeedServer, Reply  # noqa: E402
from tests.support.proxyproc import free_port  # noqa: E402
from tests.support.tufleet import Publisher, admin_get, node_config, start_node, status_code, wait_for  # noqa: E402
from tests.test_fleet_e2e import Nginx, nginx_binary  # noqa: E402

POLL = 0.25
ROUND_LIMIT = 180.0  # seconds: a round slower than this is reported as a failure, never waited out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--every", type=float, default=10.0, help="publisher loop period (s)")
    args = parser.parse_args()
    binary = nginx_binary()
    if binary is None:
        print("nginx is not installed (scripts/system-deps installs it)", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    names = [f"new-{r}.fleet.test" for r in range(args.rounds)]
    hosts = ("listed.fleet.test", *names)
    closed_port = free_port()  # allowed requests fail fast (502); only the 451 matters
    with tempfile.TemporaryDirectory(prefix="urlwarden-bench-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        repo = tmp / "repo"
        body = "listed.fleet.test/\n"
        with FeedServer() as licensor:
            licensor.set_default("/hotline", Reply(body=body.encode(), etag='"0"'))
            publisher = Publisher(tmp / "publisher", licensor.url("/hotline"), repo, every=args.every)
            root = publisher.init_keys()
            publisher.update()
            with Nginx(binary, tmp / "nginx", repo) as nginx, publisher:
                wait_for(lambda: (repo / "timestamp.json").exists(), "the first publication", 60)
                nodes = []
                try:
                    for i in range(args.nodes):
                        directory = tmp / f"node{i}"
                        config, admin = node_config(directory, nginx.url("/"), root, refresh=None)
                        nodes.append((start_node(directory, config, hosts).start(), admin))
                    for _node, admin in nodes:
                        wait_for(lambda a=admin: admin_get(a, "/readyz")[0] == 200, "a node's first list", 120)
                    worst = 0.0
                    for round_no, name in enumerate(names):
                        body += f"{name}/\n"
                        licensor.set_default("/hotline", Reply(body=body.encode(), etag=f'"{round_no + 1}"'))
                        publisher.update()
                        t0 = time.monotonic()
                        pending = {i: node for i, (node, _admin) in enumerate(nodes)}
                        seen: dict[int, float] = {}
                        while pending and time.monotonic() - t0 < ROUND_LIMIT:
                            for i, node in list(pending.items()):
                                if status_code(node, closed_port, name) == 451:
                                    seen[i] = time.monotonic() - t0
                                    del pending[i]
                            time.sleep(POLL)
                        figures = ", ".join(f"node{i} {seen[i]:.1f} s" if i in seen else f"node{i} NOT in "
                                            f"{ROUND_LIMIT:g} s" for i in range(len(nodes)))
                        slowest = max(seen.values(), default=float("inf")) if not pending else float("inf")
                        worst = max(worst, slowest)
                        print(f"round {round_no + 1}: {figures}; slowest {slowest:.1f} s")
                    print(f"worst over {args.rounds} rounds and {args.nodes} nodes: {worst:.1f} s "
                          f"(publisher --every {args.every:g} s, node refresh 30 s default; target 60 s)")
                    print(f"licensor downloads: {len(licensor.requests_for('/hotline'))} "
                          f"(publisher refreshes: {args.rounds + 1})")
                finally:
                    for node, _admin in nodes:
                        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
