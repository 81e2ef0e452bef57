#!/usr/bin/env python3
"""Proxy benchmark: urlwarden against bare mitmdump, HTTPS connections, reload stalls, scale-out.

Everything runs on loopback against a local nginx; every host name is synthetic (.bench.test);
every load is bounded in time (wrk -d, client deadlines); only processes this script started
are stopped, by their own process groups. Results: docs/performance-proxy.md.

Sections (``--only http,https,reload,scaleout``; default all):

http      requests/s and latency with wrk through bare mitmdump and through ``urlwarden run``
          with a synthetic 1M-entry plain list, alternated in the same run for several rounds
          (the order flips every round). A wrk Lua script sends absolute-form requests
          (``GET http://127.0.0.1:PORT/x HTTP/1.1``), as a client of a forward proxy does.
          Throughput at ``-c 32`` (saturated); latency at ``-c 32`` and, unloaded, at ``-c 1``
          (the proxy's own time per request, without queueing), and the proxy's CPU time per
          request (its share of the process's CPU seconds during the run: the throughput
          ratio it would have on a core of its own). Prints urlwarden/bare for throughput and
          CPU, and the p50 urlwarden adds. ``--origin name`` addresses nginx as
          origin.bench.test instead of 127.0.0.1 (an IP literal takes urlwarden's full
          canonicalization path; a plain name its fast path).
https     connections/s for CONNECT + TLS handshake + one request (``Connection: close``) from
          an asyncio client (8 concurrent loops): an unlisted host (urlwarden passes it
          through), a host with path entries (urlwarden intercepts it; an unlisted path goes to
          nginx, a listed one gets the block page), and for scale bare mitmdump intercepting
          everything and bare mitmdump with ``ignore_hosts`` (passing everything through).
reload    the longest request stall while a changed 1M-entry list is loaded by SIGHUP under
          load: 4 keep-alive connections send requests back to back and record each one's
          latency; the reload window runs from urlwarden's ``RELOADING=1`` to its ``READY=1``
          (sd_notify, read from our own NOTIFY_SOCKET). Prints p50/p99/max and the longest gap
          between two answers before, during and after the reload.
scaleout  aggregate throughput of 2 urlwarden workers behind HAProxy (the shipped
          contrib/haproxy/haproxy.cfg, templated with local ports) against 1 worker behind the
          same HAProxy path, and 1 worker direct; alternated for several rounds.

What each side runs with (printed at start, with the full argv):

* bare mitmdump: ``mitmdump --listen-host 127.0.0.1 -p PORT --set confdir=DIR
  --set connection_strategy=lazy --set flow_detail=0 --set termlog_verbosity=error``
  (mitmdump's default addons, including its flow printer, which prints nothing at flow_detail 0).
* bare-dispatch (http section): the same bare mitmdump with ``-s benchmarks/engine_dispatch.py``,
  which gives it the event dispatch ``urlwarden run`` has (urlwarden.frontends.proxy.dispatch):
  urlwarden/bare-dispatch is the cost of urlwarden's own checks on the same engine, beside
  urlwarden/bare, which also counts what the dispatch saves.
* urlwarden: ``urlwarden run --config CFG --listen 127.0.0.1:PORT -- --set confdir=DIR``; CFG
  has one plain list of N entries (``hNNNNNN.bench.test/p/N.html``, one per line) and defaults
  otherwise. ``urlwarden run`` itself sets connection_strategy=lazy, flow_detail=0 and
  termlog_verbosity=error, and loads no flow printer.
* both: ``ssl_verify_upstream_trusted_ca`` = the benchmark's own test CA (nginx's certificate),
  and a private /etc/hosts (unshare, as the test harness does) mapping the .bench.test names
  to 127.0.0.1; a private resolv.conf makes every other name fail without leaving loopback.
* nginx: one worker process, access log off, a 512-byte static file, keep-alive without limit,
  TLS with a P-256 certificate, session cache and tickets off (every handshake a full one).
* wrk: ``wrk -t 1 -c C -d D --latency -s absolute-form.lua http://127.0.0.1:PROXY/ -- URL HOST``.

The load generator, nginx, HAProxy and the proxies all share this machine's cores: compare
ratios from one run, not absolute figures across machines.

Needs root (unshare --mount for the private /etc/hosts) and the Debian packages
``wrk nginx-light haproxy`` (``nginx`` works too): ``apt-get install wrk nginx-light haproxy``.

``--http-entries 1000000,10000000`` runs the http section once per list size, each against its own
urlwarden (and bare mitmdump again, so that every ratio comes from one rig), and prints the
throughput ratio per size at the end; the other sections use ``--entries``.

Usage: .venv/bin/python benchmarks/bench_proxy.py [--only SECTIONS] [--entries N] [--rounds R]
       [--http-entries N,N...]
       [--duration S] [--latency-duration S] [--connections C] [--https-duration S]
       [--origin ip|name] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.certs import make_test_pki  # noqa: E402
from tests.support.haproxy import HAPROXY_CONFIG, haproxy_argv, render_haproxy_config  # noqa: E402
from tests.support.proxyproc import ProxyProcess, free_port, namespace_unavailable_reason  # noqa: E402

BIN = Path(sys.executable).parent  # run with the venv's python: mitmdump and urlwarden are beside it
MITMDUMP = str(BIN / "mitmdump")
URLWARDEN = str(BIN / "urlwarden")
ENGINE_DISPATCH_SCRIPT = REPO / "benchmarks" / "engine_dispatch.py"  # bare mitmdump with urlwarden's event dispatch

SECTIONS = ("http", "https", "reload", "scaleout")
DEFAULT_ENTRIES = 1_000_000
DEFAULT_ROUNDS = 3
DEFAULT_DURATION = 10  # seconds per wrk throughput run
DEFAULT_LATENCY_DURATION = 5  # seconds per wrk -c 1 run
DEFAULT_CONNECTIONS = 32
DEFAULT_HTTPS_DURATION = 8  # seconds per HTTPS case and round
HTTPS_CONCURRENCY = 8
WARMUP = 2  # seconds of untimed wrk per proxy before the rounds
WRK_THREADS = 1
WRK_TIMEOUT = 5  # wrk --timeout: a request slower than this counts as a timeout
START_TIMEOUT = 300.0  # seconds a proxy may take to load its lists and listen
IO_TIMEOUT = 10.0  # seconds any one client request or connection may take
RELOAD_BEFORE = 5.0  # seconds of probe traffic before the SIGHUP
RELOAD_AFTER = 3.0  # seconds after READY=1
RELOAD_TIMEOUT = 300.0  # seconds the reload may take before the section gives up
RELOAD_PROBE_CONNECTIONS = 4
STALL_AIM = 0.020
BODY_BYTES = 512

CLEAN_HOST = "clean.bench.test"  # no entries: urlwarden passes its TLS through
LISTED_HOST = "h000001.bench.test"  # has a path entry: urlwarden intercepts its TLS
LISTED_PATH = "/p/1.html"
ORIGIN_PATH = "/x"
ORIGIN_NAME = "origin.bench.test"  # --origin name: the http section addresses nginx by this name
HOSTS = {CLEAN_HOST: "127.0.0.1", LISTED_HOST: "127.0.0.1", ORIGIN_NAME: "127.0.0.1"}

WRK_LUA = """\
-- Absolute-form requests for a forward proxy: wrk connects to the proxy (the URL on wrk's
-- command line); the request line names the origin. Arguments after "--": URL HOST.
init = function(args)
  wrk.path = args[1]
  wrk.headers["Host"] = args[2]
end
"""


def log(message: str = "") -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- machine
def _version(argv: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    m = re.search(pattern, done.stdout + done.stderr)
    return m.group(1) if m else "?"


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mitm = _version([sys.executable, "-c", "from mitmproxy.version import VERSION; print(VERSION)"], r"(\S+)")
    return {
        "tree": source_tree(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "mitmproxy": mitm,
        "nginx": _version(["nginx", "-v"], r"nginx/(\S+)"),
        "haproxy": _version(["haproxy", "-v"], r"version (\S+)"),
        "wrk": _version(["wrk", "-v"], r"wrk (\S+)"),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def source_tree() -> str:
    """The code measured: the commit, and when src/ differs from it, a digest of src/urlwarden's
    Python files (so two runs on the same uncommitted tree can be recognised as such)."""
    commit = _version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], r"(\S+)")
    dirty = _version(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"], r"(.+)") != "?"
    if not dirty:
        return commit
    digest = hashlib.sha256()
    for path in sorted((REPO / "src" / "urlwarden").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes())
    return f"{commit}+dirty(src {digest.hexdigest()[:12]})"


def preflight(sections: Sequence[str]) -> str | None:
    """Why this benchmark cannot run here, or None."""
    need = ["wrk", "nginx"] + (["haproxy"] if "scaleout" in sections else [])
    missing = [p for p in need if shutil.which(p) is None]
    if missing:
        pkgs = {"wrk": "wrk", "nginx": "nginx-light", "haproxy": "haproxy"}
        return f"missing {', '.join(missing)}: apt-get install {' '.join(pkgs[m] for m in missing)}"
    if not Path(MITMDUMP).exists() or not Path(URLWARDEN).exists():
        return f"run with the venv's python (.venv/bin/python): no mitmdump/urlwarden beside {sys.executable}"
    return namespace_unavailable_reason()


# ----------------------------------------------------------------------------- inputs
def write_list(path: Path, entries: int, folder: str = "p") -> Path:
    """`entries` synthetic plain-list lines hNNNNNN.bench.test/<folder>/N.html, written atomically."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="ascii") as out:
        chunk = 100_000
        for start in range(0, entries, chunk):
            out.write("".join(f"h{i:06d}.bench.test/{folder}/{i}.html\n" for i in range(start, min(entries, start + chunk))))
    os.replace(tmp, path)
    return path


def write_urlwarden_config(directory: Path, list_path: Path) -> Path:
    config = directory / "urlwarden.yaml"
    config.write_text(f"lists:\n  - name: bench\n    path: {list_path}\n    format: plain\n")
    return config


class Nginx:
    """nginx on 127.0.0.1 (HTTP and HTTPS), its own prefix, config, pid and logs."""

    def __init__(self, prefix: Path, pki):
        self.prefix = prefix
        self.http_port, self.https_port = free_port(), free_port()
        www = prefix / "www"
        www.mkdir(parents=True)
        (www / ORIGIN_PATH.lstrip("/")).write_bytes(b"x" * (BODY_BYTES - 1) + b"\n")
        # nginx's worker process runs as nobody: it must reach the file (the folders above are traversable only)
        for p in (prefix.parent, prefix, www, *www.iterdir()):
            p.chmod(0o711 if p == prefix.parent else 0o755 if p.is_dir() else 0o644)
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / d).mkdir(parents=True)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(f"""\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/html;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{self.http_port};
        listen 127.0.0.1:{self.https_port} ssl;
        ssl_certificate {pki.server_cert};
        ssl_certificate_key {pki.server_key};
        ssl_session_cache off;
        ssl_session_tickets off;
        root {www};
    }}
}}
""")
        self.argv = ["nginx", "-p", str(prefix), "-c", str(self.conf), "-e", "stderr"]
        self.process = ProxyProcess(self.argv, self.http_port, workdir=prefix / "run")


@dataclass
class Proxy:
    name: str
    port: int
    argv: list[str]
    process: ProxyProcess
    confdir: Path


def mitmdump_argv(port: int, confdir: Path, pki, *extra: str) -> list[str]:
    return [MITMDUMP, "--listen-host", "127.0.0.1", "-p", str(port), "--set", f"confdir={confdir}",
            "--set", "connection_strategy=lazy", "--set", "flow_detail=0", "--set", "termlog_verbosity=error",
            "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}", *extra]


def urlwarden_argv(port: int, config: Path, confdir: Path, pki) -> list[str]:
    return [URLWARDEN, "run", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--",
            "--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={pki.ca_cert}"]


def start(stack: contextlib.ExitStack, name: str, argv: list[str], port: int, workdir: Path,
          env: dict[str, str] | None = None, hosts: dict[str, str] | None = HOSTS) -> ProxyProcess:
    started = time.monotonic()
    process = ProxyProcess(argv, port, hosts=hosts, workdir=workdir, env=env, start_timeout=START_TIMEOUT)
    stack.enter_context(process)
    OUR_GROUPS.add(process.pid)
    log(f"  started {name} in {time.monotonic() - started:.1f} s (pid {process.pid}): {' '.join(argv)}")
    return process


def rss_mb(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


# ----------------------------------------------------------------------------- CPU accounting
HZ = os.sysconf("SC_CLK_TCK")
OUR_GROUPS: set[int] = set()  # process groups of everything this script started (ProxyProcess: pid == pgid)


def _group_ticks(groups: set[int]) -> int:
    """utime + stime of every live process in these process groups (threads included)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) in groups:
            total += int(fields[11]) + int(fields[12])
    return total


def _system_ticks() -> tuple[int, int]:
    """(busy, steal) ticks of all CPUs since boot, from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return user + nice + system + irq + softirq, steal


def _rusage_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuMeter:
    """CPU used during a run, in cores (CPU seconds per wall second): by the measured process
    groups, and by everything else on the machine that this script did not start ("other":
    load from elsewhere that skews the figures of a shared machine), plus hypervisor steal.
    Our own processes are the ProxyProcess groups, this script and its reaped children (wrk)."""

    def __init__(self, measured: Sequence[int]):
        self.measured = set(measured)

    def __enter__(self) -> CpuMeter:
        self._start = (time.monotonic(), _system_ticks(), _group_ticks(self.measured), _group_ticks(OUR_GROUPS),
                       _rusage_seconds())
        return self

    def __exit__(self, *exc) -> None:
        wall0, (busy0, steal0), measured0, ours0, self0 = self._start
        (busy1, steal1), measured1, ours1 = _system_ticks(), _group_ticks(self.measured), _group_ticks(OUR_GROUPS)
        self.wall = time.monotonic() - wall0
        self.measured_seconds = (measured1 - measured0) / HZ
        ours = (ours1 - ours0) / HZ + _rusage_seconds() - self0
        self.measured_cores = self.measured_seconds / self.wall
        self.other_cores = max(0.0, ((busy1 - busy0) / HZ - ours) / self.wall)
        self.steal_cores = (steal1 - steal0) / HZ / self.wall

    def as_dict(self) -> dict:
        return {"measured_cpu_s": self.measured_seconds, "measured_cores": self.measured_cores,
                "other_cores": self.other_cores, "steal_cores": self.steal_cores}


# ----------------------------------------------------------------------------- wrk
@dataclass
class WrkResult:
    rps: float
    p50: float  # seconds
    p99: float
    requests: int
    non2xx: int
    socket_errors: int
    command: str


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


WRK_CPUS: set[int] | None = None  # --pin: the CPUs wrk runs on


def pin(pid: int, cpus: set[int]) -> None:
    """Bind process `pid` and all its threads (and, through them, what they start) to `cpus`."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), cpus)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (nginx: master and worker)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in os.listdir(f"/proc/{current}/task"):
            with contextlib.suppress(OSError):
                queue.extend(int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split())
    return found


def wrk(lua: Path, proxy_port: int, url: str, host: str, connections: int, duration: int) -> WrkResult:
    argv = ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{duration}s", "--timeout", f"{WRK_TIMEOUT}s",
            "--latency", "-s", str(lua), f"http://127.0.0.1:{proxy_port}/", "--", url, host]
    pinned = (lambda: os.sched_setaffinity(0, WRK_CPUS)) if WRK_CPUS else None
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, preexec_fn=pinned)
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({done.returncode}): {out}{done.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)) else 0
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return WrkResult(rps, p50, p99, requests, non2xx, errors, " ".join(argv))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def alternate(names: Sequence[str], round_no: int) -> list[str]:
    return list(names) if round_no % 2 == 0 else list(reversed(names))


# ----------------------------------------------------------------------------- http
def bench_http(rig: Rig, args) -> dict:
    origin = ORIGIN_NAME if args.origin == "name" else "127.0.0.1"
    log(f"\n== http: wrk through bare mitmdump and urlwarden ({args.entries:,} entries), {args.rounds} rounds, "
        f"origin addressed as {origin}")
    url = f"http://{origin}:{rig.nginx.http_port}{ORIGIN_PATH}"
    host = f"{origin}:{rig.nginx.http_port}"
    targets = {"bare": rig.bare, "bare-dispatch": rig.bare_dispatch, "urlwarden": rig.urlwarden}
    global WRK_CPUS
    everything = os.sched_getaffinity(0)
    if args.pin:  # the proxy measured on one CPU, its load (wrk, nginx) on the other, the same every run
        proxy_cpu, load_cpu = max(everything), min(everything)
        for proxy in targets.values():
            pin(proxy.process.pid, {proxy_cpu})
        for pid in process_tree(rig.nginx.process.pid):
            pin(pid, {load_cpu})
        WRK_CPUS = {load_cpu}
        log(f"  pinned: proxies on CPU {proxy_cpu}, wrk and nginx on CPU {load_cpu}")
    for proxy in targets.values():
        wrk(rig.lua, proxy.port, url, host, args.connections, WARMUP)
    runs: list[dict] = []
    c = args.connections
    log(f"  {'round':>5} {'proxy':<13} {f'req/s c{c}':>10} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10}"
        f" {'p50 ms c1':>9} {'p99 ms c1':>9} {'other cores':>11} {'errors':>6}")
    for r in range(args.rounds):
        for name in alternate(list(targets), r):
            proxy = targets[name]
            with CpuMeter([proxy.process.pid]) as cpu:
                load = wrk(rig.lua, proxy.port, url, host, c, args.duration)
            single = wrk(rig.lua, proxy.port, url, host, 1, args.latency_duration)
            errors = load.non2xx + load.socket_errors + single.non2xx + single.socket_errors
            cpu_per_request = cpu.measured_seconds / max(1, load.requests)
            runs.append({"round": r + 1, "proxy": name, "load": asdict(load), "single": asdict(single),
                         "cpu": cpu.as_dict(), "cpu_per_request": cpu_per_request, "errors": errors})
            log(f"  {r + 1:>5} {name:<13} {load.rps:>10.1f} {_ms(load.p50):>7} {_ms(load.p99):>7}"
                f" {_ms(cpu_per_request):>10} {_ms(single.p50):>9} {_ms(single.p99):>9} {cpu.other_cores:>11.2f}"
                f" {errors:>6}")
    log(f"  commands: {runs[0]['load']['command']}\n            {runs[0]['single']['command']}")

    def per(name: str, key: str, metric: str | None = None) -> list[float]:
        return [run[key][metric] if metric else run[key] for run in runs if run["proxy"] == name]

    ratios = [u / b for u, b in zip(per("urlwarden", "load", "rps"), per("bare", "load", "rps"))]
    # urlwarden's own checks, on the same engine: against bare mitmdump with urlwarden's dispatch
    same_engine = [u / b for u, b in zip(per("urlwarden", "load", "rps"), per("bare-dispatch", "load", "rps"))]
    same_engine_cpu = [b / u for u, b in zip(per("urlwarden", "cpu_per_request"),
                                             per("bare-dispatch", "cpu_per_request"))]
    cpu_ratios = [b / u for u, b in zip(per("urlwarden", "cpu_per_request"), per("bare", "cpu_per_request"))]
    added_c1 = [u - b for u, b in zip(per("urlwarden", "single", "p50"), per("bare", "single", "p50"))]
    added_load = [u - b for u, b in zip(per("urlwarden", "load", "p50"), per("bare", "load", "p50"))]
    summary = {
        "bare_rps": statistics.median(per("bare", "load", "rps")),
        "urlwarden_rps": statistics.median(per("urlwarden", "load", "rps")),
        "ratio_per_round": ratios,
        "ratio_median": statistics.median(ratios),
        "bare_cpu_per_request": statistics.median(per("bare", "cpu_per_request")),
        "urlwarden_cpu_per_request": statistics.median(per("urlwarden", "cpu_per_request")),
        "cpu_ratio_per_round": cpu_ratios,
        "cpu_ratio_median": statistics.median(cpu_ratios),
        "bare_p50_c1": statistics.median(per("bare", "single", "p50")),
        "urlwarden_p50_c1": statistics.median(per("urlwarden", "single", "p50")),
        "added_p50_c1_per_round": added_c1,
        "added_p50_c1_median": statistics.median(added_c1),
        "added_p50_load_median": statistics.median(added_load),
        "bare_dispatch_rps": statistics.median(per("bare-dispatch", "load", "rps")),
        "bare_dispatch_cpu_per_request": statistics.median(per("bare-dispatch", "cpu_per_request")),
        "same_engine_ratio_per_round": same_engine,
        "same_engine_ratio_median": statistics.median(same_engine),
        "same_engine_cpu_ratio_median": statistics.median(same_engine_cpu),
        "errors": sum(run["errors"] for run in runs),
    }
    log(f"  throughput urlwarden/bare: median {summary['ratio_median']:.3f} "
        f"(per round {', '.join(f'{x:.3f}' for x in ratios)}; aim >= 0.97)")
    log(f"  CPU per request, bare/urlwarden (the throughput ratio on a core of its own): median "
        f"{summary['cpu_ratio_median']:.3f} (per round {', '.join(f'{x:.3f}' for x in cpu_ratios)}); "
        f"bare {_ms(summary['bare_cpu_per_request'])} ms, urlwarden {_ms(summary['urlwarden_cpu_per_request'])} ms")
    log(f"  on the same engine, urlwarden/bare-dispatch (urlwarden's checks alone): throughput median "
        f"{summary['same_engine_ratio_median']:.3f} (per round {', '.join(f'{x:.3f}' for x in same_engine)}), "
        f"CPU per request {summary['same_engine_cpu_ratio_median']:.3f}; "
        f"bare-dispatch {_ms(summary['bare_dispatch_cpu_per_request'])} ms")
    log(f"  added p50, unloaded (c1): median {_ms(summary['added_p50_c1_median'])} ms "
        f"(per round {', '.join(_ms(x) for x in added_c1)}; aim <= 1 ms); "
        f"bare {_ms(summary['bare_p50_c1'])} ms, urlwarden {_ms(summary['urlwarden_p50_c1'])} ms")
    log(f"  added p50 at c{c} (queueing included): median {_ms(summary['added_p50_load_median'])} ms")
    if args.pin:  # the other sections run unpinned
        for pid in [p.process.pid for p in targets.values()] + process_tree(rig.nginx.process.pid):
            pin(pid, everything)
        WRK_CPUS = None
    summary["pinned"] = bool(args.pin)
    return {"runs": runs, "summary": summary}


# ----------------------------------------------------------------------------- https
@dataclass
class ClientStats:
    ok: int = 0
    wrong: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    if m is None:
        raise ValueError("response without Content-Length")
    await reader.readexactly(int(m.group(1)))
    return status


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (asyncio.TimeoutError, OSError, ssl.SSLError):
        writer.transport.abort()


async def _tls_once(proxy_port: int, host: str, port: int, path: str, ctx: ssl.SSLContext) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    try:
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if int(head[9:12]) != 200:
            raise ValueError(f"CONNECT answered {head[:12]!r}")
        await writer.start_tls(ctx, server_hostname=host)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return await _read_response(reader)
    finally:
        await _close(writer)


async def _tls_loop(proxy_port, host, port, path, expect, ctx, deadline, stats: ClientStats) -> None:
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            async with asyncio.timeout(IO_TIMEOUT):
                status = await _tls_once(proxy_port, host, port, path, ctx)
        except (OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError) as exc:
            stats.errors[type(exc).__name__] += 1
            continue
        if status == expect:
            stats.ok += 1
            stats.latencies.append(time.monotonic() - started)
        else:
            stats.wrong[status] += 1


def tls_rate(proxy_port: int, host: str, port: int, path: str, expect: int, ctx: ssl.SSLContext,
             duration: float) -> ClientStats:
    stats = ClientStats()

    async def main():
        deadline = time.monotonic() + duration
        await asyncio.gather(*(_tls_loop(proxy_port, host, port, path, expect, ctx, deadline, stats)
                               for _ in range(HTTPS_CONCURRENCY)))

    asyncio.run(main())
    return stats


def bench_https(rig: Rig, args) -> dict:
    log(f"\n== https: CONNECT + TLS handshake + one request, {HTTPS_CONCURRENCY} concurrent client loops, "
        f"{args.https_duration} s per case, {args.rounds} rounds")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(rig.pki.ca_cert))
    for proxy in (rig.bare, rig.bare_ignore, rig.urlwarden):
        ctx.load_verify_locations(cafile=str(proxy.confdir / "mitmproxy-ca-cert.pem"))
    ctx.set_alpn_protocols(["http/1.1"])
    tls_port = rig.nginx.https_port
    cases = {
        "urlwarden, unlisted host (passed through)": (rig.urlwarden, CLEAN_HOST, ORIGIN_PATH, 200),
        "urlwarden, listed-path host, unlisted path (intercepted)": (rig.urlwarden, LISTED_HOST, ORIGIN_PATH, 200),
        "urlwarden, listed URL (intercepted, block page)": (rig.urlwarden, LISTED_HOST, LISTED_PATH, 451),
        "bare mitmdump, intercepting (its default)": (rig.bare, CLEAN_HOST, ORIGIN_PATH, 200),
        "bare mitmdump, ignore_hosts (passed through)": (rig.bare_ignore, CLEAN_HOST, ORIGIN_PATH, 200),
    }
    for proxy, host, path, expect in cases.values():  # warm-up: certificates generated once per host
        tls_rate(proxy.port, host, tls_port, path, expect, ctx, 1.0)
    results: dict[str, list[dict]] = {name: [] for name in cases}
    for r in range(args.rounds):
        for name in alternate(list(cases), r):
            proxy, host, path, expect = cases[name]
            with CpuMeter([proxy.process.pid]) as cpu:
                stats = tls_rate(proxy.port, host, tls_port, path, expect, ctx, args.https_duration)
            lat = sorted(stats.latencies) or [float("nan")]
            results[name].append({"round": r + 1, "per_s": stats.ok / args.https_duration,
                                  "p50": lat[len(lat) // 2], "cpu_per_connection": cpu.measured_seconds / max(1, stats.ok),
                                  "cpu": cpu.as_dict(), "wrong": dict(stats.wrong), "errors": dict(stats.errors)})
    log(f"  {'case':<58} {'conn/s':>7} {'per round':>19} {'p50 ms':>7} {'proxy CPU ms/conn':>17} {'other cores':>11}"
        f"  failures")
    summary = {}
    for name, rows in results.items():
        per_s = [row["per_s"] for row in rows]
        failures = sum(sum(row["wrong"].values()) + sum(row["errors"].values()) for row in rows)
        summary[name] = {"per_s": statistics.median(per_s),
                         "cpu_per_connection": statistics.median(row["cpu_per_connection"] for row in rows)}
        log(f"  {name:<58} {summary[name]['per_s']:>7.1f} {', '.join(f'{x:.0f}' for x in per_s):>19}"
            f" {_ms(statistics.median(row['p50'] for row in rows)):>7} {_ms(summary[name]['cpu_per_connection']):>17}"
            f" {statistics.median(row['cpu']['other_cores'] for row in rows):>11.2f}  {failures}"
            + (f" {[row['wrong'] or row['errors'] for row in rows]}" if failures else ""))
    return {"rounds": results, "summary": summary}


# ----------------------------------------------------------------------------- reload
class _Notify(asyncio.DatagramProtocol):
    def __init__(self):
        self.messages: list[tuple[float, str]] = []
        self.changed = asyncio.Event()

    def datagram_received(self, data, addr):
        self.messages.append((time.monotonic(), data.decode(errors="replace")))
        self.changed.set()


async def _probe(port: int, request: bytes, stop: asyncio.Event, out: list[tuple[float, float]], errors: Counter):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            errors[type(exc).__name__] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while not stop.is_set():
                started = time.monotonic()
                writer.write(request)
                async with asyncio.timeout(IO_TIMEOUT):
                    status = await _read_response(reader)
                done = time.monotonic()
                if status != 200:
                    errors[f"status {status}"] += 1
                out.append((done, done - started))
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            errors[type(exc).__name__] += 1
        finally:
            writer.transport.abort()


def _window(samples: list[tuple[float, float]], start: float, end: float) -> dict:
    inside = [(t, lat) for t, lat in samples if start <= t < end]
    lats = sorted(lat for _, lat in inside)
    times = [start] + sorted(t for t, _ in inside) + [end]
    if not lats:
        return {"requests": 0}
    return {
        "seconds": end - start,
        "requests": len(lats),
        "rps": len(lats) / (end - start),
        "p50": lats[len(lats) // 2],
        "p99": lats[min(len(lats) - 1, int(len(lats) * 0.99))],
        "max": lats[-1],
        "longest_gap": max(b - a for a, b in zip(times, times[1:])),
        # the slowest requests, as (seconds from the window's start to the answer, latency)
        "slowest": sorted(((t - start, lat) for t, lat in inside), key=lambda x: -x[1])[:5],
    }


def bench_reload(rig: Rig, args) -> dict:
    log(f"\n== reload: SIGHUP with a changed {args.entries:,}-entry list, {RELOAD_PROBE_CONNECTIONS} "
        f"keep-alive probe connections sending back to back")
    request = (f"GET http://127.0.0.1:{rig.nginx.http_port}{ORIGIN_PATH} HTTP/1.1\r\n"
               f"Host: 127.0.0.1:{rig.nginx.http_port}\r\n\r\n").encode()
    changed = write_list(rig.workdir / "list-changed.txt", args.entries, folder="q")
    rss_before = rss_mb(rig.urlwarden.process.pid)

    async def main() -> dict:
        loop = asyncio.get_running_loop()
        _, notify = await loop.create_datagram_endpoint(_Notify, sock=rig.notify_socket)
        notify.messages.clear()
        stop = asyncio.Event()
        samples: list[tuple[float, float]] = []
        errors: Counter = Counter()
        probes = [asyncio.create_task(_probe(rig.urlwarden.port, request, stop, samples, errors))
                  for _ in range(RELOAD_PROBE_CONNECTIONS)]
        t0 = time.monotonic()
        await asyncio.sleep(RELOAD_BEFORE)
        os.replace(changed, rig.list_path)
        hup = time.monotonic()
        rig.urlwarden.process.send_signal(signal.SIGHUP)
        reloading = ready = None
        peak = rss_mb(rig.urlwarden.process.pid) or 0
        while ready is None and time.monotonic() - hup < RELOAD_TIMEOUT:
            notify.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await notify.changed.wait()
            peak = max(peak, rss_mb(rig.urlwarden.process.pid) or 0)
            for at, text in notify.messages:
                if "RELOADING=1" in text and reloading is None:
                    reloading = at
                if "READY=1" in text and reloading is not None and at >= reloading:
                    ready = at
        await asyncio.sleep(RELOAD_AFTER)
        end = time.monotonic()
        stop.set()
        await asyncio.gather(*probes)
        if ready is None:
            raise RuntimeError(f"no READY=1 within {RELOAD_TIMEOUT} s of the SIGHUP")
        return {
            "sighup_to_reloading": (reloading - hup),
            "reload_seconds": ready - reloading,
            "before": _window(samples, t0 + 1.0, hup),
            "during": _window(samples, hup, ready),
            "after": _window(samples, ready, end),
            "errors": dict(errors),
            "rss_mb_before": rss_before,
            "rss_mb_peak": peak,
        }

    with CpuMeter([rig.urlwarden.process.pid]) as cpu:
        result = asyncio.run(main())
    result["cpu"] = cpu.as_dict()
    # the new list is in force: one of its URLs is blocked (without any name lookup or connection)
    check = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-x",
                            f"http://127.0.0.1:{rig.urlwarden.port}", "http://h000002.bench.test/q/2.html"],
                           capture_output=True, text=True, timeout=20)
    result["new_list_blocks"] = check.stdout.strip() == "451"
    log(f"  reload took {result['reload_seconds']:.1f} s (RELOADING=1 to READY=1); RSS {result['rss_mb_before']:.0f} MB"
        f" before, {result['rss_mb_peak']:.0f} MB peak (sampled twice a second); new list in force: "
        f"{result['new_list_blocks']}; probe errors: {result['errors'] or 'none'}; other load: "
        f"{cpu.other_cores:.2f} cores")
    log(f"  {'window':<8} {'seconds':>8} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'longest gap ms':>15}")
    for name in ("before", "during", "after"):
        w = result[name]
        if not w.get("requests"):
            log(f"  {name:<8} no requests completed")
            continue
        log(f"  {name:<8} {w['seconds']:>8.1f} {w['requests']:>9} {w['rps']:>7.1f} {_ms(w['p50']):>8} {_ms(w['p99']):>8}"
            f" {_ms(w['max']):>8} {_ms(w['longest_gap']):>15}")
    for name in ("before", "during"):
        slowest = ", ".join(f"{_ms(lat)} ms at {at:.2f} s" for at, lat in result[name].get("slowest", ()))
        log(f"  slowest {name}: {slowest}")
    stall = max(result["during"].get("max", 0), result["during"].get("longest_gap", 0))
    log(f"  longest stall during the reload: {_ms(stall)} ms (aim <= {_ms(STALL_AIM)} ms); the window runs "
        f"{result['reload_seconds']:.1f} s from RELOADING=1, the swap is at its end")
    return result


# ----------------------------------------------------------------------------- scale-out
def bench_scaleout(args, base: Path, pki, nginx: Nginx, lua: Path, list_path: Path) -> dict:
    log(f"\n== scaleout: 2 urlwarden workers behind HAProxy against 1 ({args.entries:,} entries each), "
        f"{args.rounds} rounds")
    url = f"http://127.0.0.1:{nginx.http_port}{ORIGIN_PATH}"
    host = f"127.0.0.1:{nginx.http_port}"
    confdir = base / "conf-workers"
    # What urlwarden@.service's ExecStartPre does: create the shared CA once, before the workers.
    subprocess.run([MITMDUMP, "-q", "-n", "-r", "/dev/null", "--set", f"confdir={confdir}"], check=True, timeout=60)
    config = write_urlwarden_config(base, list_path)
    with contextlib.ExitStack() as stack:
        ports = [free_port(), free_port()]
        workers = [ProxyProcess(urlwarden_argv(port, config, confdir, pki), port, hosts=HOSTS,
                                workdir=base / f"worker{i}", start_timeout=START_TIMEOUT)
                   for i, port in enumerate(ports, 1)]
        for proc in workers:
            stack.callback(proc.stop)
        started = time.monotonic()
        # started together, each loading its lists on its own core
        with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
            list(pool.map(ProxyProcess.start, workers))
        OUR_GROUPS.update(proc.pid for proc in workers)
        log(f"  started 2 workers in {time.monotonic() - started:.1f} s (ports {ports}): {' '.join(workers[0].argv)}")
        fronts = {}
        for label, backends in (("haproxy-1", ports[:1]), ("haproxy-2", ports)):
            front = free_port()
            cfg = base / f"{label}.cfg"
            cfg.write_text(render_haproxy_config(HAPROXY_CONFIG.read_text(), front, backends))
            start(stack, f"{label} ({len(backends)} backend{'s' if len(backends) > 1 else ''})", haproxy_argv(cfg),
                  front, base / label, hosts=None)
            fronts[label] = front
        targets = {"1 worker direct": ports[0], "1 worker via HAProxy": fronts["haproxy-1"],
                   "2 workers via HAProxy": fronts["haproxy-2"]}
        for port in targets.values():
            wrk(lua, port, url, host, args.connections, WARMUP)
        rows: list[dict] = []
        for r in range(args.rounds):
            for name in alternate(list(targets), r):
                with CpuMeter([proc.pid for proc in workers]) as cpu:
                    res = wrk(lua, targets[name], url, host, args.connections, args.duration)
                rows.append({"round": r + 1, "target": name, **asdict(res), "cpu": cpu.as_dict()})
                log(f"  {r + 1:>5} {name:<22} {res.rps:>9.1f} req/s  p50 {_ms(res.p50):>7} ms  workers "
                    f"{cpu.measured_cores:.2f} cores  other {cpu.other_cores:.2f} cores  steal {cpu.steal_cores:.2f}"
                    f"  errors {res.non2xx + res.socket_errors}")
        log(f"  command: {rows[0]['command']}")

    def per(name: str) -> list[float]:
        return [row["rps"] for row in rows if row["target"] == name]

    ratios = [two / one for two, one in zip(per("2 workers via HAProxy"), per("1 worker via HAProxy"))]
    hop = [via / direct for via, direct in zip(per("1 worker via HAProxy"), per("1 worker direct"))]
    summary = {name: statistics.median(per(name)) for name in targets}
    summary.update(ratio_per_round=ratios, ratio_median=statistics.median(ratios), haproxy_hop_median=statistics.median(hop))
    log(f"  2 workers / 1 worker (both via HAProxy): median {summary['ratio_median']:.2f} "
        f"(per round {', '.join(f'{x:.2f}' for x in ratios)}; aim >= 1.6); "
        f"1 worker via HAProxy / direct: {summary['haproxy_hop_median']:.3f}")
    log(f"  (wrk, nginx and HAProxy run on the same {os.cpu_count()} cores as the workers)")
    return {"runs": rows, "summary": summary}


# ----------------------------------------------------------------------------- rig
class Rig:
    """nginx, bare mitmdump (intercepting, and passing everything through) and urlwarden with
    the big list: started once, shared by the http, https and reload sections."""

    def __init__(self, stack: contextlib.ExitStack, base: Path, pki, nginx: Nginx, lua: Path, list_path: Path):
        self.workdir, self.pki, self.nginx, self.lua, self.list_path = base, pki, nginx, lua, list_path
        notify_path = base / "notify.sock"
        self.notify_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify_socket.bind(str(notify_path))
        stack.callback(self.notify_socket.close)
        config = write_urlwarden_config(base, list_path)
        self.bare = self._proxy(stack, "bare", lambda p, c: mitmdump_argv(p, c, pki))
        self.bare_dispatch = self._proxy(stack, "bare-dispatch",
                                         lambda p, c: mitmdump_argv(p, c, pki, "-s", str(ENGINE_DISPATCH_SCRIPT)))
        self.bare_ignore = self._proxy(stack, "bare-ignore",
                                       lambda p, c: mitmdump_argv(p, c, pki, "--set", "ignore_hosts=.*"))
        self.urlwarden = self._proxy(stack, "urlwarden", lambda p, c: urlwarden_argv(p, config, c, pki),
                                     env={"NOTIFY_SOCKET": str(notify_path)})
        log(f"  urlwarden RSS after loading: {rss_mb(self.urlwarden.process.pid):.0f} MB; "
            f"bare mitmdump: {rss_mb(self.bare.process.pid):.0f} MB")

    def _proxy(self, stack, name: str, make_argv: Callable[[int, Path], list[str]], env=None) -> Proxy:
        port = free_port()
        confdir = self.workdir / f"conf-{name}"
        argv = make_argv(port, confdir)
        process = start(stack, name, argv, port, self.workdir / name, env=env)
        return Proxy(name, port, argv, process, confdir)


def entry_counts(text: str) -> list[int]:
    """'1000000,10000000' (or '1M,10M') as list sizes."""
    counts = []
    for part in text.split(","):
        part = part.strip().upper()
        scale = {"K": 1_000, "M": 1_000_000}.get(part[-1:], 1)
        digits = part[:-1] if scale > 1 else part
        if not digits.isdigit() or int(digits) * scale <= 0:
            raise argparse.ArgumentTypeError(f"not a list size: {part!r}")
        counts.append(int(digits) * scale)
    return counts


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="urlwarden-bench-proxy-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--duration", type=int, default=DEFAULT_DURATION, help="seconds per wrk throughput run")
    parser.add_argument("--latency-duration", type=int, default=DEFAULT_LATENCY_DURATION, help="seconds per wrk -c 1 run")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS)
    parser.add_argument("--https-duration", type=int, default=DEFAULT_HTTPS_DURATION)
    parser.add_argument("--origin", choices=("ip", "name"), default="ip",
                        help=f"http section: address nginx as 127.0.0.1 (default) or as {ORIGIN_NAME}")
    parser.add_argument("--quick", action="store_true", help="100k entries, 2 rounds, short runs (a smoke run)")
    parser.add_argument("--pin", action="store_true",
                        help="http section: proxies on one CPU, wrk and nginx on another (needs 2 CPUs)")
    parser.add_argument("--http-entries", type=entry_counts, default=None, metavar="N,N...",
                        help="http section: one run per list size (e.g. 1000000,10000000); default --entries")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries, args.rounds, args.duration, args.latency_duration, args.https_duration = 100_000, 2, 3, 2, 2
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    reason = preflight(sections)
    if reason:
        print(f"bench_proxy: {reason}", file=sys.stderr)
        return 2

    info = machine()
    log("urlwarden proxy benchmark")
    log("  " + "  ".join(f"{k}={v}" for k, v in info.items()))
    log(f"  settings: entries={args.entries:,} rounds={args.rounds} duration={args.duration}s "
        f"latency-duration={args.latency_duration}s connections={args.connections} wrk-threads={WRK_THREADS} "
        f"https-duration={args.https_duration}s")
    results: dict = {"machine": info, "settings": vars(args)}
    with workspace() as base, contextlib.ExitStack() as stack:
        pki = make_test_pki(base / "pki", [CLEAN_HOST, LISTED_HOST])
        lua = base / "absolute-form.lua"
        lua.write_text(WRK_LUA)
        started = time.monotonic()
        list_path = write_list(base / "list.txt", args.entries)
        log(f"  wrote {args.entries:,} list entries in {time.monotonic() - started:.1f} s")
        nginx = Nginx(base / "nginx", pki)
        stack.enter_context(nginx.process)
        OUR_GROUPS.add(nginx.process.pid)
        log(f"  started nginx: {' '.join(nginx.argv)} (http {nginx.http_port}, https {nginx.https_port})")
        http_sizes = args.http_entries or [args.entries]
        if "http" in sections:
            for entries in http_sizes:
                if entries == args.entries:
                    continue
                sized = argparse.Namespace(**{**vars(args), "entries": entries})
                with contextlib.ExitStack() as rig_stack:
                    sized_list = write_list(base / f"list-{entries}.txt", entries)
                    (base / f"http-{entries}").mkdir()
                    rig = Rig(rig_stack, base / f"http-{entries}", pki, nginx, lua, sized_list)
                    results[f"http-{entries}"] = bench_http(rig, sized)
                sized_list.unlink()
        if {"http", "https", "reload"} & set(sections):
            with contextlib.ExitStack() as rig_stack:
                rig = Rig(rig_stack, base, pki, nginx, lua, list_path)
                if "http" in sections and args.entries in http_sizes:
                    results["http"] = bench_http(rig, args)
                if "https" in sections:
                    results["https"] = bench_https(rig, args)
                if "reload" in sections:
                    results["reload"] = bench_reload(rig, args)
        if "scaleout" in sections:
            write_list(list_path, args.entries)  # the reload section changed it
            results["scaleout"] = bench_scaleout(args, base, pki, nginx, lua, list_path)
    if "http" in sections and len(http_sizes) > 1:
        log("\nthroughput urlwarden/bare by list size (aim >= 0.98 at 10M):")
        for entries in http_sizes:
            summary = results["http" if entries == args.entries else f"http-{entries}"]["summary"]
            log(f"  {entries:>12,} entries: median {summary['ratio_median']:.3f} (CPU per request "
                f"{summary['cpu_ratio_median']:.3f}), urlwarden {summary['urlwarden_rps']:.0f} req/s, "
                f"bare {summary['bare_rps']:.0f} req/s; against bare-dispatch {summary['same_engine_ratio_median']:.3f} "
                f"(CPU per request {summary['same_engine_cpu_ratio_median']:.3f})")
    info_end = os.getloadavg()
    log(f"\nload average at the end: {info_end[0]:.2f} {info_end[1]:.2f} {info_end[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
