#!/usr/bin/env python3
"""Squid benchmark: Squid with the urlwarden helper against Squid with a plain dstdomain ACL.

The Squids (Debian's squid, run in the foreground under this script) block the same synthetic
hosts (``h000000.bench.test`` ..., 100,000 by default) and redirect a blocked request with the
same ``deny_info``; they differ only in the ACL: ``external urlwarden`` with the
``external_acl_type`` line of contrib/squid/urlwarden.conf (read from the file: what is measured is
what ships), or ``dstdomain "<file>"``. ``--caches 0,262144`` adds helper Squids that differ only
in the external ACL ``cache=`` size. An nginx on loopback answers every passed request with 200
"ok"; wrk drives each Squid with absolute-form requests (a forward proxy's traffic), the Squids
alternating run by run so that other load on the machine hits all alike.

Traffic (a wrk Lua script): 1 % of requests to listed hosts (Squid answers 302 itself), the rest
to 1,000 clean hosts that resolve to the origin through Squid's hosts_file.

* ``unique``: every request a URL not seen before (each wrk run starts its counter elsewhere), so
  Squid's external ACL cache (keyed by the full URL) never hits and every request costs a helper
  lookup: the helper's worst case.
* ``repeat``: 2,000 distinct URLs over and over, so after the first pass nearly every lookup is
  answered from Squid's cache (ttl=60): Squid's own overhead of an external ACL.

Real traffic lies between: the cache hit rate is the share of requests whose exact URL was
asked for within the ttl. Per run it prints requests/s, the CPU time Squid and its helpers used
per request (from /proc: steadier than requests/s on a shared machine), and the share of
requests that cost a helper lookup (Squid's cache manager counts them). Also measured: the
helper alone, lookups per second through a pipe (no Squid).

Usage: python benchmarks/bench_squid.py [--hosts 100000] [--duration 8] [--rounds 3]
           [--connections 32] [--modes unique,repeat] [--caches 0,262144]
Needs squid, nginx and wrk (apt-get install squid nginx wrk). Everything is on 127.0.0.1; the
synthetic names never leave Squid (dns_nameservers 127.0.0.1). Every server it starts runs in a
process group of its own and is stopped at the end; each wrk run is bounded by its duration.
"""

from __future__ import annotations

import argparse
import grp
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
DEFAULT_HOSTS = 100_000
CLEAN_HOSTS = 1_000
REPEAT_URLS = 2_000
LISTED_EVERY = 100  # one request in this many goes to a listed host
START_TIMEOUT = 60.0  # seconds a server may take to listen (the helper loads the list meanwhile)
STOP_TIMEOUT = 10.0
WRK_GRACE = 30.0  # seconds a wrk run may exceed its --duration before it is killed
WARMUP_SECONDS = 3

DSTDOMAIN_ACL = 'acl blocked dstdomain "{hosts}"\n'

LUA = """
counter = 0
init = function(args)
  counter = tonumber(args[1])  -- each run starts elsewhere, so "unique" URLs are new to Squid's cache
end
request = function()
  counter = counter + 1
  local n = counter
  if "{mode}" == "repeat" then n = counter % {repeat_urls} end
  local host
  if counter % {listed_every} == 0 then
    host = string.format("h%06d.bench.test", (n * 7919) % {hosts})
  else
    host = string.format("c%04d.bench.test", n % {clean_hosts})
  end
  local url = string.format("http://%s:{origin_port}/p/%d/page.html?q=%d", host, n % 97, n)
  return wrk.format("GET", url, {{["Host"] = host}})
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """A server subprocess in its own process group, ready once `port` accepts connections."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path):
        self.name, self.port = name, port
        self.log = workdir / f"{name}.out"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=workdir, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"{name} not listening on {port} after {START_TIMEOUT}s")
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after STOP_TIMEOUT. (Squid starts each helper in a
        session of its own; a helper ends when Squid closes its stdin.)"""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(STOP_TIMEOUT)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(STOP_TIMEOUT)


def nginx(workdir: Path, port: int) -> Process:
    conf = workdir / "nginx.conf"
    temp = workdir / "nginx-temp"
    temp.mkdir()
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fcgi;
  uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; location / {{ default_type text/plain; return 200 "ok\\n"; }} }}
}}
""")
    return Process("nginx", [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-e", str(workdir / "nginx-error.log")],
                   port, workdir)


def squid_argv(conf: Path) -> list[str]:
    """As root, in a user namespace mapping 'proxy' to our uid: Squid refuses to run as root,
    and its helpers must be able to run this venv's interpreter (see tests/test_squid.py)."""
    argv = [shutil.which("squid") or "/usr/sbin/squid", "-N", "-f", str(conf)]
    if os.geteuid() != 0:
        return argv
    user = "proxy" if _user_exists("proxy") else "nobody"
    group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    return ["unshare", "--user", f"--map-user={user}", f"--map-group={group}", *argv]


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def squid(name: str, workdir: Path, port: int, acl: str) -> Process:
    directory = workdir / name
    directory.mkdir()
    conf = directory / "squid.conf"
    conf.write_text(f"""
http_port 127.0.0.1:{port}
pid_filename {directory}/squid.pid
cache_log {directory}/cache.log
access_log none
coredump_dir {directory}
cache deny all
cache_mem 8 MB
max_filedescriptors 8192
hosts_file {workdir}/hosts
dns_nameservers 127.0.0.1
pinger_enable off
icp_port 0
htcp_port 0
shutdown_lifetime 1 seconds
visible_hostname {name}.bench.invalid
{acl}
http_access allow localhost manager
http_access deny manager
http_access deny blocked
deny_info http://127.0.0.1:8081/blocked?ref=%o blocked
http_access allow localhost
http_access deny all
""")
    return Process(name, squid_argv(conf), port, directory)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu(pgid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by Squid (the process group `pgid`) and by its
    urlwarden helpers (its children: Squid starts each in a session of its own). Less disturbed
    by other load on the machine than requests per second."""
    squid_cpu = helper_cpu = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # from the state on: ppid is [1], pgrp [2]
        cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime
        if int(fields[1]) == pgid and b"squid-helper" in cmdline:
            helper_cpu += cpu
        elif int(fields[2]) == pgid:
            squid_cpu += cpu
    return squid_cpu, helper_cpu


_runs = 0


def wrk(port: int, script: Path, duration: int, connections: int) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx/3xx responses + socket errors) of one wrk run."""
    global _runs
    _runs += 1
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", str(script),
            f"http://127.0.0.1:{port}/", "--", str(_runs * 100_000_000)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + WRK_GRACE)
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, errors + (int(bad.group(1)) if bad else 0)


def status_through(port: int, url: str) -> int:
    """The status Squid on `port` answers for GET `url` (checked before measuring)."""
    host = url.split("/")[2]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return int(s.recv(65536).split(b" ", 2)[1])


def helper_stats(port: int) -> str:
    """Squid's cache manager page for external ACLs (lookups sent to helpers, cache size)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /squid-internal-mgr/external_acl HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode("latin-1").partition("\r\n\r\n")[2]


def lookups_sent(port: int) -> int:
    """How many lookups Squid has sent to its urlwarden helpers so far."""
    return int(re.search(r"requests sent: (\d+)", helper_stats(port)).group(1))


def helper_alone(config: Path, lines: int) -> float:
    """Lookups per second of one helper process reading a pipe (list load excluded)."""
    text = "".join(f"{i % 100} http://c{i % CLEAN_HOSTS:04d}.bench.test/p/{i}.html -\n" if i % LISTED_EVERY
                   else f"{i % 100} http://h{i % 1000:06d}.bench.test/x -\n" for i in range(lines)).encode()
    proc = subprocess.Popen([URLWARDEN, "squid-helper", "--config", str(config)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.stdin.write(b"0 http://warmup.bench.test/ -\n")  # answered once the lists are loaded
        proc.stdin.flush()
        proc.stdout.readline()
        started = time.perf_counter()
        import threading

        writer = threading.Thread(target=lambda: (proc.stdin.write(text), proc.stdin.close()), daemon=True)
        writer.start()
        got = sum(1 for _ in iter(proc.stdout.readline, b""))
        elapsed = time.perf_counter() - started
        assert got == lines, f"helper answered {got} of {lines} lines"
        return lines / elapsed
    finally:
        proc.wait(START_TIMEOUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=DEFAULT_HOSTS, help="listed hosts (default %(default)s)")
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds per mode (default %(default)s)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default %(default)s)")
    parser.add_argument("--modes", default="unique,repeat", help="traffic modes (default %(default)s)")
    parser.add_argument("--caches", default="",
                        help="also run Squids with the helper and these external ACL cache= sizes, e.g. 0,262144")
    parser.add_argument("--helper-lines", type=int, default=200_000, help="lines for the helper-alone run")
    args = parser.parse_args()
    for tool in ("squid", "nginx", "wrk"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"bench_squid: {tool} is not installed (apt-get install squid nginx wrk)")
    modes = args.modes.split(",")
    shipped = shipped_acl_line()

    workdir = Path(tempfile.mkdtemp(prefix="urlwarden-bench-squid-"))
    started: list[Process] = []
    try:
        hosts = [f"h{i:06d}.bench.test" for i in range(args.hosts)]
        (workdir / "block.txt").write_text("".join(f"{h}/\n" for h in hosts))
        (workdir / "dstdomain.txt").write_text("".join(f".{h}\n" for h in hosts))
        (workdir / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
            f"127.0.0.1 c{i:04d}.bench.test\n" for i in range(CLEAN_HOSTS)))
        config = workdir / "urlwarden.yaml"
        config.write_text(f"https:\n  intercept: none\nstate_dir: {workdir}/state\n"
                          "lists:\n  - name: bench\n    path: block.txt\n")
        helper_acl = shipped.replace("/usr/local/bin/urlwarden", URLWARDEN).replace(
            "/etc/urlwarden/urlwarden.yaml", str(config)) + "\nacl blocked external urlwarden\n"

        origin_port = free_port()
        started.append(nginx(workdir, origin_port))
        acls = {"dstdomain": DSTDOMAIN_ACL.format(hosts=workdir / "dstdomain.txt"), "urlwarden": helper_acl}
        for size in filter(None, args.caches.split(",")):
            acls[f"cache={int(size)}"] = re.sub(r"\bcache=\d+", f"cache={int(size)}", helper_acl)
        squids: dict[str, tuple[int, int]] = {}  # name -> (port, process group)
        for name, acl in acls.items():
            port = free_port()
            started.append(squid(name, workdir, port, acl))
            squids[name] = (port, started[-1].proc.pid)
        for name, (port, _) in squids.items():  # all block the same hosts and pass the same traffic
            listed = status_through(port, f"http://h{args.hosts - 1:06d}.bench.test:{origin_port}/x")
            clean = status_through(port, f"http://c0001.bench.test:{origin_port}/x")
            if (listed, clean) != (302, 200):
                raise SystemExit(f"bench_squid: {name}: listed {listed}, clean {clean}; expected 302 and 200")

        squid_version = subprocess.run([shutil.which("squid") or "/usr/sbin/squid", "-v"], capture_output=True,
                                       text=True).stdout.splitlines()[0]
        print(f"machine: nproc={os.cpu_count()} {platform.machine()} python={platform.python_version()} "
              f"{platform.system()} {platform.release()}; {squid_version}")
        print(f"lists: {args.hosts} listed hosts; traffic: 1/{LISTED_EVERY} to listed hosts, the rest to "
              f"{CLEAN_HOSTS} clean hosts; wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds")
        print(f"urlwarden: {shipped.split(' %>ru')[0]}")
        lookups = helper_alone(config, args.helper_lines)
        print(f"helper alone: {lookups:,.0f} lookups/s ({args.helper_lines} lines through a pipe, one process)")

        rates: dict[tuple[str, str], list[float]] = {}
        costs: dict[tuple[str, str], list[float]] = {}
        for mode in modes:
            script = workdir / f"{mode}.lua"
            script.write_text(LUA.format(mode=mode, repeat_urls=REPEAT_URLS, listed_every=LISTED_EVERY,
                                         hosts=args.hosts, clean_hosts=CLEAN_HOSTS, origin_port=origin_port))
            for port, _ in squids.values():
                wrk(port, script, WARMUP_SECONDS, args.connections)  # helpers up, caches as in steady state
            for round_ in range(args.rounds):
                order = list(squids.items())
                for name, (port, pgid) in (order if round_ % 2 == 0 else reversed(order)):
                    helper = name != "dstdomain"
                    sent = lookups_sent(port) if helper else 0
                    cpu_before = group_cpu(pgid)
                    rps, total, errors = wrk(port, script, args.duration, args.connections)
                    cpu_after = group_cpu(pgid)
                    squid_us = (cpu_after[0] - cpu_before[0]) / total * 1e6
                    helper_us = (cpu_after[1] - cpu_before[1]) / total * 1e6
                    rates.setdefault((mode, name), []).append(rps)
                    costs.setdefault((mode, name), []).append(squid_us + helper_us)
                    more = ""
                    if helper:
                        more = (f", helper {helper_us:3.0f} us/request, lookups for "
                                f"{(lookups_sent(port) - sent) / total:4.0%} of requests")
                    print(f"  {mode:6} round {round_ + 1} {name:12} {rps:7,.0f} req/s, Squid {squid_us:4.0f} us/request"
                          f"{more} ({total} requests, {errors} errors)", flush=True)
        print()
        print("medians of the rounds; CPU = Squid + helpers, microseconds per request; capacity = dstdomain CPU / CPU")
        print(f"{'mode':7} {'squid':12} {'req/s':>8} {'ratio':>6} {'CPU':>6} {'capacity':>9}")
        for mode in modes:
            base_rate = statistics.median(rates[(mode, "dstdomain")])
            base_cost = statistics.median(costs[(mode, "dstdomain")])
            for name in squids:
                rate = statistics.median(rates[(mode, name)])
                cost = statistics.median(costs[(mode, name)])
                print(f"{mode:7} {name:12} {rate:8,.0f} {rate / base_rate:5.2f}x {cost:6.0f} {base_cost / cost:8.2f}x")
    finally:
        for process in reversed(started):
            process.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def shipped_acl_line() -> str:
    """The external_acl_type line of contrib/squid/urlwarden.conf: the settings measured are
    the settings shipped."""
    text = (ROOT / "contrib" / "squid" / "urlwarden.conf").read_text()
    return next(line for line in text.splitlines() if line.startswith("external_acl_type urlwarden "))


if __name__ == "__main__":
    sys.exit(main())
