"""What the proxy would load from a configuration, without starting it: ``urlwarden config
check``, ``urlwarden check --config`` and ``urlwarden status`` share it.

`inspect_config` loads the configuration, every static block and allow list, and every feed's
last-known-good copy (from ``state_dir``, no network), exactly as ``urlwarden run`` does before
mitmproxy starts, and compiles them into the snapshot the proxy would use. It never raises for
a problem a user can fix: each becomes one line of `Inspection.errors` (the proxy would not
start, or would refuse every request) or `Inspection.warnings` (it would start, but something
is skipped), naming the file and, where there is one, the line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from urlwarden.config import Config, load_config
from urlwarden.errors import UrlwardenError
from urlwarden.feeds.manager import FeedManager, FeedStatus
from urlwarden.core.lists import ParsedList, load_list
from urlwarden.core.matcher import Snapshot, build

__all__ = ["Inspection", "StaticListStatus", "inspect_config"]


@dataclass(frozen=True)
class StaticListStatus:
    """A list read from a file named in the configuration (not a feed)."""

    name: str
    action: str  # "block" or "allow"
    path: str
    format: str
    entries: int | None  # None: the file could not be loaded (see error)
    bad_lines: int
    modified: float | None  # the file's mtime
    error: str | None


@dataclass(frozen=True)
class Inspection:
    source: str
    config: Config | None  # None: the configuration itself is invalid (errors says why)
    snapshot: Snapshot | None  # None when there are errors
    static: tuple[StaticListStatus, ...]
    feeds: tuple[FeedStatus, ...]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    block_lists: tuple[ParsedList, ...] = ()  # what `snapshot` was built from: static lists, then feeds
    allow_lists: tuple[ParsedList, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def inspect_config(path: str | os.PathLike[str], *, load_lists: bool = True) -> Inspection:
    """Everything ``urlwarden run --config path`` would load; see the module docstring.

    With ``load_lists=False`` nothing but the configuration and feed state is read (no snapshot).
    """
    source = str(path)
    try:
        config = load_config(Path(path))
    except UrlwardenError as exc:
        return Inspection(source, None, None, (), (), (str(exc),), ())
    errors: list[str] = []
    warnings: list[str] = []
    parsed: dict[str, ParsedList] = {}
    static: list[StaticListStatus] = []
    for action, configured in (("block", config.static_lists), ("allow", config.allow)):
        for lc in configured:
            spec = lc.spec
            try:
                modified = os.stat(spec.path).st_mtime
            except OSError:
                modified = None
            entries, bad, error = None, 0, None
            if load_lists:
                try:
                    pl = load_list(spec)
                except UrlwardenError as exc:
                    error = str(exc)
                    errors.append(error)
                else:
                    parsed[lc.name] = pl
                    entries, bad = pl.count, pl.bad_lines
                    warnings.extend(f"warning: {problem} (line skipped)" for problem in pl.problems)
                    if pl.bad_lines > len(pl.problems):
                        warnings.append(f"warning: {spec.path}: {pl.bad_lines} bad lines skipped in all")
            elif modified is None:
                error = f"{spec.path}: cannot read"
                errors.append(error)
            static.append(StaticListStatus(lc.name, action, spec.path, spec.format, entries, bad, modified, error))

    feed_statuses: tuple[FeedStatus, ...] = ()
    feed_lists: list[ParsedList] = []
    if config.feeds:
        try:
            with FeedManager(config.feeds, config.state_dir) as manager:
                manager.load_last_known_good()
                feed_statuses = tuple(manager.statuses())
                feed_lists = manager.lists()
        except UrlwardenError as exc:
            errors.append(str(exc))
        for fs in feed_statuses:
            if fs.entries == 0 and fs.required:
                errors.append(f"{config.source}: feed {fs.name} is required and has no list yet "
                              f"(run 'urlwarden update'): the proxy would refuse every request")
            elif fs.entries == 0:
                warnings.append(f"warning: {config.source}: feed {fs.name} has no list yet (run 'urlwarden update')")
            if fs.last_error and fs.entries:
                warnings.append(f"warning: feed {fs.name}: {fs.last_error}")

    snapshot = None
    block: tuple[ParsedList, ...] = ()
    allow: tuple[ParsedList, ...] = ()
    if load_lists and not errors:
        block = tuple(parsed[lc.name] for lc in config.static_lists) + tuple(feed_lists)
        allow = tuple(parsed[lc.name] for lc in config.allow)
        try:
            snapshot = build(block, allow)
        except UrlwardenError as exc:
            errors.append(str(exc))
    return Inspection(config.source, config, snapshot, tuple(static), feed_statuses, tuple(errors),
                      tuple(warnings), block, allow)
