"""The proxy auto-config (PAC) file: one generator for ``urlwarden pac`` and /proxy.pac.

What the file says: every destination that is not local goes ``PROXY host:port``, with no
``DIRECT`` fallback. Local destinations go ``DIRECT``: plain host names, ``localhost`` and names
under ``.localhost``, ``.local`` (mDNS) and ``.home.arpa`` (RFC 8375), and IP literals in
loopback, RFC 1918, link-local (IPv4 and IPv6) and unique-local (``fc00::/7``) ranges.
``isInNet`` is only applied to IPv4 literals, so the file never makes a browser resolve a name
(no lookup delay, and a listed name cannot be sent ``DIRECT`` by making it resolve to a local
address); numeric hosts without dots (``http://3232235777/``) and IPv6 literals are never taken
for plain host names. It is generated from the proxy address alone, never from the lists, so it
cannot reveal what is listed.

Whether a browser fails closed depends on how it gets the file, not only on what the file says
(Chromium 156, tested in tests/test_pac_browser.py): when the PAC cannot be fetched, or its URL
is refused, the browser goes ``DIRECT`` for everything. A PAC served by urlwarden's own admin
listener is unreachable exactly when urlwarden is down, and Chromium refuses ``file://`` PAC URLs
(ERR_DISALLOWED_URL_SCHEME), so both fail open. The same bytes as a ``data:`` URL
(`pac_data_url`) cannot fail to load: with the proxy down, pages do not load. A managed
browser's mandatory-PAC policy (Chromium's ProxySettings with ProxyPacMandatory) also fails
closed. docs/home.md says which set-up to use.
"""

from __future__ import annotations

import base64
import ipaddress
import re

from urlwarden.errors import ConfigError

__all__ = [
    "PAC_CONTENT_TYPE",
    "default_pac_proxy",
    "pac_data_url",
    "parse_pac_proxy",
    "render_pac",
]

PAC_CONTENT_TYPE = "application/x-ns-proxy-autoconfig"

_PAC_HOST_NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z")

_PAC_TEMPLATE = """\
// urlwarden proxy auto-config (`urlwarden pac`; also served at /proxy.pac by the admin listener).
// Generated from the proxy address and fixed local address ranges only: it names no listed site.
// Every destination that is not local goes through urlwarden, with no DIRECT fallback. A browser
// that cannot load this file goes DIRECT for everything, so give it to the browser as a data: URL
// (`urlwarden pac --data-url`) or through a mandatory-PAC policy: see docs/home.md.
function FindProxyForURL(url, host) {
  var proxy = "PROXY @PROXY@";
  host = String(host).toLowerCase();
  if (host.charAt(0) == "[") {
    host = host.substring(1, host.length - 1);
  }
  // IPv6 literals (checked first: they contain no dot). Loopback, link-local fe80::/10 and
  // unique-local fc00::/7 go direct; every other IPv6 address goes through the proxy.
  if (host.indexOf(":") >= 0) {
    if (host == "::1" || /^fe[89ab][0-9a-f]:/.test(host) || /^f[cd][0-9a-f][0-9a-f]:/.test(host)) {
      return "DIRECT";
    }
    return proxy;
  }
  // IPv4 literals: loopback, RFC 1918 and link-local go direct. isInNet sees literals only,
  // so this file never makes the browser look a name up.
  if (/^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$/.test(host)) {
    if (isInNet(host, "127.0.0.0", "255.0.0.0") ||
        isInNet(host, "10.0.0.0", "255.0.0.0") ||
        isInNet(host, "172.16.0.0", "255.240.0.0") ||
        isInNet(host, "192.168.0.0", "255.255.0.0") ||
        isInNet(host, "169.254.0.0", "255.255.0.0")) {
      return "DIRECT";
    }
    return proxy;
  }
  // An address written as one number (http://3232235777/) is not a plain host name.
  if (/^(0x[0-9a-f]*|[0-9]+)$/.test(host)) {
    return proxy;
  }
  // Names that exist only on this machine or this network.
  if (isPlainHostName(host) || host == "localhost" || dnsDomainIs(host, ".localhost") ||
      dnsDomainIs(host, ".local") || dnsDomainIs(host, ".home.arpa")) {
    return "DIRECT";
  }
  return proxy;
}
"""


def parse_pac_proxy(text: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT``) of the proxy as clients reach it, checked and normalized
    (lowercase; IPv6 in brackets). `ConfigError` for anything else: the value is written into
    JavaScript, and an unspecified address (``0.0.0.0``, ``::``) is no address a client can use."""
    if not isinstance(text, str):
        raise ConfigError(f"pac_proxy: must be HOST:PORT, not {text!r}")
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or len(port) > 5:
        raise ConfigError(f"pac_proxy: must be HOST:PORT with a port from 1 to 65535, not {text!r}")
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host[1:-1] if bracketed else host
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        address = None
    if address is not None:
        if address.is_unspecified:
            raise ConfigError(f"pac_proxy: {bare} is not an address clients can reach; give the proxy's own address")
        if getattr(address, "scope_id", None):
            raise ConfigError(f"pac_proxy: {bare} has a zone index, which browsers cannot use")
        if address.version == 6 and not bracketed:
            raise ConfigError(f"pac_proxy: write an IPv6 address in brackets, e.g. [{bare}]:{int(port)}")
        host = f"[{address.compressed}]" if address.version == 6 else address.compressed
    elif bracketed or not _PAC_HOST_NAME.match(host.lower()):
        raise ConfigError(f"pac_proxy: {host!r} is neither an IP address nor a host name")
    return f"{host.lower()}:{int(port)}"


def default_pac_proxy(listen: tuple[str, int]) -> str | None:
    """The proxy's own `listen` address as ``HOST:PORT`` for the PAC file, or None when it
    listens on every address (then no address in it says which one clients use)."""
    host, port = listen
    if host in ("0.0.0.0", "::", ""):
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_pac(proxy: str) -> str:
    """The PAC file sending everything but local destinations to `proxy` (``HOST:PORT``);
    see the module docstring for the choices. Depends on nothing but `proxy`."""
    return _PAC_TEMPLATE.replace("@PROXY@", parse_pac_proxy(proxy))


def pac_data_url(pac: str) -> str:
    """`pac` (the text of `render_pac`) as a ``data:`` URL: the same bytes, base64-encoded, for a
    browser's PAC URL setting. It cannot fail to load, so the browser never falls back to DIRECT
    because the file is unreachable."""
    return f"data:{PAC_CONTENT_TYPE};base64,{base64.b64encode(pac.encode('ascii')).decode('ascii')}"
