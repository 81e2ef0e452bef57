#!/usr/bin/env python3
"""Matcher benchmark: build time, single-core checks per second and memory per entry.

Synthetic lists only (hosts under .bench.test, traffic under .example); nothing touches the
network. For each size and format it prints:

    parse s     time to parse the list text / file into a ParsedList
    load s      time to read the same list from its compiled form (`urlwarden.core.compiled`, what a
                feed's last-known-good copy is restored from), instead of parsing it
    build s     time to compile the ParsedList into a Snapshot
    checks/s    Snapshot.match() calls per second on one core, over 1 % listed URLs (every one
                checked to be blocked), 1 % unlisted URLs on listed hosts (full path) and 98 %
                unlisted URLs on clean hosts: "warm" spreads those over 2,000 sites (a browser
                requests many URLs per site, so the per-snapshot host memo hits; timed after
                one untimed pass, the steady state), "cold" puts each on a site never seen
                before (every request hashes its host suffixes). Best of --repeat passes.
    own B/e     bytes allocated by build() and still held by the snapshot, per distinct entry,
                summed over its arrays, blobs, filters and columns (the parsed list is not
                counted, as it is held by whoever loaded it); up to a million entries in a
                second, separate build also measured with tracemalloc, and a warning printed
                when the two differ by more than 5 % (tracemalloc would slow a build of ten
                million entries by minutes)
    shared B/e  bytes of the parsed list that the snapshot uses in place instead of copying (a
                sorted list's digest blob, the lists' host-key sets), per distinct entry: the
                snapshot keeps them alive, so own + shared is its footprint if the list were
                dropped (the proxy keeps its lists: there, only "own" is added by the snapshot)

Formats: "plain" (URL list), "sha256" (the same list through write_sha256_list, with host
keys) and "sha256-nohk" (the same without host keys: no fast path, every URL parsed and
hashed in full, the worst case).

Usage: python benchmarks/bench_matcher.py [--sizes 10000,1000000] [--quick] [--traffic N] [--repeat R]
       [--formats plain,sha256,sha256-nohk]
       --sizes 10000000 runs ten million entries (about 7 minutes on a 2-core VM, 8 GB of memory at peak).
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

from urlwarden.core import compiled  # noqa: E402
from urlwarden.feeds.payload import normalize  # noqa: E402
from urlwarden.core.lists import ListSpec, load_list, parse_text, write_sha256_list  # noqa: E402
from urlwarden.core.matcher import build  # noqa: E402

DEFAULT_SIZES = (10_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
DEFAULT_TRAFFIC = 200_000
QUICK_TRAFFIC = 50_000
LISTED_SHARE = 0.01  # URLs that must be blocked
LISTED_HOST_SHARE = 0.01  # unlisted URLs on a host that has entries (they take the full path)
WARM_SITES = 2_000  # "warm" traffic: unlisted URLs spread over this many sites, as a browser would
COLD_SITES = 10**9  # "cold" traffic: practically every unlisted URL on a host never seen before
DEFAULT_REPEAT = 3  # best of: other processes on a shared machine only ever slow a pass down
CHECK_WITH_TRACEMALLOC = 1_000_000  # lists up to this size: memory checked with tracemalloc too
SEED = 20240601
FORMATS = ("plain", "sha256", "sha256-nohk")


def entries(n: int) -> list[str]:
    """n synthetic entries: a fifth whole hosts, two fifths folders, two fifths pages."""
    out = []
    for i in range(n):
        host = f"h{i // 2:08d}.bench.test"
        kind = i % 5
        if kind == 0:
            out.append(f"w{i:08d}.bench.test/")
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
            host = f"h{rng.randrange(max(1, len(lines) // 2)):08d}.bench.test"
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


def snapshot_bytes(snap, parsed) -> tuple[int, int]:
    """(bytes the snapshot's own structures hold, bytes of `parsed` it uses in place), summed
    over its arrays, blobs, filters and columns (they are all but a few hundred bytes of it)."""
    size = sys.getsizeof
    own = shared = 0
    for table in (snap._block, snap._allow):
        own += size(table.filter)
        for segment in table.segments:
            own += size(segment.keys) + (size(segment.sources) if segment.sources is not None else 0)
            if segment.blob is parsed.digests:
                shared += len(segment.blob)
            else:
                own += size(segment.blob)
            for column, listed in ((segment.ids, parsed.ids), (segment.categories, parsed.categories)):
                if column is not None and column is not listed:
                    own += size(column)
    for index in (snap._block_hosts, snap._allow_hosts):
        own += size(index.filter)
        for keys in index.sets:
            shared += size(keys) + sum(map(size, keys))
    return own, shared


def retained_bytes(parsed) -> tuple[int, int]:
    """`snapshot_bytes` of a fresh snapshot, checked against tracemalloc (bytes still allocated
    after build()) when `CHECK_WITH_TRACEMALLOC` allows: it slows building 5-10 times."""
    gc.collect()
    traced = parsed.count <= CHECK_WITH_TRACEMALLOC
    if traced:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    snap = build([parsed])
    gc.collect()
    if traced:
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    own, shared = snapshot_bytes(snap, parsed)
    if traced and abs((after - before) - own) > 0.05 * own + 4096:
        print(f"bench: warning: tracemalloc counts {after - before} bytes, the structures {own}", file=sys.stderr)
    return own, shared


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


def compiled_load_seconds(parsed, workdir: Path) -> float:
    """Seconds to read `parsed` back from its compiled form (as a last-known-good copy is)."""
    path = workdir / "bench.compiled"
    compiled.write(normalize(parsed), path)
    try:
        return timed(compiled.read, path)[1]
    finally:
        path.unlink()


def run_size(n: int, traffic_count: int, repeat: int, workdir: Path, formats) -> list[tuple]:
    lines = entries(n)
    warm_traffic = traffic(lines, traffic_count, WARM_SITES)
    rows = []
    text = "\n".join(lines) + "\n"
    plain, parse_s = timed(parse_text, text, ListSpec(f"bench-{n}.txt", "plain", "bench"))
    del text
    variants = [("plain", plain, parse_s)] if "plain" in formats else []
    if "sha256" in formats or "sha256-nohk" in formats:
        hashed_path = workdir / f"bench-{n}.sha256"
        write_sha256_list(plain, hashed_path)
        for label, path in (("sha256", hashed_path), ("sha256-nohk", without_host_keys(hashed_path))):
            if label in formats:
                parsed, seconds = timed(load_list, ListSpec(str(path), "sha256", "bench"))
                variants.append((label, parsed, seconds))
            path.unlink()
    if "plain" not in formats:
        del plain
    for label, parsed, parse_seconds in variants:
        load_s = compiled_load_seconds(parsed, workdir) if label != "plain" else None
        snap, build_s = timed(build, [parsed])
        cold = cold_rate(snap, lines, traffic_count, repeat)
        warm = warm_rate(snap, *warm_traffic, repeat)
        distinct = snap.stats.block_entries
        if parsed.count > CHECK_WITH_TRACEMALLOC:  # no second build: the memo is not counted anyway
            own, shared = snapshot_bytes(snap, parsed)
            del snap
        else:
            del snap
            own, shared = retained_bytes(parsed)
        rows.append((n, label, parse_seconds, load_s, build_s, warm, cold, own / distinct, shared / distinct))
        print(ROW.format(*cells(rows[-1])), flush=True)
    return rows


def cells(row) -> tuple:
    size, label, parse_s, load_s, build_s, warm, cold, own, shared = row
    return (size, label, f"{parse_s:.2f}", "-" if load_s is None else f"{load_s:.2f}", f"{build_s:.2f}",
            f"{warm:,.0f}", f"{cold:,.0f}", f"{own:.1f}", f"{shared:.1f}")


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


ROW = "{:>9} {:<12} {:>8} {:>7} {:>8} {:>11} {:>11} {:>7} {:>10}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated list sizes (default 10000,1000000)")
    parser.add_argument("--quick", action="store_true", help="small sizes and traffic, for a smoke run")
    parser.add_argument("--traffic", type=int, help="URLs checked per pass")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, help="timed passes; the best is reported")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated: " + ", ".join(FORMATS))
    args = parser.parse_args(argv)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    formats = args.formats.split(",")
    if not set(formats) <= set(FORMATS):
        parser.error(f"--formats: choose from {', '.join(FORMATS)}")
    count = args.traffic or (QUICK_TRAFFIC if args.quick else DEFAULT_TRAFFIC)
    print(machine())
    print(
        f"traffic: {count} URLs per pass: {LISTED_SHARE:.0%} listed, {LISTED_HOST_SHARE:.0%} unlisted on "
        f"listed hosts, the rest on {WARM_SITES} sites (warm) or a new site each (cold)"
    )
    print("memory: bytes retained by build() per distinct entry (own), parsed-list bytes used in place (shared)")
    print(ROW.format("entries", "format", "parse s", "load s", "build s", "warm chk/s", "cold chk/s", "own B/e",
                     "shared B/e"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="urlwarden-bench-") as tmp:
        for n in sizes:
            run_size(n, count, args.repeat, Path(tmp), formats)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
