#!/usr/bin/env python3
"""Matcher benchmark: build time, single-core checks per second and memory per entry.

Synthetic lists only (hosts under .bench.test, traffic under .example); nothing touches the
network. For each size and format it prints:

    parse s     time to parse the list text / file into a ParsedList
    build s     time to compile the ParsedList into a Snapshot
    checks/s    Snapshot.match() calls per second on one core, over 1 % listed URLs (every one
                checked to be blocked), 1 % unlisted URLs on listed hosts (full path) and 98 %
                unlisted URLs on clean hosts: "warm" spreads those over 2,000 sites (a browser
                requests many URLs per site, so the per-snapshot host memo hits; timed after
                one untimed pass, the steady state), "cold" puts each on a site never seen
                before (every request hashes its host suffixes). Best of --repeat passes.
    B/entry     bytes still allocated after build() divided by entries, measured with
                tracemalloc in a second, separate build (the parsed lists are not counted)

Formats: "plain" (URL list), "sha256" (the same list through write_sha256_list, with host
keys) and "sha256-nohk" (the same without host keys: no fast path, every URL parsed and
hashed in full, the worst case).

Usage: python benchmarks/bench_matcher.py [--sizes 10000,1000000] [--quick] [--traffic N] [--repeat R]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from urlwarden.lists import ListSpec, load_list, parse_text, write_sha256_list  # noqa: E402
from urlwarden.matcher import build  # noqa: E402

DEFAULT_SIZES = (10_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
DEFAULT_TRAFFIC = 200_000
QUICK_TRAFFIC = 50_000
LISTED_SHARE = 0.01  # URLs that must be blocked
LISTED_HOST_SHARE = 0.01  # unlisted URLs on a host that has entries (they take the full path)
WARM_SITES = 2_000  # "warm" traffic: unlisted URLs spread over this many sites, as a browser would
COLD_SITES = 10**9  # "cold" traffic: practically every unlisted URL on a host never seen before
DEFAULT_REPEAT = 3  # best of: other processes on a shared machine only ever slow a pass down
SEED = 20240601


def entries(n: int) -> list[str]:
    """n synthetic entries: a fifth whole hosts, two fifths folders, two fifths pages."""
    out = []
    for i in range(n):
        host = f"h{i // 2:07d}.bench.test"
        kind = i % 5
        if kind == 0:
            out.append(f"w{i:07d}.bench.test/")
        elif kind in (1, 2):
            out.append(f"{host}/p/{i % 97}/")
        elif kind == 3:
            out.append(f"{host}/p/{i % 7}.html")
        else:
            out.append(f"{host}/q.php?id={i}")
    return out


def listed_url(entry: str, rng: random.Random) -> str:
    """A request URL that the entry must block."""
    if entry.endswith(".bench.test/"):
        return f"https://www.{entry}img/{rng.randrange(10**6)}.jpg"
    if entry.endswith("/"):
        return f"http://{entry}deeper/{rng.randrange(10**6)}.html?x=1"
    if "?" in entry:
        return f"http://{entry}"
    return f"https://{entry}?ref={rng.randrange(100)}"


def unlisted_url(n: int, sites: int, rng: random.Random) -> str:
    site = rng.randrange(sites)
    shape = rng.randrange(3)
    if shape == 0:
        return f"https://www.site{site}.example/articles/{rng.randrange(10**4)}/index.html"
    if shape == 1:
        return f"https://cdn{rng.randrange(9)}.img.site{site}.example/a/b/{rng.randrange(10**6)}.png?v=3"
    return f"http://site{site}.example/?q={rng.randrange(10**6)}"


def traffic(lines: list[str], count: int, sites: int, seed: int = SEED) -> tuple[list[str], int]:
    """`count` URLs: LISTED_SHARE listed, LISTED_HOST_SHARE unlisted on listed hosts, the rest
    unlisted on `sites` clean sites. Returns the URLs and how many must be blocked."""
    rng = random.Random(seed)
    urls, listed = [], 0
    for _ in range(count):
        draw = rng.random()
        if draw < LISTED_SHARE:
            urls.append(listed_url(rng.choice(lines), rng))
            listed += 1
        elif draw < LISTED_SHARE + LISTED_HOST_SHARE:
            host = f"h{rng.randrange(max(1, len(lines) // 2)):07d}.bench.test"
            urls.append(f"https://{host}/other/{rng.randrange(10**6)}.html")
        else:
            urls.append(unlisted_url(len(lines), sites, rng))
    return urls, listed


def checks_per_second(snap, urls: list[str], listed: int) -> float:
    match = snap.match
    start = time.perf_counter()
    blocked = sum(1 for url in urls if (v := match(url)) is not None and v.blocked)
    elapsed = time.perf_counter() - start
    if blocked != listed:
        raise SystemExit(f"bench: expected {listed} blocked URLs, got {blocked}")
    return len(urls) / elapsed


def retained_bytes(parsed) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    snap = build([parsed])
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del snap
    return after - before


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def without_host_keys(path: Path) -> Path:
    out = path.with_name(path.stem + "-nohk.sha256")
    kept = [line for line in path.read_text().splitlines() if not line.startswith("host:")]
    out.write_text("\n".join(kept) + "\n")
    return out


def warm_rate(snap, urls: list[str], listed: int, repeat: int) -> float:
    """Best of `repeat` timed passes after one untimed pass that fills the host memo."""
    checks_per_second(snap, urls, listed)
    return max(checks_per_second(snap, urls, listed) for _ in range(repeat))


def cold_rate(snap, lines: list[str], count: int, repeat: int) -> float:
    """Best of `repeat` passes, each over traffic on sites no earlier pass has seen."""
    return max(checks_per_second(snap, *traffic(lines, count, COLD_SITES, SEED + 1 + r)) for r in range(repeat))


def run_size(n: int, traffic_count: int, repeat: int, workdir: Path) -> list[tuple]:
    lines = entries(n)
    warm_traffic = traffic(lines, traffic_count, WARM_SITES)
    rows = []
    text = "\n".join(lines) + "\n"
    plain, parse_s = timed(parse_text, text, ListSpec(f"bench-{n}.txt", "plain", "bench"))
    hashed_path = workdir / f"bench-{n}.sha256"
    write_sha256_list(plain, hashed_path)
    variants = [("plain", plain, parse_s)]
    for label, path in (("sha256", hashed_path), ("sha256-nohk", without_host_keys(hashed_path))):
        parsed, seconds = timed(load_list, ListSpec(str(path), "sha256", "bench"))
        variants.append((label, parsed, seconds))
    for label, parsed, parse_seconds in variants:
        snap, build_s = timed(build, [parsed])
        cold = cold_rate(snap, lines, traffic_count, repeat)
        warm = warm_rate(snap, *warm_traffic, repeat)
        distinct = snap.stats.block_entries
        del snap
        per_entry = retained_bytes(parsed) / distinct
        rows.append((n, label, parse_seconds, build_s, warm, cold, per_entry, distinct))
    return rows


def machine() -> str:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = (line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
            model = next(names, model)
    except OSError:
        pass
    python = f"{platform.python_version()} ({platform.python_implementation()})"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"nproc={os.cpu_count()}  cpu={model}  python={python}  load average at start={load}"


ROW = "{:>9} {:<12} {:>8} {:>8} {:>11} {:>11} {:>8}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated list sizes (default 10000,1000000)")
    parser.add_argument("--quick", action="store_true", help="small sizes and traffic, for a smoke run")
    parser.add_argument("--traffic", type=int, help="URLs checked per pass")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="timed passes; the best is reported")
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    count = args.traffic or (QUICK_TRAFFIC if args.quick else DEFAULT_TRAFFIC)
    print(machine())
    print(
        f"traffic: {count} URLs per pass: {LISTED_SHARE:.0%} listed, {LISTED_HOST_SHARE:.0%} unlisted on "
        f"listed hosts, the rest on {WARM_SITES} sites (warm) or a new site each (cold)"
    )
    print("memory: tracemalloc, bytes retained by build() per distinct entry")
    print(ROW.format("entries", "format", "parse s", "build s", "warm chk/s", "cold chk/s", "B/entry"))
    with tempfile.TemporaryDirectory(prefix="urlwarden-bench-") as tmp:
        for n in sizes:
            for size, label, parse_s, build_s, warm, cold, per_entry, _ in run_size(n, count, args.repeat, Path(tmp)):
                cells = (f"{parse_s:.2f}", f"{build_s:.2f}", f"{warm:,.0f}", f"{cold:,.0f}", f"{per_entry:.1f}")
                print(ROW.format(size, label, *cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
