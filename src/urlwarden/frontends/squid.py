"""Squid front end: an external ACL helper and a block page server over urlwarden's lists.

Squid (Debian 12 ships 5.7) asks `SquidHelper` about every request through ``external_acl_type``
and redirects the requests it denies to `BlockpageServer` with ``deny_info``::

    external_acl_type urlwarden cache=0 concurrency=100 children-max=4 queue-size=2000 %>ru \\
        /usr/local/bin/urlwarden squid-helper --config /etc/urlwarden/urlwarden.yaml
    acl urlwarden_blocked external urlwarden
    http_access deny urlwarden_blocked
    deny_info http://127.0.0.1:8081/blocked?ref=%o urlwarden_blocked

(``contrib/squid/urlwarden.conf`` is the annotated snippet; ``docs/squid.md`` the deployment guide.)

Helper protocol (Squid's external ACL helper protocol, in its concurrent form):

* Squid writes one line per lookup: ``<channel-id> <URL> [<name>...]``. The channel id is a
  decimal number below ``concurrency`` and is echoed unchanged; a line whose first token is not
  a number is read as the non-concurrent form (``concurrency=0``) and answered without one.
  Squid URL-escapes each value (spaces, ``[``, ``]``, quotes and non-ASCII bytes become ``%XX``;
  an existing ``%XX`` passes as it is) and appends ``%DATA``, which is ``-`` for an ACL without
  arguments.
* ``<URL>`` is ``%>ru``: ``http://host:port/path?query`` for plain HTTP (and for HTTPS requests
  that Squid decrypts with ssl_bump), ``host:port`` for a CONNECT (no ``://``). Further tokens
  are more names the request is addressed by (e.g. ``%>la``, the original destination address of
  intercepted traffic); ``-`` (Squid's "no value") is skipped. The URL goes to `canon` as it
  is (canonicalization unescapes fully, so Squid's escaping changes nothing); host tokens are
  unescaped once first (``%5B::1%5D:443`` is ``[::1]:443``).
* One answer line per request, ``[<channel-id> ]OK|ERR|BH[ key=value...]``, in arrival order:

  =============================================  =============================================
  a URL blocked by a list entry                  ``OK message=<list>:<entry-id> tag=<list>``
  a CONNECT to a host listed whole               the same, with the whole-host entry
  a CONNECT to a host with path-level entries    with ``https.intercept: none``: ``uninspected``
                                                 decides, ``refuse`` answers
                                                 ``OK message=uninspected``, ``pass`` ``ERR``;
                                                 with ``listed-hosts`` or ``all`` (Squid bumps
                                                 TLS and the helper judges each decrypted
                                                 request): ``ERR``
  not listed, or rescued by an allow list        ``ERR``
  an internal error                              ``on_error``: block ``OK message=error``,
                                                 allow ``ERR``
  a required feed without any list yet           ``OK message=error`` (fail closed, whatever
                                                 ``on_error`` says, as the proxy)
  an unparsable line: no URL, no valid host,     ``BH message=error``
  longer than MAX_LINE_BYTES, too many tokens
  =============================================  =============================================

  OK means "the ACL matches", so ``http_access deny urlwarden_blocked`` denies the request.
  The message never carries the URL, only the reference (`blockpage.reference`) with every
  character outside `ENTRY_ID_CHARS` replaced by ``_`` (Squid HTML-escapes ``&``, quotes and
  angle brackets on their way into ``%o``). Squid 5.7 denies a request whose lookup answered BH
  (after retrying it twice) or could not be queued (``queue-size``): both fail closed, and the
  block page server answers the empty or ``error`` reference with "could not check" (503).

What is in force (configuration, feeds, snapshot) belongs to a `urlwarden.runtime.inforce.Runtime`,
the same one the mitmproxy addon uses: it loads, rebuilds after a feed update, serializes the
two, never publishes a snapshot built from older feed lists, and reports staleness. This
module only decides when: every `CHECK_INTERVAL` seconds a background thread compares the
configuration file and every list file (size, mtime, inode) with what is loaded; a change that
has held still for one check (so a file being written is not read half-way) is loaded aside
(in a child process) and swapped in with one assignment, and SIGHUP does the same at once. A
bad new configuration or list is rejected whole and logged; the running one stays. Lines keep
being answered meanwhile, each from the value in force when it was read.

Feeds: restored from their last-known-good copies at start (no network), then refreshed on the
feeds' own schedule by the same background thread. Squid runs several helper processes, so one
refresh at a time takes an advisory lock (``squid-helper.lock`` in the state directory), and
every helper reloads a feed whose last-known-good copy another process (another helper,
``urlwarden update``) has replaced. A failed refresh changes nothing but the feed's status.

Block page server: ``GET /blocked?ref=<list>:<entry-id>`` renders `blockpage.render` for a
configured list (its status, mode and reason; the type of body from the request's Accept,
Sec-Fetch-* and X-Requested-With, as in the proxy); ``ref`` empty or ``error`` answers 503 "could
not check", ``uninspected`` 403, anything else 400; other paths 404; methods other than GET and
HEAD 405. Mode ``close`` closes the connection without an answer. Request heads are bounded
(`MAX_REQUEST_BYTES`, `REQUEST_TIMEOUT`, `MAX_CONNECTIONS`); nothing is logged per request.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from urlwarden import blockpage, logs
from urlwarden.core import canon, selfcheck as canon_selfcheck
from urlwarden.config import Config, load_config
from urlwarden.runtime.engine import State, host_severity, request_verdict
from urlwarden.errors import ConfigError, FeedError, UrlwardenError
from urlwarden.feeds.manager import FeedManager
from urlwarden.runtime.inforce import Runtime
from urlwarden.core.matcher import HostStatus, Verdict
from urlwarden.core.netutil import is_loopback
from urlwarden.runtime.offload import Offloader, shorten_gil_switch_interval
from urlwarden.frontends.httpserve import MAX_REQUEST_BYTES, REQUEST_TIMEOUT, BoundedHTTPServer, OneRequestHandler

__all__ = [
    "BH",
    "BLOCKED_PATH",
    "CHECK_INTERVAL",
    "CONFIG_CHECK_INTERVAL",
    "ENTRY_ID_CHARS",
    "ERR",
    "ERROR_REFERENCE",
    "LOCK_FILE",
    "MAX_CHANNEL_DIGITS",
    "MAX_CONNECTIONS",
    "MAX_ENTRY_ID_CHARS",
    "MAX_LINE_BYTES",
    "MAX_QUERY_FIELDS",
    "MAX_REQUEST_BYTES",
    "MAX_TOKENS",
    "NOT_READY",
    "READ_SIZE",
    "REQUEST_TIMEOUT",
    "STOP_TIMEOUT",
    "UNINSPECTED_REFERENCE",
    "Answer",
    "BadLine",
    "BlockpageServer",
    "HelperRequest",
    "SquidHelper",
    "blockpage_answer",
    "decide",
    "format_answer",
    "parse_line",
    "safe_reference",
    "serve",
    "serve_blockpage",
]

log = logging.getLogger("urlwarden")

MAX_LINE_BYTES = 64 * 1024
"""A request line longer than this is answered BH (Squid's URLs are at most 8 KiB, escaped
about three times that)."""

READ_SIZE = 64 * 1024
"""Bytes read from Squid at a time."""

MAX_TOKENS = 16
"""Values per request line after the channel id; more is not a format urlwarden documents."""

MAX_CHANNEL_DIGITS = 9
"""A first token of digits up to this long is a channel id (Squid's are below concurrency)."""

CHECK_INTERVAL = 2.0
"""Seconds between the background checks for changed files, feeds due and other processes'
last-known-good copies."""

STOP_TIMEOUT = 2.0
"""Seconds the helper waits for its background thread at exit (a feed download in progress is
abandoned: every write it makes is atomic)."""

ENTRY_ID_CHARS = "A-Za-z0-9._~:+=/-"
"""Characters an entry id keeps in a helper message and may have in a block page reference."""

MAX_ENTRY_ID_CHARS = 64
"""Longer entry ids are cut in helper messages and refused by the block page server."""

ERROR_REFERENCE = "error"
"""The reference of a request that could not be checked (internal error, BH)."""

UNINSPECTED_REFERENCE = "uninspected"
"""The reference of a CONNECT refused because its host has path-level entries Squid cannot see."""

LOCK_FILE = "squid-helper.lock"

_UNSAFE_ENTRY_CHARS = re.compile(f"[^{ENTRY_ID_CHARS}]")
_ENTRY_ID = re.compile(f"[{ENTRY_ID_CHARS}]{{1,{MAX_ENTRY_ID_CHARS}}}\\Z")
_LIST_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


# --- the helper protocol: pure functions ------------------------------------------------------


class BadLine(ValueError):
    """A request line that cannot be answered OK or ERR; `channel` is echoed in the BH answer."""

    def __init__(self, channel: bytes | None, reason: str):
        super().__init__(reason)
        self.channel = channel
        self.reason = reason


@dataclass(frozen=True, slots=True)
class HelperRequest:
    """One parsed lookup. `url` is a URL, or ``host:port`` when `connect` (a CONNECT target)."""

    channel: bytes | None  # None: the non-concurrent protocol, answered without a channel id
    url: str
    connect: bool
    names: tuple[str, ...] = ()  # further names, unescaped once


@dataclass(frozen=True, slots=True)
class Answer:
    """What the helper says: ``OK`` (the ACL matches: deny), ``ERR`` or ``BH``."""

    result: str
    message: str | None = None
    tag: str | None = None
    verdict: Verdict | None = None  # for logging and tests; never written to Squid


ERR = Answer("ERR")
BH = Answer("BH", message=ERROR_REFERENCE)
NOT_READY = Answer("OK", message=ERROR_REFERENCE)  # a required feed without any list yet


def parse_line(line: bytes) -> HelperRequest:
    """Parse one request line (without its newline); `BadLine` when it cannot be answered."""
    tokens = line.split()
    channel = None
    if tokens and len(tokens[0]) <= MAX_CHANNEL_DIGITS and tokens[0].isdigit():
        channel = tokens.pop(0)
    if not tokens or tokens[0] == b"-":
        raise BadLine(channel, "no URL")
    if len(tokens) > MAX_TOKENS:
        raise BadLine(channel, "too many values")
    # surrogateescape keeps any byte exactly as Squid sent it; canon encodes it back the same way
    url = tokens[0].decode("utf-8", "surrogateescape")
    names = tuple(_unescape_name(t) for t in tokens[1:] if t != b"-")
    connect = "://" not in url
    if connect:
        url = _unescape_name(tokens[0])
    return HelperRequest(channel=channel, url=url, connect=connect, names=names)


def _unescape_name(token: bytes) -> str:
    return unquote_to_bytes(token).decode("utf-8", "surrogateescape")


def decide(state: State, request: HelperRequest) -> Answer:
    """The answer for one request. Raises `ValueError` for a URL or name without a valid host;
    any other exception is an internal error (the caller applies ``on_error``)."""
    snapshot = state.snapshot
    if request.connect:
        names = (request.url, *request.names)
        status = host_severity(snapshot, names)
        if status is HostStatus.CLEAN:
            return ERR
        if status is HostStatus.WHOLE:
            verdict = request_verdict(snapshot, "https", names, "/")
            if verdict is not None and verdict.blocked:
                return _block(verdict)
            return Answer("OK", message=UNINSPECTED_REFERENCE)  # not reached: WHOLE has a "host/" entry
        https = state.config.https
        if https.intercept == "none" and https.uninspected == "refuse":
            return Answer("OK", message=UNINSPECTED_REFERENCE)
        return ERR
    verdict = snapshot.match(request.url)  # the URL as given keeps the matcher's fast path
    if request.names and (verdict is None or not verdict.blocked):
        cu = canon.parse(request.url)
        path = cu.path if cu.query is None else f"{cu.path}?{cu.query}"
        more = request_verdict(snapshot, cu.scheme, request.names, path)
        if more is not None and (more.blocked or verdict is None):
            verdict = more
    if verdict is not None and verdict.blocked:
        return _block(verdict)
    return ERR


def _block(verdict: Verdict) -> Answer:
    return Answer("OK", message=safe_reference(verdict.list_name, verdict.entry_id),
                  tag=_safe_token(verdict.list_name), verdict=verdict)


def safe_reference(list_name: str, entry_id: str) -> str:
    """`blockpage.reference` with only `ENTRY_ID_CHARS` in the entry id (others become ``_``),
    at most `MAX_ENTRY_ID_CHARS` of it: a value that passes Squid's ``message=`` and ``%o``
    unchanged and that the block page server accepts."""
    entry = _UNSAFE_ENTRY_CHARS.sub("_", entry_id)[:MAX_ENTRY_ID_CHARS] or "_"
    return blockpage.reference(_safe_token(list_name), entry)


def _safe_token(text: str) -> str:
    return _UNSAFE_ENTRY_CHARS.sub("_", text)[:MAX_ENTRY_ID_CHARS] or "_"


def format_answer(channel: bytes | None, answer: Answer) -> bytes:
    """One answer line, newline included. Values are already limited to safe characters."""
    parts = [answer.result]
    if answer.message is not None:
        parts.append(f"message={answer.message}")
    if answer.tag is not None:
        parts.append(f"tag={answer.tag}")
    line = " ".join(parts).encode("ascii")
    return (channel + b" " + line if channel is not None else line) + b"\n"


def _channel_of(line: bytes) -> bytes | None:
    """The channel id at the start of a (possibly cut) line, for answering it BH."""
    first = line.split(None, 1)[0] if line.strip() else b""
    return first if first and len(first) <= MAX_CHANNEL_DIGITS and first.isdigit() else None


# --- the helper process -------------------------------------------------------------------------


_FileStamp = tuple[int, int, int] | None  # (mtime_ns, size, inode); None: missing


def _stamp(path: str | os.PathLike[str]) -> _FileStamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class SquidHelper:
    """Answers Squid's lookups from the value in force of a `urlwarden.runtime.inforce.Runtime`; a
    background thread keeps it current.

    `answer_line` is what the main loop calls for every line (it never raises). `maintain` is
    one round of the background work (reload on change or SIGHUP, feeds); `run` reads stdin
    until EOF, with `maintain` running every `CHECK_INTERVAL` seconds on its own thread.
    """

    def __init__(self, config: Config, runtime: Runtime | None = None):
        self.config_path = config.source if Path(config.source).is_file() else None
        # lists are parsed and compiled in a child process (urlwarden.runtime.offload): while one is
        # rebuilt, this helper keeps answering Squid at full speed
        self.runtime = runtime if runtime is not None else Runtime(offloader=Offloader())
        try:
            self.runtime.load(config)
        except BaseException:
            self.runtime.close()
            raise
        self._loaded_stamps = self._seen_stamps = self._file_stamps(config)
        self._lkg_stamps = self._feed_file_stamps()
        self._reload_requested = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error_kinds_logged: set[str] = set()
        self._warn_about_https(config)

    @property
    def state(self) -> State:
        """The configuration and snapshot in force."""
        return self.runtime.current.state

    @property
    def feeds(self) -> FeedManager | None:
        return self.runtime.feeds

    # --- loading -----------------------------------------------------------------------------

    def _file_stamps(self, config: Config) -> tuple[_FileStamp, ...]:
        paths = [self.config_path] if self.config_path else []
        paths += [lc.spec.path for lc in (*config.lists, *config.allow) if lc.spec is not None]
        return tuple(_stamp(p) for p in paths)

    def _feed_file_stamps(self) -> tuple[_FileStamp, ...]:
        """The last-known-good files of every feed (list and metadata, not the health record)."""
        manager, config = self.feeds, self.state.config
        if manager is None:
            return ()
        return tuple(_stamp(os.path.join(config.state_dir, name + ext))
                     for name in manager.names for ext in (".json", ".sha256", ".csv"))

    @staticmethod
    def _warn_about_https(config: Config) -> None:
        if config.https.intercept != "none":
            log.warning("squid-helper: https.intercept is %r: CONNECTs to hosts with path-level entries pass, "
                        "for Squid's ssl_bump to decrypt; without ssl_bump set https.intercept: none "
                        "(docs/squid.md)", config.https.intercept)

    # --- answering ---------------------------------------------------------------------------

    def answer_line(self, line: bytes) -> bytes:
        """The answer line for one request line (newline stripped or not). Never raises."""
        line = line.rstrip(b"\r\n")
        try:
            request = parse_line(line)
        except BadLine as exc:
            self._log_once("bad-line", f"unparsable request line ({exc.reason}); answered BH")
            return format_answer(exc.channel, BH)
        except Exception as exc:  # a bug in parsing: the line cannot even be given a channel
            self._log_once(f"parse:{type(exc).__name__}", f"internal error while parsing a line "
                           f"({type(exc).__name__}); answered BH")
            return format_answer(_channel_of(line), BH)
        inforce = self.runtime.current  # one read: this answer uses this snapshot throughout
        if inforce.missing_required:  # a required feed has no list yet: nothing is let through (as the proxy)
            return format_answer(request.channel, NOT_READY)
        state = inforce.state
        try:
            answer = decide(state, request)
        except ValueError:
            self._log_once("no-host", "a request without a valid host; answered BH")
            answer = BH
        except Exception as exc:
            self._log_once(f"decide:{type(exc).__name__}", f"internal error ({type(exc).__name__}); "
                           f"on_error {state.config.on_error} applies; logged once per kind")
            answer = Answer("OK", message=ERROR_REFERENCE) if state.config.on_error == "block" else ERR
        if answer.verdict is not None and log.isEnabledFor(logging.DEBUG):
            v = answer.verdict  # never the URL: list and entry id
            mode = state.config.policy_for(v.list_name).mode
            log.debug("blocked list=%s entry=%s", v.list_name, v.entry_id,
                      extra={"event": logs.block_event(v.list_name, v.entry_id, "block", mode)})
        return format_answer(request.channel, answer)

    def _log_once(self, kind: str, message: str) -> None:
        if kind not in self._error_kinds_logged:
            self._error_kinds_logged.add(kind)
            log.error("squid-helper: %s", message)

    # --- background work ---------------------------------------------------------------------

    def request_reload(self) -> None:
        """Reload configuration, lists and the feeds' last-known-good copies at once (SIGHUP)."""
        self._reload_requested.set()
        self._wake.set()

    def maintain(self) -> None:
        """One round: reload on SIGHUP or on changed files, pick up other processes' feed
        updates, refresh the feeds that are due. Errors are logged; the state in force stays."""
        try:
            self.runtime.release_retired()  # what the last round replaced is unused by now
            self._check_files()
            self._check_feeds()
        except Exception as exc:  # never end the thread: the next round tries again
            self._log_once(f"maintain:{type(exc).__name__}", f"background work failed ({type(exc).__name__})")

    def _check_files(self) -> None:
        forced = self._reload_requested.is_set()
        self._reload_requested.clear()
        stamps = self._file_stamps(self.state.config)
        changed = stamps != self._loaded_stamps and stamps == self._seen_stamps  # held still for a round
        self._seen_stamps = stamps
        if not (forced or changed):
            return
        try:
            config = load_config(self.config_path) if self.config_path else self.state.config
            self.runtime.load(config, fresh_feeds=forced)  # SIGHUP re-reads last-known-good too
        except UrlwardenError as exc:
            log.error("squid-helper: reload rejected, the running configuration stays: %s", exc)
            self._loaded_stamps = stamps  # not again until the files change again
            return
        self._loaded_stamps = self._seen_stamps = self._file_stamps(config)
        self._lkg_stamps = self._feed_file_stamps()
        self._warn_about_https(config)

    def _check_feeds(self) -> None:
        if self.feeds is None:
            return
        if self._feed_file_stamps() != self._lkg_stamps:
            self._reload_feeds_from_disk()
        due = [name for name in self.feeds.names if self.feeds.due(name)]
        if due:
            with _exclusive(os.path.join(self.state.config.state_dir, LOCK_FILE)) as mine:
                if mine:
                    if self._feed_file_stamps() != self._lkg_stamps:  # another process just finished
                        self._reload_feeds_from_disk()
                    self._refresh([name for name in due if self.feeds.due(name)])
        for status in self.runtime.staleness_changes():
            log.warning("squid-helper: feed %s is stale; blocking continues with the list it has", status.name)

    def _reload_feeds_from_disk(self) -> None:
        """Another process saved a feed: a new feed manager from the last-known-good copies."""
        stamps = self._feed_file_stamps()
        try:
            self.runtime.load(self.state.config, fresh_feeds=True, reuse_static=True)
        except UrlwardenError as exc:
            log.error("squid-helper: feeds not reloaded from last-known-good: %s", exc)
            self._lkg_stamps = stamps  # not again until the files change again
            return
        self._lkg_stamps = self._feed_file_stamps()

    def _refresh(self, names: list[str]) -> None:
        for name in names:
            try:
                self.runtime.refresh(name)
            except FeedError as exc:
                log.warning("squid-helper: feed %s: update failed, the current list stays: %s", name, exc,
                            extra={"event": {"event": "feed_update_failed", "feed": name}})
                continue
            status = self.feeds.status(name)
            log.info("squid-helper: feed %s: %s, %d entries", name, status.last_update, status.entries)
        try:
            self.runtime.rebuild()  # (nothing to do when no feed changed)
        except UrlwardenError as exc:
            log.error("squid-helper: feed update not applied, the current lists stay: %s", exc)
            return  # the stamps stay old: the next round picks the update up from disk
        self._lkg_stamps = self._feed_file_stamps()

    def _background(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(CHECK_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.maintain()

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stdin: BinaryIO, stdout: BinaryIO) -> int:
        """Answer every line of `stdin` on `stdout` until EOF (Squid closes the pipe to stop a
        helper, also at ``squid -k reconfigure``); returns the exit status, 0."""
        self._thread = threading.Thread(target=self._background, name="urlwarden-squid-maintain", daemon=True)
        self._thread.start()
        try:
            for batch in _batches(stdin):
                answers = []
                for line, too_long in batch:
                    if too_long:
                        self._log_once("too-long", f"a request line over {MAX_LINE_BYTES} bytes; answered BH")
                        answers.append(format_answer(_channel_of(line), BH))
                    else:
                        answers.append(self.answer_line(line))
                stdout.write(b"".join(answers))  # one write for every line that arrived together
                stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
        finally:
            self.close()
        return 0

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.runtime.close()  # (stops a list build under way)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(STOP_TIMEOUT)


def _batches(stdin: BinaryIO) -> Iterator[list[tuple[bytes, bool]]]:
    """The lines of `stdin` as (line, too long), in batches of what arrived together.

    On a real file descriptor every read takes what is there (up to `READ_SIZE`), and the
    complete lines in it are one batch, answered with one write: Squid sends lookups as they
    come, and under load several arrive at once. A line over `MAX_LINE_BYTES` is yielded as its
    first MAX_LINE_BYTES bytes with True, and the rest of it is skipped. A last line without a
    newline is answered at EOF. Objects without a file descriptor are read line by line.
    """
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is None:
        while True:
            line = stdin.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                rest = line
                while rest and not rest.endswith(b"\n"):
                    rest = stdin.readline(MAX_LINE_BYTES)
                yield [(line[:MAX_LINE_BYTES], True)]
            else:
                yield [(line, False)]
    pending, skipping = b"", False  # skipping: the rest of a line already answered as too long
    while True:
        chunk = os.read(fd, READ_SIZE)
        if not chunk:
            if pending and not skipping:
                yield [(pending, False)]
            return
        data, start, batch = pending + chunk, 0, []
        while (end := data.find(b"\n", start)) >= 0:
            line, start = data[start:end], end + 1
            if skipping:
                skipping = False
            elif len(line) > MAX_LINE_BYTES:
                batch.append((line[:MAX_LINE_BYTES], True))
            else:
                batch.append((line, False))
        pending = data[start:]
        if len(pending) > MAX_LINE_BYTES:
            if not skipping:
                batch.append((pending[:MAX_LINE_BYTES], True))
                skipping = True
            pending = b""
        if batch:
            yield batch


@contextlib.contextmanager
def _exclusive(path: str) -> Iterator[bool]:
    """An advisory lock on `path` if it can be had at once: True while held. A state directory
    without a lock (missing, read-only) yields True: refreshing without one is still correct,
    only possibly repeated by several helpers."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                yield False
                return
            yield True
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _silence_stdout() -> None:
    """Squid went away: point stdout at /dev/null so the interpreter's exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


@contextlib.contextmanager
def _signal_handler(signum: int, handler) -> Iterator[None]:
    """Install `handler` for `signum` while the block runs (only possible on the main thread)."""
    try:
        previous = signal.signal(signum, handler)
    except (ValueError, OSError):  # not the main thread, or no such signal here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signum, previous)


def serve(config: Config, stdin_binary: BinaryIO, stdout_binary: BinaryIO) -> int:
    """``urlwarden squid-helper``: load everything, then answer Squid until EOF.

    Logs go to stderr (Squid copies a helper's stderr into cache.log); stdout carries only
    answers. Raises `UrlwardenError` when the lists cannot be loaded at start (the CLI prints it
    and exits 2; Squid then reports the helper as crashing instead of running it unfiltered).
    """
    logs.configure_logging(config.logging.level, stream=sys.stderr)
    canon_selfcheck.verify()  # before any list is read; a wrong canonicalizer blocks nothing
    shorten_gil_switch_interval()  # the background thread must not keep answers waiting
    helper = SquidHelper(config)
    with _signal_handler(signal.SIGHUP, lambda *_: helper.request_reload()):
        return helper.run(stdin_binary, stdout_binary)


# --- the block page server ------------------------------------------------------------------------



MAX_QUERY_FIELDS = 8
"""Query parameters read from a block page request; more is a bad request."""


MAX_CONNECTIONS = 64
"""Connections served at the same time; more are closed on accept."""

CONFIG_CHECK_INTERVAL = 5.0
"""Seconds between checks of the configuration file's stamp (the server reloads it on change)."""

BLOCKED_PATH = "/blocked"

_TEXT = "text/plain; charset=utf-8"
_PLAIN_HEADERS = (("Content-Type", _TEXT), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))
_COULD_NOT_CHECK = blockpage.BlockResponse(
    503, _PLAIN_HEADERS, b"urlwarden could not check this request, so it was not sent.\n")
_UNINSPECTED = blockpage.BlockResponse(403, _PLAIN_HEADERS, b"Blocked by urlwarden.\n")
_BAD_REFERENCE = blockpage.BlockResponse(400, _PLAIN_HEADERS, b"not a urlwarden block reference\n")
_NOT_FOUND = blockpage.BlockResponse(404, _PLAIN_HEADERS, b"not found\n")


def blockpage_answer(config: Config, target: str, headers: Mapping[str, str]) -> blockpage.BlockResponse | None:
    """The response to ``GET <target>`` on the block page server; None: close without answer.

    `headers` maps lowercase names to values (Accept, Accept-Language, Sec-Fetch-Dest,
    Sec-Fetch-Mode, X-Requested-With are used). See the module docstring for the references.
    """
    try:
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        return _BAD_REFERENCE
    if parts.path != BLOCKED_PATH:
        return _NOT_FOUND
    refs = query.get("ref")
    if refs is None or len(refs) != 1:
        return _BAD_REFERENCE
    ref = refs[0]
    if ref in ("", ERROR_REFERENCE):
        return _COULD_NOT_CHECK
    if ref == UNINSPECTED_REFERENCE:
        return _UNINSPECTED
    list_name, colon, entry_id = ref.partition(":")
    names = {lc.name for lc in config.lists}
    if not colon or not _LIST_NAME.match(list_name) or list_name not in names or not _ENTRY_ID.match(entry_id):
        return _BAD_REFERENCE
    policy = config.policy_for(list_name)
    if policy.mode == "close":
        return None
    return blockpage.render_for_request(list_name, entry_id, policy, config.page, headers)



class _BlockpageHandler(OneRequestHandler):
    server_version = "urlwarden"
    server: _BlockpageHTTPServer

    def answer(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            response = blockpage_answer(self.server.current_config(), self.path, headers)
        except Exception as exc:
            log.error("blockpage-server: error while answering a request (%s)", type(exc).__name__)
            response = _COULD_NOT_CHECK
        if response is None:
            return  # mode close: drop the connection
        self._send(response)

    def send_plain(self, status: int, body: bytes, extra: Sequence[tuple[str, str]] = ()) -> None:
        self._send(blockpage.BlockResponse(status, (*_PLAIN_HEADERS, *extra), body))

    def _send(self, response: blockpage.BlockResponse) -> None:
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Blocked"
        self.send_response(response.status, phrase)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


class _BlockpageHTTPServer(BoundedHTTPServer):
    log_name = "blockpage-server"

    def __init__(self, address: tuple[str, int], family: int, owner: BlockpageServer):
        self.owner = owner
        super().__init__(address, family, _BlockpageHandler, MAX_CONNECTIONS)

    def current_config(self) -> Config:
        return self.owner.current_config()


class BlockpageServer:
    """The block page server (see the module docstring): `start` binds and serves on a daemon
    thread, `stop` ends it. The configuration is re-read when its file changes (checked at most
    every `CONFIG_CHECK_INTERVAL` seconds, on requests) or on `reload`; a bad one is rejected
    and the running one stays. Raises `ConfigError` when the address cannot be bound."""

    def __init__(self, config: Config, host: str = "127.0.0.1", port: int = 8081,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.host = host.strip("[]")
        self.requested_port = port
        self.clock = clock
        self._path = config.source if Path(config.source).is_file() else None
        self._stamp = _stamp(self._path) if self._path else None
        self._checked = clock()
        self._lock = threading.Lock()
        self._server: _BlockpageHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            self._server = _BlockpageHTTPServer((self.host, self.requested_port), family, self)
        except OSError as exc:
            raise ConfigError(f"block page server: cannot listen on {self.host}:{self.requested_port}: "
                              f"{exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="urlwarden-blockpage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None

    def current_config(self) -> Config:
        """The configuration in force, re-read first when its file has changed."""
        now = self.clock()
        if self._path and now - self._checked >= CONFIG_CHECK_INTERVAL:
            self._checked = now
            if _stamp(self._path) != self._stamp:
                self.reload()
        return self.config

    def reload(self) -> None:
        """Re-read the configuration file (SIGHUP); a bad one is logged and the running one stays."""
        if not self._path:
            return
        with self._lock:
            stamp = _stamp(self._path)
            try:
                config = load_config(self._path)
            except UrlwardenError as exc:
                log.error("blockpage-server: reload rejected, the running configuration stays: %s", exc)
            else:
                self.config = config
                log.info("blockpage-server: configuration reloaded")
            self._stamp = stamp


def serve_blockpage(config: Config, listen: tuple[str, int]) -> int:
    """``urlwarden blockpage-server``: serve until SIGTERM or SIGINT; SIGHUP re-reads the
    configuration. Returns the exit status; raises `ConfigError` when it cannot listen."""
    logs.configure_logging(config.logging.level)
    server = BlockpageServer(config, listen[0], listen[1])
    server.start()
    if not is_loopback(server.host):
        log.warning("blockpage-server: listening on %s, not loopback: every client that can reach it can "
                    "fetch block pages (they show no URL)", server.host)
    log.info("blockpage-server: serving http://%s:%d%s?ref=LIST:ENTRY", server.host, server.port, BLOCKED_PATH)
    stop = threading.Event()
    with (_signal_handler(signal.SIGTERM, lambda *_: stop.set()),
          _signal_handler(signal.SIGINT, lambda *_: stop.set()),
          _signal_handler(signal.SIGHUP, lambda *_: threading.Thread(target=server.reload, daemon=True).start())):
        try:
            while not stop.wait(1.0):
                pass
        finally:
            server.stop()
    return 0
