#!/usr/bin/env python3
"""Instructions per request: urlwarden with a 1M-entry list against bare mitmdump, by callgrind.

Why: on a shared 2-core VM, requests/s and CPU seconds per request move by 10 % or more from
one 10 s run to the next (bench_proxy.py's http section, whatever the pinning), which is too
coarse to judge an aim of 0.97. `valgrind --tool=callgrind` counts the instructions a process
executes instead: the same work gives the same count, whatever else the machine is doing.

How: each proxy runs under ``valgrind --tool=callgrind --instr-atstart=no`` (start-up is not
counted; urlwarden's list builder child process runs natively, valgrind does not follow it).
Once it listens, the script sends warm-up requests, switches counting on
(``callgrind_control -i on``), sends N requests one after the other on one keep-alive
connection (absolute-form GET through the proxy to nginx on loopback, 512-byte answers, as
bench_proxy.py), switches counting off and dumps (``callgrind_control -d``), and reads the
total instruction count. The proxies alternate, R rounds each. The ratio bare/urlwarden of
instructions per request is the throughput ratio the two would have on a core of their own.
Instructions are not cycles (cache misses and branch mispredictions are not counted); they
measure the work each proxy does per request, not its memory behaviour.

A third process, "bare-dispatch", is bare mitmdump with ``-s benchmarks/engine_dispatch.py``:
mitmproxy's event dispatch as ``urlwarden run`` has it (urlwarden.frontends.proxy.dispatch), so
that bare-dispatch/urlwarden is the work of urlwarden's own checks on the same engine, beside
bare/urlwarden, which also counts what the dispatch saves.

``--urlwarden-set NAME=VALUE`` and ``--bare-set NAME=VALUE`` (repeatable) pass mitmproxy options
to one side only: e.g. ``--urlwarden-set urlwarden_stream_bodies=off`` measures urlwarden with
bodies buffered, ``--bare-set stream_large_bodies=0`` bare mitmdump streaming as urlwarden does.

Usage: .venv/bin/python benchmarks/bench_instructions.py [--entries N] [--requests N] [--rounds R]
       [--origin ip|name] [--urlwarden-set NAME=VALUE ...] [--bare-set NAME=VALUE ...]
Needs root (a private /etc/hosts, as bench_proxy.py), and valgrind and nginx from Debian.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_proxy as bp  # noqa: E402
from tests.support.certs import make_test_pki  # noqa: E402
from tests.support.proxyproc import free_port  # noqa: E402

WARMUP_REQUESTS = 50
VALGRIND_START_TIMEOUT = 900.0


def valgrind_argv(out: Path, argv: list[str]) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *argv]


def send_requests(port: int, request: bytes, count: int) -> None:
    """`count` requests on one keep-alive connection, each answer read whole (Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        reader = sock.makefile("rb")
        for _ in range(count):
            sock.sendall(request)
            status = reader.readline()
            if b" 200 " not in status:
                raise RuntimeError(f"unexpected answer through the proxy: {status!r}")
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)


def total_instructions(out: Path) -> int:
    """The instruction total of the dump asked for with ``callgrind_control -d`` (``out.1``; the
    file callgrind writes at exit holds only what ran after it, nothing once counting is off)."""
    dumps = sorted(out.parent.glob(out.name + ".*"))
    for dump in dumps:
        m = re.search(r"^totals:\s+(\d+)", dump.read_text(errors="replace"), re.M)
        if m and int(m.group(1)):
            return int(m.group(1))
    raise RuntimeError(f"no callgrind totals in {[d.name for d in dumps]}")


def callgrind_control(*args: str) -> None:
    done = subprocess.run(["callgrind_control", *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or "OK." not in done.stdout:
        raise RuntimeError(f"callgrind_control {' '.join(args)} failed: {done.stdout}{done.stderr}")


def measure(stack, name, argv, port, workdir, request, count, env=None) -> int:
    out = workdir / f"callgrind.{name}"
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    process = bp.ProxyProcess(valgrind_argv(out, argv), port, hosts=bp.HOSTS, workdir=workdir / "run",
                              env=env, start_timeout=VALGRIND_START_TIMEOUT)
    with process:
        bp.log(f"  {name}: listening under valgrind after {time.monotonic() - started:.0f} s (pid {process.pid})")
        send_requests(port, request, WARMUP_REQUESTS)
        # (no PID: `process.pid` is the unshare wrapper's; this is the only callgrind run at a time)
        callgrind_control("-i", "on")
        began = time.monotonic()
        send_requests(port, request, count)
        callgrind_control("-i", "off")
        callgrind_control("-d")
        took = time.monotonic() - began
    instructions = total_instructions(out)
    bp.log(f"  {name}: {count} requests in {took:.0f} s under callgrind: {instructions:,} instructions, "
           f"{instructions / count:,.0f} per request")
    return instructions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--origin", choices=("ip", "name"), default="ip")
    parser.add_argument("--urlwarden-set", action="append", default=[], metavar="NAME=VALUE",
                        help="a mitmproxy option for urlwarden only (repeatable)")
    parser.add_argument("--bare-set", action="append", default=[], metavar="NAME=VALUE",
                        help="a mitmproxy option for bare mitmdump only (repeatable)")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control", "nginx") if shutil.which(tool) is None]
    if missing:
        print(f"missing {', '.join(missing)}: apt-get install valgrind nginx-light", file=sys.stderr)
        return 2
    bp.log("urlwarden instruction-count benchmark")
    bp.log("  " + "  ".join(f"{k}={v}" for k, v in {**bp.machine(), "tree": bp.source_tree()}.items()))
    bp.log(f"  settings: entries={args.entries:,} requests={args.requests} rounds={args.rounds} origin={args.origin}"
           f" urlwarden-set={args.urlwarden_set} bare-set={args.bare_set}")
    with bp.workspace() as base, contextlib.ExitStack() as stack:
        pki = make_test_pki(base / "pki", [bp.CLEAN_HOST, bp.LISTED_HOST])
        nginx = bp.Nginx(base / "nginx", pki)
        stack.enter_context(nginx.process)
        list_path = bp.write_list(base / "list.txt", args.entries)
        config = bp.write_urlwarden_config(base, list_path)
        origin = bp.ORIGIN_NAME if args.origin == "name" else "127.0.0.1"
        request = (f"GET http://{origin}:{nginx.http_port}{bp.ORIGIN_PATH} HTTP/1.1\r\n"
                   f"Host: {origin}:{nginx.http_port}\r\n\r\n").encode()
        per_request: dict[str, list[float]] = {"bare": [], "bare-dispatch": [], "urlwarden": []}
        for r in range(args.rounds):
            for name in bp.alternate(list(per_request), r):
                port = free_port()
                confdir = base / f"conf-{name}"
                extra = [a for value in (args.urlwarden_set if name == "urlwarden" else args.bare_set)
                         for a in ("--set", value)]
                if name == "urlwarden":
                    proxy_argv = bp.urlwarden_argv(port, config, confdir, pki) + extra
                else:
                    script = ["-s", str(bp.ENGINE_DISPATCH_SCRIPT)] if name == "bare-dispatch" else []
                    proxy_argv = bp.mitmdump_argv(port, confdir, pki, *script, *extra)
                total = measure(stack, name, proxy_argv, port, base / f"{name}-{r}", request, args.requests)
                per_request[name].append(total / args.requests)
        bare = min(per_request["bare"])
        same_engine = min(per_request["bare-dispatch"])
        ours = min(per_request["urlwarden"])
        bp.log(f"\n  instructions per request (lowest of {args.rounds} rounds): bare {bare:,.0f}, "
               f"bare-dispatch {same_engine:,.0f}, urlwarden {ours:,.0f} (+{ours - same_engine:,.0f} on the same engine)")
        bp.log(f"  bare/urlwarden: {bare / ours:.3f} (aim >= 0.97); bare-dispatch/urlwarden (urlwarden's checks "
               f"alone): {same_engine / ours:.3f}; every round: "
               + ", ".join(f"{n} {v:,.0f}" for n, values in per_request.items() for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
