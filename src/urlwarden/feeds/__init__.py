"""Feeds: block lists fetched from a licensed source and kept current safely.

A *feed* is a list (in one of the `urlwarden.core.lists` formats) that urlwarden downloads and
refreshes by itself instead of reading a file the operator maintains. The package is layered
like requests' transport adapters; each layer is one module:

    urlwarden.feeds           this module: the adapter interface (`FeedAdapter`, `FeedVersion`,
                              `FeedPayload`) and the adapter registry
    urlwarden.feeds.file      the ``file`` adapter: a local file (written by another tool)
    urlwarden.feeds.http      the ``http`` adapter: HTTPS with auth, conditional GET, retries
    urlwarden.feeds.tuf       the ``tuf`` adapter: a list from a TUF repository (a fleet)
    urlwarden.feeds.payload   the wire format: full lists, diffs, checksum, Ed25519 signature
    urlwarden.feeds.store     the last-known-good copy of every feed in the state directory
    urlwarden.feeds.manager   `FeedManager`: refresh, validation, staleness, backoff, status

An adapter only moves bytes: ``fetch(since) -> FeedPayload``. It never parses a list and never
decides whether an update is acceptable; the manager does (signature, diff, checksum, shrink,
emptiness) and keeps the current list whenever anything fails.

Errors. Every failure is a `urlwarden.errors.FeedError` whose message starts with the feed name
(``feed 'iwf': ...``) and never contains a credential; requests, cryptography and OSError
exceptions are translated at the adapter or module boundary.

Registry. Adapters are found by name: `register_adapter` (in-process), the built-ins ``file``,
``http`` and ``tuf``, then installed packages' entry points in group ``urlwarden.feeds`` (loaded only
when their name is asked for). A third-party adapter is a `FeedAdapter` subclass; see
``examples/urlwarden-feed-example`` and docs/feeds.md.

Worked example::

    adapter = make_adapter("http", {"url": "https://feeds.example/iwf.sha256",
                                    "auth": "bearer", "token_env": "IWF_TOKEN"}, "iwf")
    payload = adapter.fetch(None)          # FeedPayload(body=b"...", version=FeedVersion(...))
    later = adapter.fetch(payload.version) # not_modified=True when the server answers 304
"""

from __future__ import annotations

import abc
import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from urlwarden.errors import FeedError

__all__ = [
    "ENTRY_POINT_GROUP",
    "FeedAdapter",
    "FeedPayload",
    "FeedVersion",
    "adapter_names",
    "get_adapter",
    "make_adapter",
    "register_adapter",
]

ENTRY_POINT_GROUP = "urlwarden.feeds"
"""Entry point group through which installed packages provide adapters (name = adapter name,
value = ``module:Class``)."""

_BUILTINS = {
    "file": ("urlwarden.feeds.file", "FileAdapter"),
    "http": ("urlwarden.feeds.http", "HttpAdapter"),
    "tuf": ("urlwarden.feeds.tuf", "TufAdapter"),
}
_ADAPTER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}\Z")
_RESERVED_OPTIONS = frozenset({"feed_name"})


@dataclass(frozen=True, slots=True)
class FeedVersion:
    """What identifies one version of a feed's list, as the source reported it.

    etag           HTTP ETag (opaque, sent back in If-None-Match); the file adapter puts its
                   own (mtime, size, SHA-256) key here
    last_modified  HTTP Last-Modified (sent back in If-Modified-Since)
    serial         the publisher's list serial (header ``X-Urlwarden-Serial`` or the list or diff
                   header line); a diff names the serial it applies to and the one it produces
    """

    etag: str | None = None
    last_modified: str | None = None
    serial: str | None = None


@dataclass(frozen=True, slots=True)
class FeedPayload:
    """One answer of `FeedAdapter.fetch`.

    body          the bytes of a full list or a diff, exactly as delivered (after HTTP content
                  decoding); empty when not_modified
    version       the version `body` represents (for not_modified: the version still current)
    not_modified  the source says the list equals the ``since`` version (HTTP 304, or an
                  unchanged file); the manager changes nothing
    signature     detached Ed25519 signature over `body` (64 raw bytes, or base64 text of
                  them), when the source provides one
    content_type  as reported by the source (informational)
    checksum      the expected checksum of the resulting list (hex, see `payload.checksum`), when
                  the source sends one out of band (header ``X-Urlwarden-SHA256``)
    """

    body: bytes
    version: FeedVersion
    not_modified: bool = False
    signature: bytes | None = None
    content_type: str | None = None
    checksum: str | None = None

    def __repr__(self) -> str:  # never dump a list body into a log line
        return (
            f"FeedPayload(body=<{len(self.body)} bytes>, version={self.version!r}, "
            f"not_modified={self.not_modified}, signature={'yes' if self.signature else 'no'}, "
            f"content_type={self.content_type!r}, checksum={self.checksum!r})"
        )


class FeedAdapter(abc.ABC):
    """Transport for one feed: fetch the bytes of its list. The contract:

    * Configuration. An adapter is configured entirely through keyword arguments of its
      constructor, each with a named default except what locates the source (``url``, ``path``);
      `make_adapter` also passes ``feed_name`` (used in messages). Invalid values raise
      `FeedError` naming the option. Credentials are never literal option values: options name
      an environment variable or a file holding them. The constructor does no network I/O.
    * ``fetch(since)``. `since` is the version of the list currently in force, or None when
      there is none or a full list is wanted. The adapter returns ``not_modified=True`` only when
      `since` is not None and the source confirms the list is still that version; otherwise
      the body of a full list or a diff (see `urlwarden.feeds.payload`), never parsed or altered.
      It may send ``since.serial`` so a source can answer with a diff.
    * Failure. ``fetch`` raises only `FeedError`, with a message that starts with
      ``feed '<name>':`` and contains no credential (and no query string of a URL).
    * Bounds. A fetch finishes or fails within bounded time and size (timeouts, retry counts and
      size limits are options with finite defaults).
    * ``close()`` releases connections and files; it is idempotent. Adapters are used by one
      thread at a time.

    `source` is reported in `FeedStatus.source` for lists this adapter delivered. An adapter
    may declare ``default_refresh`` (seconds): the configuration uses it when a feed gives no
    ``refresh`` (the ``tuf`` adapter's 30 s keep a fleet within a minute of its publisher).
    """

    source: ClassVar[str] = "network"

    def __init__(self, *, feed_name: str = "feed"):
        self.feed_name = feed_name

    @abc.abstractmethod
    def fetch(self, since: FeedVersion | None) -> FeedPayload:
        """The list's current bytes, or not_modified; see the class docstring."""

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release resources (idempotent); adapters holding nothing need not override it."""

    def error(self, message: str) -> FeedError:
        """A `FeedError` for this feed: ``feed '<name>': <message>``."""
        return FeedError(f"feed {self.feed_name!r}: {message}")

    def __enter__(self) -> FeedAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feed={self.feed_name!r})"


_registered: dict[str, type] = {}


def register_adapter(name: str, cls: type, *, replace: bool = False) -> None:
    """Make `cls` available as adapter `name` in this process (before built-ins and plugins).

    `FeedError` when the name is malformed, already registered (unless `replace`), or `cls` is
    not an adapter class (a class with ``fetch`` and ``close``).
    """
    if not isinstance(name, str) or not _ADAPTER_NAME.match(name):
        raise FeedError(f"invalid adapter name {name!r} (lowercase letters, digits, '-', '_')")
    _check_adapter_class(name, cls)
    if name in _registered and not replace:
        raise FeedError(f"adapter {name!r} is already registered")
    _registered[name] = cls


def adapter_names() -> list[str]:
    """Every adapter name known now: registered, built-in and installed (sorted, not loaded)."""
    return sorted({*_registered, *_BUILTINS, *(ep.name for ep in _entry_points())})


def get_adapter(name: str) -> type:
    """The adapter class called `name`; `FeedError` naming it and the known ones otherwise."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTINS:
        module, attr = _BUILTINS[name]
        return getattr(importlib.import_module(module), attr)
    for ep in _entry_points():
        if ep.name == name:
            try:
                cls = ep.load()
            except Exception as exc:  # a plugin's import error is a configuration problem
                raise FeedError(
                    f"adapter {name!r} (entry point {ep.value!r}) could not be loaded: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            _check_adapter_class(name, cls)
            return cls
    raise FeedError(f"unknown feed adapter {name!r} (known: {', '.join(adapter_names())})")


def make_adapter(name: str, options: Mapping[str, Any], feed_name: str) -> FeedAdapter:
    """Construct adapter `name` for feed `feed_name` with `options` (keyword arguments).

    `FeedError` for an unknown adapter, an option the adapter does not have (naming the option
    and the known ones), a missing required option, or an invalid value (the adapter names it).
    Option values are never echoed for unknown options, in case a secret was pasted there.
    """
    cls = get_adapter(name)
    prefix = f"feed {feed_name!r}: adapter {name!r}"
    if not isinstance(options, Mapping):
        raise FeedError(f"{prefix}: options must be a mapping, not {type(options).__name__}")
    known, required, open_ended = _constructor_options(cls)
    for key in options:
        if not isinstance(key, str) or key in _RESERVED_OPTIONS or (key not in known and not open_ended):
            raise FeedError(f"{prefix}: unknown option {key!r} (known: {', '.join(sorted(known)) or 'none'})")
    missing = sorted(required - set(options))
    if missing:
        raise FeedError(f"{prefix}: missing required option {missing[0]!r}")
    try:
        return cls(feed_name=feed_name, **options)
    except FeedError:
        raise
    except Exception as exc:  # a third-party constructor's own error: still a config error
        raise FeedError(f"{prefix}: invalid options ({type(exc).__name__}: {exc})") from exc


def _constructor_options(cls: type) -> tuple[set[str], set[str], bool]:
    """(keyword options, required ones, accepts **kwargs) of an adapter constructor."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return set(), set(), True
    known: set[str] = set()
    required: set[str] = set()
    open_ended = False
    for p in parameters:
        if p.kind is p.VAR_KEYWORD:
            open_ended = True
        elif p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in _RESERVED_OPTIONS:
            known.add(p.name)
            if p.default is p.empty:
                required.add(p.name)
    return known, required, open_ended


def _check_adapter_class(name: str, cls: object) -> None:
    if not (
        isinstance(cls, type)
        and callable(getattr(cls, "fetch", None))
        and callable(getattr(cls, "close", None))
    ):
        raise FeedError(f"adapter {name!r}: {cls!r} is not an adapter class (needs fetch and close)")


def _entry_points() -> tuple[importlib.metadata.EntryPoint, ...]:
    # Read every time (not cached): cheap, and a package installed later is found.
    return tuple(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
