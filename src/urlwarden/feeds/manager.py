"""`FeedManager`: keeps every feed's list current, and never worse than the last good one.

Policy:

* Start. `load_last_known_good` restores each feed from the state directory (see
  `urlwarden.feeds.store`) before any network call, so blocking starts with the last good lists
  even when every source is down. `unavailable_required` names required feeds that still have
  no list (the caller decides: refuse to start, or fail closed).
* Refresh (`refresh`), one feed at a time, in this order: fetch (conditional, offering the
  current serial for a diff), verify the Ed25519 signature when the feed has a public key (a
  missing or bad signature rejects the update), parse aside, apply a diff to the current
  entries, verify the checksum (a diff that does not apply or does not give its checksum is
  discarded and the full list fetched once, in the same refresh), validate, save the
  last-known-good copy, publish by one assignment.
* Validation: an update is rejected when it is empty, when it has more bad lines than entries
  (not the declared format: an HTML error page, a list in the wrong format), or when it shrinks
  the list by more than ``max_shrink`` (default half) unless ``force`` (the spec's, or
  ``refresh(name, force=True)`` for one update). A rejected or failed update changes nothing
  but the status: the current list stays in force.
* 304 / unchanged: nothing is published and nothing rewritten (a 200 with identical content only
  rewrites the small metadata file, so the new ETag survives a restart).
* Unwritable state directory: the update is applied in memory anyway (it passed every check,
  and blocking with the newer list is safer than blocking with the older one); the write
  failure is reported in ``last_error`` with ``lkg_saved=False``, and every later refresh
  (including a 304) tries to save again.
* Schedule: after a success the next refresh is due ``interval * (1 - jitter * rng())`` later
  (never later than the interval, spread so feeds do not refresh in step). After ``n``
  consecutive failures it is due ``min(backoff_max, backoff_base * 2**(n-1)) * (1 + rng())``
  later (Safe Browsing's backoff). A feed restored from last-known-good is due at
  ``last_success + interval``, or at once when that has passed or its configuration changed.
* Health: `status` gives a `FeedStatus` (entries, version, checksum, times, last error,
  consecutive failures, age, stale when older than ``max_age``, source). The clock and random
  source are injected, so staleness and backoff are tested without sleeping.
* Threads: `refresh` and `load_last_known_good` are synchronous and meant for one refresher
  thread (calls for the same feed are serialized); readers (`current`, `lists`, `status`) take
  no lock and see immutable values. Each feed's state is one immutable value replaced under a
  lock by a single assignment.

Worked example::

    manager = FeedManager([FeedSpec("iwf", "http", {"url": "https://feeds.example/iwf"},
                                    format="sha256", public_key="/etc/urlwarden/iwf.pub")],
                          state_dir="/var/lib/urlwarden/feeds")
    manager.load_last_known_good()          # [ParsedList] restored from disk
    if manager.due("iwf"):
        manager.refresh("iwf")              # True when a new list was published
    snapshot = matcher.build(manager.lists())
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from urlwarden.errors import FeedError, UrlwardenError
from urlwarden.feeds import FeedAdapter, FeedPayload, FeedVersion, make_adapter
from urlwarden.feeds.payload import (
    DIFF_FORMATS,
    apply_diff,
    checksum,
    is_diff,
    load_public_key,
    parse_diff,
    parse_full,
    verify_signature,
)
from urlwarden.feeds.store import LastKnownGood
from urlwarden.core.lists import FORMATS, ParsedList

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_INTERVAL",
    "DEFAULT_JITTER",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_SHRINK",
    "SOURCES",
    "UPDATE_KINDS",
    "FeedLists",
    "FeedManager",
    "FeedSpec",
    "FeedStatus",
]

DEFAULT_INTERVAL = 3600.0
"""Seconds between refreshes of a feed."""
DEFAULT_JITTER = 0.1
"""Fraction of the interval by which a refresh may come early (spreads refreshes)."""
DEFAULT_MAX_AGE = 2 * 86400.0
"""A list not confirmed by its source for longer than this (seconds) is stale."""
DEFAULT_MAX_SHRINK = 0.5
"""An update removing more than this fraction of the entries is rejected unless forced."""
DEFAULT_BACKOFF_BASE = 60.0
"""Seconds before the first retry of a failed refresh (doubling with each failure)."""
DEFAULT_BACKOFF_MAX = 4 * 3600.0
"""Cap of the doubling, before the (1 + rng()) spread."""
MAX_INTERVAL = 30 * 86400.0

SOURCES = ("last-known-good", "network", "file")
"""Where the list in force came from (`FeedStatus.source`)."""
UPDATE_KINDS = ("last-known-good", "full", "diff", "not-modified", "unchanged")
"""What the last successful refresh did (`FeedStatus.last_update`)."""

_FEED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


@dataclass(frozen=True)
class FeedSpec:
    """One configured feed (validated on construction; `FeedError` naming the field).

    name        feed name: letters, digits, ``.``, ``_``, ``-`` (it names the state files)
    adapter     adapter name (``file``, ``http``, or an installed one)
    options     the adapter's constructor options
    format      list format of the feed: ``plain``, ``sha256`` or ``csv``
    interval    seconds between refreshes; jitter: fraction of it (0 <= jitter < 1)
    max_age     seconds after the last success when the list counts as stale
    max_shrink  largest accepted loss of entries in one update, as a fraction (0..1)
    force       accept any shrink (for a planned large removal; turn off again afterwards)
    public_key  Ed25519 public key (PEM file path or base64): updates must be signed with it
    required    the feed must have a list for the proxy to run (see `unavailable_required`)
    """

    name: str
    adapter: str
    options: Mapping[str, Any] = field(default_factory=dict)
    format: str = "plain"
    interval: float = DEFAULT_INTERVAL
    jitter: float = DEFAULT_JITTER
    max_age: float = DEFAULT_MAX_AGE
    max_shrink: float = DEFAULT_MAX_SHRINK
    force: bool = False
    public_key: str | None = None
    required: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _FEED_NAME.match(self.name):
            raise FeedError(f"invalid feed name {self.name!r} (1-64 of letters, digits, '.', '_', '-')")
        where = f"feed {self.name!r}"
        if not isinstance(self.adapter, str) or not self.adapter:
            raise FeedError(f"{where}: adapter must be an adapter name")
        if not isinstance(self.options, Mapping):
            raise FeedError(f"{where}: options must be a mapping")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        if self.format not in FORMATS:
            raise FeedError(f"{where}: unknown list format {self.format!r} (known: {', '.join(FORMATS)})")
        _number(where, "interval", self.interval, 0, MAX_INTERVAL, low_open=True)
        _number(where, "jitter", self.jitter, 0, 1, high_open=True)
        _number(where, "max_age", self.max_age, 0, math.inf, low_open=True)
        _number(where, "max_shrink", self.max_shrink, 0, 1)
        for flag in ("force", "required"):
            if not isinstance(getattr(self, flag), bool):
                raise FeedError(f"{where}: {flag} must be true or false")
        if self.public_key is not None and (not isinstance(self.public_key, str) or not self.public_key):
            raise FeedError(f"{where}: public_key must be a PEM file path or base64 text")


def _number(
    where: str,
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise FeedError(f"{where}: {name} must be a number in {bounds}, got {value!r}")


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """A feed's health, for ``urlwarden status`` and metrics (times are `clock()` seconds).

    entries               distinct entries in force (0: no list)
    version, checksum     of the list in force
    source                where the list in force was last obtained or confirmed (one of
                          SOURCES): "last-known-good" until the source answers after a
                          restart; None when there is no list
    last_update           what the last successful refresh did (one of UPDATE_KINDS)
    last_success          when the source last confirmed or replaced the list
    last_attempt          when a refresh was last tried
    last_error            the latest problem, without secrets; None after a clean refresh.
                          With consecutive_failures == 0 the update itself went through (the
                          last-known-good copy was not saved, or a diff was replaced by a full list)
    consecutive_failures  failed refreshes since the last success
    age                   now - last_success (None: never); stale: age > max_age or no list
    next_refresh_at       when `FeedManager.due` turns true
    lkg_saved             False while the list in force is not on disk yet
    """

    name: str
    required: bool
    entries: int
    version: FeedVersion | None
    checksum: str | None
    source: str | None
    last_update: str | None
    last_success: float | None
    last_attempt: float | None
    last_error: str | None
    consecutive_failures: int
    age: float | None
    stale: bool
    next_refresh_at: float
    lkg_saved: bool


@dataclass(frozen=True, slots=True)
class FeedLists:
    """The feeds' lists in force at one moment (`FeedManager.lists_in_force`).

    generation        the manager's `generation` they belong to
    lists             the lists, in configuration order (feeds without a list left out)
    versions          feed name -> (version, checksum) of each list
    missing_required  required feeds without any list
    """

    generation: int
    lists: tuple[ParsedList, ...] = ()
    versions: Mapping[str, tuple[FeedVersion | None, str | None]] = field(default_factory=dict)
    missing_required: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _State:
    """Everything the manager knows about one feed; replaced whole, never mutated."""

    parsed: ParsedList | None = None
    version: FeedVersion | None = None
    checksum: str | None = None
    source: str | None = None
    last_update: str | None = None
    last_success: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    next_refresh_at: float = 0.0
    lkg_saved: bool = True
    lkg_path: str | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: str  # one of UPDATE_KINDS
    version: FeedVersion
    parsed: ParsedList | None = None  # None: nothing new to publish
    checksum: str | None = None
    note: str | None = None
    saved: tuple[bool, str | None, tuple[str, ...]] | None = None  # (lkg_saved, lkg_path, notes) by `examine`


@dataclass(frozen=True, slots=True)
class _FullListNeeded:
    """What `examine` answers when a diff does not apply: fetch the full list and examine that."""

    reason: str


def examine(spec: FeedSpec, state_dir: str, state: _State, force: bool, payload: FeedPayload,
            now: float, diff_failure: str | None = None) -> _Outcome | _FullListNeeded:
    """Everything `FeedManager.refresh` does with a fetched payload before publishing: verify the
    signature, parse (or apply a diff to the list in force), check the checksum, validate, and
    save a new list as the last-known-good. Raises `FeedError`.

    Pure in its inputs (the feed's spec, the state directory, the feed's state in force, the
    payload and the time): this is the job a child process runs (see `urlwarden.runtime.offload`), so it
    needs no adapter and no registry; fetching stays with the caller. `diff_failure` is why a
    diff did not apply, given when `payload` is the full list fetched instead (which must then be one).
    """
    key = load_public_key(spec.public_key, spec.name) if spec.public_key is not None else None
    if key is not None:
        verify_signature(payload.body, payload.signature, key, spec.name)
    if is_diff(payload.body):
        if diff_failure is not None:
            raise FeedError(f"{diff_failure}; and the source did not send a full list when asked")
        try:
            parsed, version, value = _diff(spec, state, payload)
            kind = "diff"
        except FeedError as exc:
            return _FullListNeeded(str(exc))
    else:
        parsed, version, value = _full(spec, payload)
        kind = "full"
    note = f"{diff_failure}; fetched the full list instead" if diff_failure is not None else None
    _validate(spec, state, parsed, force)
    if state.parsed is not None and _same_content(state.parsed, parsed):
        return _Outcome("unchanged", version, note=note)
    notes: list[str] = []
    saved = _save(LastKnownGood(state_dir), spec, replace(state, parsed=parsed, checksum=value, version=version,
                                                          last_success=now), notes, now)
    return _Outcome(kind, version, parsed, value, note, saved=(saved.lkg_saved, saved.lkg_path, tuple(notes)))


def _examine_offloaded(offloader: Any, spec: FeedSpec, state_dir: str, state: _State, force: bool,
                       payload: FeedPayload, now: float, diff_failure: str | None) -> _Outcome | _FullListNeeded:
    try:
        return offloader.run("feed_update", spec, state_dir, state, force, payload, now, diff_failure)
    except FeedError:
        raise
    except UrlwardenError as exc:  # the child process died or could not be given its work
        raise FeedError(f"feed {spec.name!r}: {exc}") from None


class FeedManager:
    """Per-feed state, refresh, validation and health; see the module docstring."""

    def __init__(
        self,
        specs: Iterable[FeedSpec],
        state_dir: str | os.PathLike[str],
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        *,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
    ):
        self._specs: dict[str, FeedSpec] = {}
        for spec in specs:
            if not isinstance(spec, FeedSpec):
                raise FeedError(f"not a FeedSpec: {spec!r}")
            if spec.name in self._specs:
                raise FeedError(f"feed {spec.name!r} is configured twice")
            self._specs[spec.name] = spec
        _number("feed manager", "backoff_base", backoff_base, 0, math.inf, low_open=True)
        _number("feed manager", "backoff_max", backoff_max, 0, math.inf, low_open=True)
        self._clock = clock
        self._rng = rng
        self._backoff_base = float(backoff_base)
        self._backoff_max = float(backoff_max)
        self._store = LastKnownGood(state_dir)
        self._keys = {
            name: load_public_key(spec.public_key, name) if spec.public_key is not None else None
            for name, spec in self._specs.items()
        }
        self._config_ids = {name: _config_id(spec) for name, spec in self._specs.items()}
        self._adapters: dict[str, FeedAdapter] = {}
        try:
            for name, spec in self._specs.items():
                self._adapters[name] = make_adapter(spec.adapter, spec.options, name)
        except BaseException:
            self.close()
            raise
        now = clock()
        self._states: dict[str, _State] = {name: _State(next_refresh_at=now) for name in self._specs}
        self._lock = threading.Lock()  # held only while publishing
        self._refreshing = {name: threading.Lock() for name in self._specs}
        self._generation = 0

    # --- reading (no locks) ---------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Feed names in configuration order."""
        return list(self._specs)

    @property
    def generation(self) -> int:
        """Incremented whenever any feed's list changes: rebuild the matcher when it moved."""
        return self._generation

    def spec(self, name: str) -> FeedSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise FeedError(
                f"unknown feed {name!r} (configured: {', '.join(self._specs) or 'none'})"
            ) from None

    def current(self, name: str) -> ParsedList | None:
        """The list in force for feed `name` (None before the first success)."""
        self.spec(name)
        return self._states[name].parsed

    def lists(self) -> list[ParsedList]:
        """The lists in force, in configuration order (feeds without a list are left out)."""
        states = [self._states[name] for name in self._specs]
        return [state.parsed for state in states if state.parsed is not None]

    def lists_in_force(self) -> FeedLists:
        """The lists in force with the generation they belong to, read together (one lock): what a
        snapshot is built from, and what it can later be compared with (`generation`)."""
        with self._lock:
            states = [(name, self._states[name]) for name in self._specs]
            generation = self._generation
        return FeedLists(
            generation=generation,
            lists=tuple(state.parsed for _, state in states if state.parsed is not None),
            versions=MappingProxyType({name: (state.version, state.checksum)
                                       for name, state in states if state.parsed is not None}),
            missing_required=tuple(name for name, state in states
                                   if state.parsed is None and self._specs[name].required),
        )

    def status(self, name: str) -> FeedStatus:
        spec = self.spec(name)
        state = self._states[name]
        age = self._clock() - state.last_success if state.last_success is not None else None
        return FeedStatus(
            name=name,
            required=spec.required,
            entries=state.parsed.count if state.parsed is not None else 0,
            version=state.version,
            checksum=state.checksum,
            source=state.source,
            last_update=state.last_update,
            last_success=state.last_success,
            last_attempt=state.last_attempt,
            last_error=state.last_error,
            consecutive_failures=state.consecutive_failures,
            age=age,
            stale=state.parsed is None or age is None or age > spec.max_age,
            next_refresh_at=state.next_refresh_at,
            lkg_saved=state.lkg_saved,
        )

    def statuses(self) -> list[FeedStatus]:
        return [self.status(name) for name in self._specs]

    def next_refresh_at(self, name: str) -> float:
        self.spec(name)
        return self._states[name].next_refresh_at

    def due(self, name: str) -> bool:
        """Whether feed `name` should be refreshed now."""
        return self._clock() >= self.next_refresh_at(name)

    def unavailable_required(self) -> list[str]:
        """Required feeds that have no list at all (neither fetched nor restored)."""
        return [
            name for name, spec in self._specs.items() if spec.required and self._states[name].parsed is None
        ]

    # --- updating -------------------------------------------------------------------------

    def load_last_known_good(self) -> list[ParsedList]:
        """Restore every feed that has no list yet from the state directory (no network).

        Returns the lists restored. A copy that cannot be read is reported in the feed's
        ``last_error`` and skipped; it is never an exception here.
        """
        restored: list[ParsedList] = []
        self._store.remove_stale_temporaries()  # what a process killed during a save left behind
        for name, spec in self._specs.items():
            with self._refreshing[name]:
                state = self._states[name]
                if state.parsed is not None:
                    continue
                try:
                    stored = self._store.load(name)
                except FeedError as exc:
                    self._publish(name, replace(state, last_error=str(exc)))
                    continue
                health = self._store.load_health(name)
                if health is not None and isinstance(health.get("consecutive_failures"), int):
                    state = replace(state, last_attempt=health.get("last_attempt"),
                                    last_error=health.get("last_error"),
                                    consecutive_failures=health["consecutive_failures"])
                if stored is None:
                    if health is not None:
                        self._publish(name, state)
                    continue
                now = self._clock()
                same_config = stored.config_id == self._config_ids[name] and stored.feed_format == spec.format
                version = stored.version if same_config else None
                next_at = now
                if version is not None:
                    next_at = min(max(now, stored.last_success + self._interval(spec)), now + spec.interval)
                self._publish(
                    name,
                    replace(
                        state,
                        parsed=stored.parsed,
                        version=version,
                        checksum=stored.checksum,
                        source="last-known-good",
                        last_update="last-known-good",
                        last_success=stored.last_success,
                        next_refresh_at=next_at,
                        lkg_saved=True,
                        lkg_path=stored.list_path,
                    ),
                    changed=True,
                )
                restored.append(stored.parsed)
        return restored

    def refresh(self, name: str, *, force: bool | None = None, offloader: Any = None) -> bool:
        """Fetch, verify, validate and publish feed `name`; True when a new list was published.

        `force` overrides the spec's ``force`` for this update. On failure the current list
        stays, the status records the error and the backoff, and `FeedError` is raised.
        The fetch happens in the calling thread (I/O: it waits, it does not compute). With an
        `offloader` (`urlwarden.runtime.offload.Offloader`) the work between fetch and publishing (parse,
        validate, save the last-known-good: `examine`) runs in a child process that gets the
        spec, the payload and the list in force, so a running proxy never waits for it;
        adapters are only ever used here, in this process (a registered one works too).
        """
        spec = self.spec(name)
        with self._refreshing[name]:
            state = self._states[name]
            started = self._clock()
            force = spec.force if force is None else force
            try:
                outcome = self._update(spec, state, force, offloader)
            except FeedError as exc:
                self._fail(name, state, started, str(exc))
                raise
            return self._succeed(spec, state, started, outcome)

    def refresh_due(self) -> dict[str, bool | FeedError]:
        """Refresh every due feed: name -> changed, or the `FeedError` it failed with."""
        results: dict[str, bool | FeedError] = {}
        for name in self._specs:
            if self.due(name):
                try:
                    results[name] = self.refresh(name)
                except FeedError as exc:
                    results[name] = exc
        return results

    def close(self) -> None:
        """Close every adapter (idempotent)."""
        for adapter in self._adapters.values():
            adapter.close()

    def __enter__(self) -> FeedManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------

    def _publish(self, name: str, state: _State, *, changed: bool = False) -> None:
        with self._lock:
            self._states[name] = state
            if changed:
                self._generation += 1

    def _interval(self, spec: FeedSpec) -> float:
        return spec.interval * (1.0 - spec.jitter * self._rng())

    def _backoff(self, failures: int) -> float:
        exponent = min(failures - 1, 64)
        return min(self._backoff_max, self._backoff_base * 2.0**exponent) * (1.0 + self._rng())

    def _fail(self, name: str, state: _State, started: float, message: str) -> None:
        failures = state.consecutive_failures + 1
        self._record_health(name, started, message, failures)
        self._publish(
            name,
            replace(
                state,
                last_attempt=started,
                last_error=message,
                consecutive_failures=failures,
                next_refresh_at=self._clock() + self._backoff(failures),
            ),
        )

    def _succeed(self, spec: FeedSpec, state: _State, started: float, outcome: _Outcome) -> bool:
        name = spec.name
        now = self._clock()
        notes = [outcome.note] if outcome.note else []
        new = replace(
            state,
            version=outcome.version,
            last_update=outcome.kind,
            last_success=now,
            last_attempt=started,
            consecutive_failures=0,
            next_refresh_at=now + self._interval(spec),
        )
        if outcome.parsed is not None:
            new = replace(new, parsed=outcome.parsed, checksum=outcome.checksum)
        if new.parsed is not None:  # obtained or confirmed by the source just now
            new = replace(new, source=self._adapters[name].source)
        if outcome.saved is not None:  # saved by `examine`
            lkg_saved, lkg_path, save_notes = outcome.saved
            notes.extend(save_notes)
            new = replace(new, lkg_saved=lkg_saved, lkg_path=lkg_path if lkg_saved else new.lkg_path)
        elif outcome.parsed is not None or not state.lkg_saved:
            new = self._save(spec, new, notes)
        elif outcome.kind == "unchanged" and new.lkg_path is not None:
            try:  # keep the new validators for the next start; the list file is untouched
                self._store.save_metadata(
                    name,
                    new.lkg_path,
                    version=new.version,
                    checksum=new.checksum or "",
                    last_success=now,
                    feed_format=spec.format,
                    config_id=self._config_ids[name],
                )
            except FeedError as exc:
                notes.append(str(exc))
        if (state.last_error, state.consecutive_failures) != ("; ".join(notes) or None, 0):
            self._record_health(name, started, "; ".join(notes) or None, 0)  # only when it changed:
        self._publish(                                                         # a 304 rewrites nothing
            name, replace(new, last_error="; ".join(notes) or None), changed=outcome.parsed is not None
        )
        return outcome.parsed is not None

    def _record_health(self, name: str, attempt: float, error: str | None, failures: int) -> None:
        try:
            self._store.save_health(name, last_attempt=attempt, last_error=error, consecutive_failures=failures)
        except FeedError:
            pass  # the state directory problem is reported by the list save itself

    def _save(self, spec: FeedSpec, state: _State, notes: list[str]) -> _State:
        return _save(self._store, spec, state, notes, self._clock())

    def _since(self, spec: FeedSpec, state: _State) -> FeedVersion | None:
        if state.parsed is None or state.version is None:
            return None
        if spec.format not in DIFF_FORMATS:
            return replace(state.version, serial=None)  # never ask for a diff we cannot apply
        return state.version

    def _update(self, spec: FeedSpec, state: _State, force: bool, offloader: Any = None) -> _Outcome:
        """Fetch here, `examine` here or in a child; a diff that does not apply is replaced by the
        full list, fetched once in the same refresh."""
        adapter = self._adapters[spec.name]
        since = self._since(spec, state)
        payload = self._fetch(spec, adapter, since)
        if payload.not_modified:
            if since is None:
                raise FeedError(
                    f"feed {spec.name!r}: source answered 'not modified' to an unconditional request"
                )
            known = state.version.serial if state.version is not None else None
            return _Outcome("not-modified", replace(payload.version, serial=payload.version.serial or known))
        outcome = self._examine(spec, state, force, payload, offloader, None)
        if isinstance(outcome, _FullListNeeded):
            payload = self._fetch(spec, adapter, None)
            if payload.not_modified:
                raise FeedError(f"{outcome.reason}; and the source did not send a full list when asked")
            outcome = self._examine(spec, state, force, payload, offloader, outcome.reason)
        assert isinstance(outcome, _Outcome)
        return outcome

    def _examine(self, spec: FeedSpec, state: _State, force: bool, payload: FeedPayload, offloader: Any,
                 diff_failure: str | None) -> _Outcome | _FullListNeeded:
        state_dir = str(self._store.state_dir)
        if offloader is None:
            return examine(spec, state_dir, state, force, payload, self._clock(), diff_failure)
        return _examine_offloaded(offloader, spec, state_dir, state, force, payload, self._clock(), diff_failure)

    @staticmethod
    def _fetch(spec: FeedSpec, adapter: FeedAdapter, since: FeedVersion | None) -> FeedPayload:
        try:
            payload = adapter.fetch(since)
        except FeedError:
            raise
        except Exception as exc:
            # A third-party adapter broke its contract; contain it (the refresher thread must
            # survive) without echoing its message, which might hold anything. The chained
            # exception keeps the details for a debug traceback.
            raise FeedError(
                f"feed {spec.name!r}: adapter {spec.adapter!r} failed unexpectedly ({type(exc).__name__})"
            ) from exc
        if not isinstance(payload, FeedPayload):
            raise FeedError(
                f"feed {spec.name!r}: adapter returned {type(payload).__name__}, not a FeedPayload"
            )
        return payload


def _diff(spec: FeedSpec, state: _State, payload: FeedPayload) -> tuple[ParsedList, FeedVersion, str]:
    name = spec.name
    diff = parse_diff(payload.body, name)
    serial = state.version.serial if state.version is not None else None
    if state.parsed is None or serial != diff.base:
        raise FeedError(
            f"feed {name!r}: diff from serial {diff.base} does not apply to the list in force "
            f"(serial {serial})"
        )
    if payload.checksum is not None and payload.checksum != diff.checksum:
        raise FeedError(f"feed {name!r}: diff checksum and X-Urlwarden-SHA256 header disagree")
    parsed = apply_diff(state.parsed, diff, spec.format, name)
    return parsed, replace(payload.version, serial=diff.serial), diff.checksum


def _full(spec: FeedSpec, payload: FeedPayload) -> tuple[ParsedList, FeedVersion, str]:
    name = spec.name
    parsed, header = parse_full(payload.body, spec.format, name)
    expected = {value for value in (header.checksum, payload.checksum) if value is not None}
    actual = checksum(parsed)
    if len(expected) > 1:
        raise FeedError(
            f"feed {name!r}: list header and X-Urlwarden-SHA256 header give different checksums"
        )
    if expected and actual not in expected:
        raise FeedError(
            f"feed {name!r}: checksum mismatch: the list gives {actual[:16]}..., "
            f"the source announced {next(iter(expected))[:16]}..."
        )
    serials = {value for value in (header.serial, payload.version.serial) if value is not None}
    if len(serials) > 1:
        raise FeedError(
            f"feed {name!r}: list header and X-Urlwarden-Serial header give different serials"
        )
    version = replace(payload.version, serial=next(iter(serials), None))
    return parsed, version, actual


def _validate(spec: FeedSpec, state: _State, parsed: ParsedList, force: bool) -> None:
    name = spec.name
    count = parsed.count
    if count == 0:
        raise FeedError(f"feed {name!r}: update would leave the list empty; kept the list in force")
    if parsed.bad_lines > count:
        first = f"; first: {parsed.problems[0]}" if parsed.problems else ""
        raise FeedError(
            f"feed {name!r}: not a {spec.format} list: {parsed.bad_lines} bad lines but only "
            f"{count} entries{first}"
        )
    if state.parsed is not None and not force:
        old = state.parsed.count
        if count < old * (1.0 - spec.max_shrink):
            raise FeedError(
                f"feed {name!r}: update shrinks the list from {old} to {count} entries "
                f"({100.0 * (old - count) / old:.0f}% removed, more than max_shrink="
                f"{spec.max_shrink:g}); kept the list in force (force the update to accept it)"
            )


def _save(store: LastKnownGood, spec: FeedSpec, state: _State, notes: list[str], now: float) -> _State:
    """`state`'s list saved as the feed's last-known-good copy; a failure is a note, not an error."""
    assert state.parsed is not None and state.checksum is not None
    try:
        path = store.save(
            spec.name,
            state.parsed,
            version=state.version,
            checksum=state.checksum,
            last_success=state.last_success or now,
            feed_format=spec.format,
            config_id=_config_id(spec),
        )
    except FeedError as exc:
        notes.append(f"{exc} (the update is in force; saving is retried at the next refresh)")
        return replace(state, lkg_saved=False)
    return replace(state, lkg_saved=True, lkg_path=path)


def _same_content(a: ParsedList, b: ParsedList) -> bool:
    return (
        memoryview(a.digests) == memoryview(b.digests)  # (either may be mapped: see urlwarden.core.snapfile)
        and a.host_keys == b.host_keys
        and a.ids == b.ids
        and a.categories == b.categories
        and a.max_folder_depth == b.max_folder_depth
    )


def _config_id(spec: FeedSpec) -> str:
    """Fingerprint of the feed's source: adapter, format and adapter options (a stored version
    is only offered back to the source it came from; schedule and limits are not included)."""
    document = json.dumps(
        [spec.adapter, spec.format, dict(spec.options)],
        sort_keys=True,
        default=lambda value: f"<{type(value).__name__}>",
    )
    return hashlib.sha256(document.encode("utf-8")).hexdigest()
