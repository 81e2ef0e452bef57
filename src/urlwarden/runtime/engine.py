"""Blocking decisions, free of mitmproxy: which request is blocked, what to do with a TLS connection.

The addon gathers every name a request or connection is addressed by (absolute URL host, each
Host header, HTTP/2 :authority, CONNECT target, TLS SNI) and asks this module. A request is
blocked when any of its names is blocked: disagreeing names never open a bypass, and an allow
list entry only rescues the name it matches.
"""

from __future__ import annotations

import enum
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from urlwarden.config import Config, HttpsPolicy
from urlwarden.feeds.manager import FeedManager
from urlwarden.core.lists import ParsedList, load_list
from urlwarden.core.matcher import HostStatus, Snapshot, Verdict, build

__all__ = ["State", "TlsAction", "UnparseableName", "connection_status", "host_severity", "load_state", "rebuild",
           "request_verdict", "tls_action",
           "tls_decision", "url_for", "open_feeds"]


@dataclass(frozen=True)
class State:
    """Everything a decision needs, swapped into the addon with one assignment.

    The parsed static lists are kept so that a feed update rebuilds the snapshot without
    reading them again.
    """

    config: Config
    snapshot: Snapshot
    static_block: tuple[ParsedList, ...] = ()
    allow: tuple[ParsedList, ...] = ()


class UnparseableName(ValueError):
    """A request or connection is addressed by a name that is not a host name (``Host: [junk``,
    ``Host: :80``, a bare ``..``): bad input from the client, not an internal error. The request
    is answered 400 and nothing is sent, whatever ``on_error`` says.

    The message says which kind of name it was, never the name itself (it may be a URL).
    """


class TlsAction(enum.Enum):
    PASSTHROUGH = "passthrough"  # relay the encrypted bytes untouched: no interception, no privacy cost
    INTERCEPT = "intercept"  # terminate TLS with urlwarden's CA so paths can be matched
    REFUSE = "refuse"  # close the connection: never contact the server


def load_state(config: Config, feed_lists: Iterable[ParsedList] = ()) -> State:
    """Load every static list of `config`, add the feeds' lists, and compile them.

    Raises ListError (changing nothing) when a list cannot be loaded.
    """
    static = tuple(load_list(lc.spec) for lc in config.static_lists)
    allow = tuple(load_list(lc.spec) for lc in config.allow)
    return rebuild(config, static, allow, feed_lists)


FeedsKey = tuple  # (feed specs, state dir): a FeedManager is kept across reloads while this is unchanged


def open_feeds(config: Config, current: FeedManager | None, current_key: FeedsKey | None,
               clock: Callable[[], float] = time.time, rng: Callable[[], float] = random.random,
               ) -> tuple[FeedManager | None, FeedsKey | None]:
    """The FeedManager for `config`: the current one when its feeds are unchanged, else a new one
    (with this clock and random source) restored from the last-known-good lists on disk (no
    network call). Raises FeedError."""
    if not config.feeds:
        return None, None
    key = (config.feeds, config.state_dir)
    if current is not None and key == current_key:
        return current, key
    manager = FeedManager(config.feeds, config.state_dir, clock=clock, rng=rng)
    manager.load_last_known_good()
    return manager, key


def rebuild(config: Config, static_block: tuple[ParsedList, ...], allow: tuple[ParsedList, ...],
            feed_lists: Iterable[ParsedList]) -> State:
    """A state compiled from parsed static lists and feed lists: after a feed update, it is called
    with the parts of the state in force (what `urlwarden.runtime.offload` sends a child process)."""
    return State(config=config, snapshot=build(static_block + tuple(feed_lists), allow),
                 static_block=static_block, allow=allow)


def url_for(scheme: str, name: str, path: str) -> str:
    """A URL string for one of the names a request is addressed by."""
    if name.count(":") > 1 and not name.startswith("["):
        name = f"[{name}]"  # mitmproxy gives IPv6 hosts without brackets
    if not path.startswith("/"):
        path = "/"  # authority-form (CONNECT) and asterisk-form (OPTIONS *) targets
    return f"{scheme}://{name}{path}"


_BLANK_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def request_verdict(snapshot: Snapshot, scheme: str, names: Iterable[str | None], path: str) -> Verdict | None:
    """The block verdict of the first blocked name; else an allow verdict if one matched; else None."""
    allowed: Verdict | None = None
    names = dict.fromkeys(n for n in names if n)
    if _BLANK_OR_CONTROL.search("".join(names)):
        # canon would strip or escape these (a URL may carry them); in a name they mean an
        # obs-fold continuation or worse, and the origin may read the name another way
        raise UnparseableName("a name the request is addressed by holds blanks or control characters")
    for name in names:
        try:
            verdict = snapshot.match(url_for(scheme, name, path))
        except ValueError:  # canon's word for "no valid host": the client's fault, not ours
            raise UnparseableName("a name the request is addressed by is not a host name") from None
        if verdict is None:
            continue
        if verdict.blocked:
            return verdict
        allowed = allowed or verdict
    return allowed


_SEVERITY = {HostStatus.CLEAN: 0, HostStatus.PATHS: 1, HostStatus.UNKNOWN: 1, HostStatus.WHOLE: 2}


def host_severity(snapshot: Snapshot, names: Iterable[str | None]) -> HostStatus:
    """The most severe host status among `names` (WHOLE > PATHS/UNKNOWN > CLEAN).

    Raises `UnparseableName` when one of them is not a host name.
    """
    worst = HostStatus.CLEAN
    for name in dict.fromkeys(n for n in names if n):
        try:
            status = snapshot.host_status(name)
        except ValueError:
            raise UnparseableName("a name the connection is addressed by is not a host name") from None
        if _SEVERITY[status] > _SEVERITY[worst]:
            worst = status
    return worst


def connection_status(snapshot: Snapshot, names: Iterable[str | None]) -> HostStatus:
    """The host status that decides what a server connection may carry (`urlwarden.runtime.protocols`).

    Fails closed: a name that cannot be parsed makes it UNKNOWN (checked HTTP only), unless
    another name is listed whole.
    """
    names = [n for n in names if n]
    try:
        return host_severity(snapshot, names)
    except UnparseableName:
        parsed = []
        for name in names:
            try:
                parsed.append(host_severity(snapshot, [name]))
            except UnparseableName:
                parsed.append(HostStatus.UNKNOWN)
        return max(parsed, key=_SEVERITY.__getitem__)


def tls_action(snapshot: Snapshot, policy: HttpsPolicy, names: Iterable[str | None]) -> TlsAction:
    """What to do with a TLS connection addressed by `names` (SNI, CONNECT target or original destination)."""
    return tls_decision(snapshot, policy, names)[0]


def tls_decision(snapshot: Snapshot, policy: HttpsPolicy, names: Iterable[str | None]) -> tuple[TlsAction, bool]:
    """The TLS action, and whether it was the `uninspected` setting that chose it (for counting)."""
    status = host_severity(snapshot, names)
    if policy.intercept == "all":
        return TlsAction.INTERCEPT, False
    if status is HostStatus.CLEAN:
        return TlsAction.PASSTHROUGH, False
    if policy.intercept == "listed-hosts":
        return TlsAction.INTERCEPT, False
    if status is HostStatus.WHOLE:
        return TlsAction.REFUSE, False
    return (TlsAction.REFUSE if policy.uninspected == "refuse" else TlsAction.PASSTHROUGH), True

