"""The mitmproxy addon: wires urlwarden's options to mitmproxy's hooks. The only module that imports mitmproxy.

Where each decision is taken, so that a blocked host is never contacted:

* ``configure``: loads the configuration and lists aside, then swaps them in with one assignment;
  forces ``connection_strategy=lazy`` (mitmproxy connects upstream before the request hook
  otherwise) and ``flow_detail=0`` (mitmproxy would print every URL it relays).
* ``http_connect``: refuses a CONNECT to a host that is refused without interception.
* ``tls_clienthello``: per host, passes the TLS connection through untouched, intercepts it, or
  marks it refused (see `engine.tls_action`).
* ``requestheaders``: blocks a request when any of its names is listed, before the body is read
  and before any upstream connection.
* ``server_connect``: the last guard: a server connection to a host listed whole, or one marked
  refused, is killed before it is opened.

Every hook is guarded: an internal error applies the configured ``on_error`` (default block),
is counted, and is logged once per kind.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.connection import Client
from mitmproxy.proxy import server_hooks

from . import blockpage
from .config import default_config_path, load_config
from .engine import State, TlsAction, host_severity, load_state, request_verdict, tls_action
from .errors import UrlwardenError
from .lists import parse_list_spec
from .matcher import HostStatus, Verdict

log = logging.getLogger("urlwarden")

PRIVATE_TERMLOG_VERBOSITY = "error"
ERROR_STATUS = 503
ERROR_BODY = b"urlwarden could not check this request, so it was not sent (on_error: block).\n"


class UrlWarden:
    def __init__(self, preloaded: State | None = None) -> None:
        self.state: State | None = None
        self._preloaded = preloaded  # `urlwarden run` loads and checks the lists before mitmproxy starts
        self.counts: Counter[str] = Counter()
        self._error_kinds_logged: set[str] = set()
        self._refused_clients: set[str] = set()
        self._loaded_from: tuple[str, tuple[str, ...]] | None = None

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
        install_log_handler()

    def configure(self, updated: set[str]) -> None:
        first = self.state is None
        if "connection_strategy" in ctx.options and ("connection_strategy" in updated or first):
            if ctx.options.connection_strategy != "lazy":
                # Eager connections would contact a listed host before the request hook runs.
                ctx.options.update(connection_strategy="lazy")
        if ctx.options.urlwarden_private_logs:
            private = {"flow_detail": 0, "termlog_verbosity": PRIVATE_TERMLOG_VERBOSITY}
            changes = {k: v for k, v in private.items() if k in ctx.options and getattr(ctx.options, k) != v}
            if changes:
                ctx.options.update(**changes)
        wanted = (ctx.options.urlwarden_config, tuple(ctx.options.urlwarden_lists))
        if self.state is None or wanted != self._loaded_from:
            # (mitmproxy repeats configure, e.g. for script loading and for rollbacks: load once per change)
            try:
                state = self._preloaded or self._load(ctx.options.urlwarden_config, ctx.options.urlwarden_lists)
            except UrlwardenError as exc:
                raise exceptions.OptionsError(str(exc)) from None
            self._preloaded = None
            self.state = state  # the one assignment that swaps the new lists in
            self._loaded_from = wanted
            log.info("urlwarden: %s", describe(state))

    @staticmethod
    def _load(config_path: str, list_specs: Sequence[str]) -> State:
        config = load_config(config_path or default_config_path())
        if list_specs:
            config = config.with_lists([parse_list_spec(s) for s in list_specs])
        return load_state(config)

    def client_disconnected(self, client: Client) -> None:
        self._refused_clients.discard(client.id)

    # --- connection level ----------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        try:
            action = tls_action(self.state.snapshot, self.state.config.https, [flow.request.host])
        except Exception as exc:  # a filter must not fail open by accident: on_error decides
            if self._internal_error("http_connect", exc):
                flow.response = http.Response.make(ERROR_STATUS, ERROR_BODY, {"Cache-Control": "no-store"})
            return
        if action is TlsAction.REFUSE:
            self.counts["tls_refuse"] += 1
            flow.response = http.Response.make(403, b"Blocked by urlwarden.\n", {"Cache-Control": "no-store"})

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        server_address = data.context.server.address
        names = [data.client_hello.sni, server_address[0] if server_address else None]
        try:
            action = tls_action(self.state.snapshot, self.state.config.https, names)
        except Exception as exc:
            action = TlsAction.REFUSE if self._internal_error("tls_clienthello", exc) else TlsAction.PASSTHROUGH
        self.counts[f"tls_{action.value}"] += 1
        if action is TlsAction.PASSTHROUGH:
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
            self.counts["server_refuse"] += 1
            data.server.error = "refused by urlwarden"

    # --- requests ------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return  # another addon already answered
        state = self.state
        try:
            # (a State that failed to load is None: the AttributeError below then applies on_error)
            verdict = request_verdict(state.snapshot, flow.request.scheme, request_names(flow), flow.request.path)
            if verdict is not None and verdict.blocked:
                self._block(flow, verdict, state)
            else:
                self.counts["allow_list" if verdict else "allow"] += 1
        except Exception as exc:
            if self._internal_error("request", exc):
                flow.request.stream = False
                flow.response = http.Response.make(ERROR_STATUS, ERROR_BODY, {"Cache-Control": "no-store"})

    def _block(self, flow: http.HTTPFlow, verdict: Verdict, state: State) -> None:
        policy = state.config.policy_for(verdict.list_name)
        self.counts["block"] += 1
        flow.metadata["urlwarden"] = {"decision": "block", "list": verdict.list_name, "entry": verdict.entry_id}
        # Never the URL: list and entry id identify the block without repeating what was asked for.
        log.info("urlwarden: blocked list=%s entry=%s mode=%s", verdict.list_name, verdict.entry_id, policy.mode)
        if policy.mode == "close":
            flow.kill()
            return
        flow.request.stream = False  # mitmproxy refuses a response on a streaming request
        flow.response = block_response(verdict, policy, state, flow.request.headers)

    def _internal_error(self, where: str, exc: Exception) -> bool:
        """Count and log (once per kind) an internal error; True when on_error says block."""
        kind = f"{where}:{type(exc).__name__}"
        self.counts["error"] += 1
        self.counts[f"error:{kind}"] += 1
        if kind not in self._error_kinds_logged:
            self._error_kinds_logged.add(kind)
            log.error("urlwarden: internal error in %s (%s); on_error applies; logged once per kind",
                      where, type(exc).__name__)
        return self.state is None or self.state.config.on_error == "block"


def install_log_handler() -> None:
    """urlwarden's own log lines go to stderr at info, whatever mitmproxy's verbosity is (once)."""
    logger = logging.getLogger("urlwarden")
    if any(getattr(h, "urlwarden", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.urlwarden = True
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


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


def request_names(flow: http.HTTPFlow) -> list[str | None]:
    """Every name the request is addressed by: URL host, Host headers, :authority, CONNECT target, SNI."""
    request = flow.request
    names: list[str | None] = [request.host, request.authority or None]
    names.extend(request.headers.get_all("host"))
    if flow.server_conn.address:
        names.append(flow.server_conn.address[0])
    names.append(flow.client_conn.sni)
    return names


def describe(state: State) -> str:
    """One line for logs and the console: what is loaded (never list contents)."""
    parts = [f"{ls.action} list {ls.name}: {ls.entries} entries ({ls.format})" for ls in state.snapshot.stats.lists]
    return "; ".join(parts) if parts else "no lists loaded: nothing will be blocked"
