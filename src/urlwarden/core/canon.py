r"""URL canonicalization and lookup expressions, after Google Safe Browsing v4 "URLs and Hashing".

Policy: list entries and request URLs go through this one module, and nothing else in urlwarden
lowercases, unescapes or strips URLs. The pipeline (each step a small function below):

 1. bytes: a str is encoded as UTF-8 with ``surrogateescape`` (so raw bytes mitmproxy decoded that
    way come back as they were on the wire);
 2. drop the fragment (everything from the first ``#``);
 3. strip leading/trailing C0 controls and spaces, remove every tab, CR and LF;
 4. percent-unescape repeatedly until no escape is left (linear time, see `_unescape_fully`);
 5. split scheme (default ``http``), authority, path and query (the first ``?``); a special
    scheme (http, https, ws, wss, ftp) takes any run of ``/`` and ``\`` as its ``//``, and a
    ``\`` ends the authority as ``/`` does (WHATWG URL Standard, what browsers send);
 6. host: drop userinfo and port; IDN to punycode (UTS #46); remove leading/trailing dots and
    collapse runs of dots; any legal IPv4 encoding (decimal, octal, hex, one to four parts) to a
    dotted quad; a bracketed IPv6 literal to its compressed form; lowercase;
 7. path: ``\`` and the overlong UTF-8 slash (``%c0%af``) become ``/``; resolve ``/./`` and
    ``/../``, collapse runs of slashes (never in the query);
 8. re-escape bytes <= 0x20, >= 0x7f, ``#`` and ``%`` as ``%XX`` (upper-case hex).

Worked example::

    "HTTP://%77ww.Listed.TEST.:8080/a/./b//../%2570age.html?q=1#frag"
        -> "http://www.listed.test/a/page.html?q=1"

(``%2570`` unescapes to ``%70`` and then to ``p``; ``b//..`` removes ``b``; port and fragment go.)

Deliberate deviations from the Safe Browsing document and its reference implementation
(google/safebrowsing ``urls.go``):

* A scheme is recognised only when followed by ``//`` (``[a-z][a-z0-9+.-]*://``), or, for the
  special schemes, by any run of ``/`` and ``\`` or none (``http:h/``, ``http:/h/``,
  ``http:\\h``: host ``h``, as a browser sends them). Anything else is a scheme-less URL, so
  ``listed.test:8080/x`` is host ``listed.test`` (the reference code would take ``listed.test``
  as the scheme and fail).
* A backslash before the query is a slash (browsers convert it; IIS serves ``\`` and ``%5C``
  as ``/``), except in an authority where an ``@`` follows it: ``a\@b`` keeps the Safe
  Browsing rule, host ``b`` (browsers refuse that host; other clients connect to ``b``).
* A host label that IDNA 2008 refuses but UTS #46 admits (``\u2603``) becomes its punycode
  (``xn--n3h``), as browsers send it.
* Consecutive slashes collapse before ``..`` resolves (Safe Browsing): ``/a//../b`` is ``/b``,
  where a browser would send ``/a/b``.
* The port is split at the first ``:`` of the host part, not the last.
* A scheme-less URL may start with ``//`` (protocol-relative).
* A host name (not a bracketed literal) containing ``[`` or ``]`` is invalid, as in browsers;
  otherwise such a host could re-parse differently and canonicalization would not be idempotent.
* An IPv6 zone id (``[fe80::1%25eth0]``) is dropped.
* A str is encoded as UTF-8 with ``surrogateescape`` (lone surrogates that cannot be escaped that
  way are encoded with ``surrogatepass``), so every str has a byte form.
* An IPv4-mapped IPv6 literal (``[::ffff:127.0.0.2]``) canonicalizes to its IPv4 form
  (``127.0.0.2``), so it matches list entries written as IPv4.
* IPv4 parts out of range (``256.1.1.1``) make the host a plain name, as in ``inet_aton``;
  the reference code silently truncates each part to a byte.
* The Windows-resolver quirk ("a dotted quad followed by a space and rubbish, under 16 chars")
  is not emulated.
* Non-ASCII host names are converted with IDNA 2008 / UTS #46 (the ``idna`` package); a name
  it rejects keeps its bytes, which step 8 escapes.
* `expressions` also tries the path as servers that cut it at ``%00`` or drop ``;params``
  serve it (`_server_path`; docs/lists.md "Server variants").
* `expressions` generates path prefixes to any depth (bounded by ``MAX_PATH_PREFIXES``) instead
  of the specification's first four components, so a folder entry five or more levels deep
  still matches everything below it.
* Unescaping is a single left-to-right pass that re-examines what it has produced (same result
  as unescaping until nothing changes, because ``%XX`` escapes cannot overlap), so a URL of any
  nesting depth is handled in linear time and never needs a round limit.

Speed: `parse`, `fast_host` and `canonical_host` first try a shortcut for the common case (an
ASCII name and nothing to unescape, escape, strip or resolve; see ``_SIMPLE_URL``), which gives
exactly what the pipeline gives or declines and leaves the input to it. The pipeline itself is
`_parse_pipeline`, the reference the shortcuts are tested against.

Only `ValueError` is raised, for input with no valid host.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna

__all__ = [
    "MAX_HOST_SUFFIXES",
    "MAX_PATH_PREFIXES",
    "CanonicalURL",
    "canonical_host",
    "canonicalize",
    "expressions",
    "fast_host",
    "host_suffixes",
    "is_ip_literal",
    "lookup_paths",
    "parse",
]

MAX_PATH_PREFIXES = 32
"""Directory prefixes ("/", "/a/", "/a/b/", ...) generated per URL. A folder entry deeper than
this can never match below itself, so list loaders reject it."""

MAX_HOST_SUFFIXES = 5
"""The exact host plus up to four suffixes taken from its last five labels (Safe Browsing)."""

_SUFFIX_LABELS = 5
"""Suffixes are formed from at most this many trailing labels (Safe Browsing)."""

MAX_IDNA_HOST_LENGTH = 1024
"""Longer non-ASCII host names are not offered to the IDNA codec (it is slow on huge input and
no such name can be resolved); their bytes are escaped instead."""

_WHITESPACE = bytes(range(0x21))
"""Stripped from both ends: C0 controls and space, as browsers strip them (WHATWG URL)."""
_SCHEME = re.compile(rb"([A-Za-z][A-Za-z0-9+.-]*)://")
_SPECIAL_SCHEME = re.compile(rb"(?i:(https?|wss?|ftp)):[/\\]*")
"""A WHATWG "special" scheme takes any run of "/" and "\\" after its colon, or none at all, as
its "//": ``http:/h/``, ``http:h/`` and ``http:\\\\h/`` all name host ``h``, as in browsers."""
_OVERLONG_SLASH = re.compile(rb"\xc0\xaf|\xe0\x80\xaf")
"""Overlong UTF-8 for "/" (``%c0%af``, ``%e0%80%af``): invalid UTF-8 that old IIS decoded to a slash."""
_ESCAPE = re.compile(rb"%[0-9A-Fa-f]{2}")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_MULTI_DOTS = re.compile(rb"\.{2,}")
_MULTI_SLASHES = re.compile(rb"/{2,}")
_MULTI_SLASH_TEXT = re.compile(r"/{2,}")
_IPV4_PART = re.compile(r"(?:0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)\Z")
_NEEDS_ESCAPE = frozenset(range(0x21)) | frozenset(range(0x7F, 0x100)) | {ord("#"), ord("%")}
_ESCAPED_BYTE = tuple(
    "%{:02X}".format(b) if b in _NEEDS_ESCAPE else chr(b) for b in range(256)
)
_HOST_DELIMITERS = "/?#@:[]\\%"
_UNSAFE_BYTE = re.compile(rb"[\x00-\x20\x7f-\xff#%]")

# --- shortcuts (speed only: each gives exactly what the full pipeline gives, or declines) -------
#
# A "simple" URL is one the pipeline above would leave almost untouched: an optional scheme
# (once "scheme://" is read it is never re-read as a host, as in `_split`), an ASCII
# name of letters, digits, hyphens and single dots (one trailing dot allowed) whose last label
# is not numeric (so it can be no IPv4 encoding), an optional numeric port, and then nothing
# that needs unescaping, escaping, stripping or path normalization. Anything else declines the
# shortcut and takes the full pipeline.
_SCHEME_PART = r"(?:([A-Za-z][A-Za-z0-9+.-]*)://|(?![A-Za-z][A-Za-z0-9+.-]*://|(?i:https?|wss?|ftp):))"
"""Either "scheme://", or a position where no "scheme://" starts. The second branch stops the
engine from backtracking out of a scheme it has read and taking the scheme as a host name
(``http://[::1]/`` must decline, not give host ``http``). Written with a look-ahead rather than a
possessive group ``(?:...)?+``
(a special scheme with its colon but without "//" declines too: ``http:h/`` names host ``h``): CPython 3.11.0 to 3.11.4 (Debian 12 ships 3.11.2) mis-match
possessive optional groups (gh-106052) and dropped the first character of a scheme-less URL.
No possessive quantifier or atomic group is used anywhere in urlwarden for that reason. Cost
stays linear: the match is anchored at the start, the scheme class cannot contain ":" so a
scheme is read at most twice, and the name part's labels are separated by single dots."""
_NAME_PART = (
    r"((?:[A-Za-z0-9-]+\.)*"
    r"(?!(?:0[xX][0-9a-fA-F]*|[0-9]+)(?![A-Za-z0-9-]))"  # the last label is not numeric
    r"[A-Za-z0-9-]+)\.?(?::[0-9]*)?"
)
_FAST_HOST = re.compile(_SCHEME_PART + _NAME_PART + r"(?=[/?#]|\Z)")
"""`fast_host`: scheme, name and port, then "/", "?", "#" or the end."""
_DECIMAL_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255, no leading zero
_FAST_IPV4 = re.compile(
    _SCHEME_PART + r"((?:" + _DECIMAL_OCTET + r"\.){3}" + _DECIMAL_OCTET + r")(?::[0-9]*)?(?=[/?#]|\Z)"
)
"""`fast_host`: an IPv4 address already in canonical dotted-decimal form (proxies are often
addressed to one, e.g. an origin by IP); other encodings (octal, hex, fewer parts) decline."""
_SIMPLE_URL = re.compile(
    _SCHEME_PART
    + _NAME_PART
    + r"(/[\x21\x22\x24\x26-\x3e\x40-\x5b\x5d-\x7e]*)?"  # path: printable ASCII but "#", "%", "?", "\\"
    + r"(?:\?([\x21\x22\x24\x26-\x7e]*))?"  # query: printable ASCII but "#" and "%"
    + r"(?:#.*)?\Z",  # a fragment is dropped before anything else, whatever it holds
    re.DOTALL,
)
"""`parse`: a URL whose canonical form is its own text but for case, port, trailing dot and
fragment (the path must still be free of "//" and dot segments, checked in `parse`)."""
_SIMPLE_NAME = re.compile(_NAME_PART + r"\Z")
"""`canonical_host`: a plain name, optionally with a trailing dot and a port."""


@dataclass(frozen=True, slots=True)
class CanonicalURL:
    """A canonical URL split into its parts; every part is already canonical ASCII."""

    scheme: str
    host: str
    path: str
    query: str | None  # None: no "?" at all; "": a bare "?"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.expression}"

    @property
    def expression(self) -> str:
        """The exact lookup expression: host, path and query, without scheme."""
        if self.query is None:
            return self.host + self.path
        return f"{self.host}{self.path}?{self.query}"


def canonicalize(url: str | bytes) -> str:
    """The Safe Browsing canonical form of `url`; `ValueError` when it has no valid host."""
    return parse(url).url


def parse(url: str | bytes) -> CanonicalURL:
    """Canonicalize `url` into its parts; `ValueError` when it has no valid host."""
    if type(url) is str:
        m = _SIMPLE_URL.match(url)
        if m is not None:
            scheme, host, path, query = m.groups()
            if path is None:
                path = "/"
            elif "//" in path or "/." in path:
                return _parse_pipeline(url)  # slashes to collapse or dot segments to resolve
            return CanonicalURL(scheme.lower() if scheme else "http", host.lower(), path, query)
    return _parse_pipeline(url)


def _parse_pipeline(url: str | bytes) -> CanonicalURL:
    """`parse` step by step, as the module docstring lists the steps (the reference)."""
    raw = _to_bytes(url).split(b"#", 1)[0]  # fragment first (as the reference code does), so that
    raw = _strip_controls(raw)                # "host/page #note" does not keep a trailing space
    raw = _unescape_fully(raw)
    scheme, authority, path, query = _split(raw)
    return CanonicalURL(
        scheme=scheme,
        host=_canonical_host_bytes(authority),
        path=_escape(_normalize_path(path)),
        query=None if query is None else _escape(query),
    )


def canonical_host(name: str) -> str:
    """The canonical form of a bare host name or ``host:port`` (Host header, SNI, CONNECT target)."""
    if type(name) is str:
        m = _SIMPLE_NAME.match(name)
        if m is not None:
            return m.group(1).lower()
    raw = _to_bytes(name).strip(_WHITESPACE)
    if raw[:1] != b"[" and raw.count(b":") > 1:
        raw = b"[" + raw + b"]"  # a bare IPv6 address, as a CONNECT target may give it
    return parse(b"http://" + raw + b"/").host


def is_ip_literal(host: str) -> bool:
    """Whether a canonical host is an IP address (dotted-quad IPv4 or bracketed IPv6)."""
    if host.startswith("["):
        return True
    if not host[-1:].isdigit():
        return False  # the common case, decided without splitting
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def host_suffixes(host: str) -> list[str]:
    """Lookup hosts for a canonical host: itself plus up to four suffixes of its last five labels.

    The top-level label alone is never a suffix; an IP literal yields only itself.
    """
    if (host[-1:].isdigit() or host[:1] == "[") and is_ip_literal(host):
        return [host]
    # Find the dots from the left (no split and join: this runs for every new host).
    dots = host.count(".")
    if dots < 2:
        return [host]
    pos = host.find(".")
    if dots == 2:  # the common cases first: "www.example.test", "a.b.example.test"
        return [host, host[pos + 1 :]]
    if dots == 3:
        return [host, host[pos + 1 :], host[host.find(".", pos + 1) + 1 :]]
    suffixes = [host]
    for _ in range(dots - _SUFFIX_LABELS):  # labels before the last five give no suffix
        pos = host.find(".", pos + 1)
    for _ in range(min(dots, _SUFFIX_LABELS) - 1):  # suffixes of five (or fewer) labels down to two
        suffixes.append(host[pos + 1 :])
        pos = host.find(".", pos + 1)
    return suffixes


def expressions(url: str | bytes | CanonicalURL, max_prefixes: int = MAX_PATH_PREFIXES) -> list[str]:
    """All "host/path" lookup expressions of `url`, in Safe Browsing's order, without duplicates.

    Hosts: `host_suffixes`. Paths: the path with its query, the path alone, then the directory
    prefixes "/", "/a/", "/a/b/", ... (at most `max_prefixes`, itself capped at MAX_PATH_PREFIXES).
    A path holding ``%00`` or ``;`` also gets its `_server_path` (with query, alone, then its
    prefixes), because servers serve the listed resource under those forms too.
    """
    cu = url if isinstance(url, CanonicalURL) else parse(url)
    paths = lookup_paths(cu, max_prefixes)
    return [host + path for host in host_suffixes(cu.host) for path in paths]


def lookup_paths(cu: CanonicalURL, max_prefixes: int = MAX_PATH_PREFIXES) -> list[str]:
    """The path parts of `expressions`, in order: path with query, path, directory prefixes.

    ``expressions(cu)`` is every `host_suffixes` entry joined with each of these; a caller that
    already knows which hosts can match joins only those.
    """
    return _path_variants(cu.path, cu.query, min(max_prefixes, MAX_PATH_PREFIXES))


def fast_host(url: str) -> str | None:
    """The canonical host of `url` when it can be read off without full canonicalization, else None.

    Covers the common cases: an optional scheme, an ASCII name of letters, digits, hyphens and
    single dots (one trailing dot allowed), or an IPv4 address in canonical dotted-decimal form,
    an optional port, then "/", "?", "#" or the end, and no tab, CR or LF anywhere (they are
    removed before parsing, so they could join a scheme). Other numeric-looking last labels
    (possible IPv4 encodings), escapes, userinfo, leading whitespace and non-ASCII all return
    None. When a host is returned, ``parse(url).host`` equals it.
    """
    m = _FAST_HOST.match(url)
    if m is None:
        m = _FAST_IPV4.match(url)
        if m is None:
            return None
    if "\t" in url or "\n" in url or "\r" in url:
        return None
    return m.group(2).lower()


def _to_bytes(url: str | bytes) -> bytes:
    if isinstance(url, str):
        try:
            return url.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return url.encode("utf-8", "surrogatepass")
    return bytes(url)


def _strip_controls(raw: bytes) -> bytes:
    raw = raw.strip(_WHITESPACE)
    if b"\t" in raw or b"\r" in raw or b"\n" in raw:
        raw = raw.replace(b"\t", b"").replace(b"\r", b"").replace(b"\n", b"")
    return raw


def _unescape_fully(raw: bytes) -> bytes:
    """Percent-unescape until no ``%XX`` is left, in one left-to-right pass.

    Each output byte is appended to a buffer; whenever the buffer then ends in ``%XX`` the three
    bytes are replaced by the byte they encode, which may in turn complete an earlier ``%`` (as
    in ``%%32%35`` -> ``%25`` -> ``%``). Escapes cannot overlap (``%`` is not a hex digit), so
    this reaches the same fixed point as repeated whole-string passes, in linear time.
    """
    if b"%" not in raw:
        return raw
    once = _unescape_once(raw)
    if b"%" not in once or not _ESCAPE.search(once):
        return once  # the common case: at most one level of escaping
    out = bytearray()
    for byte in raw:
        out.append(byte)
        while len(out) >= 3 and out[-3] == 0x25 and out[-2] in _HEX and out[-1] in _HEX:
            decoded = int(out[-2:].decode("ascii"), 16)
            del out[-3:]
            out.append(decoded)
    return bytes(out)


def _unescape_once(raw: bytes) -> bytes:
    return _ESCAPE.sub(lambda m: bytes((int(m.group()[1:], 16),)), raw)


def _split(raw: bytes) -> tuple[str, bytes, bytes, bytes | None]:
    """Split unescaped bytes into (scheme, authority, path, query).

    A special scheme (http, https, ws, wss, ftp) takes any run of "/" and "\\" as its "//"; a
    "\\" ends the authority as "/" does, unless an "@" follows it there (``a\\@b``: browsers
    refuse such a host, other clients connect to ``b``, and taking ``b`` is what the Safe
    Browsing rule "host after the last @" has always done).
    """
    m = _SPECIAL_SCHEME.match(raw) or _SCHEME.match(raw)
    if m:
        scheme = m.group(1).decode("ascii").lower()
        rest = raw[m.end():]
    else:
        scheme, rest = "http", raw[2:] if raw.startswith(b"//") else raw
    rest, qmark, query = rest.partition(b"?")
    authority, slash, path = rest.partition(b"/")
    if b"\\" in authority:
        host_part, _, after = authority.partition(b"\\")
        if b"@" not in after:
            authority, slash, path = host_part, b"/", after + slash + path
    return scheme, authority, slash + path, query if qmark else None


def _canonical_host_bytes(authority: bytes) -> str:
    host = authority.rpartition(b"@")[2]
    if host.startswith(b"["):
        return _canonical_ipv6(host)
    host = host.partition(b":")[0]
    if any(b >= 0x80 for b in host):
        host = _idna_to_ascii(host)
    host = _MULTI_DOTS.sub(b".", host.strip(b"."))
    if not host:
        raise ValueError("URL has no host")
    ipv4 = _parse_ipv4(host.decode("latin-1"))
    if ipv4 is not None:
        return ipv4
    if b"[" in host or b"]" in host:
        raise ValueError("invalid character in host")
    return _escape(host.lower())


def _canonical_ipv6(host: bytes) -> str:
    literal, bracket, _port = host[1:].partition(b"]")
    if not bracket:
        raise ValueError("unterminated IPv6 literal in host")
    try:
        address = ipaddress.IPv6Address(literal.partition(b"%")[0].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("invalid IPv6 literal in host") from None
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return f"[{address.compressed}]"


def _idna_to_ascii(host: bytes) -> bytes:
    """Punycode for a non-ASCII name, label by label; bytes IDNA rejects are kept as they are."""
    if len(host) > MAX_IDNA_HOST_LENGTH:
        return host
    try:
        text = host.decode("utf-8")
        mapped = idna.uts46_remap(text, std3_rules=False, transitional=False)
    except (UnicodeError, idna.IDNAError):
        return host
    if any(c in mapped for c in _HOST_DELIMITERS):
        return host  # e.g. U+FF0F maps to "/": such a name would re-parse as another URL
    labels = []
    for label in mapped.split("."):
        if label.isascii():
            labels.append(label.encode("ascii"))
            continue
        try:
            labels.append(idna.alabel(label))
        except (UnicodeError, idna.IDNAError):
            # IDNA 2008 refuses it (a symbol such as U+2603), but browsers apply UTS #46, which
            # admits it after mapping: they send its punycode, so that is its canonical form
            try:
                labels.append(b"xn--" + label.encode("punycode"))
            except UnicodeError:
                labels.append(label.encode("utf-8"))
    return b".".join(labels)


def _parse_ipv4(host: str) -> str | None:
    """Dotted quad for any legal IPv4 encoding (as inet_aton accepts it), else None."""
    parts = host.split(".")
    if len(parts) > 4 or not all(_IPV4_PART.match(p) for p in parts):
        return None
    values = [_ipv4_number(p) for p in parts]
    *leading, last = values
    if any(v > 0xFF for v in leading) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = last
    for i, v in enumerate(leading):
        number |= v << (8 * (3 - i))
    return ".".join(str((number >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def _ipv4_number(part: str) -> int:
    """The value of one IPv4 part; anything over 32 bits is reported as 1 << 32 (out of range)."""
    if part[:2] in ("0x", "0X"):
        digits, base, most = part[2:].lstrip("0"), 16, 8
    elif part[:1] == "0":
        digits, base, most = part.lstrip("0"), 8, 11
    else:
        digits, base, most = part, 10, 10
    if len(digits) > most:
        return 1 << 32  # also keeps int() away from the interpreter's huge-number limit
    return int(digits or "0", base)


def _normalize_path(path: bytes) -> bytes:
    """Resolve "." and ".." segments and collapse runs of slashes (never touches the query).

    "\\" and the overlong UTF-8 forms of "/" are slashes first: browsers send "\\" as "/", and
    IIS takes "\\" (also as ``%5C``) and, before MS00-078, ``%c0%af`` for "/" (docs/lists.md).
    """
    if not path:
        return b"/"
    if b"\\" in path:
        path = path.replace(b"\\", b"/")
    if b"\xc0\xaf" in path or b"\xe0\x80\xaf" in path:
        path = _OVERLONG_SLASH.sub(b"/", path)
    if b"/." not in path:
        return _MULTI_SLASHES.sub(b"/", path)
    segments: list[bytes] = []
    for segment in path.split(b"/"):
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = path.endswith((b"/", b"/.", b"/..")) and segments
    return b"/" + b"/".join(segments) + (b"/" if trailing else b"")


def _escape(raw: bytes) -> str:
    if not _UNSAFE_BYTE.search(raw):
        return raw.decode("ascii")
    return "".join(_ESCAPED_BYTE[b] for b in raw)


def _path_variants(path: str, query: str | None, max_prefixes: int) -> list[str]:
    variants = [path] if query is None else [f"{path}?{query}", path]
    server = _server_path(path) if ";" in path or "%00" in path else path
    if server != path:
        variants += [server] if query is None else [f"{server}?{query}", server]
    for source in (path, server) if server != path else (path,):
        end = 0
        for _ in range(max_prefixes):
            prefix = source[: end + 1]
            if prefix not in variants:
                variants.append(prefix)
            end = source.find("/", end + 1)
            if end < 0:
                break
    return variants


def _server_path(path: str) -> str:
    """The path as servers that drop what Safe Browsing keeps would serve it: cut at the first
    NUL (``%00``: C/CGI and old PHP end the file name there) and without ``;params`` in any
    segment (Java servlet containers: ``/a;jsessionid=1/b.jsp`` is ``/a/b.jsp``)."""
    cut = path.find("%00")
    if cut >= 0:
        path = path[:cut]
    if ";" in path:
        path = "/".join(segment.partition(";")[0] for segment in path.split("/"))
    path = _MULTI_SLASH_TEXT.sub("/", path)
    return path if path.startswith("/") else "/" + path
