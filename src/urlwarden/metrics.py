"""Prometheus metrics: one `Metrics` object per process, owning its own registry.

Policy:

* Names follow Prometheus conventions: ``urlwarden_`` prefix, counters end in ``_total``, times
  are ``_seconds``, timestamps ``_timestamp_seconds`` (unix time), everything in base units.
* Labels carry only values from small, fixed sets (decision, TLS action, outcome, error kind)
  or configured list names. Never a URL, host, list entry, token or client address. A list
  name or error kind that does not look like one (`LIST_NAME`, `ERROR_KIND`) is counted under
  `OTHER_LABEL`, and at most `MAX_LISTS` list names and `MAX_ERROR_KINDS` kinds get their own
  series, so a bug in a caller can neither leak data into labels nor blow up cardinality.
* Per-event methods (`count_request`, `count_block`, `count_tls`, `observe_decision`, ...) are
  a dict lookup plus a pre-bound child's ``inc()``/``observe()``; the fixed label values are
  bound in the constructor and list names when they are first seen (`list_loaded`).
* ``urlwarden_list_age_seconds`` is computed at scrape time from the last successful update
  with the injected `clock`, so it keeps growing while updates fail, and tests need no sleep.
* Today's block counts per list (for the admin ``/status`` page) reset at local midnight, read
  off the same injected clock (`tz` None: the host's local time zone).

Worked example::

    m = Metrics(mitmproxy_version="11.0.2")
    m.list_loaded("iwf", entries=120_000)           # at start and after each good update
    m.count_block("iwf")                            # per blocked request
    m.count_request("allow")                        # per allowed request
    m.observe_decision(0.000004)                    # seconds the decision took
    body, content_type = m.render()                 # for GET /metrics

Series (see docs/operations.md for the full table)::

    urlwarden_requests_total{decision="allow|block|passthrough|bad_request|error"}
    urlwarden_blocks_total{list}
    urlwarden_allow_list_hits_total{list}
    urlwarden_list_entries{list}
    urlwarden_list_last_success_timestamp_seconds{list}
    urlwarden_list_update_failures_total{list}
    urlwarden_list_age_seconds{list}
    urlwarden_list_version{list}
    urlwarden_list_in_force_timestamp_seconds{list}
    urlwarden_tls_connections_total{action="passthrough|intercept|refuse"}
    urlwarden_uninspected_hosts_total{outcome="pass|refuse"}
    urlwarden_refused_connections_total{carrier="http|websocket|tls|tcp|upgrade|udp"}
    urlwarden_internal_errors_total{kind}
    urlwarden_decision_duration_seconds (histogram)
    urlwarden_build_info{version,python,mitmproxy} 1
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from urlwarden import __version__

__all__ = [
    "DECISIONS",
    "DECISION_BUCKETS",
    "ERROR_KIND",
    "LIST_NAME",
    "MAX_ERROR_KINDS",
    "MAX_LISTS",
    "Metrics",
    "OTHER_LABEL",
    "TLS_ACTIONS",
    "UNINSPECTED_OUTCOMES",
    "CARRIERS",
]

PREFIX = "urlwarden_"

DECISIONS = ("allow", "block", "passthrough", "bad_request", "error")
"""Values of ``urlwarden_requests_total{decision}``. ``bad_request``: answered 400 because a
name the request is addressed by is not a host name (bad input, not an internal error)."""

CARRIERS = ("http", "websocket", "tls", "tcp", "upgrade", "udp")
"""Values of ``urlwarden_refused_connections_total{carrier}`` (`protocols.Carrier` values)."""

TLS_ACTIONS = ("passthrough", "intercept", "refuse")
"""Values of ``urlwarden_tls_connections_total{action}`` (`engine.TlsAction` values)."""

UNINSPECTED_OUTCOMES = ("pass", "refuse")
"""Values of ``urlwarden_uninspected_hosts_total{outcome}`` (``https.uninspected``)."""

DECISION_BUCKETS = (
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
)
"""Histogram buckets of the decision latency, in seconds: 1 µs to 10 ms (then +Inf)."""

LIST_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
"""What a list name label may look like (the configuration allows the same characters)."""

ERROR_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
"""What an internal error kind label may look like: a short code name such as ``request``."""

OTHER_LABEL = "_other"
"""Label value used for a list name or error kind that is malformed or over the limit."""

MAX_LISTS = 256
"""Distinct list names that get their own series; more are counted under `OTHER_LABEL`."""

MAX_ERROR_KINDS = 64
"""Distinct error kinds that get their own series; more are counted under `OTHER_LABEL`."""

class _ListAgeCollector:
    """Yields ``urlwarden_list_age_seconds`` at scrape time: clock() - last success."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics

    def describe(self):
        yield GaugeMetricFamily(f"{PREFIX}list_age_seconds", _AGE_HELP, labels=["list"])

    def collect(self):
        family = GaugeMetricFamily(f"{PREFIX}list_age_seconds", _AGE_HELP, labels=["list"])
        for name, age in sorted(self._metrics.list_ages().items()):
            family.add_metric([name], age)
        yield family


_AGE_HELP = "Seconds since the list was last loaded or updated successfully."


class Metrics:
    """urlwarden's metrics, in a private `CollectorRegistry` (never the global one).

    `clock` returns unix seconds (default `time.time`); it drives the list age and the
    midnight reset of today's block counts. `tz` is the time zone of "today" (None: local).
    Every method is thread-safe (prometheus_client's children lock; the rest takes `_lock`).
    """

    def __init__(
        self,
        *,
        version: str = __version__,
        mitmproxy_version: str | None = None,
        clock: Callable[[], float] = time.time,
        tz: _dt.tzinfo | None = None,
    ) -> None:
        self._clock = clock
        self._tz = tz
        self._lock = threading.Lock()
        registry = self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, help: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(PREFIX + name, help, list(labels), registry=registry)

        def gauge(name: str, help: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(PREFIX + name, help, list(labels), registry=registry)

        self._requests_family = counter(
            "requests_total", "Requests decided, by decision.", ["decision"])
        self._blocks_family = counter(
            "blocks_total", "Requests blocked, by the list that blocked them.", ["list"])
        self._allow_hits_family = counter(
            "allow_list_hits_total", "Requests let through by an allow list entry, by list.", ["list"])
        self._entries_family = gauge(
            "list_entries", "Entries loaded per list.", ["list"])
        self._last_success_family = gauge(
            "list_last_success_timestamp_seconds",
            "Unix time of the last successful load or update of the list.", ["list"])
        self._update_failures_family = counter(
            "list_update_failures_total", "Failed list updates (the loaded list stays in force).", ["list"])
        self._list_version_family = gauge(
            "list_version",
            "Version of the list in force (a TUF fleet list's version; integer serials only).", ["list"])
        self._list_in_force_family = gauge(
            "list_in_force_timestamp_seconds",
            "Unix time the list in force (its current content) came into force in this process.", ["list"])
        self._tls_family = counter(
            "tls_connections_total", "TLS connections, by what was done with them.", ["action"])
        self._uninspected_family = counter(
            "uninspected_hosts_total",
            "Connections to hosts with path-level entries that could not be inspected, by outcome.",
            ["outcome"])
        self._refused_family = counter(
            "refused_connections_total",
            "Server connections (or protocol upgrades) refused because their carrier may not reach "
            "the host, by carrier.", ["carrier"])
        self._errors_family = counter(
            "internal_errors_total", "Internal errors, by kind (where they happened).", ["kind"])
        self._decision_seconds = Histogram(
            PREFIX + "decision_duration_seconds", "Time taken by one blocking decision.",
            buckets=DECISION_BUCKETS, registry=registry)
        build = gauge("build_info", "Build information; the value is always 1.",
                      ["version", "python", "mitmproxy"])
        build.labels(version=version, python=platform.python_version(),
                     mitmproxy=mitmproxy_version or "unknown").set(1)
        registry.register(_ListAgeCollector(self))

        # Pre-bound children: the per-event methods do a dict lookup and an inc().
        self._requests = {d: self._requests_family.labels(decision=d) for d in DECISIONS}
        self._tls = {a: self._tls_family.labels(action=a) for a in TLS_ACTIONS}
        self._uninspected = {o: self._uninspected_family.labels(outcome=o) for o in UNINSPECTED_OUTCOMES}
        self._refused = {c: self._refused_family.labels(carrier=c) for c in CARRIERS}
        self._errors: dict[str, object] = {}
        self._blocks: dict[str, object] = {}
        self._allow_hits: dict[str, object] = {}
        self._list_labels: set[str] = set()
        self._last_success: dict[str, float] = {}
        self._in_force: dict[str, str | None] = {}  # label -> checksum of the list in force
        self._today: dict[str, int] = {}
        self._blocks_total = 0
        self._day, self._day_start, self._day_end = self._day_bounds(clock())

    # --- per event (cheap) ---------------------------------------------------------------------

    def count_request(self, decision: str) -> None:
        """One request decided: `decision` is one of `DECISIONS` (ValueError otherwise).

        `count_block` and `count_allow_list_hit` count their request themselves."""
        try:
            self._requests[decision].inc()
        except KeyError:
            raise ValueError(f"unknown decision {decision!r}; expected one of {DECISIONS}") from None

    def count_block(self, list_name: str) -> None:
        """One request blocked by `list_name`: counts the request (decision "block"), the
        list's block counter and today's count for the list."""
        self._requests["block"].inc()
        child = self._blocks.get(list_name)
        if child is None:
            child = self._child(self._blocks, self._blocks_family, list_name)
        child.inc()
        label = list_name if list_name in self._list_labels else OTHER_LABEL
        now = self._clock()
        with self._lock:
            if not self._day_start <= now < self._day_end:
                self._roll_day(now)
            self._today[label] = self._today.get(label, 0) + 1
            self._blocks_total += 1

    def count_allow_list_hit(self, list_name: str) -> None:
        """One request let through by an allow list entry: counts the request (decision
        "allow") and the allow list's hit counter."""
        self._requests["allow"].inc()
        child = self._allow_hits.get(list_name)
        if child is None:
            child = self._child(self._allow_hits, self._allow_hits_family, list_name)
        child.inc()

    def count_tls(self, action: str) -> None:
        """One TLS connection handled: `action` is one of `TLS_ACTIONS`."""
        try:
            self._tls[action].inc()
        except KeyError:
            raise ValueError(f"unknown TLS action {action!r}; expected one of {TLS_ACTIONS}") from None

    def count_uninspected(self, outcome: str) -> None:
        """One connection to a host with path-level entries that was not inspected
        (``https.intercept: none``): `outcome` is "pass" or "refuse"."""
        try:
            self._uninspected[outcome].inc()
        except KeyError:
            raise ValueError(
                f"unknown outcome {outcome!r}; expected one of {UNINSPECTED_OUTCOMES}") from None

    def count_refused_connection(self, carrier: str) -> None:
        """One server connection or upgrade refused by `protocols`: `carrier` is one of `CARRIERS`."""
        try:
            self._refused[carrier].inc()
        except KeyError:
            raise ValueError(f"unknown carrier {carrier!r}; expected one of {CARRIERS}") from None

    def count_error(self, kind: str) -> None:
        """One internal error. `kind` is a short code name of where it happened (``request``,
        ``tls_clienthello``, ...), never an exception message."""
        child = self._errors.get(kind)
        if child is None:
            child = self._error_child(kind)
        child.inc()

    def observe_decision(self, seconds: float) -> None:
        """How long one blocking decision took (``time.perf_counter()`` difference)."""
        self._decision_seconds.observe(seconds)

    # --- list health (per load or update) ----------------------------------------------------

    def list_loaded(self, list_name: str, entries: int, at: float | None = None) -> None:
        """A list was loaded or updated successfully at unix time `at` (default: now)."""
        label = self._list_label(list_name)
        self._entries_family.labels(list=label).set(entries)
        when = self._clock() if at is None else at
        self._last_success_family.labels(list=label).set(when)
        with self._lock:
            self._last_success[label] = when

    def list_in_force(self, list_name: str, checksum: str | None, serial: str | None,
                      at: float | None = None) -> None:
        """The list with `checksum` is in force: its version (`serial`, when it is an integer
        such as a TUF fleet list's version) and, when its content changed since the last call,
        the time `at` (default now) it came into force. Called at load and after every update,
        so a fleet's convergence shows as every node reaching the same version."""
        label = self._list_label(list_name)
        if serial is not None and serial.isdigit() and len(serial) <= 15:
            self._list_version_family.labels(list=label).set(int(serial))
        with self._lock:
            if self._in_force.get(label, "") == checksum:
                return
            self._in_force[label] = checksum
        self._list_in_force_family.labels(list=label).set(self._clock() if at is None else at)

    def list_update_failed(self, list_name: str) -> None:
        """An update of a list failed (the loaded list stays; its age keeps growing)."""
        self._update_failures_family.labels(list=self._list_label(list_name)).inc()

    def lists_from_snapshot(self, lists: Iterable, at: float | None = None) -> None:
        """`list_loaded` for every `matcher.ListStats` (``snapshot.stats.lists``), then
        `forget_lists` for every other list: the usual call after (re)loading the lists."""
        lists = list(lists)
        for stats in lists:
            self.list_loaded(stats.name, stats.entries, at)
        self.forget_lists(stats.name for stats in lists)

    def forget_lists(self, keep: Iterable[str]) -> None:
        """Drop the gauges (entries, last success, age) of lists not in `keep`, e.g. after a
        reload removed a list. Counters stay, as Prometheus expects of counters."""
        keep_labels = {name if LIST_NAME.match(name) else OTHER_LABEL for name in keep}
        with self._lock:
            gone = [name for name in {*self._last_success, *self._in_force} if name not in keep_labels]
            for name in gone:
                self._last_success.pop(name, None)
                self._in_force.pop(name, None)
        for name in gone:
            for family in (self._entries_family, self._last_success_family, self._list_version_family,
                           self._list_in_force_family):
                try:
                    family.remove(name)
                except KeyError:
                    pass

    def list_ages(self) -> dict[str, float]:
        """Seconds since each list's last success, by list name (never negative)."""
        now = self._clock()
        with self._lock:
            return {name: max(0.0, now - when) for name, when in self._last_success.items()}

    def last_success(self) -> dict[str, float]:
        """Unix time of each list's last success, by list name."""
        with self._lock:
            return dict(self._last_success)

    def stale_lists(self, max_age_seconds: float) -> list[str]:
        """Names of lists whose last success is older than `max_age_seconds` (for /readyz)."""
        return sorted(name for name, age in self.list_ages().items() if age > max_age_seconds)

    # --- today -------------------------------------------------------------------------------

    def blocks_today(self) -> dict[str, int]:
        """Blocks per list since local midnight (lists without a block today are absent)."""
        now = self._clock()
        with self._lock:
            if not self._day_start <= now < self._day_end:
                self._roll_day(now)
            return dict(self._today)

    def blocks_since_start(self) -> int:
        """Blocks (by every list) since this process started."""
        with self._lock:
            return self._blocks_total

    def today(self) -> _dt.date:
        """The date `blocks_today` counts for."""
        now = self._clock()
        with self._lock:
            if not self._day_start <= now < self._day_end:
                self._roll_day(now)
            return self._day

    # --- exposition --------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric, and its Content-Type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # --- internals ---------------------------------------------------------------------------

    def _list_label(self, list_name: str) -> str:
        """The label for a list name, registering it (bounded by `MAX_LISTS`)."""
        if list_name in self._list_labels:
            return list_name
        with self._lock:
            if LIST_NAME.match(list_name) and len(self._list_labels) < MAX_LISTS:
                self._list_labels.add(list_name)
                return list_name
        return OTHER_LABEL

    def _error_child(self, kind: str):
        with self._lock:
            child = self._errors.get(kind)
            if child is None:
                if ERROR_KIND.match(kind) is None or len(self._errors) >= MAX_ERROR_KINDS:
                    return self._errors_family.labels(kind=OTHER_LABEL)  # not memoized: bounded
                child = self._errors[kind] = self._errors_family.labels(kind=kind)
            return child

    def _child(self, children: dict, family, list_name: str):
        label = self._list_label(list_name)
        child = family.labels(list=label)
        if label == list_name:
            children[list_name] = child  # malformed names are not memoized: they stay bounded
        return child

    def _day_bounds(self, now: float) -> tuple[_dt.date, float, float]:
        """The date at unix time `now` in `tz`, and the unix times of its first and last moment
        (local midnights: a day with a DST change has 23 or 25 hours)."""
        day = _dt.datetime.fromtimestamp(now, self._tz).date()

        def midnight(d: _dt.date) -> float:
            return _dt.datetime.combine(d, _dt.time(0), tzinfo=self._tz).timestamp()

        return day, midnight(day), midnight(day + _dt.timedelta(days=1))

    def _roll_day(self, now: float) -> None:
        """(under _lock) A new day began (or the clock went back over a day): start counting
        afresh."""
        day, start, end = self._day_bounds(now)
        if day != self._day:
            self._today = {}
        self._day, self._day_start, self._day_end = day, start, end
