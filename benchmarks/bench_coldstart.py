#!/usr/bin/env python3
"""Cold-start benchmark: from spawning `urlwarden run` to the first blocked request.

Set-up (synthetic, loopback only): a hashed list of N entries (default 1,000,000: digests of
``h<i>.coldstart.test/...`` expressions, with host keys, plus ``listed.coldstart.test/``) is
served once by a throwaway HTTP server on 127.0.0.1 and fetched with ``urlwarden update``, the
real path that writes the feed's last-known-good copy (list, compiled copy, metadata) into a
temporary state directory. The server is then stopped, so the feed URL points at a closed
loopback port: every start below has the feed source down and lives on last-known-good.

Measured, for each variant, `--runs` times (after one untimed start that creates mitmproxy's CA
in the temporary confdir, as on any restart):

    spawn -> 451   time from `subprocess.Popen` of ``urlwarden run`` to the status line of an HTTP
                   451 for ``http://listed.coldstart.test/x`` sent through the proxy (the port is
                   polled every 5 ms; the request is sent as soon as it accepts)

Variants:
    baseline      a one-entry static list, no feed: what Python, mitmproxy and urlwarden cost
    compiled      the feed restored from its compiled last-known-good (``<feed>.compiled``)
    parsed        the same with the compiled file deleted before each start, so the hashed list
                  file is parsed (how every start worked before the compiled form; the proxy
                  writes a new compiled file after such a start, which is deleted again)

Usage: python benchmarks/bench_coldstart.py [--entries 1000000] [--runs 5] [--variants baseline,compiled,parsed]

The proxy is whatever ``urlwarden`` the current interpreter's environment starts; with
``PYTHONPATH=<another checkout>/src`` and ``--variants baseline,parsed`` the same measurement
runs against other code (that is how the "before" figure in docs/performance.md was taken).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from urlwarden.core.lists import ParsedList, write_sha256_list  # noqa: E402

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
LISTED_HOST = "listed.coldstart.test"
DEFAULT_ENTRIES = 1_000_000
DEFAULT_RUNS = 5
START_DEADLINE = 120.0  # seconds a start may take before the run is abandoned
POLL = 0.005
FEED = "hotline"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synthetic_list(entries: int) -> ParsedList:
    """`entries` digests (about two per host, as on real lists) and the hosts' keys."""
    sha = hashlib.sha256
    values = [sha(f"{LISTED_HOST}/".encode()).digest()]
    hosts = {sha(LISTED_HOST.encode()).digest()}
    for i in range(entries - 1):
        host = f"h{i // 2:08d}.coldstart.test"
        values.append(sha(f"{host}/p/{i % 97}/".encode()).digest())
        if i % 2 == 0:
            hosts.add(sha(host.encode()).digest())
    return ParsedList(name=FEED, path="synthetic", format="sha256", digests=b"".join(values), ids=None,
                      categories=None, host_keys=frozenset(hosts), max_folder_depth=None, bad_lines=0,
                      problems=())


def serve_once(body_path: Path, port: int) -> http.server.ThreadingHTTPServer:
    body = body_path.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"bench-1"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def prepare(workdir: Path, entries: int) -> tuple[Path, Path]:
    """Write the configurations, fetch the feed once with `urlwarden update`, stop the source."""
    started = time.perf_counter()
    parsed = synthetic_list(entries)
    list_path = workdir / "feed.sha256"
    write_sha256_list(parsed, list_path)
    feed_port = free_port()
    config = workdir / "coldstart.yaml"
    config.write_text(
        "state_dir: state\n"
        "lists:\n"
        f"  - name: {FEED}\n"
        "    format: sha256\n"
        "    feed:\n"
        "      adapter: http\n"
        "      options:\n"
        f"        url: http://127.0.0.1:{feed_port}/{FEED}\n"
        "      refresh: 1h\n"
        "      required: true\n"
    )
    (workdir / "tiny.txt").write_text(f"{LISTED_HOST}/\n")
    baseline = workdir / "baseline.yaml"
    baseline.write_text("lists:\n  - name: tiny\n    path: tiny.txt\n")
    server = serve_once(list_path, feed_port)
    try:
        done = subprocess.run([URLWARDEN, "update", "--config", str(config)], capture_output=True, text=True,
                              timeout=600)
    finally:
        server.shutdown()
        server.server_close()  # the feed URL now points at a closed loopback port
    if done.returncode != 0:
        raise SystemExit(f"bench: urlwarden update failed: {done.stderr.strip()}")
    state = sorted(p.name for p in (workdir / "state").iterdir())
    print(f"set-up: {entries:,} entries, state dir {state}, {time.perf_counter() - started:.1f} s", flush=True)
    return config, baseline


def time_to_block(config: Path, workdir: Path) -> float:
    """Seconds from spawning `urlwarden run` to a 451 for the listed URL through it."""
    port = free_port()
    argv = [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={workdir / 'conf'}"]
    request = f"GET http://{LISTED_HOST}/x HTTP/1.1\r\nHost: {LISTED_HOST}\r\nConnection: close\r\n\r\n".encode()
    log = open(workdir / "proxy.log", "ab")
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    try:
        while True:
            if time.perf_counter() - start > START_DEADLINE:
                raise SystemExit(f"bench: no answer within {START_DEADLINE} s (see {workdir / 'proxy.log'})")
            if process.poll() is not None:
                raise SystemExit(f"bench: urlwarden run exited with {process.returncode} (see proxy.log)")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=START_DEADLINE) as s:
                    s.sendall(request)
                    status = s.recv(64).split(b"\r\n", 1)[0]
            except OSError:
                time.sleep(POLL)
                continue
            elapsed = time.perf_counter() - start
            if b" 451 " not in status + b" ":
                raise SystemExit(f"bench: expected a 451, got {status!r}")
            return elapsed
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def machine() -> str:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"nproc={os.cpu_count()}  cpu={model}  python={platform.python_version()} "
            f"({platform.python_implementation()})  load average at start={load}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES, help="entries in the feed's list")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed starts per variant")
    parser.add_argument("--variants", default="baseline,compiled,parsed", help="comma-separated variants")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    print(machine())
    with tempfile.TemporaryDirectory(prefix="urlwarden-coldstart-") as tmp:
        workdir = Path(tmp)
        config, baseline = prepare(workdir, args.entries)
        compiled = workdir / "state" / f"{FEED}.compiled"
        if "compiled" in variants and not compiled.is_file():
            raise SystemExit("bench: urlwarden update wrote no compiled last-known-good")
        time_to_block(baseline, workdir)  # untimed: creates mitmproxy's CA in the confdir
        print(f"{'variant':<10} {'runs':>4} {'best s':>8} {'median s':>9} {'worst s':>8}  spawn -> first 451")
        for variant in variants:
            times = []
            for _ in range(args.runs):
                if variant == "parsed":
                    compiled.unlink(missing_ok=True)
                times.append(time_to_block(baseline if variant == "baseline" else config, workdir))
            print(f"{variant:<10} {len(times):>4} {min(times):>8.2f} {statistics.median(times):>9.2f} "
                  f"{max(times):>8.2f}  " + " ".join(f"{t:.2f}" for t in times), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
