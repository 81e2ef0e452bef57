"""Keeps feeds fresh in the background of a running proxy, off its event loop.

`FeedLoop.run` is one asyncio task over a `urlwarden.runtime.inforce.Runtime`: it refreshes each feed
when it is due (the download in a worker thread, the payload's parsing in a child process: no
request waits on either), has the runtime rebuild and swap in its snapshot when a feed
published a new list, reports failures and staleness in the log and the metrics, and sleeps
until the next feed is due. The feeds are the runtime's: a reload that replaces the feed
manager is picked up at the next round. A failed update changes nothing but the feed's status:
blocking continues with the list it has. Time comes from the runtime's clock.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncio
import logging

from urlwarden.errors import FeedError, UrlwardenError
from urlwarden.runtime.inforce import Runtime

log = logging.getLogger("urlwarden")

MIN_SLEEP = 1.0
"""Seconds the loop sleeps at least between rounds (a feed due now is not retried in a spin)."""
MAX_SLEEP = 60.0
"""Seconds the loop sleeps at most, so staleness is reported within a minute of happening."""


class FeedLoop:
    def __init__(self, runtime: Runtime, after_round: Callable[[], None] | None = None):
        self.runtime = runtime
        self._after_round = after_round  # e.g. the addon's systemd STATUS= line
        self._wake = asyncio.Event()
        self._refresh_all = False

    def refresh_all_now(self) -> None:
        """Refresh every feed at the next round, due or not (SIGHUP, `urlwarden update`)."""
        self._refresh_all = True
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self.round()
            if self._after_round is not None:
                self._after_round()
            await self._sleep()

    async def round(self) -> None:
        # (no decision is under way while this coroutine runs: a snapshot replaced by the last
        # round's rebuild is unused now)
        self.runtime.release_retired()
        refresh_all, self._refresh_all = self._refresh_all, False
        manager = self.runtime.feeds
        changed = False
        for name in manager.names if manager is not None else ():
            if refresh_all or manager.due(name):
                changed = await self._refresh(name) or changed
        if changed or self._behind():
            await self._rebuild()
        for status in self.runtime.staleness_changes():
            age = "never loaded" if status.age is None else f"last success {status.age / 3600:.1f} h ago"
            log.warning("feed %s is stale (%s); blocking continues with the list it has", status.name, age,
                        extra={"event": {"event": "feed_stale", "feed": status.name}})

    async def _refresh(self, name: str) -> bool:
        try:
            changed = await asyncio.to_thread(self.runtime.refresh, name)
        except FeedError as exc:
            log.warning("feed %s: update failed, the current list stays: %s", name, exc,
                        extra={"event": {"event": "feed_update_failed", "feed": name}})
            return False
        except Exception as exc:  # an adapter bug must not end the loop: later rounds retry
            if self.runtime.metrics is not None:
                self.runtime.metrics.list_update_failed(name)
            log.error("feed %s: update failed (%s), the current list stays", name, type(exc).__name__)
            return False
        if changed:
            status = self.runtime.feeds.status(name)
            log.info("feed %s: %s update, %d entries", name, status.last_update, status.entries,
                     extra={"event": {"event": "feed_updated", "feed": name, "entries": status.entries}})
        return changed

    def _behind(self) -> bool:
        """A feed list not yet in the snapshot in force (an earlier rebuild failed)."""
        current = self.runtime.current
        return bool(current and current.feeds and current.feeds.generation != current.feed_lists.generation)

    async def _rebuild(self) -> None:
        try:
            await asyncio.to_thread(self.runtime.rebuild)
        except UrlwardenError as exc:
            log.error("feed update not applied, the current lists stay (retried next round): %s", exc)
        except Exception as exc:  # a bug must not end the feed loop: the next round tries again
            log.error("feed update not applied (%s), the current lists stay", type(exc).__name__)

    async def _sleep(self) -> None:
        if self._refresh_all:
            return  # asked for during the round that just ended
        now = self.runtime.clock()
        manager = self.runtime.feeds
        names = manager.names if manager is not None else ()
        next_due = min((manager.next_refresh_at(n) for n in names), default=now + MAX_SLEEP)
        timeout = min(MAX_SLEEP, max(MIN_SLEEP, next_due - now))
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass
