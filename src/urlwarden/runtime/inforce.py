"""What is in force: the one owner of the configuration, the feeds and the snapshot that every
front end decides with (`Runtime`), free of mitmproxy.

The two paths that change it:

* **load** (start-up, SIGHUP, a changed file): the front end reads the configuration; `load`
  opens its feeds (the feed manager is kept while the feeds are unchanged; a new one starts
  from the last-known-good copies, no network), builds the static lists and the feeds' lists
  into a `State` aside, and publishes it. A bad configuration or list raises `UrlwardenError`
  and changes nothing.
* **feed update**: `refresh` has the feed manager fetch (here, in the caller's thread: it is
  I/O) and examine the payload (in a child process: see `urlwarden.runtime.offload`), and publish the
  list inside the manager, whose `generation` then moves; `rebuild` then builds the state in
  force again with the manager's newest lists and publishes it.

Serialized: every build and publication holds one lock, so two builds never overlap. The front
ends call `load`, `refresh` and `rebuild` from a worker thread (the addon through
``asyncio.to_thread``, the Squid helper from its background thread), never from an event loop:
builds take seconds. Downloads do not hold the lock (a slow feed must not delay a reload).

Generations: a published `InForce` records the manager generation its feed lists came from. A
build whose feed lists moved while it ran is never published: it is built again at once from
the newest lists (reusing the static lists it just parsed). `rebuild` with the state in force
already current does nothing. So a reload overlapping a feed update always ends with the newest
of both, whichever finishes first.

Readers take no lock: `current` is one immutable `InForce` value replaced by one assignment. A
decision reads it once and uses that value for the whole decision; status, readiness and the
metrics read the same value.

Snapshot lifetime: the runtime holds only the value in force. The previous one (and the memory
maps of its hand-over file, `urlwarden.core.snapfile`, whose file is already deleted) is freed by
reference counting as soon as the last decision that read it returns; nothing in a snapshot
forms a reference cycle, and nothing is moved out of the collector's reach (no ``gc.freeze``).
Decisions keep the snapshot out of frames that call into other libraries; as a safety net, the
front end calls `release_retired` some seconds after a swap, which runs one full collection if
a replaced snapshot is still alive (held by garbage in a cycle). `retained_snapshots` counts
the replaced ones still alive.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from urlwarden.config import Config, default_config_path, load_config
from urlwarden.runtime.engine import State, open_feeds
from urlwarden.errors import FeedError, ListError
from urlwarden.feeds.manager import FeedLists, FeedManager, FeedStatus
from urlwarden.core.lists import parse_list_spec
from urlwarden.runtime.offload import run_job

log = logging.getLogger("urlwarden")

__all__ = ["InForce", "Runtime", "describe", "describe_version", "read_config"]

NO_FEEDS = FeedLists(generation=0)


@dataclass(frozen=True, eq=False)
class InForce:
    """Everything in force at one moment, published whole.

    state       configuration and snapshot: what decisions use
    feeds       the feed manager (None without feeds); its own state moves on between publications
    feed_lists  the feeds' lists the snapshot was built from, with their generation and versions
    generation  counts publications (1 for the first)
    source      what the front end loaded it from (the addon: its option values), opaque here
    published   when it came into force (the runtime's clock)
    """

    state: State
    feeds: FeedManager | None
    feed_lists: FeedLists
    generation: int
    source: Hashable = None
    published: float | None = None

    @property
    def missing_required(self) -> tuple[str, ...]:
        """Required feeds without any list in this snapshot: nothing may pass until they have one."""
        return self.feed_lists.missing_required


class Runtime:
    """See the module docstring.

    offloader  where lists are built (`urlwarden.runtime.offload.Offloader`); None: in the calling thread
    metrics    a `urlwarden.metrics.Metrics` kept in line with every publication (or None)
    clock, rng what feed managers use for schedules, staleness and backoff (injected in tests)
    """

    def __init__(self, *, offloader=None, metrics=None, clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random):
        self._offloader = offloader
        self.metrics = metrics
        self.clock = clock
        self.rng = rng
        self._lock = threading.Lock()
        self._current: InForce | None = None
        self._feeds_key = None
        self._retired: list[tuple[int, weakref.ref[State]]] = []  # (generation, replaced state)
        self._collected_upto = 0  # release_retired collected for the states replaced up to here
        self._stale_reported: set[str] = set()
        self._closed = False

    # --- reading (no lock) -----------------------------------------------------------------

    @property
    def current(self) -> InForce | None:
        """What is in force now (None before the first load)."""
        return self._current

    @property
    def feeds(self) -> FeedManager | None:
        current = self._current
        return current.feeds if current is not None else None

    def attach_metrics(self, metrics) -> None:
        """Keep `metrics` in line with what is in force from now on (and with what is now)."""
        self.metrics = metrics
        current = self._current
        if current is not None:
            self._update_metrics(current)

    def retained_snapshots(self) -> int:
        """Replaced states still alive (held by a decision under way, or leaked)."""
        with self._lock:
            self._retired = [(g, ref) for g, ref in self._retired if ref() is not None]
            return len(self._retired)

    def release_retired(self) -> int:
        """Free replaced snapshots that only garbage still refers to; the number still alive.

        Decisions hold the value in force only for their own length, so a replaced snapshot
        normally goes with the last decision that read it. But a frame of such a decision can
        end up in a reference cycle (a library keeping an exception with its traceback in a
        local), which only the cyclic collector frees, and maybe not for hours. So, some
        seconds after a swap, when no decision can still be using the old snapshot: if one is
        still alive, one full collection (tens of milliseconds; at most once per replaced
        snapshot, and only then).
        """
        with self._lock:
            self._retired = [(g, ref) for g, ref in self._retired if ref() is not None]
            newest = max((g for g, _ in self._retired), default=0)
            if newest <= self._collected_upto:
                return len(self._retired)  # one collection per replaced snapshot at most
            self._collected_upto = newest
        gc.collect()
        left = self.retained_snapshots()
        if left:
            log.debug("%d replaced snapshot(s) still referenced after a full collection", left)
        return left

    # --- changing (serialized) ---------------------------------------------------------------

    def load(self, config: Config, *, source: Hashable = None, fresh_feeds: bool = False,
             reuse_static: bool = False) -> InForce:
        """Build and publish the state for `config`; raises `UrlwardenError`, changing nothing.

        `fresh_feeds`: a new feed manager even when the feeds are unchanged (their last-known-good
        copies are read again). `reuse_static`: keep the parsed static lists in force instead of
        reading them again (only with the configuration in force).
        """
        with self._lock:
            self._check_open()
            current = self._current
            keep = current.feeds if current is not None and not fresh_feeds else None
            manager, key = open_feeds(config, keep, self._feeds_key if keep is not None else None,
                                      clock=self.clock, rng=self.rng)
            static = (current.state.static_block, current.state.allow) if reuse_static and current else None
            try:
                state, feed_lists = self._build(config, manager, static)
            except BaseException:
                if manager is not None and manager is not keep:
                    manager.close()
                raise
            old_manager = current.feeds if current is not None else None
            self._feeds_key = key
            published = self._publish(state, manager, feed_lists, source)
            if old_manager is not None and old_manager is not manager:
                old_manager.close()
        log.info("lists loaded: %s", describe(state))
        return published

    def refresh(self, name: str, *, force: bool | None = None) -> bool:
        """Fetch and examine feed `name`, and publish it in the feed manager; True when its list
        changed (then call `rebuild`). Raises `FeedError` (the list in force stays)."""
        manager = self.feeds
        if manager is None:
            raise FeedError(f"unknown feed {name!r} (configured: none)")
        try:
            changed = manager.refresh(name, force=force, offloader=self._offloader)
        except FeedError:
            if self.metrics is not None:
                self.metrics.list_update_failed(name)
            raise
        if self.metrics is not None:
            status = manager.status(name)
            self.metrics.list_loaded(name, status.entries, at=status.last_success)
        return changed

    def rebuild(self) -> bool:
        """Publish the state in force rebuilt with the feeds' newest lists, unless it has them
        already; True when something was published. Raises `UrlwardenError`, changing nothing."""
        with self._lock:
            self._check_open()
            current = self._current
            if current is None or current.feeds is None:
                return False
            manager = current.feeds
            if manager.generation == current.feed_lists.generation:
                return False  # already in force (a reload picked the update up)
            config = current.state.config
            static = (current.state.static_block, current.state.allow)
            state, feed_lists = self._build(config, manager, static)
            self._publish(state, manager, feed_lists, current.source)
            return True

    def close(self) -> None:
        """Close the feed manager and stop any list build under way (idempotent)."""
        self._closed = True
        if self._offloader is not None:
            self._offloader.stop()
        with self._lock:
            manager = self.feeds
        if manager is not None:
            manager.close()

    # --- health --------------------------------------------------------------------------

    def feed_statuses(self) -> list[FeedStatus]:
        manager = self.feeds
        return manager.statuses() if manager is not None else []

    def staleness_changes(self) -> list[FeedStatus]:
        """Feeds that turned stale since the last call (each reported once until it recovers)."""
        newly = []
        for status in self.feed_statuses():
            if status.stale and status.name not in self._stale_reported:
                self._stale_reported.add(status.name)
                newly.append(status)
            elif not status.stale:
                self._stale_reported.discard(status.name)
        return newly

    def readiness(self, running: bool = True) -> tuple[bool, list[str]]:
        """Whether every configured list is in force (and not stale, for required feeds), and why not."""
        current = self._current
        if current is None:
            return False, ["lists not loaded"]
        reasons = [] if running else ["proxy not running"]
        loaded = {ls.name for ls in current.state.snapshot.stats.lists}
        reasons += [f"{lc.name}: not loaded" for lc in current.state.config.static_lists if lc.name not in loaded]
        for status in current.feeds.statuses() if current.feeds else ():
            if status.required and (status.name not in current.feed_lists.versions or status.name not in loaded):
                reasons.append(f"{status.name}: not loaded")  # (not yet in the snapshot in force)
            elif status.required and status.stale:
                reasons.append(f"{status.name}: stale")
        return not reasons, reasons

    def status(self, started: float, running: bool = True) -> dict:
        """The facts `/status` serves: per list in the snapshot in force, its entries, and for a
        feed the version and checksum of the list in that snapshot with the feed's health."""
        current = self._current
        metrics = self.metrics
        ages = metrics.list_ages() if metrics is not None else {}
        last = metrics.last_success() if metrics is not None else {}
        lists = []
        if current is not None:
            health = {s.name: s for s in current.feeds.statuses()} if current.feeds else {}
            for ls in current.state.snapshot.stats.lists:
                entry = {"name": ls.name, "kind": ls.action, "entries": ls.entries, "format": ls.format,
                         "last_success": last.get(ls.name), "age_seconds": ages.get(ls.name)}
                fs = health.get(ls.name)
                if fs is not None:
                    version, checksum = current.feed_lists.versions.get(ls.name, (None, None))
                    entry.update(version=describe_version(version), checksum=checksum, stale=fs.stale,
                                 last_error=fs.last_error, last_success=fs.last_success, age_seconds=fs.age)
                lists.append(entry)
        ready, _ = self.readiness(running)
        return {"started": started, "uptime_seconds": time.time() - started, "ready": ready, "lists": lists}

    # --- internals -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ListError("shutting down: nothing more is loaded")

    def _run(self, job: str, *args):
        if self._offloader is None:
            return run_job(job, *args)
        return self._offloader.run(job, *args)

    def _build(self, config: Config, manager: FeedManager | None,
               static: tuple[tuple, tuple] | None) -> tuple[State, FeedLists]:
        """A state from `config`'s static lists (or the parsed `static`) and the manager's newest
        lists; built again while those moved during the build (never publish an older one)."""
        while True:
            feed_lists = manager.lists_in_force() if manager is not None else NO_FEEDS
            if static is None:
                state = self._run("load_state", config, feed_lists.lists)
            else:
                state = self._run("rebuild", config, static[0], static[1], feed_lists.lists)
            if manager is None or manager.generation == feed_lists.generation:
                return state, feed_lists
            # A feed published a newer list while this one was built: it would put the older list
            # back. Each round needs a new publication by a feed, so this ends with the feeds.
            log.info("a feed changed while the lists were built: building again with its newest list")
            static = (state.static_block, state.allow)

    def _publish(self, state: State, manager: FeedManager | None, feed_lists: FeedLists,
                 source: Hashable) -> InForce:
        """The one assignment that swaps the new state in (with the lock held)."""
        old = self._current
        generation = old.generation + 1 if old is not None else 1
        new = InForce(state=state, feeds=manager, feed_lists=feed_lists, generation=generation, source=source,
                      published=self.clock())
        self._current = new
        if old is not None:
            self._retired = [(g, ref) for g, ref in self._retired if ref() is not None]
            self._retired.append((old.generation, weakref.ref(old.state)))
        del old
        self._update_metrics(new)
        if new.missing_required:
            log.warning("required feed(s) %s have no list yet: every request is refused until they do",
                        ", ".join(new.missing_required))
        return new


    def _update_metrics(self, current: InForce) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        lists = current.state.snapshot.stats.lists
        metrics.lists_from_snapshot(lists)
        metrics.forget_lists(ls.name for ls in lists)
        for status in current.feeds.statuses() if current.feeds is not None else ():
            metrics.list_loaded(status.name, status.entries, at=status.last_success)
            if status.entries:  # the version in force and since when (a fleet's convergence)
                metrics.list_in_force(status.name, status.checksum,
                                      status.version.serial if status.version else None)


def read_config(config_path: str | None, list_specs=()) -> Config:
    """The configuration at `config_path` (empty: the default path), its block lists replaced by
    `list_specs` (``FILE[:FORMAT]``) when given; raises `UrlwardenError`."""
    config = load_config(config_path or default_config_path())
    if list_specs:
        config = config.with_lists([parse_list_spec(s) for s in list_specs])
    return config


def describe_version(version) -> str | None:
    """A feed version for people: its serial, else its ETag, else its Last-Modified date."""
    if version is None:
        return None
    return version.serial or version.etag or version.last_modified


def describe(state: State) -> str:
    """One line for logs and the console: what is loaded (never list contents)."""
    parts = [f"{ls.action} list {ls.name}: {ls.entries} entries ({ls.format})" for ls in state.snapshot.stats.lists]
    if parts:
        return "; ".join(parts)
    if state.config.feeds:  # (a required one missing is logged as a warning of its own)
        return f"no lists loaded yet (feeds: {', '.join(spec.name for spec in state.config.feeds)})"
    return "no lists loaded: nothing will be blocked"
