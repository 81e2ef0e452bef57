"""One-line summaries of the lists in force, for the console, the log and systemd's ``STATUS=``.

Counts, names and times only: never an entry, a URL or a client. Pure functions of the
snapshot statistics and feed statuses, so they are tested without a proxy.

Example (two static lists and a feed, loaded at 18:00 UTC)::

    service_status(stats, feeds, updated_at)
    -> "3 block lists, 120014 entries; 1 allow list; last update 2030-03-14 18:00 UTC"
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

__all__ = ["describe_lists", "service_status"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def describe_lists(list_stats: Sequence, feed_names: Iterable[str], missing_required: Iterable[str]) -> list[str]:
    """Start-up lines: one per list loaded, one per feed that has no list yet; "nothing will be
    blocked" only when nothing at all is configured."""
    lines = [f"{ls.action} list {ls.name}: {ls.entries} entries from {ls.path} ({ls.format})" for ls in list_stats]
    loaded = {ls.name for ls in list_stats}
    missing_required = set(missing_required)
    for name in feed_names:
        if name in missing_required:
            lines.append(f"block feed {name}: no list yet; it is required, so every request is refused "
                         f"until it has one ('urlwarden update' fetches it now)")
        elif name not in loaded:
            lines.append(f"block feed {name}: no list yet (fetched in the background)")
    return lines or ["no lists configured: nothing will be blocked"]


def service_status(list_stats: Sequence, feed_statuses: Sequence, updated_at: float | None,
                   missing_required: Sequence[str] = ()) -> str:
    """The ``STATUS=`` line ``systemctl status urlwarden`` shows: lists, entries, last update,
    and what is wrong first, when something is."""
    block = [ls for ls in list_stats if ls.action == "block"]
    allow = [ls for ls in list_stats if ls.action != "block"]
    problems = []
    if missing_required:
        problems.append(f"REFUSING ALL REQUESTS: required feed {', '.join(missing_required)} has no list yet")
    stale = [fs.name for fs in feed_statuses if fs.stale and fs.entries]
    if stale:
        problems.append(f"stale feed {', '.join(stale)}")
    entries = sum(ls.entries for ls in block)
    parts = [f"{_plural(len(block), 'block list')}, {entries} {'entry' if entries == 1 else 'entries'}"]
    if allow:
        parts.append(_plural(len(allow), "allow list"))
    if updated_at is not None:
        parts.append(f"last update {_utc(updated_at)}")
    return "; ".join(problems + parts)
