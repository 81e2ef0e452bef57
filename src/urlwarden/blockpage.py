"""The response urlwarden sends in place of a blocked page: pure functions, immutable values.

Policy: `render` turns one decision (which list, which entry) plus the list's `ListPolicy` and the
operator's `PageSettings` into a `BlockResponse` (status, headers, body). It never sees the
blocked URL, so no response can echo it. It does not import mitmproxy; the addon copies the
value into a response::

    r = blockpage.render(list_name="iwf", entry_id="4711", policy=policy, page=page,
                         accept_language=req.headers.get("accept-language"), ...)
    flow.response = http.Response.make(r.status, r.body, dict(r.headers))

(header names are unique, so ``dict`` is safe; ``Response.make`` adds Content-Length.)

Modes (``ListPolicy.mode``):

* ``"splash"``: ``policy.status`` (451 by default, RFC 7725) with a body that fits what the client
  asked for, see `request_kind`:

  =========  ==========================================================================
  document   the HTML block page, in the language `choose_language` picks (or the operator's
             own template, `PageSettings.template`)
  image      a visible 160x120 SVG placeholder saying, in that language, that the image was
             blocked (`IMAGE_WIDTH`); a client whose Accept header takes images but not SVG
             gets a 1x1 transparent GIF (never an HTML page inside an ``<img>``)
  script     ``/* blocked by <operator> */`` as text/javascript
  style      the same comment as text/css
  data       ``{"blocked": true, "list": ..., "reference": ..., "operator": ...}``
  other      an empty text/plain body
  =========  ==========================================================================

  Every splash response carries ``Link: <operator_url>; rel="blocked-by"`` (RFC 7725; left out
  when operator_url is not a plain http(s) URL), ``Cache-Control: no-store``,
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and a strict
  Content-Security-Policy; the HTML page also ``Content-Language``.
* ``"notfound"``: a plain ``404 Not Found`` with no hint of blocking (no Link header, no names).
* ``"close"``: there is no response; the addon drops the connection itself, and `render` raises
  ``ValueError`` so that a mode the caller forgot to handle cannot turn into a page.

Escaping, per body kind (every value, including the operator's own settings):

* HTML: ``html.escape`` (quotes too) of operator name, reason, reference and help text; link
  targets (appeal, help) are used only when they are plain http(s) URLs (`http_url`), else the
  link is left out. Values are escaped *before* `string.Template` substitution, which is a single
  pass, so a ``$`` in a value is never expanded.
* JavaScript and CSS: the operator name inside a one-line ``/* */`` comment, with every ``*/``
  broken up and ``<`` ``>`` replaced (`_comment`).
* JSON: ``json.dumps`` (ASCII only), with ``<``, ``>`` and ``&`` as ``\\u`` escapes as well.
* SVG: the operator name, XML-escaped (``html.escape``) and cut to `IMAGE_NAME_CHARS`.
* The operator's own template: Jinja2 with autoescaping on, in a sandbox (`blocktemplate`).
* Control characters (C0/C1 except tab, LF, CR) and lone surrogates are removed from every value
  first; they have no business on a page and would make the UTF-8 body unencodable.

Templates: ``templates/block.<lang>.html`` for each language in `LANGUAGES`, and the shared
``templates/block.css``. A template file is the page, then fragments, each introduced by a line
``<!--@fragment NAME-->``; fragments are HTML too (see `_REQUIRED`). They are read once, at
import, and checked: a missing file, fragment or placeholder, an unknown placeholder or a stray
``$`` raises ``RuntimeError`` naming the file, so a broken installation fails when the addon
loads instead of serving a half-empty page.

Operator texts per language: `ListPolicy.reason` and `PageSettings.help_text` are plain text
or a `Localized` (``{"en": ..., "de": ...}``), shown in the page's language and else in
`DEFAULT_LANGUAGE`, which a `Localized` must have.

Worked example (``page=PageSettings(operator_name="Example Library")``, policy defaults)::

    render(list_name="iwf", entry_id="4711", policy=ListPolicy(), page=page,
           accept="image/avif,image/webp,*/*;q=0.8", sec_fetch_dest="image")
    -> BlockResponse(
           status=451,
           headers=(("Link", '<https://urlwarden.example/about>; rel="blocked-by"'),
                    ("Cache-Control", "no-store"), ..., ("Content-Type", "image/svg+xml")),
           body=b'<svg xmlns="http://www.w3.org/2000/svg" width="160" height="120" ...',
       )

Only ``ValueError`` is raised (invalid `ListPolicy`, mode ``"close"``, a `choose_language` default
that is not available); ``RuntimeError`` only for broken template files, at import.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from string import Template
from types import MappingProxyType
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_LANGUAGE",
    "DEFAULT_REASON",
    "IMAGE_HEIGHT",
    "IMAGE_NAME_CHARS",
    "IMAGE_WIDTH",
    "KINDS",
    "LANGUAGES",
    "MAX_HEADER_CHARS",
    "MAX_HEADER_ITEMS",
    "MAX_URL_CHARS",
    "MODES",
    "BlockResponse",
    "ListPolicy",
    "Localized",
    "PageSettings",
    "choose_language",
    "http_url",
    "localized",
    "reference",
    "render",
    "render_for_request",
    "request_kind",
]

LANGUAGES = ("en", "de", "fr")
"""Languages with a template, ``templates/block.<lang>.html``."""

DEFAULT_LANGUAGE = "en"
"""Used when Accept-Language is absent or names nothing available."""

DEFAULT_REASON = (
    "Access to this page has been blocked because its address is on a filtering list used by "
    "this network."
)
"""`ListPolicy.reason` when the operator gives none; shown translated (the templates carry it)."""

MODES = ("splash", "notfound", "close")
KINDS = ("document", "image", "script", "style", "data", "other")

MAX_HEADER_CHARS = 4096
"""Only this much of an Accept or Accept-Language header is read; the rest is ignored."""

MAX_HEADER_ITEMS = 64
"""Only this many comma-separated elements of Accept or Accept-Language are read."""

MAX_URL_CHARS = 2048
"""A configured link longer than this is left out."""

_MAX_TOKEN_CHARS = 64  # a Sec-Fetch-* or X-Requested-With value longer than this is ignored

# Statuses that make clients do something other than show a page: 401 and 407 require an
# authentication challenge (a browser would prompt for proxy credentials on 407).
_FORBIDDEN_STATUSES = frozenset({401, 407})

_TEMPLATE_DIR = "templates"
_CSS_FILE = "block.css"
_FRAGMENT_MARK = re.compile(r"^<!--@fragment ([a-z_]+)-->\n", re.MULTILINE)
_PAGE = "page"
_REQUIRED: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        _PAGE: frozenset({"style", "operator_name", "reason", "reference", "appeal", "help"}),
        "appeal": frozenset({"appeal_url"}),  # shown when appeal_url is set
        "help": frozenset({"help_text", "help_link"}),  # shown when help_url or help_text is set
        "help_link": frozenset({"help_url"}),  # inside help, when help_url is set
        "help_default": frozenset(),  # help_text when the operator gives none
        "default_reason": frozenset(),  # the translation of DEFAULT_REASON
    }
)

# Content types. JSON has no charset parameter (RFC 8259 section 11) and the body is ASCII.
_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"
_JAVASCRIPT = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
_JSON = "application/json"
_GIF = "image/gif"
_SVG = "image/svg+xml"

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)

# The smallest transparent GIF: 1x1, a 2-colour table, a Graphic Control Extension marking
# colour 0 transparent, one LZW-coded pixel of colour 0 (clear, 0, end), trailer.
_TRANSPARENT_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00"  # header, 1x1 screen, global colour table of 2
    b"\x00\x00\x00\xff\xff\xff"  # the colour table: black, white
    b"\x21\xf9\x04\x01\x00\x00\x00\x00"  # graphic control: transparent colour index 0
    b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"  # image descriptor: 1x1 at 0,0
    b"\x02\x02\x44\x01\x00"  # LZW minimum code size 2, one 2-byte sub-block, end of data
    b"\x3b"  # trailer
)

_NOT_FOUND_BODY = b"Not Found\n"

IMAGE_WIDTH, IMAGE_HEIGHT = 160, 120
"""The placeholder's size: a thumbnail's. An <img> with its own width and height scales it."""

IMAGE_NAME_CHARS = 24
"""The operator name on the placeholder is cut to this many characters (it must fit the width)."""

_IMAGE_TEXT: Mapping[str, str] = MappingProxyType({"en": "Image blocked", "de": "Bild gesperrt",
                                                   "fr": "Image bloquée"})

# Grey box, a red "no entry" sign, the text and the operator's name; no script, no external
# reference (the CSP forbids both anyway), light enough to read in dark mode too.
_SVG_TEMPLATE = Template(
    '<svg xmlns="http://www.w3.org/2000/svg" width="$width" height="$height" viewBox="0 0 160 120" '
    'role="img" aria-label="$text">'
    '<rect x="1" y="1" width="158" height="118" rx="6" fill="#f1f1f4" stroke="#8f8f9d" stroke-width="2"/>'
    '<circle cx="80" cy="44" r="18" fill="none" stroke="#c5221f" stroke-width="5"/>'
    '<line x1="67.3" y1="56.7" x2="92.7" y2="31.3" stroke="#c5221f" stroke-width="5"/>'
    '<text x="80" y="86" font-family="sans-serif" font-size="15" font-weight="bold" text-anchor="middle" '
    'fill="#202124">$text</text>'
    '<text x="80" y="104" font-family="sans-serif" font-size="11" text-anchor="middle" '
    'fill="#3c4043">$operator</text>'
    "</svg>\n"
)


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Localized:
    """An operator's text in several languages: ``Localized.of({"en": ..., "de": ...})``.

    `texts` holds (language, text) pairs, languages from `LANGUAGES`; `DEFAULT_LANGUAGE` must be
    among them (it is the fallback). Every text must be non-blank.
    """

    texts: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        languages = [language for language, _ in self.texts]
        unknown = sorted(set(languages) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"unknown language {unknown[0]!r} (known: {', '.join(LANGUAGES)})")
        if len(set(languages)) != len(languages):
            raise ValueError("a language is given twice")
        if DEFAULT_LANGUAGE not in languages:
            raise ValueError(f"the default language {DEFAULT_LANGUAGE!r} is missing (it is the fallback)")
        for language, text in self.texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{language}: must be non-blank text")

    @classmethod
    def of(cls, texts: Mapping[str, str]) -> Localized:
        return cls(tuple(texts.items()))

    def get(self, language: str) -> str:
        """The text in `language`, else in `DEFAULT_LANGUAGE`."""
        texts = dict(self.texts)
        return texts.get(language, texts[DEFAULT_LANGUAGE])


def localized(text: str | Localized | None, language: str) -> str | None:
    """`text` as shown in `language` (plain text is shown as written, whatever the language)."""
    return text.get(language) if isinstance(text, Localized) else text


@dataclass(frozen=True)
class PageSettings:
    """Operator-wide settings of the block page, from the configuration file.

    Any text is accepted. A link that is not a plain http(s) URL (at most `MAX_URL_CHARS`
    characters, RFC 3986 characters only, with a host) is left out of the page and headers
    rather than rejected here; the configuration loader may want to warn about it.
    """

    operator_name: str = "urlwarden"
    operator_url: str = "https://urlwarden.example/about"
    """Sent as ``Link: <operator_url>; rel="blocked-by"`` (RFC 7725); not shown on the page."""
    appeal_url: str | None = None
    """Where to ask for a review of a block (redress)."""
    help_url: str | None = None
    """A confidential help service (for example one in the style of Stop It Now)."""
    help_text: str | Localized | None = None
    """A sentence shown with the help link, as written (per language when `Localized`); a
    translated default when None."""
    template: object = None
    """The operator's own page (`blocktemplate.OperatorTemplate`), used instead of the built-in
    one for documents; None: the built-in page."""


@dataclass(frozen=True)
class ListPolicy:
    """How blocks from one list are answered, from the configuration file.

    reason: shown as written (paste the licensor's wording here), or a `Localized` with one
        wording per language; `DEFAULT_REASON`, which is shown translated, when the operator
        gives none. Must not be blank.
    status: 400..599 (not 401 or 407, which make clients ask for credentials); 451 by default,
        some licensors ask for 403.
    mode: ``"splash"``, ``"notfound"`` or ``"close"`` (see the module docstring).
    """

    reason: str | Localized = DEFAULT_REASON
    status: int = 451
    mode: str = "splash"

    def __post_init__(self) -> None:
        if isinstance(self.reason, Localized):
            pass  # checked when it was made
        elif not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError(f"reason must be a non-blank string, not {self.reason!r}")
        status = self.status
        if type(status) is not int or not 400 <= status <= 599:
            raise ValueError(f"status must be an integer from 400 to 599, not {status!r}")
        if status in _FORBIDDEN_STATUSES:
            raise ValueError(f"status {status} would make clients ask for credentials")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")


@dataclass(frozen=True)
class BlockResponse:
    """A complete response: the addon copies it into ``flow.response`` unchanged."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


# --- templates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Templates:
    """The parsed template of one language and the shared style sheet."""

    language: str
    parts: Mapping[str, Template]
    css: str


def _parse_template(name: str, text: str) -> dict[str, Template]:
    """Split a template file into page and fragments and check every part's placeholders."""
    pieces = _FRAGMENT_MARK.split(text)
    parts: dict[str, str] = {_PAGE: pieces[0]}
    for index in range(1, len(pieces), 2):
        fragment, body = pieces[index], pieces[index + 1]
        if fragment in parts:
            raise RuntimeError(f"{name}: fragment {fragment!r} appears twice")
        parts[fragment] = body.rstrip("\n")
    missing = _REQUIRED.keys() - parts.keys()
    unknown = parts.keys() - _REQUIRED.keys()
    if missing or unknown:
        raise RuntimeError(
            f"{name}: missing fragments {sorted(missing)}, unknown {sorted(unknown)}"
        )
    templates = {}
    for part, body in parts.items():
        template = Template(body)
        if not template.is_valid():
            raise RuntimeError(f"{name}: {part}: a '$' that is not a placeholder (write '$$')")
        found = set(template.get_identifiers())
        if found != _REQUIRED[part]:
            raise RuntimeError(
                f"{name}: {part}: missing placeholders {sorted(_REQUIRED[part] - found)}, "
                f"unknown {sorted(found - _REQUIRED[part])}"
            )
        templates[part] = template
    return templates


def _load_templates(root: Traversable, languages: Iterable[str]) -> Mapping[str, _Templates]:
    """Read and check ``block.css`` and ``block.<lang>.html`` for every language under root."""

    def read(name: str) -> str:
        try:
            return root.joinpath(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuntimeError(f"block page template {name} cannot be read: {exc}") from exc

    css = read(_CSS_FILE)
    if "<" in css:
        raise RuntimeError(f"{_CSS_FILE}: '<' is not allowed in the style sheet")
    loaded = {}
    for language in languages:
        name = f"block.{language}.html"
        parts = _parse_template(name, read(name))
        loaded[language] = _Templates(language, MappingProxyType(parts), css)
    return MappingProxyType(loaded)


_TEMPLATES = _load_templates(resources.files(__package__).joinpath(_TEMPLATE_DIR), LANGUAGES)


# --- choosing what to send ----------------------------------------------------------------

_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\Z")
_LANGUAGE_RANGE = re.compile(r"(?:\*|[a-z]{1,8}(?:-[a-z0-9]{1,8})*)\Z")
_MEDIA_RANGE = re.compile(r"([a-z0-9!#$&^_.+-]+)/([a-z0-9!#$&^_.+*-]+)\Z")


def _weighted(header: str | None) -> list[tuple[str, float, tuple[str, ...]]]:
    """Split an Accept-style header into (value, q, other parameter names), lowercase.

    Elements with a malformed q are dropped; `MAX_HEADER_CHARS` and `MAX_HEADER_ITEMS` bound
    the work. The value and parameters are otherwise unchecked (callers check their syntax).
    """
    if not header:
        return []
    elements = header[:MAX_HEADER_CHARS].lower().split(",", MAX_HEADER_ITEMS)[:MAX_HEADER_ITEMS]
    result = []
    for element in elements:
        value, *params = (piece.strip(" \t") for piece in element.split(";"))
        if not value:
            continue
        q, names, valid = 1.0, [], True
        for param in params:
            name, _, arg = param.partition("=")
            name, arg = name.strip(" \t"), arg.strip(" \t")
            if name == "q":
                if not _QVALUE.match(arg):
                    valid = False
                    break
                q = float(arg)
            else:
                names.append(name)
        if valid:
            result.append((value, q, tuple(names)))
    return result


def _range_matches(language_range: str, tag: str) -> bool:
    """RFC 4647 basic filtering: the range equals the tag or is a prefix of it ending at '-'."""
    return language_range in ("*", tag) or tag.startswith(language_range + "-")


def _lookup(language_range: str, tags: Iterable[str], excluded: set[str]) -> str | None:
    """The best tag for one range: the range itself, then ever shorter prefixes of it (RFC 4647
    lookup: ``de-ch-1996``, ``de-ch``, ``de``), then a more specific tag it covers. (A prefix
    ending in a singleton such as ``en-x`` is tried too; it is never a tag, so it never matches.)
    """
    tags = [tag for tag in tags if tag not in excluded]
    candidate = language_range
    while candidate:  # at most MAX_HEADER_CHARS / 2 rounds: each drops a "-" and a character
        if candidate in tags:
            return candidate
        candidate = candidate.rpartition("-")[0]
    return next((tag for tag in tags if _range_matches(language_range, tag)), None)


def choose_language(
    header: str | None,
    available: Iterable[str] = LANGUAGES,
    default: str = DEFAULT_LANGUAGE,
) -> str:
    """The available language the client prefers, by its Accept-Language header (RFC 9110
    section 12.5.4).

    Ranges are tried by descending q (ties in header order). A range such as ``de-CH`` falls back
    to ``de`` (RFC 4647 lookup) and ``de`` also takes ``de-AT`` when only that is available.
    ``*`` stands for any language not named elsewhere in the header, the default first.
    ``q=0`` excludes what it covers. Malformed elements are ignored. When nothing available is
    acceptable, the result is `default` (the header is treated as if absent, which RFC 9110
    allows). Tags compare case-insensitively; the result is spelled as in `available`.
    """
    spelled = {tag.lower(): tag for tag in available}
    if default.lower() not in spelled:
        raise ValueError(f"default language {default!r} is not one of {sorted(spelled.values())}")
    default = default.lower()
    ranges = [
        (value, q)
        for value, q, others in _weighted(header)
        if not others and _LANGUAGE_RANGE.match(value)
    ]
    excluded = {
        tag for tag in spelled for value, q in ranges if q == 0 and _range_matches(value, tag)
    }
    named = {
        tag
        for value, _ in ranges
        if value != "*"
        for tag in spelled
        if _lookup(value, [tag], set()) is not None
    }
    for value, _ in sorted((item for item in ranges if item[1] > 0), key=lambda item: -item[1]):
        if value == "*":
            found = next(
                (tag for tag in (default, *spelled) if tag not in excluded and tag not in named),
                None,
            )
        else:
            found = _lookup(value, spelled, excluded)
        if found is not None:
            return spelled[found]
    return spelled[default]


_DESTINATION_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "document": "document",
        "iframe": "document",
        "frame": "document",
        "fencedframe": "document",
        "image": "image",
        "script": "script",
        "worker": "script",
        "sharedworker": "script",
        "serviceworker": "script",
        "audioworklet": "script",
        "paintworklet": "script",
        "style": "style",
        "json": "data",
        "audio": "other",
        "video": "other",
        "track": "other",
        "font": "other",
        "object": "other",
        "embed": "other",
        "manifest": "other",
        "report": "other",
        "xslt": "other",
        "webidentity": "other",
        "websocket": "other",
    }
)


def _token(value: str | None) -> str | None:
    """A short header value, trimmed and lowercase; None when absent or too long."""
    if value is None or len(value) > _MAX_TOKEN_CHARS:
        return None
    return value.strip(" \t").lower()


def _media_kind(media_type: str, subtype: str) -> str | None:
    if (media_type, subtype) in (("text", "html"), ("application", "xhtml+xml")):
        return "document"
    if media_type == "image":
        return "image"
    if subtype == "json" or subtype.endswith("+json"):
        return "data"
    if (media_type, subtype) == ("text", "css"):
        return "style"
    if subtype in ("javascript", "ecmascript", "x-javascript", "x-ecmascript"):
        return "script"
    return None


def _accepted_kinds(accept: str | None) -> list[tuple[float, str | None]]:
    """(q, kind) of every acceptable media range of an Accept header except ``*/*``."""
    kinds = []
    for value, q, _ in _weighted(accept):
        match = _MEDIA_RANGE.match(value)
        if match and q > 0 and value != "*/*":
            kinds.append((q, _media_kind(match[1], match[2])))
    return kinds


def _kind_from_accept(accept: str | None) -> str:
    """The first recognised media range among those with the highest q (browsers navigating
    list text/html first, ahead of the image types they also take); ``*/*`` says nothing."""
    kinds = _accepted_kinds(accept)
    if not kinds:
        return "other"
    top = max(q for q, _ in kinds)
    return next((kind for q, kind in kinds if q == top and kind is not None), "other")


def request_kind(
    accept: str | None = None,
    sec_fetch_dest: str | None = None,
    sec_fetch_mode: str | None = None,
    x_requested_with: str | None = None,
) -> str:
    """What the client will do with the response: one of `KINDS`.

    1. ``Sec-Fetch-Dest`` decides when it holds a known destination: document, iframe, frame
       and fencedframe are "document"; image is "image"; script, the workers and worklets are
       "script"; style is "style"; json is "data"; ``empty`` (fetch, XMLHttpRequest) is "data"
       when Accept names a JSON type or X-Requested-With says XMLHttpRequest, else "other";
       every other destination (font, audio, video, track, object, embed, ...) is "other".
    2. Otherwise ``Sec-Fetch-Mode: navigate`` is "document", and ``X-Requested-With:
       XMLHttpRequest`` is "data". (Android WebView puts the app's package name in
       X-Requested-With on every request, so only the value XMLHttpRequest counts.)
    3. Otherwise Accept decides (older browsers, other clients): text/html or xhtml is
       "document", image types "image", JSON "data", text/css "style", JavaScript "script";
       ``*/*`` alone, an absent or unreadable header is "other".
    """
    destination = _token(sec_fetch_dest)
    xhr = _token(x_requested_with) == "xmlhttprequest"
    if destination == "empty":
        wants_json = any(kind == "data" for _, kind in _accepted_kinds(accept))
        return "data" if wants_json or xhr else "other"
    if destination in _DESTINATION_KINDS:
        return _DESTINATION_KINDS[destination]
    if _token(sec_fetch_mode) == "navigate":
        return "document"
    if xhr:
        return "data"
    return _kind_from_accept(accept)


# --- rendering ----------------------------------------------------------------------------

_UNWANTED_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+\Z")


def _clean(text: str) -> str:
    """Text without control characters (except tab, LF, CR) and lone surrogates."""
    return _UNWANTED_CHARACTERS.sub("", text)


def http_url(url: str | None) -> str | None:
    """url when it is a plain absolute http(s) URL with a host, else None.

    Only RFC 3986 characters are allowed (no spaces, quotes, angle brackets or controls), so
    the value is safe in a Link header and, once escaped, in an href.
    """
    if not url or len(url) > MAX_URL_CHARS or not _URL_CHARACTERS.match(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return url


_COMMENT_TRANSLATION = str.maketrans(
    {"\t": " ", "\n": " ", "\r": " ", "\u2028": " ", "\u2029": " ", "<": "\u2039", ">": "\u203a"}
)


def _comment(text: str) -> str:
    """text safe inside a one-line ``/* */`` comment of JavaScript or CSS.

    No ``*/`` can close the comment early; line breaks become spaces; ``<`` and ``>`` become
    the single angle quotation marks, so not even a ``</script>`` shows up should the body ever
    be read as anything but a script or style sheet.
    """
    return _clean(text).translate(_COMMENT_TRANSLATION).replace("*/", "* /")


def _json(value: object) -> bytes:
    text = json.dumps(value, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def reference(list_name: str, entry_id: str) -> str:
    """The reference shown to the user and quoted in appeals: ``<list name>:<entry id>``.

    The entry id should be opaque (a line number, an id from the licensor), never the URL.
    """
    return f"{list_name}:{entry_id}"


def _html_page(
    templates: _Templates, list_name: str, entry_id: str, policy: ListPolicy, page: PageSettings
) -> bytes:
    parts = templates.parts
    language = templates.language

    def text(value: str) -> str:
        return html.escape(_clean(value), quote=True)

    appeal_url = http_url(page.appeal_url)
    appeal = "" if appeal_url is None else parts["appeal"].substitute(appeal_url=text(appeal_url))
    help_url = http_url(page.help_url)
    help_section = ""
    if help_url is not None or page.help_text is not None:
        help_link = (
            "" if help_url is None else parts["help_link"].substitute(help_url=text(help_url))
        )
        help_text = (
            parts["help_default"].substitute()
            if page.help_text is None
            else text(localized(page.help_text, language))
        )
        help_section = parts["help"].substitute(help_text=help_text, help_link=help_link)
    reason = (
        parts["default_reason"].substitute()
        if policy.reason == DEFAULT_REASON
        else text(localized(policy.reason, language))
    )
    body = parts[_PAGE].substitute(
        style=templates.css,
        operator_name=text(page.operator_name),
        reason=reason,
        reference=text(reference(list_name, entry_id)),
        appeal=appeal,
        help=help_section,
    )
    return body.encode("utf-8")


def _takes_svg(accept: str | None) -> bool:
    """Whether the Accept header allows SVG: absent, or naming image/svg+xml, image/* or */*
    with q > 0 (every browser's image requests do; a client listing only bitmap types does not)."""
    ranges = _weighted(accept)
    if not ranges:
        return True
    return any(q > 0 and value in ("image/svg+xml", "image/*", "*/*") for value, q, _ in ranges)


def _svg_placeholder(operator_name: str, language: str) -> bytes:
    name = _clean(operator_name).strip()
    if len(name) > IMAGE_NAME_CHARS:
        name = name[: IMAGE_NAME_CHARS - 1].rstrip() + "\u2026"
    return _SVG_TEMPLATE.substitute(
        width=IMAGE_WIDTH, height=IMAGE_HEIGHT,
        text=html.escape(_IMAGE_TEXT[language], quote=True), operator=html.escape(name, quote=True),
    ).encode("utf-8")


def _operator_page(page: PageSettings, list_name: str, entry_id: str, policy: ListPolicy, language: str) -> bytes:
    """The operator's own template, given the same facts as the built-in page (see blocktemplate)."""
    reason = None if policy.reason == DEFAULT_REASON else _clean(localized(policy.reason, language))
    help_text = localized(page.help_text, language)
    return page.template.render(
        language=language,
        operator_name=_clean(page.operator_name),
        operator_url=http_url(page.operator_url),
        reason=reason,
        default_reason=_TEMPLATES[language].parts["default_reason"].substitute(),
        reference=_clean(reference(list_name, entry_id)),
        list_name=_clean(list_name),
        appeal_url=http_url(page.appeal_url),
        help_url=http_url(page.help_url),
        help_text=None if help_text is None else _clean(help_text),
        status=policy.status,
    ).encode("utf-8")


def render_for_request(list_name: str, entry_id: str, policy: ListPolicy, page: PageSettings,
                       headers) -> BlockResponse:
    """`render` with the request's own headers (anything with a case-insensitive ``get``, or a
    mapping with lower-case names): the one place that picks the headers a block page depends on."""
    return render(
        list_name=list_name,
        entry_id=entry_id,
        policy=policy,
        page=page,
        accept_language=headers.get("accept-language"),
        accept=headers.get("accept"),
        sec_fetch_dest=headers.get("sec-fetch-dest"),
        sec_fetch_mode=headers.get("sec-fetch-mode"),
        x_requested_with=headers.get("x-requested-with"),
    )


def render(
    *,
    list_name: str,
    entry_id: str,
    policy: ListPolicy,
    page: PageSettings,
    accept_language: str | None = None,
    accept: str | None = None,
    sec_fetch_dest: str | None = None,
    sec_fetch_mode: str | None = None,
    x_requested_with: str | None = None,
) -> BlockResponse:
    """The response for a request blocked by entry `entry_id` of list `list_name`.

    The header arguments are the request's Accept-Language, Accept, Sec-Fetch-Dest,
    Sec-Fetch-Mode and X-Requested-With (None when absent). Raises ValueError for mode
    ``"close"``: that mode has no response, the addon drops the connection instead.
    """
    if policy.mode == "close":
        raise ValueError("mode 'close' has no response: the caller must drop the connection")
    if policy.mode == "notfound":
        return BlockResponse(
            404, (("Content-Type", _TEXT), ("Cache-Control", "no-store")), _NOT_FOUND_BODY
        )

    headers: list[tuple[str, str]] = []
    operator_url = http_url(page.operator_url)
    if operator_url is not None:
        headers.append(("Link", f'<{operator_url}>; rel="blocked-by"'))
    headers += [
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Content-Security-Policy", _CSP),
    ]

    kind = request_kind(accept, sec_fetch_dest, sec_fetch_mode, x_requested_with)
    if kind == "document":
        language = choose_language(accept_language, LANGUAGES, DEFAULT_LANGUAGE)
        if page.template is not None:
            body = _operator_page(page, list_name, entry_id, policy, language)
        else:
            body = _html_page(_TEMPLATES[language], list_name, entry_id, policy, page)
        headers += [("Content-Type", _HTML), ("Content-Language", language)]
    elif kind == "image" and _takes_svg(accept):
        language = choose_language(accept_language, LANGUAGES, DEFAULT_LANGUAGE)
        body = _svg_placeholder(page.operator_name, language)
        headers += [("Content-Type", _SVG), ("Content-Language", language)]
    elif kind == "image":
        body = _TRANSPARENT_GIF
        headers.append(("Content-Type", _GIF))
    elif kind in ("script", "style"):
        body = f"/* blocked by {_comment(page.operator_name)} */\n".encode()
        headers.append(("Content-Type", _JAVASCRIPT if kind == "script" else _CSS))
    elif kind == "data":
        body = _json(
            {
                "blocked": True,
                "list": _clean(list_name),
                "reference": _clean(reference(list_name, entry_id)),
                "operator": _clean(page.operator_name),
            }
        )
        headers.append(("Content-Type", _JSON))
    else:
        body = b""
        headers.append(("Content-Type", _TEXT))
    return BlockResponse(policy.status, tuple(headers), body)
