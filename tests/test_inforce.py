"""Tests for urlwarden.runtime.inforce.Runtime: one owner of what is in force.

An in-memory feed adapter registered in this process (`register_adapter`, as docs/feeds.md
recommends for embedding) feeds the runtime; builds run in this process or in real child
processes (`urlwarden.runtime.offload`). The clock is a fake one: staleness and backoff without sleeping.
All entries are synthetic (.test names).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from urlwarden import feeds as feeds_package
from urlwarden.config import load_config
from urlwarden.errors import FeedError, ListError
from urlwarden.runtime.feedloop import FeedLoop
from urlwarden.feeds import FeedAdapter, FeedPayload, FeedVersion, register_adapter
from urlwarden.runtime.inforce import Runtime
from urlwarden.metrics import Metrics
from urlwarden.runtime.offload import Offloader


class MemorySource:
    """What a memory feed serves; `gate`, when set, holds a fetch until released."""

    def __init__(self) -> None:
        self.lines = ["listed.test/"]
        self.serial = 1
        self.fail = False
        self.gate: threading.Event | None = None
        self.fetching = threading.Event()

    def set(self, lines: list[str]) -> None:
        self.lines = lines
        self.serial += 1


SOURCES: dict[str, MemorySource] = {}


class MemoryAdapter(FeedAdapter):
    """An embedding application's own adapter: serves `SOURCES[key]` from memory."""

    source = "network"

    def __init__(self, *, feed_name: str = "feed", source: str):
        super().__init__(feed_name=feed_name)
        self.source_name = source

    def fetch(self, since: FeedVersion | None) -> FeedPayload:
        src = SOURCES[self.source_name]
        src.fetching.set()
        if src.gate is not None:
            src.gate.wait(10)
        if src.fail:
            raise self.error("source unavailable")
        etag = f'"{src.serial}"'
        if since is not None and since.etag == etag:
            return FeedPayload(b"", FeedVersion(etag=etag), not_modified=True)
        return FeedPayload(("\n".join(src.lines) + "\n").encode(), FeedVersion(etag=etag))


@pytest.fixture(autouse=True)
def memory_adapter():
    register_adapter("memory", MemoryAdapter, replace=True)
    yield
    feeds_package._registered.pop("memory", None)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def write_config(tmp_path, key: str, *, required: bool = False, max_age: str = "2d"):
    SOURCES[key] = MemorySource()
    (tmp_path / "static.txt").write_text("static.test/\n")
    path = tmp_path / "urlwarden.yaml"
    path.write_text(f"""
state_dir: {tmp_path / 'state'}
lists:
  - name: static
    path: {tmp_path / 'static.txt'}
  - name: hotline
    feed:
      adapter: memory
      options: {{source: {key}}}
      refresh: 1h
      max_age: {max_age}
      required: {'true' if required else 'false'}
""")
    return load_config(str(path))


def blocked(runtime: Runtime, url: str) -> bool:
    verdict = runtime.current.state.snapshot.match(url)
    return verdict is not None and verdict.blocked


@pytest.mark.parametrize("in_child", [False, True], ids=["in-process", "child-process"])
def test_a_registered_adapter_updates_the_list_in_force(tmp_path, in_child):
    config = write_config(tmp_path, f"reg-{in_child}")
    runtime = Runtime(offloader=Offloader() if in_child else None)
    try:
        runtime.load(config)
        assert blocked(runtime, "http://static.test/") and not blocked(runtime, "http://listed.test/")
        assert runtime.refresh("hotline") is True
        assert runtime.rebuild() is True
        assert blocked(runtime, "http://listed.test/x")
        SOURCES[f"reg-{in_child}"].set(["listed.test/", "later.test/"])
        assert runtime.refresh("hotline") is True and runtime.rebuild() is True
        assert blocked(runtime, "http://later.test/") and blocked(runtime, "http://static.test/")
        assert runtime.refresh("hotline") is False  # not modified
        assert runtime.rebuild() is False  # nothing new: nothing built
        assert runtime.current.feed_lists.versions["hotline"][0].etag == '"2"'
    finally:
        runtime.close()


def test_a_load_overlapping_a_feed_update_publishes_the_newest_lists(tmp_path, monkeypatch):
    """The defect: a reload built from the feed lists as they were when it started, and applied
    unconditionally after a feed update published a newer list, put the old list back."""
    config = write_config(tmp_path, "race")
    runtime = Runtime()
    runtime.load(config)
    runtime.refresh("hotline") and runtime.rebuild()
    assert blocked(runtime, "http://listed.test/")

    from urlwarden.runtime import inforce

    real = inforce.run_job
    in_build, release = threading.Event(), threading.Event()

    def slow_build(job, *args):  # the reload's build waits while the feed publishes a new list
        state = real(job, *args)
        in_build.set()
        release.wait(10)
        return state

    monkeypatch.setattr(inforce, "run_job", slow_build)
    reload = threading.Thread(target=runtime.load, args=(config,), kwargs={"fresh_feeds": False})
    reload.start()
    assert in_build.wait(10)
    monkeypatch.setattr(inforce, "run_job", real)  # the next build (the catch-up) is not slowed
    SOURCES["race"].set(["listed.test/", "new.test/"])
    assert runtime.refresh("hotline") is True  # published in the manager while the reload builds
    updater = threading.Thread(target=runtime.rebuild)
    updater.start()
    release.set()
    reload.join(10)
    updater.join(10)
    assert blocked(runtime, "http://new.test/") and blocked(runtime, "http://listed.test/")
    current = runtime.current
    assert current.feed_lists.generation == current.feeds.generation
    assert current.feed_lists.versions["hotline"][1] == current.feeds.status("hotline").checksum


def test_failures_staleness_and_backoff_follow_the_injected_clock(tmp_path):
    clock = FakeClock()
    config = write_config(tmp_path, "clock", max_age="1h")
    runtime = Runtime(clock=clock, rng=lambda: 0.0, metrics=Metrics())
    runtime.load(config)
    assert runtime.feeds.due("hotline")
    assert [s.name for s in runtime.staleness_changes()] == ["hotline"]  # never loaded
    assert runtime.refresh("hotline") and runtime.rebuild()
    assert runtime.staleness_changes() == [] and not runtime.feeds.status("hotline").stale
    assert not runtime.feeds.due("hotline")
    clock.now += 3600  # the interval (no jitter with rng 0): due again
    assert runtime.feeds.due("hotline")
    SOURCES["clock"].fail = True
    with pytest.raises(FeedError, match="source unavailable"):
        runtime.refresh("hotline")
    status = runtime.feeds.status("hotline")
    assert status.consecutive_failures == 1 and status.next_refresh_at == clock.now + 60.0  # backoff base
    assert not status.stale  # confirmed an hour ago, max_age 1h
    clock.now += 1
    assert [s.name for s in runtime.staleness_changes()] == ["hotline"]
    assert runtime.staleness_changes() == []  # reported once
    assert blocked(runtime, "http://listed.test/")  # blocking goes on with the list it has
    assert runtime.metrics.registry.get_sample_value(
        "urlwarden_list_update_failures_total", {"list": "hotline"}) == 1


def test_a_required_feed_without_a_list_is_reported_until_it_has_one(tmp_path):
    config = write_config(tmp_path, "required", required=True)
    runtime = Runtime()
    runtime.load(config)
    assert runtime.current.missing_required == ("hotline",)
    assert runtime.readiness() == (False, ["hotline: not loaded"])
    runtime.refresh("hotline")
    runtime.rebuild()
    assert runtime.current.missing_required == ()
    assert runtime.readiness() == (True, [])
    status = runtime.status(started=0.0)
    assert [(e["name"], e["entries"]) for e in status["lists"]] == [("static", 1), ("hotline", 1)]


def test_a_bad_configuration_changes_nothing(tmp_path):
    config = write_config(tmp_path, "bad")
    runtime = Runtime()
    before = runtime.load(config)
    (tmp_path / "static.txt").unlink()
    with pytest.raises(ListError):
        runtime.load(config)
    assert runtime.current is before


def test_replaced_snapshots_are_released(tmp_path):
    config = write_config(tmp_path, "lifetime")
    runtime = Runtime(offloader=Offloader())
    try:
        first = weakref.ref(runtime.load(config).state)
        held = runtime.current.state  # a decision under way keeps the one it read
        runtime.load(config, fresh_feeds=True)
        assert runtime.retained_snapshots() == 1 and first() is held
        del held
        assert first() is None and runtime.retained_snapshots() == 0  # no collection needed
        for _ in range(3):
            runtime.load(config, fresh_feeds=True)
        assert runtime.retained_snapshots() == 0
        gc.collect()
        assert runtime.retained_snapshots() == 0
    finally:
        runtime.close()


def test_the_feed_loop_refreshes_through_the_runtime(tmp_path):
    config = write_config(tmp_path, "loop")
    runtime = Runtime()
    runtime.load(config)

    async def one_round():
        loop = FeedLoop(runtime)
        await loop.round()  # due at start: fetched and swapped in
        SOURCES["loop"].set(["listed.test/", "other.test/"])
        loop.refresh_all_now()
        await loop.round()

    asyncio.run(one_round())
    assert blocked(runtime, "http://other.test/") and blocked(runtime, "http://static.test/")


def test_a_replaced_snapshot_kept_by_garbage_is_released_once(tmp_path):
    config = write_config(tmp_path, "garbage")
    runtime = Runtime()
    runtime.load(config)

    class Cycle:  # a decision's frame caught in a reference cycle, as some libraries leave them
        pass

    gc.disable()  # (no automatic collection in between: only release_retired's)
    try:
        garbage = Cycle()
        garbage.me, garbage.state = garbage, runtime.current.state
        del garbage
        runtime.load(config, fresh_feeds=True)
        assert runtime.retained_snapshots() == 1  # only the cyclic collector can free it
        assert runtime.release_retired() == 0 and runtime.retained_snapshots() == 0
    finally:
        gc.enable()
    assert runtime.release_retired() == 0  # nothing left: no collection
