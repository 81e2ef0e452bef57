"""The mitmproxy addon: wires urlwarden's options to mitmproxy's hooks. The only module that imports mitmproxy.

Where each decision is taken, so that a blocked host is never contacted:

What is in force (configuration, feed manager, compiled lists) belongs to a
`urlwarden.runtime.inforce.Runtime`, shared with the Squid helper: it loads, rebuilds after feed
updates, serializes the two and releases what it replaces. This class is the hooks: each
decision reads the runtime's value in force once and uses it throughout.

* ``configure``: has the runtime load the configuration and lists (once per change of the
  options; `urlwarden run` hands over a runtime loaded already); forces ``connection_strategy=lazy`` (mitmproxy connects upstream before the request hook
  otherwise) and, with ``urlwarden_private_logs`` (default on), ``flow_detail=0`` and
  mitmproxy's own log cut to errors (it would print every URL and client it relays). Before
  mitmproxy binds, it applies the configuration's ``listen`` and refuses a wider listen option
  (`urlwarden.frontends.proxy.listenscope`); a start-up it refuses is logged as one error line, which makes
  mitmproxy exit before any server starts.
* ``client_connected``: refuses clients outside ``access.allowed_clients`` before anything else
  (clients of a WireGuard listener hold a device key and are admitted: `urlwarden.frontends.proxy.tunnel`).
* ``http_connect``: refuses a CONNECT to a host that is refused without interception; a target
  that is not a host name gets 400.
* ``tls_clienthello``: per host, passes the TLS connection through untouched, intercepts it, or
  marks it refused (see `engine.tls_action`).
* ``requestheaders``: blocks a request when any of its names is listed, before the body is read
  and before any upstream connection; answers 400 when a name cannot be parsed (whatever
  ``on_error`` says); refuses an ``Upgrade`` other than WebSocket to a host that is not clean.
  A request it lets through is noted as checked traffic for its destination.
* ``responseheaders``: kills a ``101`` that is not a checked WebSocket on a host that is not
  clean (mitmproxy would relay the connection as raw TCP after it). A WebSocket is decided by
  its opening request and this ``101``: mitmproxy 11's ``websocket_start`` cannot stop one.
* ``tcp_start`` / ``udp_start``: raw TCP or UDP (bytes mitmproxy relays without parsing) to a
  host that is not clean: the server connection is refused before it opens, or, if it is open
  already, nothing more is relayed (``tcp_message`` / ``udp_message``).
* ``server_connect``: the one choke point. Every server connection, whatever layer asks for it,
  opens only if `urlwarden.runtime.protocols` lets its carrier reach the host's status: checked HTTP
  (a request let through above) or WebSocket to a host with path-level entries, anything to a
  clean host, nothing to a host listed whole or a client marked refused.
* Bodies stream and flows keep no message history: the child addon `urlwarden.frontends.proxy.streaming.BodyStreaming`
  (options ``urlwarden_stream_bodies``, ``urlwarden_keep_messages``); a request answered at its
  headers is answered without its body being read.
* ``running``: starts the feed loop (`urlwarden.runtime.feedloop`, over the runtime), tells systemd
  READY=1, and makes SIGHUP reload the
  configuration and lists through the runtime (`urlwarden.runtime.inforce`; built in a child process,
  `urlwarden.runtime.offload`, off the event loop; a bad new configuration is rejected whole), then
  refreshes every feed. It also shortens the GIL switch interval, so that a
  background thread never keeps the event loop waiting for more than half a millisecond. The
  admin listener takes its port with the configuration, so a port in use stops start-up with
  its reason, but accepts connections only from ``running`` on, once start-up has succeeded.

Every hook is guarded: an internal error applies the configured ``on_error`` (default block),
is counted, and is logged once per kind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Sequence

from mitmproxy import ctx, exceptions, http, tcp, tls, udp
from mitmproxy.connection import Client, Server
from mitmproxy.proxy import mode_specs, server_hooks
from mitmproxy.version import VERSION as MITMPROXY_VERSION

from urlwarden import __version__, blockpage, logs
from urlwarden.core import selfcheck as canon_selfcheck
from urlwarden.frontends import sdnotify
from urlwarden.runtime import summary
from urlwarden.frontends.proxy.tunnel import is_tunnel_client, listeners, tunnel_options, wireguard_devices
from urlwarden.frontends.admin import AdminServer
from urlwarden.config import AdminConfig, Config
from urlwarden.runtime.engine import State, TlsAction, UnparseableName, connection_status, request_verdict, tls_decision
from urlwarden.errors import UrlwardenError
from urlwarden.runtime.feedloop import FeedLoop
from urlwarden.runtime.inforce import InForce, Runtime, read_config
from urlwarden.frontends.proxy.listenscope import ListenTooWide, plan_listen
from urlwarden.core.matcher import Verdict
from urlwarden.metrics import Metrics
from urlwarden.runtime.protocols import Carrier, may_reach, may_upgrade
from urlwarden.runtime.offload import Offloader, shorten_gil_switch_interval
from urlwarden.frontends.proxy.streaming import BodyStreaming

log = logging.getLogger("urlwarden")
startup_log = logging.getLogger("mitmproxy.urlwarden")  # reaches mitmproxy's start-up error check

PRIVATE_TERMLOG_VERBOSITY = "error"
MAX_TARGET_BYTES = 16 * 1024
"""A longer request target is refused with 414 (nginx and Apache stop at 8 KiB; Squid at 64 KiB)."""
MAX_HEADER_BYTES = 64 * 1024
"""Request headers larger than this in all are refused with 431; mitmproxy itself sets no limit."""
MAX_HEADER_COUNT = 200
"""More request header fields than this are refused with 431."""
RELEASE_GRACE = 5.0
"""Seconds after a reload when the lists it replaced must be unused (a decision takes well under
a millisecond): `Runtime.release_retired` then frees them if stray references kept them."""
NOT_READY_BODY = b"urlwarden is starting: a required list is not loaded yet, so nothing is let through.\n"
ERROR_STATUS = 503
ERROR_BODY = b"urlwarden could not check this request, so it was not sent (on_error: block).\n"
BAD_NAME_BODY = b"Bad request: it is addressed to a name that is not a host name.\n"
UPGRADE_REFUSED_BODY = b"Refused by urlwarden: this host accepts only HTTP requests and WebSockets through it.\n"
REFUSED = "refused by urlwarden"
PLAIN_CLOSE_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", "Connection": "close"}
MAX_CHECKED_DESTINATIONS = 256
"""Destinations remembered per client connection as reached by checked requests (see
`UrlWarden._checked`); beyond, the memory starts afresh: at worst a connection is refused."""


class NotReady(Exception):
    """A required feed has no list yet (fail closed)."""


class UrlWarden:
    """The hooks. What is in force (configuration, feeds, snapshot) belongs to `self.runtime`
    (`urlwarden.runtime.inforce.Runtime`); this class loads it on `configure` and SIGHUP, runs its feed
    loop, and reads its current value once per decision."""

    def __init__(self, runtime: Runtime | None = None, listen: tuple[str, int] | None = None) -> None:
        # `urlwarden run` loads and checks config, lists and feeds before mitmproxy starts, and
        # hands over the runtime it loaded them into
        # `urlwarden run --listen`: stands in for the configuration's listen
        self._listen_override = listen
        self._applied_listen: tuple[str | None, int | None] = (None, None)
        self._start_refused: object = None  # what start-up was refused for (logged once)
        self.metrics = Metrics(mitmproxy_version=MITMPROXY_VERSION)
        # reloads and feed updates build their snapshot in a child process (see urlwarden.runtime.offload)
        self.runtime = runtime if runtime is not None else Runtime(offloader=Offloader())
        self.runtime.attach_metrics(self.metrics)
        self.started = time.time()
        self._error_kinds_logged: set[str] = set()
        self._refused_clients: set[str] = set()
        # client id -> {(host, port): carrier}: destinations this client reached through traffic
        # urlwarden checked (or chose to pass); server_connect treats any other opening as raw
        self._checked: dict[str, dict[tuple, Carrier]] = {}
        # TCP/UDP flows whose server was already connected when they were refused: relay nothing
        self._muted: set[str] = set()
        self._reload_task: asyncio.Task | None = None
        self._reload_again = False
        self._admin: AdminServer | None = None
        self._admin_config = AdminConfig()
        self._listeners: list = []  # (mode, (host, port)) of the proxy's listeners, for the home page
        self._confdir = "~/.mitmproxy"
        self._running = False
        self._feed_loop: FeedLoop | None = None
        self._feed_task: asyncio.Task | None = None
        self._configured: Config | None = None  # the configuration `_follow_config` last applied
        self._status_sent: str | None = None  # the last STATUS= line
        # mitmproxy calls these after this addon for every event (see urlwarden.frontends.proxy.streaming)
        self.addons = [BodyStreaming()]

    @property
    def state(self) -> State | None:
        """The configuration and snapshot in force (None before the first load)."""
        current = self.runtime.current
        return current.state if current is not None else None

    @property
    def _missing_required(self) -> tuple[str, ...]:
        """Required feeds with no list yet: until they have one, nothing is let through."""
        current = self.runtime.current
        return current.missing_required if current is not None else ()

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
        current = self.runtime.current
        first = self._configured is None
        if "connection_strategy" in ctx.options and ("connection_strategy" in updated or first):
            if ctx.options.connection_strategy != "lazy":
                # Eager connections would contact a listed host before the request hook runs.
                ctx.options.update(connection_strategy="lazy")
        if ctx.options.urlwarden_private_logs:
            self._update_options(flow_detail=0, termlog_verbosity=PRIVATE_TERMLOG_VERBOSITY)
        wanted = (ctx.options.urlwarden_config, tuple(ctx.options.urlwarden_lists))
        if current is None or wanted != current.source:
            # (mitmproxy repeats configure, e.g. for script loading and for rollbacks: load once per change)
            if self._start_refused == wanted:
                return  # already refused, and said so once
            try:
                canon_selfcheck.verify()  # before any list is read; a wrong canonicalizer blocks nothing
                self.runtime.load(read_config(*wanted), source=wanted)
            except UrlwardenError as exc:
                if self.state is None and not proxy_running():  # start-up
                    self._refuse_start(wanted, str(exc))
                    return
                raise exceptions.OptionsError(str(exc)) from None
        if self.state is not None and self.state.config is not self._configured:
            self._follow_config(self.state.config)
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
        (`urlwarden.frontends.proxy.listenscope`). Once the servers run, options are only checked: a change of
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

    def _follow_config(self, config: Config) -> None:
        """Bring what follows from the configuration in force in line: log level, mitmproxy's
        access options, the admin listener (on the event loop: it changes mitmproxy's options)."""
        self._configured = config
        logs.configure_logging(config.logging.level)
        access = {"proxyauth": f"@{config.access.proxy_auth_file}" if config.access.proxy_auth_file else None}
        if config.access.explicit:
            access["block_global"] = False  # allowed_clients is the stricter, explicit rule now
        self._update_options(**access)
        self._update_options(**tunnel_options(config.wireguard))
        try:
            self._restart_admin(config.admin)
        except UrlwardenError as exc:
            if not self._running:
                # At start-up: mitmproxy's error check stops the process once start-up is over.
                startup_log.error("urlwarden: %s", exc)
            else:
                log.error("admin listener not restarted: %s; the proxy goes on without it", exc)

    @staticmethod
    def _update_options(**values) -> None:
        changes = {k: v for k, v in values.items() if k in ctx.options and getattr(ctx.options, k) != v}
        if changes:
            ctx.options.update(**changes)

    def running(self) -> None:
        self._running = True
        self._note_listeners()
        shorten_gil_switch_interval()
        if self._admin is not None:
            try:
                self._admin.start()
                log.info("admin listener on %s", self._admin.url)
            except UrlwardenError as exc:  # (its port was bound at start-up: this is rare)
                log.error("admin listener not started: %s; the proxy goes on without it", exc)
                self._admin = None
        self._start_feed_loop()
        # mitmdump exits on SIGHUP by default; here it reloads the configuration and lists.
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        except (NotImplementedError, RuntimeError):  # no signals on this platform or loop
            pass
        sdnotify.ready()
        self._notify_status(always=True)

    def _notify_status(self, always: bool = False) -> None:
        """systemd's one-line ``STATUS=`` (lists, entries, last update), as ``systemctl status`` shows
        it: at start and after each reload (`always`), and after a feed round that changed it."""
        current = self.runtime.current
        if current is None:
            return
        feeds = current.feeds
        line = summary.service_status(current.state.snapshot.stats.lists, feeds.statuses() if feeds else (),
                                      current.published, current.missing_required)
        if always or line != self._status_sent:
            self._status_sent = line
            sdnotify.status(line)

    def _start_feed_loop(self) -> None:
        """One feed loop for the life of the proxy, from the first configuration with feeds on
        (it follows the runtime's feeds across reloads)."""
        if self._feed_task is None and self.runtime.feeds is not None:
            self._feed_loop = FeedLoop(self.runtime, after_round=self._notify_status)
            self._feed_task = asyncio.get_running_loop().create_task(self._feed_loop.run())

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
        self.runtime.close()

    def _restart_admin(self, admin: AdminConfig) -> None:
        if self._admin is not None and admin == self._admin_config:
            return
        if self._admin is not None:
            self._admin.stop()
            self._admin = None
        self._admin_config = admin
        if admin.listen is None:
            return
        if "confdir" in ctx.options:
            self._confdir = ctx.options.confdir
        ca_cert = os.path.join(os.path.expanduser(self._confdir), "mitmproxy-ca-cert.pem")
        server = AdminServer(admin.listen[0], admin.listen[1], admin.token, self.metrics,
                             self.status, self.readiness, pac_proxy=admin.pac_proxy,
                             home_provider=self.home, ca_cert_path=ca_cert)
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
                await asyncio.to_thread(lambda: self.runtime.load(read_config(*wanted), source=wanted))
                self._follow_config(self.state.config)
                self._start_feed_loop()
            except UrlwardenError as exc:
                log.error("reload rejected, the running configuration stays: %s", exc)
            # once no request can still be using the lists replaced, make sure they are freed
            asyncio.get_running_loop().call_later(RELEASE_GRACE, self.runtime.release_retired)
            if self._feed_loop is not None:
                self._feed_loop.refresh_all_now()  # SIGHUP also refreshes every feed now
            sdnotify.ready()
            self._notify_status(always=True)
            if not self._reload_again:
                return

    def _note_listeners(self) -> None:
        try:
            self._listeners = listeners(ctx.master)
        except Exception as exc:  # only the home page's addresses depend on it
            log.error("could not list the proxy's listeners (%s)", type(exc).__name__)

    # --- admin providers (called on the admin listener's threads; read immutable values only) ----

    def home(self) -> dict:
        """The home page's facts only the proxy knows (`urlwarden.frontends.homepage.HomeFacts`)."""
        facts: dict = {"version": __version__, "mitmproxy_version": MITMPROXY_VERSION}
        state, running = self.state, list(self._listeners)
        proxies = [address for mode, address in running if getattr(mode, "type_name", "") != "wireguard"]
        if proxies:
            host, port = proxies[0]
            facts["proxy"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if state is not None:
            facts["wireguard"], facts["wireguard_problem"] = wireguard_devices(state.config, running, self._confdir)
            loaded = {ls.name for ls in state.snapshot.stats.lists}
            facts["missing_lists"] = [lc.name for lc in state.config.lists if lc.name not in loaded]
        return facts

    def readiness(self) -> tuple[bool, list[str]]:
        return self.runtime.readiness(self._running)

    def status(self) -> dict:
        return self.runtime.status(self.started, self._running)

    # --- connection level ----------------------------------------------------------------------

    def client_connected(self, client: Client) -> None:
        try:
            allowed = is_tunnel_client(client) or self.state.config.access.allows(client.peername[0])
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
        except UnparseableName:
            self._bad_name(flow)
            return
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
        except UnparseableName:
            self.metrics.count_request("bad_request")
            action = TlsAction.REFUSE
        except Exception as exc:
            action = TlsAction.REFUSE if self._internal_error("tls_clienthello", exc) else TlsAction.PASSTHROUGH
        self.metrics.count_tls(action.value)
        if uninspected:
            self.metrics.count_uninspected("refuse" if action is TlsAction.REFUSE else "pass")
        if action is TlsAction.PASSTHROUGH:
            self.metrics.count_request("passthrough")
            data.ignore_connection = True
            if uninspected and server_address:  # the operator's uninspected: pass
                self._note_checked(data.context.client.id, server_address, Carrier.TLS_PASSTHROUGH)
        elif action is TlsAction.REFUSE:
            # Relay nothing and mint no certificate; server_connect then kills the connection.
            data.ignore_connection = True
            self._refused_clients.add(data.context.client.id)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.client.id in self._refused_clients:
            data.server.error = REFUSED
            return
        if data.server.error:
            return  # refused already (tcp_start, udp_start)
        address = data.server.address
        unchecked = Carrier.UDP if data.server.transport_protocol == "udp" else Carrier.TCP
        carrier = self._checked.get(data.client.id, {}).get(address, unchecked)
        self._refuse_unless_reaches(data.server, carrier, data.client.sni)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self._raw_start(flow, Carrier.TCP)

    def udp_start(self, flow: udp.UDPFlow) -> None:
        self._raw_start(flow, Carrier.UDP)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        if flow.id in self._muted:
            flow.messages[-1].content = b""

    udp_message = tcp_message

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._muted.discard(flow.id)

    tcp_error = udp_end = udp_error = tcp_end

    def _raw_start(self, flow: tcp.TCPFlow | udp.UDPFlow, carrier: Carrier) -> None:
        """Bytes mitmproxy will relay without parsing: refused unless the host is clean."""
        if self._refuse_unless_reaches(flow.server_conn, carrier, flow.client_conn.sni):
            # The server error stops a connection that is not open yet; one that is (opened for
            # an earlier request, or eagerly) gets nothing more relayed, either way.
            self._muted.add(flow.id)
            if flow.killable:
                flow.kill()

    def _refuse_unless_reaches(self, server: Server, carrier: Carrier, client_sni: str | None) -> bool:
        """Set `server.error` (so it is never opened) unless `carrier` may reach its host."""
        names = [server.address[0] if server.address else None, server.sni, client_sni]
        try:
            state = self.state
            if self._missing_required:
                raise NotReady()
            status = connection_status(state.snapshot, names)
            allowed = may_reach(status, carrier, uninspected_pass=state.config.https.uninspected == "pass")
        except NotReady:
            allowed = carrier is Carrier.HTTP  # requests answer 503 themselves; nothing else passes
        except Exception as exc:
            allowed = not self._internal_error("server_connect", exc)
        if not allowed:
            server.error = REFUSED
            self.metrics.count_refused_connection(carrier.value)
        return not allowed

    def _note_checked(self, client_id: str, address: tuple | None, carrier: Carrier) -> None:
        """Remember that `client_id` reaches `address` with traffic urlwarden checked."""
        if address is None:
            return
        checked = self._checked.get(client_id)
        if checked is None or len(checked) >= MAX_CHECKED_DESTINATIONS:
            checked = self._checked[client_id] = {}
        checked[tuple(address)] = carrier

    def client_disconnected(self, client: Client) -> None:
        self._refused_clients.discard(client.id)
        self._checked.pop(client.id, None)

    # --- requests ------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return  # another addon already answered
        started = time.perf_counter()
        if refuse_oversized(flow):
            self.metrics.count_request("error")
            self.metrics.count_error("oversized")
            return
        missing = False
        try:
            # One read of what is in force, inside `request_decision`: this frame keeps only the
            # verdict and the configuration, never the snapshot (see `request_decision`).
            missing, verdict, config, upgrade_ok = request_decision(self.runtime.current, flow)
            if missing:
                pass  # (answered below, outside this handler)
            elif verdict is not None and verdict.blocked:
                self._block(flow, verdict, config)
            elif not upgrade_ok:
                self.metrics.count_request("block")
                self.metrics.count_refused_connection(Carrier.UPGRADE.value)
                flow.request.stream = False
                flow.response = http.Response.make(403, UPGRADE_REFUSED_BODY, PLAIN_CLOSE_HEADERS)
            else:
                self._note_checked(flow.client_conn.id, (flow.request.host, flow.request.port), Carrier.HTTP)
                if verdict is not None:
                    self.metrics.count_allow_list_hit(verdict.list_name)
                else:
                    self.metrics.count_request("allow")
        except UnparseableName:
            self._bad_name(flow)  # bad input, whatever on_error says: never an internal error
        except Exception as exc:
            if self._internal_error("request", exc):
                flow.request.stream = False
                flow.response = http.Response.make(ERROR_STATUS, ERROR_BODY, {"Cache-Control": "no-store"})
            else:
                self._note_checked(flow.client_conn.id, (flow.request.host, flow.request.port), Carrier.HTTP)
        if missing:
            self.metrics.count_request("error")
            self.metrics.count_error("not_ready")
            flow.request.stream = False
            flow.response = http.Response.make(503, NOT_READY_BODY, {"Cache-Control": "no-store", "Retry-After": "30"})
            return
        self.metrics.observe_decision(time.perf_counter() - started)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or response.status_code != 101:
            return
        # mitmproxy relays raw TCP after a 101 unless it is a WebSocket it can follow (its own
        # test, in proxy/layers/http: the answer's Upgrade and the request's version 13).
        websocket = (response.headers.get("upgrade", "").strip().lower() == "websocket"
                     and flow.request.headers.get("upgrade", "").strip().lower() == "websocket"
                     and flow.request.headers.get("sec-websocket-version", "").strip() == "13")
        carrier = Carrier.WEBSOCKET if websocket else Carrier.UPGRADE
        try:
            allowed = may_reach(connection_status(self.state.snapshot, request_names(flow)), carrier)
        except Exception as exc:
            allowed = not self._internal_error("responseheaders", exc)
        if not allowed:
            self.metrics.count_refused_connection(carrier.value)
            if flow.killable:
                flow.kill()

    def _bad_name(self, flow: http.HTTPFlow) -> None:
        """Answer 400: the request names something that is not a host. Nothing is sent upstream."""
        self.metrics.count_request("bad_request")
        flow.request.stream = False
        flow.response = http.Response.make(400, BAD_NAME_BODY, PLAIN_CLOSE_HEADERS)

    def _block(self, flow: http.HTTPFlow, verdict: Verdict, config: Config) -> None:
        policy = config.policy_for(verdict.list_name)
        self.metrics.count_block(verdict.list_name)
        flow.metadata["urlwarden"] = {"decision": "block", "list": verdict.list_name, "entry": verdict.entry_id}
        # Never the URL: list and entry id identify the block without repeating what was asked for.
        event = logs.block_event(verdict.list_name, verdict.entry_id, "block", policy.mode,
                                 client=flow.client_conn.peername, log_clients=config.logging.client_addresses)
        log.info("blocked list=%s entry=%s mode=%s", verdict.list_name, verdict.entry_id, policy.mode,
                 extra={"event": event})
        if policy.mode == "close":
            flow.kill()
            return
        flow.request.stream = False  # mitmproxy refuses a response on a streaming request
        flow.response = block_response(verdict, policy, config, flow.request.headers)

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


def request_decision(inforce: InForce | None,
                     flow: http.HTTPFlow) -> tuple[bool, Verdict | None, Config, bool]:
    """(a required feed has no list yet, the verdict, the configuration, whether its Upgrade may
    go on) for a request, from what is in force.

    The snapshot is only referenced in this frame, which ends before any response is built.
    Why it matters: mitmproxy's type checks (run when a `Response` is made) leave exceptions in
    reference cycles with their frames, and a frame kept in such a cycle keeps its callers'
    frames and locals until the cyclic collector runs, often hours later in its oldest
    generation: a caller's local holding the snapshot kept a replaced one, with its memory
    maps, alive that long.
    """
    if inforce is not None and inforce.missing_required:
        return True, None, inforce.state.config, True
    state = inforce.state  # (nothing loaded yet: the AttributeError applies on_error)
    names = request_names(flow)
    verdict = request_verdict(state.snapshot, flow.request.scheme, names, flow.request.path)
    return False, verdict, state.config, upgrade_allowed(flow, state, names)


def upgrade_allowed(flow: http.HTTPFlow, state: State, names: list[str | None]) -> bool:
    """Whether the request's Upgrade (if any) may reach its host (`protocols.may_upgrade`)."""
    fields = flow.request.headers.fields
    if not any(name.lower() == b"upgrade" for name, _ in fields):
        return True  # the common case, found without decoding headers (a fifth of get_all's cost)
    upgrades = flow.request.headers.get_all("upgrade")
    return may_upgrade(connection_status(state.snapshot, names), ", ".join(upgrades))


def block_response(verdict: Verdict, policy: blockpage.ListPolicy, config: Config,
                   headers: http.Headers) -> http.Response:
    """The block page for a request with these headers, as a mitmproxy response."""
    page = blockpage.render_for_request(verdict.list_name, verdict.entry_id, policy, config.page, headers)
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


def proxy_running() -> bool:
    """Whether mitmproxy's proxy servers have started (they bind once, at start)."""
    server = ctx.master.addons.get("proxyserver") if getattr(ctx, "master", None) else None
    return bool(getattr(server, "is_running", False))


def custom_mode_hosts(modes: Sequence[str]) -> list[tuple[str, str]]:
    """``(spec, host)`` for each mode that names its own listen host (``regular@HOST:PORT``).
    A spec mitmproxy cannot parse is left to mitmproxy, which refuses it. WireGuard listeners
    are left out: they have their own ``wireguard.listen`` and serve only holders of a device
    key, so they open no proxy to the network."""
    found = []
    for spec in modes:
        try:
            mode = mode_specs.ProxyMode.parse(spec)
        except ValueError:
            continue
        if mode.custom_listen_host is not None and not isinstance(mode, mode_specs.WireGuardMode):
            found.append((spec, mode.custom_listen_host))
    return found
