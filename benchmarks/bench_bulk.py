#!/usr/bin/env python3
"""Bulk benchmark: large bodies through urlwarden, through bare mitmdump set to stream, and direct.

Everything runs on loopback against a local nginx; every host name is synthetic (.bench.test);
every transfer is bounded in time (curl --max-time); only processes this script started are
stopped, by their own process groups. Results: docs/performance.md ("Bulk transfers").

Targets, all measured in the same run (the order flips every round):

* direct: curl to nginx (``--resolve`` maps the .bench.test names to 127.0.0.1);
* bare mitmdump set to stream: ``mitmdump ... --set stream_large_bodies=1
  --set ignore_hosts=clean\\.bench\\.test`` (it intercepts what urlwarden intercepts and passes
  through what urlwarden passes through), with connection_strategy=lazy, flow_detail=0;
* urlwarden: ``urlwarden run`` with a plain list of ``--entries`` entries (one has a path on
  h000001.bench.test, so urlwarden intercepts that host's HTTPS; clean.bench.test is not listed,
  so its HTTPS passes through untouched) and its defaults (every body streams);
* with ``--buffered``, also "buffered": the same urlwarden with ``urlwarden_stream_bodies=off``
  (every body held whole, mitmproxy's own default), to show what streaming saves.

Paths: plain HTTP (clean.bench.test), intercepted HTTPS (h000001.bench.test, an unlisted path)
and passed-through HTTPS (clean.bench.test). curl speaks HTTP/1.1 everywhere (nginx here has no
HTTP/2), except the extra ``intercepted-h2`` path, where curl speaks HTTP/2 to the proxy
(mitmproxy offers it; it speaks HTTP/1.1 to nginx; direct is HTTP/1.1).

Sections (``--only download,upload,medium``; default all):

download  one GET of ``--size`` bytes (default 1 GiB, a sparse file nginx sends with sendfile):
          throughput, time to first byte (curl's time_starttransfer: the response head, with every
          connection and TLS handshake on the way; and "req-FB", from the request sent, curl's
          time_pretransfer, to the response head: what buffering a body would delay), and the
          proxy's idle and peak resident memory (VmRSS before; VmHWM after resetting it through
          /proc/PID/clear_refs, sampled VmRSS as a cross-check).
upload    one POST of ``--size`` bytes (curl -T -X POST from a sparse file; nginx answers
          ``return 200`` and discards the body as it arrives): throughput and peak memory.
medium    ``--medium-count`` GETs of a 1 MiB file over 32 parallel connections (curl --parallel
          --parallel-max 32): responses/s and MB/s, peak memory.

Every transfer also reads the proxy's CPU time (its process group, from /proc): CPU seconds
per GB moved, whose ratio bare/urlwarden is the throughput ratio each would have on a core of
its own, steadier than MB/s when curl, nginx and the proxy share two cores.

Prints per target and path, then the ratios urlwarden/bare and urlwarden/direct, the TTFB
urlwarden adds over direct, and peak - idle memory, against the aims (docs/performance.md).
The load generator, nginx and the proxies share this machine's cores: compare ratios from one
run, not absolute figures across machines.

Needs root (unshare --mount for the proxies' private /etc/hosts), curl and nginx.

Usage: .venv/bin/python benchmarks/bench_bulk.py [--only SECTIONS] [--size BYTES] [--rounds R]
       [--entries N] [--medium-count N] [--buffered] [--quick] [--timeline] [--json FILE]

``--timeline`` loads benchmarks/engine_timeline.py into bare mitmdump and urlwarden and prints,
per path, the median time of each step of a download's connection up to the response head
(CONNECT read, ClientHello, client TLS, request headers, upstream connect, TCP, TLS, response
head). It adds a few hooks to both proxies; leave it off for throughput figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_proxy as bp  # noqa: E402  (nginx, proxies, machine description, list writing)
import engine_timeline  # noqa: E402  (the steps its lines hold)

from tests.support.certs import make_test_pki  # noqa: E402
from tests.support.proxyproc import ProxyProcess, free_port, namespace_unavailable_reason  # noqa: E402

SECTIONS = ("download", "upload", "medium")
PATHS = ("http", "intercepted", "passthrough", "intercepted-h2")
TARGETS = ("direct", "bare", "urlwarden")
BUFFERED = "buffered"
GIB = 1 << 30
MIB = 1 << 20
DEFAULT_SIZE = GIB
DEFAULT_ENTRIES = 100_000
DEFAULT_ROUNDS = 1
MIN_CPU_SECONDS = 0.1  # CPU per GB only from transfers that took at least 10 ticks of the proxy's CPU
TIMELINE_SCRIPT = Path(engine_timeline.__file__)
TIMELINE_STEPS = engine_timeline.STEPS[1:]  # each step's time runs from the one before ("accepted" starts)
DEFAULT_MEDIUM_COUNT = 512
MEDIUM_PARALLEL = 32
TRANSFER_TIMEOUT = 180  # seconds any one curl run may take
RSS_SAMPLE_INTERVAL = 0.02
CLEAN = bp.CLEAN_HOST  # not listed: HTTPS passed through
INTERCEPTED = bp.LISTED_HOST  # has a path entry: HTTPS intercepted
AIMS = {"rss_mb": 50.0, "ttfb_ms": 5.0, "throughput_vs_bare": 0.95}


def log(message: str = "") -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------- origin
class BulkNginx:
    """nginx on 127.0.0.1 (HTTP and HTTPS) serving /big (sparse, --size bytes), /medium (1 MiB)
    and /sink (POST of any size, discarded as it arrives)."""

    def __init__(self, prefix: Path, pki, size: int):
        self.prefix = prefix
        self.http_port, self.https_port = free_port(), free_port()
        www = prefix / "www"
        www.mkdir(parents=True)
        with open(www / "big", "wb") as f:
            f.truncate(size)
        (www / "medium").write_bytes(os.urandom(MIB))
        for p in (prefix.parent, prefix, www, *www.iterdir()):
            p.chmod(0o711 if p == prefix.parent else 0o755 if p.is_dir() else 0o644)
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / "tmp" / d).mkdir(parents=True)
        conf = prefix / "nginx.conf"
        conf.write_text(f"""\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_max_body_size 0;
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
        root {www};
        location = /sink {{ return 200 "ok\\n"; }}
    }}
}}
""")
        self.argv = ["nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
        self.process = ProxyProcess(self.argv, self.http_port, workdir=prefix / "run")


# ----------------------------------------------------------------------------- memory
def _status(pid: int, field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class Memory:
    """A proxy's resident memory around one transfer: idle (VmRSS before), peak (VmHWM after
    resetting it, and VmRSS sampled in a thread, whichever is higher), in MB."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.idle = self.peak = None
        self._stop = threading.Event()
        self._sampled = 0

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_INTERVAL):
            self._sampled = max(self._sampled, _status(self.pid, "VmRSS") or 0)

    def __enter__(self) -> Memory:
        if self.pid is None:
            return self
        self.idle = (_status(self.pid, "VmRSS") or 0) / 1024
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.pid is None:
            return
        self._stop.set()
        self._thread.join(5)
        self.peak = max(_status(self.pid, "VmHWM") or 0, self._sampled) / 1024


# ----------------------------------------------------------------------------- clients
@dataclass
class Transfer:
    target: str
    path: str
    seconds: float
    ttfb: float | None  # from the start (connections and TLS handshakes included) to the response head
    request_to_first_byte: float | None  # from the request sent (curl's pretransfer) to the response head
    bytes: int
    status: str
    http_version: str
    idle_mb: float | None
    peak_mb: float | None
    command: str
    timeline: dict | None = None  # --timeline: the proxy's steps to the response head, ms (engine_timeline.py)
    cpu_seconds: float | None = None  # the proxy's CPU time during the transfer (its process group)

    @property
    def cpu_s_per_gb(self) -> float | None:
        # /proc counts CPU time in ticks (10 ms): too few of them for a small transfer say nothing
        if self.cpu_seconds is None or self.cpu_seconds < MIN_CPU_SECONDS:
            return None
        return self.cpu_seconds / (self.bytes / 1e9)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6

    @property
    def growth_mb(self) -> float | None:
        return None if self.peak_mb is None else self.peak_mb - self.idle_mb


class Rig:
    def __init__(self, nginx: BulkNginx, pki, proxies: dict[str, tuple[int, int, Path]],
                 timelines: dict[str, Path] | None = None):
        self.nginx, self.pki, self.proxies = nginx, pki, proxies  # name -> (port, pid, mitmproxy CA)
        self.timelines = timelines or {}  # name -> the file engine_timeline.py appends to

    def url(self, path: str, resource: str) -> str:
        if path == "http":
            return f"http://{CLEAN}:{self.nginx.http_port}{resource}"
        host = CLEAN if path == "passthrough" else INTERCEPTED
        return f"https://{host}:{self.nginx.https_port}{resource}"

    def curl_args(self, target: str, path: str, discard: bool = True) -> list[str]:
        args = ["curl", "-sS", "--max-time", str(TRANSFER_TIMEOUT)] + (["-o", "/dev/null"] if discard else [])
        args += ["--http2"] if path == "intercepted-h2" and target != "direct" else ["--http1.1"]
        if target == "direct":
            for host in (CLEAN, INTERCEPTED):
                for port in (self.nginx.http_port, self.nginx.https_port):
                    args += ["--resolve", f"{host}:{port}:127.0.0.1"]
            ca = self.pki.ca_cert
        else:
            port, _, mitm_ca = self.proxies[target]
            args += ["--proxy", f"http://127.0.0.1:{port}"]
            ca = mitm_ca if path.startswith("intercepted") else self.pki.ca_cert
        return args + ["--cacert", str(ca)]

    def pid(self, target: str) -> int | None:
        return None if target == "direct" else self.proxies[target][1]


def _curl(argv: list[str]) -> list[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TRANSFER_TIMEOUT + 30)
    if done.returncode != 0:
        raise RuntimeError(f"curl failed ({done.returncode}): {done.stderr.strip()}\n{' '.join(argv)}")
    return done.stdout.split()


def one_transfer(rig: Rig, target: str, path: str, upload_file: Path | None, size: int) -> Transfer:
    argv = rig.curl_args(target, path)
    argv += ["-w", "%{http_code} %{http_version} %{time_pretransfer} %{time_starttransfer} %{time_total} "
                   "%{size_download} %{size_upload}"]
    if upload_file is not None:
        # -T streams the file (--data-binary would read it into curl's memory first); no Expect:
        argv += ["-T", str(upload_file), "-X", "POST", "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                 rig.url(path, "/sink")]
    else:
        argv.append(rig.url(path, "/big"))
    timeline_file = rig.timelines.get(target)
    seen = timeline_file.stat().st_size if timeline_file is not None and timeline_file.exists() else 0
    pid = rig.pid(target)
    with Memory(pid) as mem, bp.CpuMeter([pid] if pid else []) as cpu:
        code, version, pretransfer, ttfb, total, down, up = _curl(argv)
    timeline = None
    if timeline_file is not None and upload_file is None:
        with open(timeline_file) as f:
            f.seek(seen)
            lines = f.read().splitlines()
        timeline = json.loads(lines[-1]) if lines else None
    moved = int(float(up if upload_file is not None else down))
    if code != "200" or moved != size:
        raise RuntimeError(f"{target} {path}: status {code}, {moved} of {size} bytes\n{' '.join(argv)}")
    download = upload_file is None
    return Transfer(target, path, float(total), float(ttfb) if download else None,
                    float(ttfb) - float(pretransfer) if download else None, moved, code,
                    version, mem.idle, mem.peak, shlex.join(argv), timeline,
                    cpu.measured_seconds if pid else None)


def medium_transfers(rig: Rig, target: str, path: str, count: int, workdir: Path) -> Transfer:
    url = rig.url(path, "/medium")
    config = workdir / f"medium-{target}-{path}.curlrc"
    config.write_text("".join(f'url = "{url}"\noutput = "/dev/null"\n' for _ in range(count)))
    argv = rig.curl_args(target, path, discard=False) + ["--parallel", "--parallel-max", str(MEDIUM_PARALLEL), "--parallel-immediate",
             "-w", "%{http_code}\n", "-K", str(config)]
    pid = rig.pid(target)
    with Memory(pid) as mem, bp.CpuMeter([pid] if pid else []) as cpu:
        started = time.monotonic()
        codes = _curl(argv)
        seconds = time.monotonic() - started
    if codes.count("200") != count:
        raise RuntimeError(f"{target} {path}: {codes.count('200')} of {count} responses were 200\n{' '.join(argv)}")
    return Transfer(target, path, seconds, None, None, count * MIB, "200", "", mem.idle, mem.peak,
                    shlex.join(argv[:-2]) + f" -K <{count} x {url}>", cpu_seconds=cpu.measured_seconds if pid else None)


# ----------------------------------------------------------------------------- sections
def run_section(name: str, rig: Rig, args, workdir: Path) -> dict:
    paths = [p for p in PATHS if not (name != "download" and p == "intercepted-h2")]
    what = {"download": f"GET of {args.size / MIB:.0f} MiB", "upload": f"POST of {args.size / MIB:.0f} MiB",
            "medium": f"{args.medium_count} GETs of 1 MiB over {MEDIUM_PARALLEL} connections"}[name]
    log(f"\n== {name}: {what}, {args.rounds} round(s)")
    log(f"  {'round':>5} {'path':<15} {'target':<10} {'MB/s':>8} {'TTFB ms':>8} {'req-FB ms':>9} {'seconds':>8} {'idle MB':>8}"
        f" {'peak MB':>8} {'+MB':>6} {'CPU s/GB':>8} {'http':>4}")
    upload_file = None
    if name == "upload":
        upload_file = workdir / "upload.bin"
        with open(upload_file, "wb") as f:
            f.truncate(args.size)
    runs: list[Transfer] = []
    targets = TARGETS + ((BUFFERED,) if BUFFERED in rig.proxies else ())
    for r in range(args.rounds):
        for path in paths:
            for target in bp.alternate(targets, r):
                if name == "medium":
                    t = medium_transfers(rig, target, path, args.medium_count, workdir)
                else:
                    t = one_transfer(rig, target, path, upload_file, args.size)
                runs.append(t)
                ttfb = f"{t.ttfb * 1000:.2f}" if t.ttfb is not None else "-"
                rfb = f"{t.request_to_first_byte * 1000:.2f}" if t.request_to_first_byte is not None else "-"
                idle = f"{t.idle_mb:.0f}" if t.idle_mb is not None else "-"
                peak = f"{t.peak_mb:.0f}" if t.peak_mb is not None else "-"
                growth = f"{t.growth_mb:.0f}" if t.growth_mb is not None else "-"
                cpu = f"{t.cpu_s_per_gb:.2f}" if t.cpu_s_per_gb is not None else "-"
                log(f"  {r + 1:>5} {path:<15} {target:<10} {t.mb_per_s:>8.1f} {ttfb:>8} {rfb:>9} {t.seconds:>8.2f} {idle:>8}"
                    f" {peak:>8} {growth:>6} {cpu:>8} {t.http_version:>4}")
    log(f"  e.g.: {next(t.command for t in runs if t.target == 'urlwarden')}")
    summary = {}
    for path in paths:
        def med(target: str, key) -> float | None:
            values = [key(t) for t in runs if t.path == path and t.target == target and key(t) is not None]
            return statistics.median(values) if values else None

        rate = {target: med(target, lambda t: t.mb_per_s) for target in targets}
        s = {
            "mb_per_s": rate,
            "vs_bare": rate["urlwarden"] / rate["bare"],
            "vs_direct": rate["urlwarden"] / rate["direct"],
            "bare_vs_direct": rate["bare"] / rate["direct"],
            "growth_mb": {target: med(target, lambda t: t.growth_mb) for target in targets if target != "direct"},
            "idle_mb": {target: med(target, lambda t: t.idle_mb) for target in targets if target != "direct"},
            "cpu_s_per_gb": {target: med(target, lambda t: t.cpu_s_per_gb) for target in targets if target != "direct"},
        }
        # CPU per byte moved: the throughput ratio each proxy would have on a core of its own,
        # steadier on a shared machine than MB/s (as bench_proxy.py's CPU per request)
        cpu_bare, cpu_ours = s["cpu_s_per_gb"]["bare"], s["cpu_s_per_gb"]["urlwarden"]
        s["cpu_bare_vs_urlwarden"] = cpu_bare / cpu_ours if cpu_bare and cpu_ours else None
        if name == "download":
            ttfb = {target: med(target, lambda t: t.ttfb) for target in targets}
            s["ttfb_ms"] = {k: v * 1000 for k, v in ttfb.items()}
            s["ttfb_added_ms"] = (ttfb["urlwarden"] - ttfb["direct"]) * 1000
            rfb = {target: med(target, lambda t: t.request_to_first_byte) for target in targets}
            s["request_to_first_byte_ms"] = {k: v * 1000 for k, v in rfb.items()}
            s["request_to_first_byte_added_ms"] = (rfb["urlwarden"] - rfb["direct"]) * 1000
        summary[path] = s
        line = (f"  {path:<15} urlwarden/bare {s['vs_bare']:.3f} (aim >= {AIMS['throughput_vs_bare']}), "
                f"urlwarden/direct {s['vs_direct']:.3f}, bare/direct {s['bare_vs_direct']:.3f}; CPU per GB "
                f"bare/urlwarden {_ratio(s['cpu_bare_vs_urlwarden'])}; peak - idle: "
                f"urlwarden {s['growth_mb']['urlwarden']:.0f} MB, bare {s['growth_mb']['bare']:.0f} MB "
                f"(aim <= {AIMS['rss_mb']:.0f} MB)")
        if name == "download":
            line += (f"; added over direct (aim <= {AIMS['ttfb_ms']:.0f} ms): TTFB {s['ttfb_added_ms']:.2f} ms, "
                     f"request to first byte {s['request_to_first_byte_added_ms']:.2f} ms")
        if BUFFERED in targets:
            line += (f"; buffered: {rate[BUFFERED]:.1f} MB/s, peak - idle {s['growth_mb'][BUFFERED]:.0f} MB"
                     + (f", TTFB {s['ttfb_ms'][BUFFERED]:.0f} ms" if name == "download" else ""))
        log(line)
        if name == "download" and rig.timelines:
            s["timeline_ms"] = {}
            for target in rig.timelines:
                steps = [t.timeline for t in runs if t.path == path and t.target == target and t.timeline]
                medians = {k: statistics.median(st[k] for st in steps if k in st)
                           for k in TIMELINE_STEPS if any(k in st for st in steps)}
                s["timeline_ms"][target] = medians
                if medians:  # (none for passed-through TLS: the proxy sees no request in it)
                    log(f"  {'':<15} {target} steps to the response head, median ms: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    return {"runs": [asdict(t) | {"mb_per_s": t.mb_per_s} for t in runs], "summary": summary}


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def preflight() -> str | None:
    missing = [p for p in ("curl", "nginx") if shutil.which(p) is None]
    if missing:
        return f"missing {', '.join(missing)}: apt-get install {' '.join(missing)}"
    if not Path(bp.MITMDUMP).exists() or not Path(bp.URLWARDEN).exists():
        return f"run with the venv's python (.venv/bin/python): no mitmdump/urlwarden beside {sys.executable}"
    return namespace_unavailable_reason()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="bytes per download and upload")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--entries", type=int, default=DEFAULT_ENTRIES, help="urlwarden's list size")
    parser.add_argument("--medium-count", type=int, default=DEFAULT_MEDIUM_COUNT, help="1 MiB GETs per medium run")
    parser.add_argument("--buffered", action="store_true",
                        help="also urlwarden with urlwarden_stream_bodies=off (needs memory: several times --size)")
    parser.add_argument("--quick", action="store_true", help="256 MiB bodies, 128 medium GETs (a smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--timeline", action="store_true",
                        help="downloads: also where each proxy's time to first byte goes, step by step "
                             "(benchmarks/engine_timeline.py loaded into both proxies)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.medium_count = 256 * MIB, 128
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(sections) - set(SECTIONS):
        parser.error(f"unknown section(s): {', '.join(sorted(set(sections) - set(SECTIONS)))}")
    reason = preflight()
    if reason:
        print(f"bench_bulk: {reason}", file=sys.stderr)
        return 2
    info = bp.machine()
    log("urlwarden bulk benchmark")
    log("  " + "  ".join(f"{k}={v}" for k, v in info.items() if k != "haproxy"))
    log(f"  settings: size={args.size:,} bytes rounds={args.rounds} entries={args.entries:,} "
        f"medium-count={args.medium_count} parallel={MEDIUM_PARALLEL}")
    results: dict = {"machine": info, "settings": vars(args)}
    with tempfile.TemporaryDirectory(prefix="urlwarden-bench-bulk-") as tmp, contextlib.ExitStack() as stack:
        base = Path(tmp)
        pki = make_test_pki(base / "pki", [CLEAN, INTERCEPTED])
        list_path = bp.write_list(base / "list.txt", args.entries)
        nginx = BulkNginx(base / "nginx", pki, args.size)
        stack.enter_context(nginx.process)
        bp.OUR_GROUPS.add(nginx.process.pid)
        log(f"  started nginx: {' '.join(nginx.argv)} (http {nginx.http_port}, https {nginx.https_port})")
        config = bp.write_urlwarden_config(base, list_path)
        proxies, timelines = {}, {}
        for name, make in (
            ("bare", lambda p, c: bp.mitmdump_argv(p, c, pki, "--set", "stream_large_bodies=1",
                                                   "--set", r"ignore_hosts=clean\.bench\.test")),
            ("urlwarden", lambda p, c: bp.urlwarden_argv(p, config, c, pki)),
            *([(BUFFERED, lambda p, c: bp.urlwarden_argv(p, config, c, pki)
                + ["--set", "urlwarden_stream_bodies=off"])] if args.buffered else []),
        ):
            port, confdir = free_port(), base / f"conf-{name}"
            proxy_argv, env = make(port, confdir), None
            if args.timeline and name != BUFFERED:
                timelines[name] = base / f"timeline-{name}.jsonl"
                proxy_argv += ["-s", str(TIMELINE_SCRIPT)]
                env = {"URLWARDEN_TIMELINE": str(timelines[name])}
            process = bp.start(stack, name, proxy_argv, port, base / name, env=env)
            proxies[name] = (port, process.pid, confdir / "mitmproxy-ca-cert.pem")
        rig = Rig(nginx, pki, proxies, timelines)
        for target in ("direct", *proxies):  # warm up every path once (certificates minted, connections set up)
            for path in PATHS:
                _curl(rig.curl_args(target, path) + ["-w", "%{http_code}", rig.url(path, "/medium")])
        for section in sections:
            results[section] = run_section(section, rig, args, base)
    load = os.getloadavg()
    log(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
