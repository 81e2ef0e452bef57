#!/usr/bin/env python3
"""Reload stall, in process: how long the event loop waits while a new list is loaded and swapped.

What the addon does on SIGHUP, without mitmproxy, nginx or wrk: the runtime's load runs in a
worker thread (``asyncio.to_thread``) and hands the parsing and compiling to a child process
(`urlwarden.runtime.offload`), while the event loop runs a timer every millisecond; every late timer is
a stall a request would have seen. Then the swap as the addon does it, timed on the loop: the
one assignment and dropping the old state. ``--in-process`` runs
`engine.load_state` in the worker thread instead (how reloads worked before the child process).
Finally, with the new state held: the time of one full garbage collection.

``--feed`` measures the other way a large list arrives: a feed update. A `FeedManager` with a
``file`` feed of N hashed entries (sha256 with host keys, as hotlines publish them) refreshes to
a new version of the same size, then the snapshot is rebuilt, as `FeedLoop` and the addon do,
both under the same timer (``--in-process``: both in the worker thread, as before).

Synthetic plain list (hNNNNNN.bench.test/p/N.html); nothing touches the network.
Results: docs/performance-proxy.md ("Reload").

Usage: .venv/bin/python benchmarks/bench_reload_stall.py [--entries N] [--top K] [--in-process] [--feed]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from urlwarden.config import load_config  # noqa: E402
from urlwarden.runtime.engine import load_state, rebuild  # noqa: E402
from urlwarden.feeds.manager import FeedManager  # noqa: E402
from urlwarden.runtime.offload import Offloader, run_job  # noqa: E402

TICK = 0.001  # seconds between timer callbacks on the event loop
SETTLE = 0.5  # seconds of ticks before and after the build


def write_config(directory: Path, entries: int) -> Path:
    lines = directory / "list.txt"
    with open(lines, "w", encoding="ascii") as out:
        for start in range(0, entries, 100_000):
            out.write("".join(f"h{i:06d}.bench.test/p/{i}.html\n" for i in range(start, min(entries, start + 100_000))))
    config = directory / "urlwarden.yaml"
    config.write_text(f"lists:\n  - name: bench\n    path: {lines}\n    format: plain\n")
    return config


def write_feed(path: Path, entries: int, generation: int) -> None:
    """A hashed feed list: N entry digests and as many host keys, different for each generation."""
    with open(path, "w", encoding="ascii") as out:
        for start in range(0, entries, 100_000):
            names = [f"h{i:07d}.feed{generation}.test" for i in range(start, min(entries, start + 100_000))]
            out.write("".join(hashlib.sha256(f"{n}/".encode()).hexdigest() + "\n" for n in names))
            out.write("".join("host:" + hashlib.sha256(n.encode()).hexdigest() + "\n" for n in names))


def feed_update(directory: Path, entries: int, offloader: Offloader | None, top: int) -> None:
    source = directory / "hotline.sha256"
    write_feed(source, entries, 1)
    config_path = directory / "feed.yaml"
    config_path.write_text(f"state_dir: {directory / 'state'}\nlists:\n  - name: hotline\n    format: sha256\n"
                           f"    feed: {{adapter: file, options: {{path: {source}}}, max_shrink: 1.0}}\n")
    config = load_config(str(config_path))
    manager = FeedManager(config.feeds, config.state_dir)
    started = time.monotonic()
    manager.refresh("hotline")  # the first list, before the timer
    state = rebuild(config, (), (), manager.lists())
    print(f"first fetch of the {entries:,}-entry feed and its snapshot (not timed below): "
          f"{time.monotonic() - started:.1f} s")
    write_feed(source, entries, 2)

    def update():
        manager.refresh("hotline", offloader=offloader)
        return (offloader.run if offloader else run_job)("rebuild", config, state.static_block, state.allow,
                                                          manager.lists())

    new, took, delays, _ = asyncio.run(rebuild_under_timer(update, twice=False))
    assert new.snapshot.stats.block_entries == entries
    where = "in a worker thread" if offloader is None else "in child processes"
    print(f"feed update (fetch, parse, validate, save) and snapshot rebuild {where}: {took:.1f} s")
    report(delays, None, top)  # (the swap itself is what the reload measurement times)


def report(delays: list[tuple[float, float]], swap_ms: float | None, top: int) -> None:
    if swap_ms is not None:
        print(f"the swap on the event loop (assignment, old state dropped): {swap_ms:.1f} ms")
    print(f"longest event-loop delays (a {TICK * 1000:.0f} ms timer; time since the work started):")
    for at, late in sorted(delays, key=lambda d: -d[1])[:top]:
        print(f"  {late * 1000:8.1f} ms at {at:6.2f} s")
    over = [late for _, late in delays if late > 0.020]
    print(f"delays over 20 ms: {len(over)}, {sum(over):.2f} s in all")


async def rebuild_under_timer(load, twice: bool = True) -> tuple[object, float, list[tuple[float, float]], float]:
    delays: list[tuple[float, float]] = []

    async def ticker():
        while True:
            started = time.monotonic()
            await asyncio.sleep(TICK)
            delays.append((started, time.monotonic() - started - TICK))

    task = asyncio.create_task(ticker())
    await asyncio.sleep(SETTLE)
    t0 = time.monotonic()
    old = await asyncio.to_thread(load)
    took = time.monotonic() - t0
    state = await asyncio.to_thread(load) if twice else old  # a second reload: now an old state is replaced
    swap_started = time.perf_counter()
    old = state  # the swap, as in the runtime: one assignment drops the previous state
    swap_ms = (time.perf_counter() - swap_started) * 1000
    await asyncio.sleep(SETTLE)
    task.cancel()
    return old, took, [(at - t0, late) for at, late in delays if at >= t0 - TICK], swap_ms


def full_collection_ms() -> float:
    gc.collect()
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--top", type=int, default=8, help="longest event-loop delays to print")
    parser.add_argument("--in-process", action="store_true", help="build in the worker thread, not a child process")
    parser.add_argument("--feed", action="store_true", help="a feed update instead of a reload")
    args = parser.parse_args(argv)
    if args.feed:
        with tempfile.TemporaryDirectory(prefix="urlwarden-bench-stall-") as tmp:
            feed_update(Path(tmp), args.entries, None if args.in_process else Offloader(), args.top)
        return 0
    with tempfile.TemporaryDirectory(prefix="urlwarden-bench-stall-") as tmp:
        config = load_config(str(write_config(Path(tmp), args.entries)))
        empty_gc = full_collection_ms()
        offloader = Offloader()
        if args.in_process:
            where, load = "in a worker thread", lambda: load_state(config)
        else:
            where, load = "in a child process", lambda: offloader.run("load_state", config, ())
        state, took, delays, swap_ms = asyncio.run(rebuild_under_timer(load))
        print(f"load_state of {args.entries:,} entries {where}: {took:.1f} s (then once more, to swap)")
        report(delays, swap_ms, args.top)
        print(f"one full garbage collection: {full_collection_ms():.1f} ms with the state held, "
              f"{empty_gc:.1f} ms before loading")
        del state
    return 0


if __name__ == "__main__":
    sys.exit(main())
