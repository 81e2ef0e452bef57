"""The mitmproxy addon: wires urlwarden's options to mitmproxy's hooks. The only module that imports mitmproxy.

Where each decision is taken, so that a blocked host is never contacted:

* ``configure``: loads the configuration and lists aside, then swaps them in with one assignment;
  forces ``connection_strategy=lazy`` (mitmproxy connects upstream before the request hook
  otherwise) and, with ``urlwarden_private_logs`` (default on), ``flow_detail=0`` and
  mitmproxy's own log cut to errors (it would print every URL and client it relays). Before
  mitmproxy binds, it applies the configuration's ``listen`` and refuses a wider listen option
  (`urlwarden.listenscope`); a start-up it refuses is logged as one error line, which makes
  mitmproxy exit before any server starts.
* ``client_connected``: refuses clients outside ``access.allowed_clients`` before anything else.
* ``http_connect``: refuses a CONNECT to a host that is refused without interception.
* ``tls_clienthello``: per host, passes the TLS connection through untouched, intercepts it, or
  marks it refused (see `engine.tls_action`).
* ``requestheaders``: blocks a request when any of its names is listed, before the body is read
  and before any upstream connection.
* ``server_connect``: the last guard: a server connection to a host listed whole, or one marked
  refused, is killed before it is opened.
* ``running``: starts the feed refresher, tells systemd READY=1, and makes SIGHUP reload the
  configuration and lists (built in a child process, `urlwarden.offload`; a bad new
  configuration is rejected whole). It also shortens the GIL switch interval, so that a
  background thread never keeps the event loop waiting for more than half a millisecond. The
  admin listener takes its port with the configuration, so a port in use stops start-up with
  its reason, but accepts connections only from ``running`` on, once start-up has succeeded.

Every hook is guarded: an internal error applies the configured ``on_error`` (default block),
is counted, and is logged once per kind.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Sequence

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.connection import Client
from mitmproxy.proxy import mode_specs, server_hooks
from mitmproxy.version import VERSION as MITMPROXY_VERSION

from . import blockpage, logs, sdnotify, summary
from .admin import AdminServer
from .config import AdminConfig, default_config_path, load_config
from .engine import (
    State,
    TlsAction,
    host_severity,
    load_state,
    open_feeds,
    request_verdict,
    tls_decision,
)
from .feedloop import FeedLoop
from .feeds.manager import FeedManager
from .errors import UrlwardenError
from .lists import parse_list_spec
from .listenscope import ListenTooWide, plan_listen
from .matcher import HostStatus, Verdict
from .metrics import Metrics
from .offload import Offloader, shorten_gil_switch_interval

log = logging.getLogger("urlwarden")
startup_log = logging.getLogger("mitmproxy.urlwarden")  # reaches mitmproxy's start-up error check

PRIVATE_TERMLOG_VERBOSITY = "error"
MAX_TARGET_BYTES = 16 * 1024
"""A longer request target is refused with 414 (nginx and Apache stop at 8 KiB; Squid at 64 KiB)."""
MAX_HEADER_BYTES = 64 * 1024
"""Request headers larger than this in all are refused with 431; mitmproxy itself sets no limit."""
MAX_HEADER_COUNT = 200
"""More request header fields than this are refused with 431."""
NOT_READY_BODY = b"urlwarden is starting: a required list is not loaded yet, so nothing is let through.\n"
ERROR_STATUS = 503
ERROR_BODY = b"urlwarden could not check this request, so it was not sent (on_error: block).\n"


class NotReady(Exception):
    """A required feed has no list yet (fail closed)."""


class UrlWarden:
    def __init__(self, preloaded: tuple[State, FeedManager | None, object] | None = None,
                 listen: tuple[str, int] | None = None) -> None:
        self.state: State | None = None
        # `urlwarden run` loads and checks config, lists and feeds before mitmproxy starts
        self._preloaded = preloaded
        # `urlwarden run --listen`: stands in for the configuration's listen
        self._listen_override = listen
        self._applied_listen: tuple[str | None, int | None] = (None, None)
        self._start_refused: object = None  # what start-up was refused for (logged once)
        self.metrics = Metrics(mitmproxy_version=MITMPROXY_VERSION)
        self.started = time.time()
        self._error_kinds_logged: set[str] = set()
        self._refused_clients: set[str] = set()
        self._loaded_from: tuple[str, tuple[str, ...]] | None = None
        self._reload_task: asyncio.Task | None = None
        self._reload_again = False
        self._admin: AdminServer | None = None
        self._admin_config = AdminConfig()
        self._running = False
        self.feeds: FeedManager | None = None
        self._feeds_key = None
        self._feed_loop: FeedLoop | None = None
        self._feed_task: asyncio.Task | None = None
        # required feeds with no list yet: until they have one, nothing is let through
        self._missing_required: tuple[str, ...] = ()
        # reloads and feed updates build their snapshot in a child process (see urlwarden.offload)
        self._offloader = Offloader()
        self._lists_updated_at: float | None = None  # when the lists in force were swapped in (STATUS=)

    # --- lifecycle ---------------------------------------------------------------------------

    def load(self, loader) -> None:
        loader.add_option(
            "urlwarden_config", str, "",
            "Path of the urlwarden YAML configuration. Empty: the embedded default "
            "(synthetic sample lists).",
        )
        loader.add_option(
            "urlwarden_lists", Sequence[str], [],
            "Block lists as FILE[:FORMAT] with FORMAT plain, sha256 or csv; when given, they "
            "replace the configuration's block lists.",
        )
        loader.add_option(
            "urlwarden_private_logs", bool, True,
            "Keep mitmproxy's own logging private: no flow printing (flow_detail 0) and its log cut to "
            "errors, because at info level it prints every client address and host name it relays. "
            "urlwarden's own log lines are unaffected. Turn off only to debug.",
        )
        logs.configure_logging("info")

    def configure(self, updated: set[str]) -> None:
        first = self.state is None
        if "connection_strategy" in ctx.options and ("connection_strategy" in updated or first):
            if ctx.options.connection_strategy != "lazy":
                # Eager connections would contact a listed host before the request hook runs.
                ctx.options.update(connection_strategy="lazy")
        if ctx.options.urlwarden_private_logs:
            self._update_options(flow_detail=0, termlog_verbosity=PRIVATE_TERMLOG_VERBOSITY)
        wanted = (ctx.options.urlwarden_config, tuple(ctx.options.urlwarden_lists))
        if self.state is None or wanted != self._loaded_from:
            # (mitmproxy repeats configure, e.g. for script loading and for rollbacks: load once per change)
            if self._start_refused == wanted:
                return  # already refused, and said so once
            try:
                loaded = self._preloaded or load_all(*wanted, self.feeds, self._feeds_key, self._offloader)
            except UrlwardenError as exc:
                if self.state is None and not proxy_running():  # start-up
                    self._refuse_start(wanted, str(exc))
                    return
                raise exceptions.OptionsError(str(exc)) from None
            self._preloaded = None
            self._apply(*loaded, wanted)
        if first or updated & {"listen_host", "listen_port", "mode"}:
            self._enforce_listen()

    def _refuse_start(self, reason: object, message: str) -> None:
        """Stop start-up with one line, before the proxy binds. Logged, not raised: an
        OptionsError raised at start-up meets mitmproxy's rollback, which calls configure again
        (and again, while nothing is loaded), and a script error is printed with a traceback.
        mitmproxy's start-up error check exits before any server starts."""
        if self._start_refused is None:
            startup_log.error("urlwarden: %s", message)
        self._start_refused = reason

    def _enforce_listen(self) -> None:
        """Apply the configuration's listen where the user set none; refuse a wider one
        (`urlwarden.listenscope`). Once the servers run, options are only checked: a change of
        mode would bind anew, so a wider one is rejected (and rolled back by mitmproxy)."""
        state = self.state
        if state is None or "listen_host" not in ctx.options:
            return
        configured = self._listen_override or state.config.listen
        source = "urlwarden run --listen" if self._listen_override not in (None, state.config.listen) else state.config.source
        options = ctx.options
        applied_host, applied_port = self._applied_listen
        user_host = options.listen_host if options.has_changed("listen_host") and options.listen_host != applied_host else None
        user_port = options.listen_port if options.has_changed("listen_port") and options.listen_port != applied_port else None
        running = proxy_running()
        try:
            plan = plan_listen(configured, source, user_host, user_port, custom_mode_hosts(options.mode))
        except ListenTooWide as exc:
            if running:
                raise exceptions.OptionsError(str(exc)) from None
            self._refuse_start(("listen", str(exc)), str(exc))
            # and should anything start the servers anyway, not on the wider address
            plan = plan_listen(configured, source, None, user_port)
        if running:
            return  # bound already: only a change of mode binds anew, and that was checked
        self._applied_listen = (plan.host if plan.host is not None else applied_host,
                                plan.port if plan.port is not None else applied_port)
        changes = {}
        if plan.host is not None:
            changes["listen_host"] = plan.host
        if plan.port is not None:
            changes["listen_port"] = plan.port
        self._update_options(**changes)

    def _apply(self, state: State, feeds: FeedManager | None, feeds_key, loaded_from: tuple[str, tuple[str, ...]]) -> None:
        """Make `state` the one in force, and bring everything that follows from it in line."""
        self.state = state  # the one assignment that swaps the new lists in
        self._loaded_from = loaded_from
        self._lists_updated_at = time.time()
        if feeds is not self.feeds:
            old, self.feeds, self._feeds_key = self.feeds, feeds, feeds_key
            if self._running:
                self._restart_feed_loop()
            if old is not None:
                old.close()
        config = state.config
        logs.configure_logging(config.logging.level)
        self.metrics.lists_from_snapshot(state.snapshot.stats.lists)
        self.metrics.forget_lists(ls.name for ls in state.snapshot.stats.lists)
        for status in feeds.statuses() if feeds else ():
            self.metrics.list_loaded(status.name, status.entries, at=status.last_success)
        self._missing_required = tuple(feeds.unavailable_required()) if feeds else ()
        settle_garbage_collector()
        if self._missing_required:
            log.warning("required feed(s) %s have no list yet: every request is refused until they do",
                        ", ".join(self._missing_required))
        access = {"proxyauth": f"@{config.access.proxy_auth_file}" if config.access.proxy_auth_file else None}
        if config.access.explicit:
            access["block_global"] = False  # allowed_clients is the stricter, explicit rule now
        self._update_options(**access)
        try:
            self._restart_admin(config.admin)
        except UrlwardenError as exc:
            if not self._running:
                # At start-up: mitmproxy's error check stops the process once start-up is over.
                startup_log.error("urlwarden: %s", exc)
            else:
                log.error("admin listener not restarted: %s; the proxy goes on without it", exc)
        log.info("lists loaded: %s", describe(state))

    @staticmethod
    def _update_options(**values) -> None:
        changes = {k: v for k, v in values.items() if k in ctx.options and getattr(ctx.options, k) != v}
        if changes:
            ctx.options.update(**changes)

    def running(self) -> None:
        self._running = True
        shorten_gil_switch_interval()
        if self._admin is not None:
            try:
                self._admin.start()
                log.info("admin listener on %s", self._admin.url)
            except UrlwardenError as exc:  # (its port was bound at start-up: this is rare)
                log.error("admin listener not started: %s; the proxy goes on without it", exc)
                self._admin = None
        self._restart_feed_loop()
        # mitmdump exits on SIGHUP by default; here it reloads the configuration and lists.
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError):  # no signals on this platform or loop
            pass
        sdnotify.ready()
        self._notify_status()

    def _notify_status(self) -> None:
        """systemd's one-line ``STATUS=`` (lists, entries, last update), as ``systemctl status`` shows it."""
        state, feeds = self.state, self.feeds
        if state is None:
            return
        sdnotify.status(summary.service_status(state.snapshot.stats.lists, feeds.statuses() if feeds else (),
                                               self._lists_updated_at, self._missing_required))

    def done(self) -> None:
        sdnotify.stopping()
        try:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        except (NotImplementedError, RuntimeError):
            pass
        if self._admin is not None:
            self._admin.stop()
            self._admin = None
        if self._feed_task is not None:
            self._feed_task.cancel()
        if self.feeds is not None:
            self.feeds.close()
        self._offloader.stop()

    def _restart_feed_loop(self) -> None:
        if self._feed_task is not None:
            self._feed_task.cancel()
            self._feed_task = self._feed_loop = None
        if self.feeds is None:
            return
        self._feed_loop = FeedLoop(self.feeds, self._feeds_changed, self.metrics, offloader=self._offloader)
        self._feed_task = asyncio.get_running_loop().create_task(self._feed_loop.run())

    async def _feeds_changed(self) -> None:
        """A feed published a new list: rebuild the snapshot aside, then swap it in."""
        manager, state = self.feeds, self.state
        if manager is None or state is None:
            return
        try:
            new_state = await asyncio.to_thread(
                self._offloader.run, "rebuild", state.config, state.static_block, state.allow, manager.lists())
        except UrlwardenError as exc:
            log.error("feed update not applied, the current lists stay: %s", exc)
            return
        except Exception as exc:  # a bug must not end the feed loop: the next update tries again
            log.error("feed update not applied (%s), the current lists stay", type(exc).__name__)
            return
        if self.state is state and self.feeds is manager:  # nothing was reloaded meanwhile
            self.state = new_state
            self._lists_updated_at = time.time()
            self._missing_required = tuple(manager.unavailable_required())
            settle_garbage_collector()
            self._notify_status()

    def _restart_admin(self, admin: AdminConfig) -> None:
        if self._admin is not None and admin == self._admin_config:
            return
        if self._admin is not None:
            self._admin.stop()
            self._admin = None
        self._admin_config = admin
        if admin.listen is None:
            return
        server = AdminServer(admin.listen[0], admin.listen[1], admin.token, self.metrics,
                             self.status, self.readiness, pac_proxy=admin.pac_proxy)
        # A ConfigError here (port in use) aborts start-up, or fails the reload. Before `running`
        # the port is only taken: nothing is accepted until start-up has succeeded.
        if self._running:
            server.start()
            log.info("admin listener on %s", server.url)
        else:
            server.bind()
        self._admin = server

    def _on_sighup(self) -> None:
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_again = True  # one more reload once the running one ends
            return
        self._reload_task = asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> None:
        """Reload configuration and lists off the event loop; a bad one is rejected whole."""
        while True:
            self._reload_again = False
            sdnotify.reloading()
            wanted = (ctx.options.urlwarden_config, tuple(ctx.options.urlwarden_lists))
            try:
                loaded = await asyncio.to_thread(load_all, *wanted, self.feeds, self._feeds_key, self._offloader)
                self._apply(*loaded, wanted)
            except UrlwardenError as exc:
                log.error("reload rejected, the running configuration stays: %s", exc)
            if self._feed_loop is not None:
                self._feed_loop.refresh_all_now()  # SIGHUP also refreshes every feed now
            sdnotify.ready()
            self._notify_status()
            if not self._reload_again:
                return

    # --- admin providers (called on the admin listener's threads; read immutable values only) ----

    def readiness(self) -> tuple[bool, list[str]]:
        state, feeds = self.state, self.feeds
        if state is None:
            return False, ["lists not loaded"]
        reasons = [] if self._running else ["proxy not running"]
        loaded = {ls.name for ls in state.snapshot.stats.lists}
        reasons += [f"{lc.name}: not loaded" for lc in state.config.static_lists if lc.name not in loaded]
        for status in feeds.statuses() if feeds else ():
            if status.required and (status.entries == 0 or status.name not in loaded):
                reasons.append(f"{status.name}: not loaded")  # (not yet in the snapshot in force)
            elif status.required and status.stale:
                reasons.append(f"{status.name}: stale")
        return not reasons, reasons

    def status(self) -> dict:
        state, feeds = self.state, self.feeds
        ages = self.metrics.list_ages()
        last = self.metrics.last_success()
        feed_status = {s.name: s for s in feeds.statuses()} if feeds else {}
        lists = []
        if state is not None:
            for ls in state.snapshot.stats.lists:
                entry = {"name": ls.name, "kind": ls.action, "entries": ls.entries, "format": ls.format,
                         "last_success": last.get(ls.name), "age_seconds": ages.get(ls.name)}
                fs = feed_status.get(ls.name)
                if fs is not None:
                    entry.update(version=describe_version(fs.version), checksum=fs.checksum, stale=fs.stale,
                                 last_error=fs.last_error, last_success=fs.last_success, age_seconds=fs.age)
                lists.append(entry)
        ready, _ = self.readiness()
        return {"started": self.started, "uptime_seconds": time.time() - self.started, "ready": ready,
                "lists": lists}

    # --- connection level ----------------------------------------------------------------------

    def client_connected(self, client: Client) -> None:
        try:
            allowed = self.state.config.access.allows(client.peername[0])
        except Exception as exc:
            allowed = not self._internal_error("client_connected", exc)
        if not allowed:
            client.error = "refused by urlwarden: not an allowed client"
            self.metrics.count_request("error" if self.state is None else "block")

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        try:
            action, _ = tls_decision(self.state.snapshot, self.state.config.https, [flow.request.host])
        except Exception as exc:  # a filter must not fail open by accident: on_error decides
            if self._internal_error("http_connect", exc):
                flow.response = http.Response.make(ERROR_STATUS, ERROR_BODY, {"Cache-Control": "no-store"})
            return
        if action is TlsAction.REFUSE:
            flow.response = http.Response.make(403, b"Blocked by urlwarden.\n", {"Cache-Control": "no-store"})

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        server_address = data.context.server.address
        names = [data.client_hello.sni, server_address[0] if server_address else None]
        uninspected = False
        try:
            if self._missing_required:
                raise NotReady()
            action, uninspected = tls_decision(self.state.snapshot, self.state.config.https, names)
        except NotReady:
            action = TlsAction.REFUSE
        except Exception as exc:
            action = TlsAction.REFUSE if self._internal_error("tls_clienthello", exc) else TlsAction.PASSTHROUGH
        self.metrics.count_tls(action.value)
        if uninspected:
            self.metrics.count_uninspected("refuse" if action is TlsAction.REFUSE else "pass")
        if action is TlsAction.PASSTHROUGH:
            self.metrics.count_request("passthrough")
            data.ignore_connection = True
        elif action is TlsAction.REFUSE:
            # Relay nothing and mint no certificate; server_connect then kills the connection.
            data.ignore_connection = True
            self._refused_clients.add(data.context.client.id)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.client.id in self._refused_clients:
            data.server.error = "refused by urlwarden"
            return
        names = [data.server.address[0] if data.server.address else None, data.server.sni, data.client.sni]
        try:
            whole = host_severity(self.state.snapshot, names) is HostStatus.WHOLE
        except Exception as exc:
            whole = self._internal_error("server_connect", exc)
        if whole:
            data.server.error = "refused by urlwarden"

    def client_disconnected(self, client: Client) -> None:
        self._refused_clients.discard(client.id)

    # --- requests ------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return  # another addon already answered
        started = time.perf_counter()
        if refuse_oversized(flow):
            self.metrics.count_request("error")
            self.metrics.count_error("oversized")
            return
        if self._missing_required:
            self.metrics.count_request("error")
            self.metrics.count_error("not_ready")
            flow.request.stream = False
            flow.response = http.Response.make(503, NOT_READY_BODY, {"Cache-Control": "no-store", "Retry-After": "30"})
            return
        state = self.state
        try:
            # (a State that failed to load is None: the AttributeError below then applies on_error)
            verdict = request_verdict(state.snapshot, flow.request.scheme, request_names(flow), flow.request.path)
            if verdict is not None and verdict.blocked:
                self._block(flow, verdict, state)
            elif verdict is not None:
                self.metrics.count_allow_list_hit(verdict.list_name)
            else:
                self.metrics.count_request("allow")
        except Exception as exc:
            if self._internal_error("request", exc):
                flow.request.stream = False
                flow.response = http.Response.make(ERROR_STATUS, ERROR_BODY, {"Cache-Control": "no-store"})
        self.metrics.observe_decision(time.perf_counter() - started)

    def _block(self, flow: http.HTTPFlow, verdict: Verdict, state: State) -> None:
        policy = state.config.policy_for(verdict.list_name)
        self.metrics.count_block(verdict.list_name)
        flow.metadata["urlwarden"] = {"decision": "block", "list": verdict.list_name, "entry": verdict.entry_id}
        # Never the URL: list and entry id identify the block without repeating what was asked for.
        event = logs.block_event(verdict.list_name, verdict.entry_id, "block", policy.mode,
                                 client=flow.client_conn.peername, log_clients=state.config.logging.client_addresses)
        log.info("blocked list=%s entry=%s mode=%s", verdict.list_name, verdict.entry_id, policy.mode,
                 extra={"event": event})
        if policy.mode == "close":
            flow.kill()
            return
        flow.request.stream = False  # mitmproxy refuses a response on a streaming request
        flow.response = block_response(verdict, policy, state, flow.request.headers)

    def _internal_error(self, where: str, exc: Exception) -> bool:
        """Count and log (once per kind) an internal error; True when on_error says block."""
        self.metrics.count_request("error")
        self.metrics.count_error(where)
        kind = f"{where}:{type(exc).__name__}"
        if kind not in self._error_kinds_logged:
            self._error_kinds_logged.add(kind)
            # The exception's type only: its message may quote the request.
            log.error("internal error in %s (%s); on_error applies; logged once per kind", where, type(exc).__name__)
        return self.state is None or self.state.config.on_error == "block"


def block_response(verdict: Verdict, policy: blockpage.ListPolicy, state: State,
                   headers: http.Headers) -> http.Response:
    """The block page for a request with these headers, as a mitmproxy response."""
    page = blockpage.render(
        list_name=verdict.list_name,
        entry_id=verdict.entry_id,
        policy=policy,
        page=state.config.page,
        accept_language=headers.get("accept-language"),
        accept=headers.get("accept"),
        sec_fetch_dest=headers.get("sec-fetch-dest"),
        sec_fetch_mode=headers.get("sec-fetch-mode"),
        x_requested_with=headers.get("x-requested-with"),
    )
    response = http.Response.make(page.status, page.body, [(k.encode(), v.encode()) for k, v in page.headers])
    if page.status == 451:
        response.reason = "Unavailable For Legal Reasons"  # RFC 7725; mitmproxy's table predates it
    return response


def refuse_oversized(flow: http.HTTPFlow) -> bool:
    """Answer an oversized request with 414 or 431 before anything else happens to it."""
    request = flow.request
    fields = request.headers.fields
    if len(request.data.path) + len(request.data.authority) + len(request.data.host) > MAX_TARGET_BYTES:
        status, reason = 414, b"URI Too Long\n"
    elif len(fields) > MAX_HEADER_COUNT or sum(len(k) + len(v) + 4 for k, v in fields) > MAX_HEADER_BYTES:
        status, reason = 431, b"Request Header Fields Too Large\n"
    else:
        return False
    request.stream = False
    flow.response = http.Response.make(status, reason, {"Cache-Control": "no-store", "Connection": "close"})
    return True


def request_names(flow: http.HTTPFlow) -> list[str | None]:
    """Every name the request is addressed by: URL host, Host headers, :authority, CONNECT target, SNI."""
    request = flow.request
    names: list[str | None] = [request.host, request.authority or None]
    names.extend(request.headers.get_all("host"))
    if flow.server_conn.address:
        names.append(flow.server_conn.address[0])
    names.append(flow.client_conn.sni)
    return names


def settle_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the loaded lists.

    A million-entry list is millions of long-lived objects that hold no reference cycles; every
    full collection walked them all (about 70 ms with 1M entries, seen as request stalls). Moving
    what exists now to the permanent generation spares them; refcounting still frees them when a
    reload drops them.
    """
    gc.freeze()


def proxy_running() -> bool:
    """Whether mitmproxy's proxy servers have started (they bind once, at start)."""
    server = ctx.master.addons.get("proxyserver") if getattr(ctx, "master", None) else None
    return bool(getattr(server, "is_running", False))


def custom_mode_hosts(modes: Sequence[str]) -> list[tuple[str, str]]:
    """``(spec, host)`` for each mode that names its own listen host (``regular@HOST:PORT``).
    A spec mitmproxy cannot parse is left to mitmproxy, which refuses it."""
    found = []
    for spec in modes:
        try:
            mode = mode_specs.ProxyMode.parse(spec)
        except ValueError:
            continue
        if mode.custom_listen_host is not None:
            found.append((spec, mode.custom_listen_host))
    return found


def load_all(config_path: str, list_specs: Sequence[str], feeds: FeedManager | None, feeds_key,
             offloader: Offloader | None = None) -> tuple[State, FeedManager | None, object]:
    """Configuration, static lists and feeds (restored from last-known-good, no network); raises UrlwardenError.

    With an `offloader` the lists are parsed and compiled in a child process (a reload while
    serving); without, here (at start-up, when no request is waiting).
    """
    config = load_config(config_path or default_config_path())
    if list_specs:
        config = config.with_lists([parse_list_spec(s) for s in list_specs])
    manager, key = open_feeds(config, feeds, feeds_key)
    feed_lists = manager.lists() if manager else ()
    if offloader is None:
        state = load_state(config, feed_lists)
    else:
        state = offloader.run("load_state", config, tuple(feed_lists))
    return state, manager, key


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
