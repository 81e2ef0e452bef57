#!/usr/bin/env python3
"""Reload memory: does a proxy that reloads keep what it replaced?

Starts a real ``urlwarden run`` with a synthetic list of N entries, sends SIGHUP K times while
a few clients send blocked requests (on loopback; nothing is fetched upstream), and prints after
the start and after each reload (once its "lists loaded" line is logged and two seconds have
passed): resident memory, open file descriptors, and mappings of deleted snapshot hand-over
files (``urlwarden-build-*``, see `urlwarden.core.snapfile`).

Usage: .venv/bin/python benchmarks/bench_reload_memory.py [--entries N] [--reloads K] [--clients C]
Results: docs/performance.md ("Reload memory").
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
DEADLINE = 600.0  # seconds for the start or one reload, at most


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def figures(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    handover = sum("urlwarden-build" in line for line in maps)
    return f"RSS {rss / 1024:6.0f} MiB, fds {len(os.listdir(f'/proc/{pid}/fd')):3d}, hand-over mappings {handover:3d}"


def client(port: int, entries: int, stop: threading.Event) -> None:
    i = 0
    while not stop.wait(0.01):
        host = f"h{i % entries:07d}.bench.test"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(f"GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                while sock.recv(65536):
                    pass
        except OSError:
            pass
        i += 7919


def wait_for_line(path: Path, text: str, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while path.read_text(errors="replace").count(text) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {text!r}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--reloads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="urlwarden-bench-memory-") as tmp:
        directory = Path(tmp)
        with open(directory / "list.txt", "w", encoding="ascii") as out:
            for start in range(0, args.entries, 100_000):
                out.write("".join(f"h{i:07d}.bench.test/\n" for i in range(start, min(args.entries, start + 100_000))))
        (directory / "urlwarden.yaml").write_text("lists:\n  - name: bench\n    path: list.txt\n")
        port = free_port()
        stdout, stderr = directory / "stdout", directory / "stderr"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            proxy = subprocess.Popen([URLWARDEN, "run", "--config", str(directory / "urlwarden.yaml"),
                                      "--listen", f"127.0.0.1:{port}", "--", "--set", f"confdir={directory / 'conf'}"],
                                     stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=directory)
        stop = threading.Event()
        try:
            wait_for_line(stderr, "proxy listening on", 1)
            threads = [threading.Thread(target=client, args=(port, args.entries, stop), daemon=True)
                       for _ in range(args.clients)]
            for t in threads:
                t.start()
            time.sleep(2)
            print(f"{args.entries:,} entries, {args.clients} clients")
            print(f"after start:    {figures(proxy.pid)}", flush=True)
            loaded = stdout.read_text(errors="replace").count('"lists loaded: ')
            for n in range(1, args.reloads + 1):
                proxy.send_signal(signal.SIGHUP)
                wait_for_line(stdout, '"lists loaded: ', loaded + n)
                time.sleep(2)
                print(f"after reload {n}: {figures(proxy.pid)}", flush=True)
        finally:
            stop.set()
            proxy.terminate()
            try:
                proxy.wait(30)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
