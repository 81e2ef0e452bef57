"""The urlwarden configuration file: YAML parsed at the edge into immutable values.

Validation is strict and precise: unknown keys are rejected (a typo must not silently change
what is blocked), and every error names the file and line, e.g.
``urlwarden: /etc/urlwarden.yaml:12: lists[0].status: must be an integer from 400 to 599``.
Paths inside the file are relative to the file's own folder. `docs/configuration.md` describes
every key; `lists/default.yaml` is the embedded default used by a bare ``urlwarden run``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import yaml

from urlwarden.exports.pac import default_pac_proxy, parse_pac_proxy
from urlwarden.blockpage import DEFAULT_LANGUAGE, LANGUAGES, MAX_URL_CHARS, ListPolicy, Localized, PageSettings, http_url
from urlwarden.core.fsutil import read_small_text
from urlwarden.errors import ConfigError, FeedError
from urlwarden.feeds import get_adapter, make_adapter
from urlwarden.feeds.manager import FeedSpec
from urlwarden.feeds.payload import load_public_key
from urlwarden.core.lists import ListSpec, make_spec
from urlwarden.core.netutil import is_loopback

__all__ = [
    "AccessConfig", "AdminConfig", "Config", "HttpsPolicy", "ListConfig", "LoggingConfig",
    "WireGuardConfig", "default_config_path", "load_config", "parse_config",
]

DEFAULT_LISTEN = ("127.0.0.1", 8080)
ON_ERROR_CHOICES = ("block", "allow")
INTERCEPT_CHOICES = ("listed-hosts", "all", "none")
UNINSPECTED_CHOICES = ("refuse", "pass")
MODE_CHOICES = ("splash", "notfound", "close")
FORMAT_CHOICES = ("plain", "sha256", "csv")
LOG_LEVELS = ("debug", "info", "warning", "error")
WIREGUARD_DEFAULT_PORT = 51820
MAX_WIREGUARD_DEVICES = 32
"""Each device has its own UDP port (listen port + its position); a home has a handful."""
MAX_CONFIG_BYTES = 1 << 20
"""A configuration file larger than this is refused (it is a few hundred bytes in practice)."""


@dataclass(frozen=True)
class HttpsPolicy:
    """How HTTPS is handled, decided per host at the TLS ClientHello.

    intercept: "listed-hosts" intercepts only hosts the lists name (passes every other host
    through untouched), "all" intercepts everything, "none" intercepts nothing (for deployments
    whose clients do not trust urlwarden's CA). uninspected: with intercept "none", what to do
    with a host that has path-level entries: "refuse" the whole host (over-blocks) or "pass"
    it (under-blocks). Hosts listed whole are refused when not intercepted.
    """

    intercept: str = "listed-hosts"
    uninspected: str = "refuse"


@dataclass(frozen=True)
class ListConfig:
    """One block or allow list: a static file (`spec`) or a feed (`feed`), and how its blocks are answered."""

    spec: ListSpec | None = None
    policy: ListPolicy = field(default_factory=ListPolicy)
    test_url: str | None = None
    feed: FeedSpec | None = None

    @property
    def name(self) -> str:
        return self.feed.name if self.feed is not None else self.spec.name


LOOPBACK_CLIENTS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class AdminConfig:
    """The admin listener (/metrics, /healthz, /readyz, /status); off when `listen` is None.

    The bearer token is read from an environment variable or a file named in the configuration,
    never written in it; it is kept out of repr() so it cannot reach a log by accident.
    """

    listen: tuple[str, int] | None = None
    token: str | None = field(default=None, repr=False)
    pac_proxy: str | None = None  # HOST:PORT that /proxy.pac sends browsers to; None: no PAC file


@dataclass(frozen=True)
class WireGuardConfig:
    """The WireGuard listener (mitmproxy's userspace WireGuard mode), for devices with no proxy setting.

    Each device has its own key pair and UDP port (mitmproxy's WireGuard server serves one client
    key): device i listens on ``listen`` port + i. `endpoint` is the address devices use to reach
    it (``HOST`` or ``HOST:PORT`` of the first device); None: the listen host, unless it is a
    wildcard. `name_servers` empty: the machine's own resolver answers the tunnel's DNS.
    """

    enabled: bool = False
    listen: tuple[str, int] = ("0.0.0.0", WIREGUARD_DEFAULT_PORT)
    endpoint: tuple[str, int | None] | None = None
    devices: tuple[str, ...] = ("device",)
    keys_dir: str | None = None  # None: <state_dir>/wireguard
    name_servers: tuple[str, ...] = ()

    def with_listen(self, host: str | None, port: int | None) -> WireGuardConfig:
        """This configuration, enabled, listening on `host`/`port` where given (``--mode wireguard@...``)."""
        return replace(self, enabled=True, listen=(host or self.listen[0], port or self.listen[1]))


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    client_addresses: bool = False  # when on, logged anonymised (IPv4 /24, IPv6 /48)


@dataclass(frozen=True)
class AccessConfig:
    """Who may use the proxy. Every other client is refused before any upstream contact."""

    allowed_clients: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = LOOPBACK_CLIENTS
    explicit: bool = False  # allowed_clients was configured (then mitmproxy's block_global is off)
    proxy_auth_file: str | None = None  # htpasswd file for proxy authentication

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allowed_clients)


@dataclass(frozen=True)
class Config:
    source: str
    listen: tuple[str, int] = DEFAULT_LISTEN
    on_error: str = "block"
    page: PageSettings = field(default_factory=PageSettings)
    https: HttpsPolicy = field(default_factory=HttpsPolicy)
    lists: tuple[ListConfig, ...] = ()
    allow: tuple[ListConfig, ...] = ()
    admin: AdminConfig = field(default_factory=AdminConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    state_dir: str = field(default_factory=lambda: default_state_dir())
    export: object = None  # export.ExportSettings (``urlwarden export``); None: the defaults
    wireguard: WireGuardConfig = field(default_factory=WireGuardConfig)

    @property
    def feeds(self) -> tuple[FeedSpec, ...]:
        return tuple(lc.feed for lc in self.lists if lc.feed is not None)

    @property
    def static_lists(self) -> tuple[ListConfig, ...]:
        return tuple(lc for lc in self.lists if lc.spec is not None)

    def with_lists(self, specs: list[ListSpec]) -> Config:
        """This configuration with its block lists (static and feeds) replaced (``urlwarden run --list``)."""
        return replace(self, lists=tuple(ListConfig(spec=s) for s in specs))

    def policy_for(self, list_name: str) -> ListPolicy:
        for lc in self.lists:
            if lc.name == list_name:
                return lc.policy
        return ListPolicy()


def default_state_dir() -> str:
    """Where feeds keep their last-known-good lists unless ``state_dir`` says otherwise."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "urlwarden")


def default_config_path() -> Path:
    """The embedded default configuration (localhost, the synthetic sample lists)."""
    return Path(str(resources.files("urlwarden") / "data" / "default.yaml"))


def load_config(path: str | Path) -> Config:
    path = Path(path)
    text = read_small_text(path, MAX_CONFIG_BYTES, "", ConfigError)
    return parse_config(text, source=str(path), base_dir=path.parent)


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> Config:
    reader = _Reader(source, base_dir or Path.cwd())
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError(f"{source}:{line}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if root is None:
        raise ConfigError(f"{source}: empty configuration")
    return reader.config(root)


class _Reader:
    """Walks the YAML node tree (which keeps line numbers) and builds the values."""

    def __init__(self, source: str, base_dir: Path):
        self.source = source
        self.base_dir = base_dir

    def fail(self, node: yaml.Node, where: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.source}:{node.start_mark.line + 1}: {where}: {message}")

    def mapping(self, node: yaml.Node, where: str, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, where, "must be a mapping")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key not in allowed:
                self.fail(key_node, where, f"unknown key {key!r} (known: {', '.join(allowed)})")
            if key in out:
                self.fail(key_node, where, f"duplicate key {key!r}")
            out[key] = value_node
        return out

    def scalar(self, node: yaml.Node, where: str, kind: type, check: Callable[[Any], bool] | None = None,
               expected: str = "") -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, where, f"must be {expected or kind.__name__}")
        value = yaml.SafeLoader("").construct_object(node)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = node.value  # "8080" or 1.0 written unquoted are still text here
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok or (check is not None and not check(value)):
            self.fail(node, where, f"must be {expected or kind.__name__}, not {node.value!r}")
        return value

    def choice(self, node: yaml.Node, where: str, choices: tuple[str, ...]) -> str:
        return self.scalar(node, where, str, lambda v: v in choices, "one of " + ", ".join(choices))

    def url(self, node: yaml.Node, where: str) -> str:
        # The block page's own rule, so that a link accepted here is one the page really shows.
        return self.scalar(node, where, str, lambda v: http_url(v) is not None,
                           f"an http:// or https:// URL with a host (ASCII, at most {MAX_URL_CHARS} characters)")

    def config(self, root: yaml.Node) -> Config:
        top = self.mapping(root, "config", ("listen", "on_error", "operator", "https", "lists", "allow",
                                            "admin", "logging", "access", "state_dir", "export",
                                            "wireguard"))
        values: dict[str, Any] = {}
        if "listen" in top:
            values["listen"] = self.listen(top["listen"])
        if "on_error" in top:
            values["on_error"] = self.choice(top["on_error"], "on_error", ON_ERROR_CHOICES)
        if "operator" in top:
            values["page"] = self.operator(top["operator"])
        if "https" in top:
            values["https"] = self.https(top["https"])
        if "state_dir" in top:
            values["state_dir"] = str(self.base_dir / self.scalar(top["state_dir"], "state_dir", str, bool, "a folder path"))
        if "admin" in top:
            values["admin"] = self.admin(top["admin"], values.get("listen", DEFAULT_LISTEN))
        if "export" in top:
            values["export"] = self.export(top["export"])
        if "logging" in top:
            values["logging"] = self.logging(top["logging"])
        if "access" in top:
            values["access"] = self.access(top["access"])
        if "wireguard" in top:
            values["wireguard"] = self.wireguard(top["wireguard"])
        values["lists"] = self.lists(top["lists"], "lists", block=True) if "lists" in top else ()
        values["allow"] = self.lists(top["allow"], "allow", block=False) if "allow" in top else ()
        seen: set[str] = set()
        for key in ("lists", "allow"):
            for i, lc in enumerate(values[key]):
                if lc.name in seen:
                    self.fail(top[key].value[i], f"{key}[{i}]", f"list name {lc.name!r} is used twice")
                seen.add(lc.name)
        return Config(source=self.source, **values)

    def listen(self, node: yaml.Node, where: str = "listen") -> tuple[str, int]:
        text = self.scalar(node, where, str, expected="HOST:PORT")
        try:
            return parse_listen(text)
        except ValueError as exc:
            self.fail(node, where, str(exc))

    def export(self, node: yaml.Node):
        from urlwarden.exports.export import parse_export_settings  # export imports the feed store; load it only when used

        try:
            return parse_export_settings(yaml.SafeLoader("").construct_object(node, deep=True), self.base_dir)
        except ConfigError as exc:
            self.fail(node, "export", str(exc))

    def admin(self, node: yaml.Node, proxy_listen: tuple[str, int]) -> AdminConfig:
        fields = self.mapping(node, "admin", ("listen", "token_env", "token_file", "pac_proxy"))
        listen = self.listen(fields["listen"], "admin.listen") if "listen" in fields else None
        token = None
        if "token_env" in fields and "token_file" in fields:
            self.fail(fields["token_file"], "admin", "give token_env or token_file, not both")
        if "token_env" in fields:
            name = self.scalar(fields["token_env"], "admin.token_env", str, bool, "an environment variable name")
            token = os.environ.get(name, "").strip()
            if not token:
                self.fail(fields["token_env"], "admin.token_env", f"environment variable {name} is not set")
        if "token_file" in fields:
            path = self.base_dir / self.scalar(fields["token_file"], "admin.token_file", str, bool, "a file path")
            try:
                token = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                self.fail(fields["token_file"], "admin.token_file", f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
            if not token:
                self.fail(fields["token_file"], "admin.token_file", f"{path} is empty")
        if token and (len(token) > 1024 or not token.isascii() or not token.isprintable() or " " in token):
            self.fail(node, "admin", "the token must be printable ASCII without spaces, at most 1024 characters")
        if listen is not None and token is None and not is_loopback(listen[0]):
            self.fail(fields["listen"], "admin.listen", "a token (token_env or token_file) is required off loopback")
        if "pac_proxy" in fields:
            pac_proxy = self.scalar(fields["pac_proxy"], "admin.pac_proxy", str, expected="HOST:PORT")
            try:
                parse_pac_proxy(pac_proxy)
            except ConfigError as exc:
                self.fail(fields["pac_proxy"], "admin.pac_proxy", str(exc).removeprefix("pac_proxy: "))
        else:  # the proxy's own address, unless it listens on every address (then say which one)
            pac_proxy = default_pac_proxy(proxy_listen)
        return AdminConfig(listen=listen, token=token, pac_proxy=pac_proxy)

    def wireguard(self, node: yaml.Node) -> WireGuardConfig:
        fields = self.mapping(node, "wireguard", ("enabled", "listen", "endpoint", "devices", "keys_dir",
                                                  "name_servers"))
        values: dict[str, Any] = {}
        if "enabled" in fields:
            values["enabled"] = self.scalar(fields["enabled"], "wireguard.enabled", bool, expected="true or false")
        if "listen" in fields:
            values["listen"] = self.listen(fields["listen"], "wireguard.listen")
        if "endpoint" in fields:
            text = self.scalar(fields["endpoint"], "wireguard.endpoint", str, expected="HOST or HOST:PORT")
            try:
                values["endpoint"] = parse_endpoint(text)
            except ValueError as exc:
                self.fail(fields["endpoint"], "wireguard.endpoint", str(exc))
        if "devices" in fields:
            seq = fields["devices"]
            if not isinstance(seq, yaml.SequenceNode) or not 0 < len(seq.value) <= MAX_WIREGUARD_DEVICES:
                self.fail(seq, "wireguard.devices", f"must be a list of 1 to {MAX_WIREGUARD_DEVICES} device names")
            names = [self.scalar(item, f"wireguard.devices[{i}]", str, _is_list_name,
                                 "a name of letters, digits, '.', '_' or '-'") for i, item in enumerate(seq.value)]
            if len(set(names)) != len(names):
                self.fail(seq, "wireguard.devices", "a device name is used twice")
            values["devices"] = tuple(names)
        if "keys_dir" in fields:
            folder = self.scalar(fields["keys_dir"], "wireguard.keys_dir", str, bool, "a folder path")
            if "@" in folder:  # mitmproxy's --mode syntax takes '@' as the start of the listen address
                self.fail(fields["keys_dir"], "wireguard.keys_dir", "must not contain '@'")
            values["keys_dir"] = str(self.base_dir / folder)
        if "name_servers" in fields:
            seq = fields["name_servers"]
            if not isinstance(seq, yaml.SequenceNode):
                self.fail(seq, "wireguard.name_servers", "must be a list of IP addresses")
            servers = []
            for i, item in enumerate(seq.value):
                text = self.scalar(item, f"wireguard.name_servers[{i}]", str, expected="an IP address")
                try:
                    servers.append(str(ipaddress.ip_address(text)))
                except ValueError:
                    self.fail(item, f"wireguard.name_servers[{i}]", f"not an IP address: {text!r}")
            values["name_servers"] = tuple(servers)
        wireguard = WireGuardConfig(**values)
        last_port = wireguard.listen[1] + len(wireguard.devices) - 1
        if last_port > 65535:
            self.fail(node, "wireguard", f"{len(wireguard.devices)} devices from port {wireguard.listen[1]} "
                                         f"need ports up to {last_port}, past 65535")
        return wireguard

    def logging(self, node: yaml.Node) -> LoggingConfig:
        fields = self.mapping(node, "logging", ("level", "client_addresses"))
        values: dict[str, Any] = {}
        if "level" in fields:
            values["level"] = self.choice(fields["level"], "logging.level", LOG_LEVELS)
        if "client_addresses" in fields:
            values["client_addresses"] = self.scalar(fields["client_addresses"], "logging.client_addresses", bool,
                                                     expected="true or false")
        return LoggingConfig(**values)

    def access(self, node: yaml.Node) -> AccessConfig:
        fields = self.mapping(node, "access", ("allowed_clients", "proxy_auth_file"))
        values: dict[str, Any] = {}
        if "allowed_clients" in fields:
            seq = fields["allowed_clients"]
            if not isinstance(seq, yaml.SequenceNode) or not seq.value:
                self.fail(seq, "access.allowed_clients", "must be a non-empty list of CIDR networks")
            networks = []
            for i, item in enumerate(seq.value):
                text = self.scalar(item, f"access.allowed_clients[{i}]", str, expected="a CIDR network")
                try:
                    networks.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    self.fail(item, f"access.allowed_clients[{i}]", f"not a CIDR network: {text!r}")
            values["allowed_clients"] = tuple(networks)
            values["explicit"] = True
        if "proxy_auth_file" in fields:
            path = self.base_dir / self.scalar(fields["proxy_auth_file"], "access.proxy_auth_file", str, bool,
                                               "an htpasswd file path")
            if not path.is_file():
                self.fail(fields["proxy_auth_file"], "access.proxy_auth_file", f"no such file: {path}")
            values["proxy_auth_file"] = str(path)
        return AccessConfig(**values)

    def texts(self, node: yaml.Node, where: str) -> str | Localized:
        """Text as written, or one text per language (``{en: ..., de: ...}``; the default
        language is required, as the fallback for the others)."""
        if not isinstance(node, yaml.MappingNode):
            return self.scalar(node, where, str, lambda v: bool(v.strip()), "non-empty text or {en: ..., de: ...}")
        fields = self.mapping(node, where, LANGUAGES)
        if DEFAULT_LANGUAGE not in fields:
            self.fail(node, where, f"give the default language {DEFAULT_LANGUAGE!r} too: it is shown "
                                   f"when the page is in a language the mapping lacks")
        texts = {language: self.scalar(value, f"{where}.{language}", str, lambda v: bool(v.strip()),
                                       "non-empty text")
                 for language, value in fields.items()}
        return Localized.of(texts)

    def template(self, node: yaml.Node, where: str):
        from urlwarden.blocktemplate import load_template  # imports Jinja2: only when a template is configured

        path = self.base_dir / self.scalar(node, where, str, bool, "a template file path")
        try:
            return load_template(path)
        except ConfigError as exc:
            self.fail(node, where, str(exc))

    def operator(self, node: yaml.Node) -> PageSettings:
        fields = self.mapping(node, "operator", ("name", "url", "appeal_url", "help_url", "help_text", "template"))
        values: dict[str, Any] = {}
        if "name" in fields:
            values["operator_name"] = self.scalar(fields["name"], "operator.name", str, bool, "non-empty text")
        for key, attr in (("url", "operator_url"), ("appeal_url", "appeal_url"), ("help_url", "help_url")):
            if key in fields:
                values[attr] = self.url(fields[key], f"operator.{key}")
        if "help_text" in fields:
            values["help_text"] = self.texts(fields["help_text"], "operator.help_text")
        if "template" in fields:
            values["template"] = self.template(fields["template"], "operator.template")
        return PageSettings(**values)

    def https(self, node: yaml.Node) -> HttpsPolicy:
        fields = self.mapping(node, "https", ("intercept", "uninspected"))
        values = {}
        if "intercept" in fields:
            values["intercept"] = self.choice(fields["intercept"], "https.intercept", INTERCEPT_CHOICES)
        if "uninspected" in fields:
            values["uninspected"] = self.choice(fields["uninspected"], "https.uninspected", UNINSPECTED_CHOICES)
        return HttpsPolicy(**values)

    def lists(self, node: yaml.Node, where: str, block: bool) -> tuple[ListConfig, ...]:
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, where, "must be a list of lists (each with at least a path)")
        keys = (("name", "path", "feed", "format", "reason", "status", "mode", "test_url") if block
                else ("name", "path", "format"))
        return tuple(self.one_list(item, f"{where}[{i}]", keys) for i, item in enumerate(node.value))

    def one_list(self, node: yaml.Node, where: str, keys: tuple[str, ...]) -> ListConfig:
        fields = self.mapping(node, where, keys)
        if ("path" in fields) == ("feed" in fields):
            self.fail(node, where, "give either 'path' (a list file) or 'feed' (a feed), not both" if "path" in fields
                      else f"missing key 'path'{' or feed' if 'feed' in keys else ''}")
        fmt = self.choice(fields["format"], f"{where}.format", FORMAT_CHOICES) if "format" in fields else None
        name = None
        if "name" in fields:
            name = self.scalar(fields["name"], f"{where}.name", str, _is_list_name,
                               "a name of letters, digits, '.', '_' or '-'")
        spec = feed = None
        if "path" in fields:
            path = self.base_dir / self.scalar(fields["path"], f"{where}.path", str, bool, "a file path")
            spec = make_spec(path, fmt, name)
        else:
            if name is None:
                self.fail(node, where, "a feed needs a 'name'")
            feed = self.feed(fields["feed"], f"{where}.feed", name, fmt or "plain")
        policy: dict[str, Any] = {}
        if "reason" in fields:
            policy["reason"] = self.texts(fields["reason"], f"{where}.reason")
        if "status" in fields:
            policy["status"] = self.scalar(fields["status"], f"{where}.status", int, lambda v: 400 <= v <= 599,
                                           "an integer from 400 to 599")
        if "mode" in fields:
            policy["mode"] = self.choice(fields["mode"], f"{where}.mode", MODE_CHOICES)
        test_url = self.url(fields["test_url"], f"{where}.test_url") if "test_url" in fields else None
        try:
            list_policy = ListPolicy(**policy)
        except ValueError as exc:  # ListPolicy's own rules (e.g. no 407, which asks for proxy credentials)
            self.fail(node, where, str(exc))
        return ListConfig(spec=spec, policy=list_policy, test_url=test_url, feed=feed)

    def feed(self, node: yaml.Node, where: str, name: str, fmt: str) -> FeedSpec:
        fields = self.mapping(node, where, ("adapter", "options", "refresh", "jitter", "max_age", "max_shrink",
                                            "force", "public_key", "required"))
        if "adapter" not in fields:
            self.fail(node, where, "missing key 'adapter' (e.g. http or file)")
        values: dict[str, Any] = {
            "adapter": self.scalar(fields["adapter"], f"{where}.adapter", str, bool, "an adapter name"),
        }
        options: dict[str, Any] = {}
        if "options" in fields:
            option_nodes = self.mapping(fields["options"], f"{where}.options", _AnyKey())
            for key, value_node in option_nodes.items():
                if not isinstance(value_node, yaml.ScalarNode):
                    self.fail(value_node, f"{where}.options.{key}", "must be a single value")
                options[key] = yaml.SafeLoader("").construct_object(value_node)
                if isinstance(options[key], str) and key.endswith(("path", "file", "cert", "key", "bundle")):
                    options[key] = str(self.base_dir / options[key])  # relative to the configuration file
        values["options"] = options
        for key in ("refresh", "max_age"):
            if key in fields:
                values["interval" if key == "refresh" else key] = self.duration(fields[key], f"{where}.{key}")
        if "refresh" not in fields:  # an adapter may know a better default (tuf: 30 s, for fleet freshness)
            try:
                default_refresh = getattr(get_adapter(values["adapter"]), "default_refresh", None)
            except FeedError:
                default_refresh = None  # the unknown adapter is reported below, with the options
            if isinstance(default_refresh, (int, float)) and default_refresh > 0:
                values["interval"] = float(default_refresh)
        for key in ("jitter", "max_shrink"):
            if key in fields:
                values[key] = float(self.scalar(fields[key], f"{where}.{key}", (int, float),
                                                lambda v: 0 <= v < 1 if key == "jitter" else 0 <= v <= 1,
                                                "a fraction from 0 to 1"))
        for key in ("force", "required"):
            if key in fields:
                values[key] = self.scalar(fields[key], f"{where}.{key}", bool, expected="true or false")
        if "public_key" in fields:
            key_text = self.scalar(fields["public_key"], f"{where}.public_key", str, bool,
                                   "a PEM file path or a base64 Ed25519 key")
            candidate = self.base_dir / key_text
            values["public_key"] = str(candidate) if candidate.is_file() else key_text
        try:
            spec = FeedSpec(name=name, format=fmt, **values)
            make_adapter(spec.adapter, dict(spec.options), name).close()  # checks the options now, not at 3 am
            if spec.public_key is not None:
                load_public_key(spec.public_key, name)
        except FeedError as exc:
            self.fail(fields.get("options", node), where, str(exc))
        return spec

    def duration(self, node: yaml.Node, where: str) -> float:
        value = self.scalar(node, where, (int, str), lambda v: _seconds(v) is not None,
                            "a duration such as 90s, 30m, 12h, 2d (or seconds)")
        return _seconds(value)


class _AnyKey(tuple):
    """Accepts every key (adapter options are checked by the adapter itself)."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: int | str) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if value > 0 else None
    text = value.strip().lower()
    if len(text) >= 2 and text[:-1].isdigit() and text[-1] in _DURATION_UNITS and int(text[:-1]) > 0:
        return float(int(text[:-1]) * _DURATION_UNITS[text[-1]])
    return None


def _is_list_name(text: str) -> bool:
    return bool(text) and len(text) <= 64 and all(c.isascii() and (c.isalnum() or c in "._-") for c in text)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError with the reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be HOST:PORT with a port from 1 to 65535, not {text!r}")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"missing host in {text!r}")
    return host, int(port)


def parse_endpoint(text: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``[v6]`` or ``[v6]:PORT`` -> (host, port or None); ValueError with the reason."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"must be HOST or HOST:PORT, not {text!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, None  # a bare name, IPv4 or unbracketed IPv6 address
    if not host or any(c.isspace() or c in "/@[]" for c in host):
        raise ValueError(f"must be HOST or HOST:PORT, not {text!r}")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port must be from 1 to 65535, not {port_text!r}")
    return host, int(port_text)
