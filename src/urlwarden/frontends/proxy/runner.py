"""``urlwarden run``: mitmproxy's own mitmdump machinery with the urlwarden addon built in.

The configuration and lists are loaded and checked before mitmproxy starts, so a bad file stops
the command with one line naming it; the runtime they were loaded into
(`urlwarden.runtime.inforce.Runtime`) is then handed to the addon, which does not load them twice.
Everything after ``--`` goes to mitmproxy unchanged (``--mode``, ``--set``...), except that a
listen address wider than ``--listen`` (or the configuration's ``listen``) is refused
(`urlwarden.frontends.proxy.listenscope`).

Privacy defaults: mitmproxy's flow printer is not loaded, and the addon's
``urlwarden_private_logs`` option (on by default) cuts mitmproxy's own log to errors, because at
its info level it prints every client address and host name it relays. Pass
``-- --set urlwarden_private_logs=false --set termlog_verbosity=info`` to see them while debugging.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from urlwarden.config import default_config_path
from urlwarden.runtime.engine import State


def run(config_path: str | None, list_specs: Sequence[str], listen: tuple[str, int] | None,
        mitmproxy_args: Sequence[str], wireguard: tuple[str | None, int | None] | None = None) -> int:
    """Start the proxy and serve until SIGINT/SIGTERM; returns the exit code.

    `wireguard` (from ``--mode wireguard[@[HOST:]PORT]``) turns the WireGuard listeners on, with
    the host and port given there in place of the configuration's; ``wireguard.enabled`` does too."""
    from urlwarden import logs
    from urlwarden.runtime.inforce import Runtime, read_config
    from urlwarden.runtime.offload import Offloader

    config = read_config(config_path or str(default_config_path()), list_specs)
    logs.configure_logging(config.logging.level)  # (as the addon will: the load below logs what it loaded)
    host, port = listen or config.listen
    # before the lists are loaded: a port in use is one line, and nothing else is said
    _check_ports(config, (host, port), "--listen" if listen else "listen", mitmproxy_args)
    source = str(Path(config.source).resolve())
    runtime = Runtime(offloader=Offloader())
    # the option values the addon will see, so that it recognises what is loaded already
    runtime.load(config, source=(source, tuple(list_specs)))
    # The addon applies (and polices) the listen address itself; the explicit options say the
    # same thing, so that mitmproxy never even starts out with its own default of every address.
    args = [
        "--listen-host", host, "--listen-port", str(port),
        "--set", f"urlwarden_config={source}",
        "--set", "connection_strategy=lazy",
    ]
    for spec in list_specs:
        args += ["--set", f"urlwarden_lists={spec}"]
    args += wireguard_mode_args(config, wireguard)
    args += list(mitmproxy_args)
    banner = describe_lists(runtime.current.state)
    _start_mitmproxy(runtime, banner, (host, port), args)
    return 0


def wireguard_mode_args(config, override: tuple[str | None, int | None] | None) -> list[str]:
    """``--mode`` arguments for the WireGuard listeners (one per device) and the regular proxy
    beside them; none when WireGuard is off. Creates missing key files (0600) first."""
    from urlwarden.frontends.wireguard import mode_specs

    wg = config.wireguard if override is None else config.wireguard.with_listen(*override)
    if not wg.enabled:
        return []
    args = ["--mode", "regular"]  # the proxy on `listen` stays (browsers, the PAC file)
    for spec in mode_specs(config, wg):
        args += ["--mode", spec]
    return args


# mitmproxy modes that listen on TCP at listen_host:listen_port unless given a port of their own
_TCP_MODES = ("regular", "transparent", "upstream", "reverse", "socks5")


def _check_ports(config, proxy_listen: tuple[str, int], proxy_key: str, mitmproxy_args: Sequence[str]) -> None:
    """A port in use stops `run` before mitmproxy starts, with one line naming the setting to change
    (mitmproxy's own message would suggest a ``--mode`` option instead)."""
    from urlwarden.errors import ConfigError
    from urlwarden.core.netutil import cannot_listen

    modes = [mitmproxy_args[i + 1] for i, arg in enumerate(mitmproxy_args[:-1]) if arg in ("--mode", "-m")]
    modes += [arg.removeprefix("--mode=") for arg in mitmproxy_args if arg.startswith("--mode=")]
    checks = []
    if all(mode.split(":")[0].split("@")[0] in _TCP_MODES and "@" not in mode for mode in modes):
        checks.append((proxy_key, proxy_listen))
    if config.admin.listen is not None:
        checks.append(("admin.listen", config.admin.listen))
    for key, (host, port) in checks:
        reason = cannot_listen(host, port)
        if reason is not None:
            where = "" if key.startswith("--") else f" in {config.source}"
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise ConfigError(f"{key} {shown}{where}: cannot listen: {reason}")


def _start_mitmproxy(runtime, banner: list[str], listen: tuple[str, int], args: list[str]) -> None:
    # Imported here so that the rest of the CLI (check, canon, hash-list) starts fast.
    from mitmproxy.tools import cmdline, main
    from mitmproxy.tools.dump import DumpMaster

    from urlwarden.frontends.proxy import dispatch
    from urlwarden.frontends.proxy.addon import UrlWarden
    from urlwarden.frontends.proxy.tunnel import TunnelGuard, put_before

    class UrlwardenMaster(DumpMaster):
        def __init__(self, options):
            super().__init__(options, with_termlog=True, with_dumper=False)
            dispatch.install(self.addons)
            guard = TunnelGuard()
            # (the runtime, not a snapshot: what it holds is replaced and released on reloads)
            self.addons.add(UrlWarden(runtime, listen=listen), guard, Banner(banner))
            # The canary answer must come before mitmproxy's resolver asks the network for it.
            put_before(self.addons, guard, "dnsresolver")

    main.run(UrlwardenMaster, cmdline.mitmdump, args)


class Banner:
    """Prints, once the listeners are up, where the proxy listens, what it loaded, and the CA."""

    def __init__(self, lists: list[str]):
        self.lists = lists  # lines, not the state: a banner must not keep the start-up snapshot alive

    def running(self) -> None:
        from mitmproxy import ctx

        addresses = ", ".join(f"{h}:{p}" for h, p in _listen_addresses(ctx)) or "(no listener)"
        confdir = os.path.expanduser(ctx.options.confdir)
        lines = [f"urlwarden: proxy listening on {addresses} (mode: {', '.join(ctx.options.mode)})"]
        lines += [f"urlwarden: {line}" for line in self.lists]
        lines.append(f"urlwarden: CA certificate: {os.path.join(confdir, 'mitmproxy-ca-cert.pem')} "
                     f"(clients install it from http://mitm.it through the proxy; see docs/home.md)")
        if any(mode.startswith("wireguard") for mode in ctx.options.mode):
            lines.append("urlwarden: WireGuard devices: scan their QR codes on the admin home page, or print them "
                         "with `urlwarden wireguard-client --qr` (see docs/home.md)")
        # stderr: stdout carries the JSON log lines, which log shippers parse one by one
        print("\n".join(lines), file=sys.stderr, flush=True)
        # Its work is done: leave the addon chain, which mitmproxy walks for every event of every
        # request (after the current `running` round, which is iterating over the chain now).
        asyncio.get_running_loop().call_soon(_remove_addon, ctx.master.addons, self)


def _remove_addon(addons, addon) -> None:
    if addon in addons.chain:
        addons.remove(addon)


def _listen_addresses(ctx) -> list[tuple[str, int]]:
    proxyserver = ctx.master.addons.get("proxyserver")
    out = []
    for server in getattr(proxyserver, "servers", []):
        for addr in getattr(server, "listen_addrs", []):
            out.append((addr[0], addr[1]))
    return out


def describe_lists(state: State) -> list[str]:
    from urlwarden.runtime.summary import describe_lists as summary_lines

    feed_names = [spec.name for spec in state.config.feeds]
    loaded = {ls.name for ls in state.snapshot.stats.lists}
    missing = [spec.name for spec in state.config.feeds if spec.required and spec.name not in loaded]
    return summary_lines(state.snapshot.stats.lists, feed_names, missing)
