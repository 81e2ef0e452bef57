"""Keeps feeds fresh in the background of a running proxy, off its event loop.

`FeedLoop.run` is one asyncio task: it refreshes each feed when it is due (downloads and
parsing run in a child process given an offloader, else in a worker thread: no request waits
on them), calls `on_change` when a feed published a new list (the addon then rebuilds its
snapshot aside and swaps it in), reports
failures and staleness in the log and the metrics, and sleeps until the next feed is due.
A failed update changes nothing but the feed's status: blocking continues with the list it has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import FeedError
from .feeds.manager import FeedManager
from .metrics import Metrics

log = logging.getLogger("urlwarden")

MIN_SLEEP = 1.0
"""Seconds the loop sleeps at least between rounds (a feed due now is not retried in a spin)."""
MAX_SLEEP = 60.0
"""Seconds the loop sleeps at most, so staleness is reported within a minute of happening."""


class FeedLoop:
    def __init__(self, manager: FeedManager, on_change: Callable[[], Awaitable[None]], metrics: Metrics,
                 clock: Callable[[], float] = time.time, offloader: Any = None):
        self.manager = manager
        self.offloader = offloader  # refreshes run in a child process (see urlwarden.offload)
        self.on_change = on_change
        self.metrics = metrics
        self.clock = clock
        self._wake = asyncio.Event()
        self._refresh_all = False
        self._stale_reported: set[str] = set()

    def refresh_all_now(self) -> None:
        """Refresh every feed at the next round, due or not (SIGHUP, `urlwarden update`)."""
        self._refresh_all = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self.round()
            await self._sleep()

    async def round(self) -> None:
        refresh_all, self._refresh_all = self._refresh_all, False
        for name in self.manager.names:
            if refresh_all or self.manager.due(name):
                await self._refresh(name)
        self._report_staleness()

    async def _refresh(self, name: str) -> None:
        try:
            changed = await asyncio.to_thread(self.manager.refresh, name, offloader=self.offloader)
        except FeedError as exc:
            self.metrics.list_update_failed(name)
            log.warning("feed %s: update failed, the current list stays: %s", name, exc,
                        extra={"event": {"event": "feed_update_failed", "feed": name}})
            return
        except Exception as exc:  # an adapter bug must not end the loop: later rounds retry
            self.metrics.list_update_failed(name)
            log.error("feed %s: update failed (%s), the current list stays", name, type(exc).__name__)
            return
        status = self.manager.status(name)
        self.metrics.list_loaded(name, status.entries, at=status.last_success)
        if changed:
            log.info("feed %s: %s update, %d entries", name, status.last_update, status.entries,
                     extra={"event": {"event": "feed_updated", "feed": name, "entries": status.entries}})
            await self.on_change()  # the new list is in force once the addon swapped it in
        self.metrics.list_in_force(name, status.checksum, status.version.serial if status.version else None)

    def _report_staleness(self) -> None:
        for status in self.manager.statuses():
            if status.stale and status.name not in self._stale_reported:
                self._stale_reported.add(status.name)
                age = "never loaded" if status.age is None else f"last success {status.age / 3600:.1f} h ago"
                log.warning("feed %s is stale (%s); blocking continues with the list it has", status.name, age,
                            extra={"event": {"event": "feed_stale", "feed": status.name}})
            elif not status.stale:
                self._stale_reported.discard(status.name)

    async def _sleep(self) -> None:
        if self._refresh_all:
            return  # asked for during the round that just ended
        now = self.clock()
        next_due = min((self.manager.next_refresh_at(n) for n in self.manager.names), default=now + MAX_SLEEP)
        timeout = min(MAX_SLEEP, max(MIN_SLEEP, next_due - now))
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass
