"""The ``urlwarden`` command: a thin client of the library.

Every urlwarden error ends as one line ``urlwarden: <message>`` on stderr and exit status 2,
never a traceback. ``check`` exits 0 when every URL is allowed and 1 when any is blocked;
``config check`` exits 0 when the configuration and its lists would load, else 2 after one
line per problem (like ``nginx -t``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from urlwarden import __version__
from urlwarden.core import canon, selfcheck as canon_selfcheck
from urlwarden.errors import UrlwardenError
from urlwarden.core.lists import load_list, parse_list_spec, write_sha256_list
from urlwarden.core.matcher import build

EXIT_OK, EXIT_BLOCKED, EXIT_ERROR = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough: list[str] = []
    if "--" in argv:  # everything after "--" belongs to mitmproxy (urlwarden run)
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    parser = _parser()
    args = parser.parse_args(argv)
    if passthrough and args.command != "run":
        parser.error("options after '--' are only for 'urlwarden run'")
    try:
        canon_selfcheck.verify()  # before any command canonicalizes: a wrong answer blocks nothing
        return args.func(args, passthrough)
    except UrlwardenError as exc:
        print(f"urlwarden: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="urlwarden", description="URL-blocklist filtering proxy.")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the filtering proxy (default: 127.0.0.1:8080, sample lists)",
                       description="Run the proxy. Options after '--' are passed to mitmproxy "
                                   "(e.g. -- --mode transparent --set confdir=DIR).")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    p.add_argument("--list", dest="lists", action="append", default=[], metavar="FILE[:FORMAT]",
                   help="block list, repeatable; replaces the configuration's lists")
    p.add_argument("--listen", metavar="HOST:PORT", help="where the proxy listens (default from the config)")
    p.add_argument("--mode", metavar="MODE", help="mitmproxy proxy mode, e.g. transparent (default: regular; "
                                                   "see docs/isp.md), or wireguard[@[HOST:]PORT]: the proxy plus "
                                                   "WireGuard listeners for devices (docs/home.md)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("wireguard-client", help="print a device's WireGuard configuration (text, or QR code with --qr)",
                       description="Print the wg-quick configuration a WireGuard app imports to send all of a "
                                   "device's traffic through urlwarden (run --mode wireguard). Each device in "
                                   "wireguard.devices has its own keys and UDP port; keys are created on first use.")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    p.add_argument("--device", metavar="NAME", help="which of wireguard.devices (default: the first)")
    p.add_argument("--endpoint", metavar="HOST[:PORT]",
                   help="the address devices reach this machine at (default: wireguard.endpoint)")
    p.add_argument("--qr", action="store_true", help="also draw it as a QR code for the phone app's camera")
    p.set_defaults(func=_cmd_wireguard_client)

    p = sub.add_parser("canon", help="print the canonical form and lookup expressions of URLs")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.set_defaults(func=_cmd_canon)

    p = sub.add_parser("check", help="say whether URLs are blocked (exit 1 when any is)",
                       description="Decide as the proxy would: with the configuration's static lists, its "
                                   "feeds' last-known-good lists and its allow lists (or only the --list files).")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    p.add_argument("--list", dest="lists", action="append", default=[], metavar="FILE[:FORMAT]",
                   help="block list, repeatable; replaces the configuration's lists (static and feeds)")
    p.add_argument("--allow", action="append", default=[], metavar="FILE[:FORMAT]", help="allow list, repeatable")
    p.add_argument("--json", action="store_true", help="one JSON object per URL")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("update", help="refresh every feed now and save its last-known-good list",
                       description="Refresh every configured feed now (a running proxy picks the new lists up at "
                                   "its next refresh, or at once on SIGHUP: systemctl reload urlwarden).")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    p.add_argument("--force", action="store_true", help="accept a list that shrinks more than max_shrink, this once")
    p.set_defaults(func=_cmd_update)

    p = sub.add_parser("status", help="every list: entries; feeds also version, last success, age, last-known-good",
                       description="One line per list: feeds first (entries, version, last success, age, "
                                   "checksum, whether the last-known-good copy is saved, last error), then "
                                   "static block and allow lists (entries, file, modified).")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    p.add_argument("--json", action="store_true", help="one JSON object per list")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("config", help="configuration tools: 'config check' validates a configuration and its lists")
    config_sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    c = config_sub.add_parser("check", help="load the configuration and its lists as the proxy would; "
                                            "exit 0 when they load, 2 after one line per error",
                              description="Like 'nginx -t': reads the configuration, every list it names, "
                                          "the feeds' last-known-good lists and the block page template, "
                                          "and prints one line per problem. Exit 0: the proxy would start "
                                          "with them; 2: it would not (or would refuse every request).")
    c.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    c.set_defaults(func=_cmd_config_check)

    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)",
                       description="bash: save as /usr/local/share/bash-completion/completions/urlwarden; zsh: "
                                   "as _urlwarden in a folder of $fpath (make install does both).")
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=_cmd_completion)

    p = sub.add_parser("selftest", help="check that each list's test URL is blocked by a live proxy (exit 1 if not)")
    p.add_argument("--proxy", required=True, metavar="URL", help="the proxy, e.g. http://127.0.0.1:8080")
    p.add_argument("--config", metavar="FILE", help="configuration naming the test URLs (default: the embedded one)")
    p.add_argument("--ca", metavar="FILE", help="the proxy's CA certificate, for HTTPS test URLs")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    p.set_defaults(func=_cmd_selftest)

    p = sub.add_parser("squid-helper", help="Squid external ACL helper (concurrent protocol) over the same lists",
                       description="Speaks Squid's external_acl_type protocol on stdin/stdout; see docs/squid.md.")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    p.set_defaults(func=_cmd_squid_helper)

    p = sub.add_parser("blockpage-server", help="serve the block page on its own port (for Squid's deny_info)")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    p.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:8081")
    p.set_defaults(func=_cmd_blockpage_server)

    p = sub.add_parser("export", help="export lists for other systems (diversion addresses, fleet snapshots)")
    export = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    e = export.add_parser("divert", help="destination addresses of listed hosts, for stage-1 diversion")
    e.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    e.add_argument("--format", choices=("nft", "plain"), default="plain")
    e.add_argument("--output", metavar="FILE", help="write here (atomically) instead of stdout")
    e.add_argument("--confirm", metavar="FILE", help="operator-confirmed addresses held back earlier")
    e.set_defaults(func=_cmd_export_divert)
    e = export.add_parser("snapshot", help="the verified last-known-good feeds, signed, for static serving")
    e.add_argument("directory", metavar="DIR")
    e.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    e.add_argument("--key", metavar="FILE", help="Ed25519 private key (PEM): the deprecated detached-signature format")
    e.add_argument("--keys", metavar="KEYDIR", help="TUF key directory (export keys init): publish a TUF repository")
    e.add_argument("--every", metavar="SECONDS", type=float,
                   help="publish again every SECONDS until stopped (re-signs the TUF timestamp)")
    e.set_defaults(func=_cmd_export_snapshot)
    e = export.add_parser("keys", help="TUF keys of a fleet repository: init, rotate, show")
    keys = e.add_subparsers(dest="action", required=True, metavar="ACTION")
    k = keys.add_parser("init", help="create the keys of the four TUF roles and root version 1")
    k.add_argument("directory", metavar="KEYDIR")
    k.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    k.add_argument("--threshold", metavar="ROLE=N", action="append", default=[],
                   help="signatures a role needs (and keys created for it); default 1")
    k.set_defaults(func=_cmd_export_keys_init)
    k = keys.add_parser("rotate", help="replace a role's key through a new root version")
    k.add_argument("role", choices=("root", "targets", "snapshot", "timestamp"))
    k.add_argument("--keys", metavar="KEYDIR", help="TUF key directory (default: export.snapshot.keys_dir)")
    k.add_argument("--keyid", metavar="ID", help="the key to replace when the role has several")
    k.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    k.set_defaults(func=_cmd_export_keys_rotate)
    k = keys.add_parser("show", help="roles, thresholds and key ids of the newest root version")
    k.add_argument("--keys", metavar="KEYDIR", help="TUF key directory (default: export.snapshot.keys_dir)")
    k.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    k.set_defaults(func=_cmd_export_keys_show)

    p = sub.add_parser("pac", help="print the proxy auto-config (PAC) file, or its data: URL",
                       description="Print the PAC file that sends browsers to the proxy (local destinations "
                                   "go direct). With --data-url, print it as a data: URL: Chromium given that "
                                   "URL fails closed while the proxy is down (docs/home.md).")
    p.add_argument("--config", metavar="FILE", help="YAML configuration (default: the embedded one)")
    p.add_argument("--proxy", metavar="HOST:PORT",
                   help="the proxy as browsers reach it (default: admin.pac_proxy, else the configuration's listen)")
    p.add_argument("--data-url", action="store_true", help="print the data: URL form instead of the file")
    p.set_defaults(func=_cmd_pac)

    p = sub.add_parser("hash-list", help="turn a plain or csv list into a sha256 list with host keys")
    p.add_argument("input", metavar="IN[:FORMAT]")
    p.add_argument("output", metavar="OUT", help="OUT.csv keeps ids and categories; anything else is a sha256 list")
    p.set_defaults(func=_cmd_hash_list)
    return parser


def _cmd_run(args, passthrough: list[str]) -> int:
    from urlwarden.config import parse_listen
    from urlwarden.errors import ConfigError
    from urlwarden.frontends.proxy.runner import run

    listen = None
    if args.listen:
        try:
            listen = parse_listen(args.listen)
        except ValueError as exc:
            raise ConfigError(f"--listen: {exc}") from None
    wireguard = None
    if args.mode and args.mode.partition("@")[0].partition(":")[0].lower() == "wireguard":
        wireguard = _wireguard_mode(args.mode)
    elif args.mode:
        passthrough = ["--mode", args.mode, *passthrough]
    return run(args.config, args.lists, listen, passthrough, wireguard=wireguard)


def _wireguard_mode(text: str) -> tuple[str | None, int | None]:
    """``wireguard[@[HOST:]PORT]`` -> (host or None, port or None)."""
    from urlwarden.errors import ConfigError

    head, at, where = text.partition("@")
    if ":" in head:
        raise ConfigError("--mode wireguard: the key files are set by wireguard.keys_dir in the configuration, "
                          f"not in the mode ({text!r})")
    if not at:
        return None, None
    host, colon, port = where.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536 or (colon and not host.strip("[]")):
        raise ConfigError(f"--mode: must be wireguard[@[HOST:]PORT], not {text!r}")
    return (host.strip("[]") or None), int(port)


def _cmd_wireguard_client(args, _passthrough) -> int:
    from urlwarden.config import parse_endpoint
    from urlwarden.errors import ConfigError
    from urlwarden.frontends.wireguard import client_config, devices, endpoint_for, endpoint_is_guessed, load_or_create_keys, qr_terminal

    config = _load_config(args.config)
    override = None
    if args.endpoint:
        try:
            override = parse_endpoint(args.endpoint)
        except ValueError as exc:
            raise ConfigError(f"--endpoint: {exc}") from None
    known = devices(config)
    chosen = [d for d in known if d.name == (args.device or known[0].name)]
    if not chosen:
        raise ConfigError(f"--device: no device {args.device!r} in wireguard.devices "
                          f"({', '.join(d.name for d in known)})")
    device = chosen[0]
    text = client_config(load_or_create_keys(device.keys_path), endpoint_for(config, device, override), device.name)
    if args.qr:
        print(qr_terminal(text))
    print(text, end="")
    if endpoint_is_guessed(config, device, override):
        print("urlwarden: note: the endpoint is this machine's address on its default route; if devices reach it "
              "at another address, set wireguard.endpoint or give --endpoint", file=sys.stderr)
    if not config.wireguard.enabled:
        print("urlwarden: note: wireguard.enabled is off: start the proxy with --mode wireguard", file=sys.stderr)
    return EXIT_OK


def _cmd_pac(args, _passthrough) -> int:
    from urlwarden.errors import ConfigError
    from urlwarden.exports.pac import default_pac_proxy, pac_data_url, render_pac

    if args.proxy is not None:
        proxy = args.proxy
    else:
        config = _load_config(args.config)
        proxy = config.admin.pac_proxy or default_pac_proxy(config.listen)
        if proxy is None:
            host, port = config.listen
            raise ConfigError(f"{config.source}: the proxy listens on every address ({host}:{port}); "
                              "give the address browsers use with --proxy HOST:PORT or admin.pac_proxy")
    try:
        pac = render_pac(proxy)
    except ConfigError as exc:
        if args.proxy is None:
            raise
        raise ConfigError(f"--proxy: {str(exc).removeprefix('pac_proxy: ')}") from None
    print(pac_data_url(pac) if args.data_url else pac, end="\n" if args.data_url else "")
    return EXIT_OK


def _cmd_squid_helper(args, _passthrough) -> int:
    from urlwarden.frontends.squid import serve

    return serve(_load_config(args.config), sys.stdin.buffer, sys.stdout.buffer)


def _cmd_blockpage_server(args, _passthrough) -> int:
    from urlwarden.config import parse_listen
    from urlwarden.errors import ConfigError
    from urlwarden.frontends.squid import serve_blockpage

    try:
        listen = parse_listen(args.listen)
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}") from None
    return serve_blockpage(_load_config(args.config), listen)


def _cmd_export_divert(args, _passthrough) -> int:
    from urlwarden.exports.export import export_divert

    return export_divert(_load_config(args.config), args.format, args.output, args.confirm)


def _cmd_export_snapshot(args, _passthrough) -> int:
    from urlwarden.exports.export import export_snapshot, export_snapshot_every, snapshot_every

    config = _load_config(args.config)
    every = args.every if args.every is not None else snapshot_every(config)
    if every is not None:
        return export_snapshot_every(config, args.directory, every, args.key, keys_dir=args.keys)
    return export_snapshot(config, args.directory, args.key, keys_dir=args.keys)


def _cmd_export_keys_init(args, _passthrough) -> int:
    from urlwarden.exports.export import export_keys_init

    return export_keys_init(_load_config(args.config), args.directory, args.threshold)


def _cmd_export_keys_rotate(args, _passthrough) -> int:
    from urlwarden.exports.export import export_keys_rotate

    return export_keys_rotate(_load_config(args.config), args.role, args.keys, args.keyid)


def _cmd_export_keys_show(args, _passthrough) -> int:
    from urlwarden.exports.export import export_keys_show

    return export_keys_show(_load_config(args.config), args.keys)


def _cmd_canon(args, _passthrough) -> int:
    status = EXIT_OK
    for url in args.urls:
        try:
            cu = canon.parse(url)
        except ValueError as exc:
            print(f"urlwarden: {url!r}: {exc}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        print(cu.url)
        for expression in canon.expressions(cu):
            print(f"  {expression}")
    return status


def _cmd_check(args, _passthrough) -> int:
    if args.lists:
        if args.config:
            print("urlwarden: note: --list replaces the configuration's block lists; its allow lists still apply",
                  file=sys.stderr)
            allow_specs = [lc.spec for lc in _load_config(args.config).allow]
        else:
            allow_specs = []
        block = [load_list(parse_list_spec(s)) for s in args.lists]
        allow = [load_list(s) for s in allow_specs + [parse_list_spec(s) for s in args.allow]]
        _warn_bad_lines(block + allow)
        snapshot = build(block, allow)
    else:
        snapshot = _snapshot_as_the_proxy_would(args.config, [load_list(parse_list_spec(s)) for s in args.allow])
    status = EXIT_OK
    for url in args.urls:
        try:
            verdict = snapshot.match(url)
        except ValueError as exc:
            print(f"urlwarden: {url!r}: {exc}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        blocked = verdict is not None and verdict.blocked
        if blocked and status == EXIT_OK:
            status = EXIT_BLOCKED
        print(_check_line(url, verdict, args.json))
    return status


def _warn_bad_lines(lists) -> None:
    for parsed in lists:
        for problem in parsed.problems:
            print(f"urlwarden: warning: {problem}", file=sys.stderr)
        if parsed.bad_lines > len(parsed.problems):
            print(f"urlwarden: warning: {parsed.path}: {parsed.bad_lines} bad lines skipped in all", file=sys.stderr)


def _snapshot_as_the_proxy_would(config_path: str | None, extra_allow):
    """The snapshot `urlwarden run` would build: static lists, feeds' last-known-good, allow lists."""
    from urlwarden.config import default_config_path
    from urlwarden.runtime.configcheck import inspect_config

    inspection = inspect_config(config_path or default_config_path())
    for line in inspection.warnings:
        print(f"urlwarden: {line}", file=sys.stderr)
    if not inspection.ok:
        for line in inspection.errors[:-1]:
            print(f"urlwarden: {line}", file=sys.stderr)
        raise UrlwardenError(inspection.errors[-1])
    if not extra_allow:
        return inspection.snapshot
    _warn_bad_lines(extra_allow)
    return build(list(inspection.block_lists), list(inspection.allow_lists) + list(extra_allow))


def _check_line(url: str, verdict, as_json: bool) -> str:
    decision = "BLOCK" if verdict is not None and verdict.blocked else "ALLOW"
    if as_json:
        record = {"url": url, "decision": decision.lower()}
        if verdict is not None:
            record.update(list=verdict.list_name, entry=verdict.entry_id, category=verdict.category,
                          expression=verdict.expression, action=verdict.action)
        return json.dumps(record)
    if verdict is None:
        return f"ALLOW {url}"
    via = "allow list" if not verdict.blocked else "list"
    return f"{decision} {url} {via}={verdict.list_name} entry={verdict.entry_id} expression={verdict.expression}"


def _load_config(path: str | None):
    from urlwarden.config import default_config_path, load_config

    return load_config(path or default_config_path())


def _feed_manager(config):
    from urlwarden.feeds.manager import FeedManager

    if not config.feeds:
        print(f"urlwarden: {config.source}: no feeds configured (lists given by 'path' are read directly)",
              file=sys.stderr)
        return None
    return FeedManager(config.feeds, config.state_dir)


def _cmd_update(args, _passthrough) -> int:
    import time

    from urlwarden.errors import FeedError

    config = _load_config(args.config)
    manager = _feed_manager(config)
    if manager is None:
        return EXIT_OK
    status = EXIT_OK
    with manager:
        manager.load_last_known_good()
        names = manager.names
        for i, name in enumerate(names, 1):
            print(f"[{i}/{len(names)}] {name}: updating...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                manager.refresh(name, force=True if args.force else None)
            except FeedError as exc:
                print(f"[{i}/{len(names)}] {name}: failed, the last good list stays: {exc}", file=sys.stderr)
                status = EXIT_ERROR
                continue
            fs = manager.status(name)
            print(f"[{i}/{len(names)}] {name}: {fs.last_update}, {fs.entries} entries, version "
                  f"{_version(fs.version)} ({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return status


def _cmd_status(args, _passthrough) -> int:
    from urlwarden.config import default_config_path
    from urlwarden.runtime.configcheck import inspect_config

    inspection = inspect_config(args.config or default_config_path())
    if inspection.config is None:
        raise UrlwardenError(inspection.errors[0])
    for fs in inspection.feeds:
        record = {"feed": fs.name, "kind": "feed", "entries": fs.entries, "version": _version(fs.version),
                  "last_success": _when(fs.last_success), "last_error": fs.last_error,
                  "age_seconds": None if fs.age is None else round(fs.age), "stale": fs.stale,
                  "checksum": fs.checksum, "source": fs.source, "lkg_saved": fs.lkg_saved,
                  "required": fs.required}
        if args.json:
            print(json.dumps(record))
        else:
            age = "-" if fs.age is None else f"{fs.age / 3600:.1f}h"
            saved = "-" if not fs.entries else ("saved" if fs.lkg_saved else "NOT SAVED")
            print(f"{fs.name}: {fs.entries} entries, version {record['version'] or '-'}, "
                  f"last success {record['last_success'] or 'never'}, age {age}{' (STALE)' if fs.stale else ''}, "
                  f"checksum {(fs.checksum or '-')[:16]}, last-known-good {saved}, last error {fs.last_error or '-'}")
    for ls in inspection.static:
        record = {"list": ls.name, "kind": f"static {ls.action}", "entries": ls.entries, "format": ls.format,
                  "path": ls.path, "modified": _when(ls.modified), "bad_lines": ls.bad_lines, "error": ls.error}
        if args.json:
            print(json.dumps(record))
        else:
            entries = "NOT LOADED" if ls.entries is None else f"{ls.entries} entries"
            print(f"{ls.name}: static {ls.action} list, {entries}, {ls.format} file {ls.path}, "
                  f"modified {record['modified'] or '-'}"
                  + (f", {ls.bad_lines} bad lines skipped" if ls.bad_lines else "")
                  + (f", error {ls.error}" if ls.error else ""))
    if not inspection.feeds and not inspection.static:
        print(f"urlwarden: {inspection.source}: no lists configured: nothing would be blocked", file=sys.stderr)
    return EXIT_OK


def _cmd_config_check(args, _passthrough) -> int:
    from urlwarden.config import default_config_path
    from urlwarden.runtime.configcheck import inspect_config

    inspection = inspect_config(args.config or default_config_path())
    for line in inspection.warnings:
        print(f"urlwarden: {line}", file=sys.stderr)
    for line in inspection.errors:
        print(f"urlwarden: {line}", file=sys.stderr)
    if not inspection.ok:
        print(f"urlwarden: configuration {inspection.source} test failed", file=sys.stderr)
        return EXIT_ERROR
    stats = inspection.snapshot.stats
    lists = len(stats.lists)
    print(f"urlwarden: configuration {inspection.source} is ok: {lists} list{'s' * (lists != 1)}, "
          f"{stats.block_entries} block and {stats.allow_entries} allow entries", file=sys.stderr)
    return EXIT_OK


def _cmd_completion(args, _passthrough) -> int:
    import shtab

    sys.stdout.write(shtab.complete(_parser(), shell=args.shell))
    return EXIT_OK


def version_line() -> str:
    """``urlwarden X (mitmproxy Y, Python Z)``: what a bug report needs, without importing mitmproxy."""
    import platform
    from importlib import metadata

    try:
        mitmproxy_version = metadata.version("mitmproxy")
    except metadata.PackageNotFoundError:
        mitmproxy_version = "not installed"
    return f"urlwarden {__version__} (mitmproxy {mitmproxy_version}, Python {platform.python_version()})"


def _version(version) -> str | None:
    if version is None:
        return None
    return version.serial or version.etag or version.last_modified


def _when(timestamp: float | None) -> str | None:
    import datetime as dt

    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cmd_selftest(args, _passthrough) -> int:
    from urlwarden.selftest import cases_from_config, run_selftest

    config = _load_config(args.config)
    cases = cases_from_config(config)
    if not cases:
        print(f"urlwarden: {config.source}: no list has a test_url to check", file=sys.stderr)
        return EXIT_ERROR
    results = run_selftest(args.proxy, cases, timeout=args.timeout, ca_bundle=args.ca)
    for result in results:
        print(f"{'PASS' if result.ok else 'FAIL'} {result.list_name}: {result.reason}")
    return EXIT_OK if all(r.ok for r in results) else EXIT_BLOCKED


def _cmd_hash_list(args, _passthrough) -> int:
    parsed = load_list(parse_list_spec(args.input))
    for problem in parsed.problems:
        print(f"urlwarden: warning: {problem}", file=sys.stderr)
    written = write_sha256_list(parsed, args.output)
    print(f"urlwarden: wrote {written} entries to {args.output}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
