"""Tests of urlwarden.blockpage.

The request header sets are what current browsers send (Chromium, Firefox, Safari; Safari 15
without Sec-Fetch-*), taken from their documentation and network logs, not invented. Every host
is a reserved name (``.example``, ``.test``, ``.invalid``).
"""

from __future__ import annotations

import json
import re
import struct
import unicodedata
from html.parser import HTMLParser
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urlwarden import blockpage
from urlwarden.blockpage import (
    DEFAULT_REASON,
    BlockResponse,
    ListPolicy,
    PageSettings,
    choose_language,
    render,
    request_kind,
)

APPEAL = "https://appeal.example/review?ref=1&lang=en"
HELP = "https://help.example/confidential"
OPERATOR = "https://operator.example/about"
PAGE = PageSettings(
    operator_name="Example Library",
    operator_url=OPERATOR,
    appeal_url=APPEAL,
    help_url=HELP,
    help_text="Talk to someone, in confidence.",
)

# --- real request header sets: (accept, sec_fetch_dest, sec_fetch_mode, x_requested_with) ---

CHROME_NAVIGATE = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
    "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
    "document",
    "navigate",
    None,
)
CHROME_IFRAME = (CHROME_NAVIGATE[0], "iframe", "navigate", None)
CHROME_IMG = (
    "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "image",
    "no-cors",
    None,
)
CHROME_SCRIPT = ("*/*", "script", "no-cors", None)
CHROME_MODULE_SCRIPT = ("*/*", "script", "cors", None)
CHROME_STYLE = ("text/css,*/*;q=0.1", "style", "no-cors", None)
CHROME_FETCH = ("*/*", "empty", "cors", None)
CHROME_FETCH_JSON = ("application/json", "empty", "cors", None)
CHROME_FONT = ("*/*", "font", "cors", None)
CHROME_VIDEO = ("*/*", "video", "no-cors", None)
CHROME_WORKER = ("*/*", "worker", "same-origin", None)
CHROME_SERVICE_WORKER = ("*/*", "serviceworker", "same-origin", None)
CHROME_MANIFEST = ("*/*", "manifest", "cors", None)
CHROME_WEBSOCKET = (None, "websocket", "websocket", None)
JQUERY_AJAX = ("application/json, text/javascript, */*; q=0.01", "empty", "cors", "XMLHttpRequest")
JQUERY_AJAX_HTML = ("text/html, */*; q=0.01", "empty", "cors", "XMLHttpRequest")
AXIOS = ("application/json, text/plain, */*", "empty", "cors", None)
FIREFOX_NAVIGATE = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "document",
    "navigate",
    None,
)
FIREFOX_IMG = (
    "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
    "image",
    "no-cors",
    None,
)
FIREFOX_FRAME = (FIREFOX_NAVIGATE[0], "frame", "navigate", None)
FIREFOX_AUDIO = (
    "audio/webm,audio/ogg,audio/wav,audio/*;q=0.9,application/ogg;q=0.7,video/*;q=0.6,*/*;q=0.5",
    "audio",
    "no-cors",
    None,
)
ANDROID_WEBVIEW_NAVIGATE = (CHROME_NAVIGATE[0], "document", "navigate", "com.example.reader")
ANDROID_WEBVIEW_FETCH = ("*/*", "empty", "cors", "com.example.reader")
SAFARI15_NAVIGATE = (FIREFOX_NAVIGATE[0], None, None, None)
SAFARI15_IMG = (
    "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,"
    "image/svg+xml,image/*;q=0.8,*/*;q=0.5",
    None,
    None,
    None,
)
SAFARI15_SCRIPT = ("*/*", None, None, None)
SAFARI15_STYLE = ("text/css,*/*;q=0.1", None, None, None)
SAFARI15_XHR = ("*/*", None, None, "XMLHttpRequest")
CURL = ("*/*", None, None, None)
NOTHING = (None, None, None, None)

REAL_REQUESTS = [
    CHROME_NAVIGATE, CHROME_IFRAME, CHROME_IMG, CHROME_SCRIPT, CHROME_MODULE_SCRIPT, CHROME_STYLE,
    CHROME_FETCH, CHROME_FETCH_JSON, CHROME_FONT, CHROME_VIDEO, CHROME_WORKER,
    CHROME_SERVICE_WORKER, CHROME_MANIFEST, CHROME_WEBSOCKET, JQUERY_AJAX, JQUERY_AJAX_HTML, AXIOS,
    FIREFOX_NAVIGATE, FIREFOX_IMG, FIREFOX_FRAME, FIREFOX_AUDIO, ANDROID_WEBVIEW_NAVIGATE,
    ANDROID_WEBVIEW_FETCH, SAFARI15_NAVIGATE, SAFARI15_IMG, SAFARI15_SCRIPT, SAFARI15_STYLE,
    SAFARI15_XHR, CURL, NOTHING,
]  # fmt: skip

# One request of each kind, for tables over body kinds.
BY_KIND = {
    "document": CHROME_NAVIGATE,
    "image": CHROME_IMG,
    "script": CHROME_SCRIPT,
    "style": CHROME_STYLE,
    "data": JQUERY_AJAX,
    "other": CHROME_FONT,
}

CONTENT_TYPES = {
    "document": "text/html; charset=utf-8",
    "image": "image/svg+xml",
    "script": "text/javascript; charset=utf-8",
    "style": "text/css; charset=utf-8",
    "data": "application/json",
    "other": "text/plain; charset=utf-8",
}


def call(
    kind_or_request,
    *,
    policy=ListPolicy(),
    page=PAGE,
    list_name="iwf",
    entry_id="4711",
    accept_language=None,
):
    """render() for a request of one kind (a key of BY_KIND) or with one set of headers."""
    request = BY_KIND.get(kind_or_request, kind_or_request)
    accept, dest, mode, xrw = request
    return render(
        list_name=list_name,
        entry_id=entry_id,
        policy=policy,
        page=page,
        accept_language=accept_language,
        accept=accept,
        sec_fetch_dest=dest,
        sec_fetch_mode=mode,
        x_requested_with=xrw,
    )


def header(response: BlockResponse, name: str) -> str | None:
    values = [value for key, value in response.headers if key.lower() == name.lower()]
    assert len(values) <= 1, f"{name} appears {len(values)} times"
    return values[0] if values else None


class Markup(HTMLParser):
    """Every markup event of a page, with its text (character references resolved)."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.events: list[tuple] = []
        self.hrefs: list[str] = []
        self.text_parts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.hrefs += [value for name, value in attrs if name == "href"]
        self.events.append(("start", tag, tuple((n, "*" if n == "href" else v) for n, v in attrs)))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        self.events.append(("end", tag))

    def handle_decl(self, decl):
        self.events.append(("decl", decl))

    def handle_comment(self, data):
        self.events.append(("comment", data))

    def handle_pi(self, data):
        self.events.append(("pi", data))

    def unknown_decl(self, data):
        self.events.append(("unknown", data))

    def handle_data(self, data):
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


def visible(value: str) -> str:
    """What the page shows of a value: without C0/C1 controls (bar tab, LF, CR) or surrogates."""
    return "".join(
        ch
        for ch in value
        if ch in "\t\n\r" or unicodedata.category(ch) not in ("Cc", "Cs")
    )


# --- the public API ---------------------------------------------------------------------------


def test_all_is_the_public_api():
    public = {
        name
        for name, value in vars(blockpage).items()
        if not name.startswith("_")
        and getattr(value, "__module__", blockpage.__name__) == blockpage.__name__
        and not isinstance(value, type(blockpage))
    }
    assert sorted(blockpage.__all__) == sorted(public - {"annotations"})
    assert all(hasattr(blockpage, name) for name in blockpage.__all__)


def test_values_are_immutable():
    response = call("document")
    with pytest.raises(AttributeError):
        response.status = 200  # type: ignore[misc]
    with pytest.raises(AttributeError):
        PAGE.operator_name = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ListPolicy().status = 403  # type: ignore[misc]
    assert isinstance(response.headers, tuple) and isinstance(response.body, bytes)


def test_blockpage_does_not_import_mitmproxy():
    source = resources.files("urlwarden").joinpath("blockpage.py").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(from|import)\s+mitmproxy", source, re.MULTILINE)


# --- language -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("de", "de"),
        ("DE", "de"),
        ("fr", "fr"),
        ("de-CH", "de"),
        ("de-ch-1996", "de"),
        ("fr-CA,fr;q=0.9,en;q=0.8", "fr"),
        ("en-US,en;q=0.9,de;q=0.8", "en"),
        ("en-GB-x-private", "en"),
        ("zh-Hant-TW,fr;q=0.1", "fr"),
        ("es,de;q=0.5", "de"),
        ("es", "en"),  # unsupported
        ("es-ES,it;q=0.8,pt;q=0.5", "en"),
        ("fr;q=0.5,de;q=0.8", "de"),
        ("fr;q=0.5, de;q=0.5", "fr"),  # equal q: header order
        ("de;q=0.5,fr;q=0.500", "de"),
        ("fr ; q=0.7 , de ; q = 0.6", "fr"),  # whitespace around ; and =
        ("fr;Q=0.7,de;q=0.6", "fr"),  # q is case-insensitive
        ("*", "en"),
        ("es,*;q=0.1", "en"),
        ("*;q=0.9,en;q=0.1", "de"),  # en is named at 0.1, the wildcard means the others
        ("en;q=0,*", "de"),
        ("en;q=0,de;q=0,*", "fr"),
        ("de-CH;q=0,de;q=0.5", "de"),  # excluding de-CH does not exclude de
        ("de-CH,de;q=0,fr;q=0.1", "fr"),  # de-CH would fall back to de, which is excluded
        ("fr;q=0", "en"),  # nothing acceptable: as if absent
        ("*;q=0", "en"),
        # malformed parts are ignored, the rest still counts
        ("de;q=1.5,fr", "fr"),
        ("de;q=abc,fr;q=0.2", "fr"),
        ("de;q=0.1234,fr;q=0.2", "fr"),
        ("de;q=-1,fr;q=0.2", "fr"),
        ("de;q=,fr;q=0.2", "fr"),
        ("de;level=1,fr;q=0.2", "fr"),
        ("d e,fr;q=0.2", "fr"),
        ("de_DE,fr;q=0.2", "fr"),
        ("deutschland1,fr;q=0.2", "fr"),
        ("de-,fr;q=0.2", "fr"),
        (";;,,,fr", "fr"),
        ("<script>,fr", "fr"),
        ("\x00de,fr;q=0.1", "fr"),
        ("ünïcode,de;q=0.1", "de"),
        ("de;q=0.1," * 10_000 + "fr", "de"),  # bounded: the tail is never read
        ("," * 100_000 + "fr", "en"),
    ],
)
def test_choose_language(header, expected):
    assert choose_language(header, ("en", "de", "fr")) == expected


@pytest.mark.parametrize(
    ("header", "available", "default", "expected"),
    [
        ("pt", ("en-GB", "pt-BR"), "en-GB", "pt-BR"),  # a range covers a more specific tag
        ("pt-PT,pt;q=0.9", ("en-GB", "pt-BR"), "en-GB", "pt-BR"),
        ("pt-br", ("en-GB", "pt-BR"), "en-GB", "pt-BR"),  # spelled as available
        ("es", ("de", "fr"), "fr", "fr"),
        ("*", ("de", "fr"), "fr", "fr"),
        (None, ("de", "fr"), "FR", "fr"),
        ("pt;q=0,pt-BR", ("en-GB", "pt-BR"), "en-GB", "en-GB"),  # pt;q=0 excludes pt-BR too
    ],
)
def test_choose_language_other_sets(header, available, default, expected):
    assert choose_language(header, available, default) == expected


@pytest.mark.parametrize(("available", "default"), [(("de", "fr"), "en"), ((), "en")])
def test_choose_language_default_must_be_available(available, default):
    with pytest.raises(ValueError, match="default language"):
        choose_language("de", available, default)


# --- request kind -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_headers", "expected"),
    [
        (CHROME_NAVIGATE, "document"),
        (CHROME_IFRAME, "document"),
        (FIREFOX_NAVIGATE, "document"),
        (FIREFOX_FRAME, "document"),
        (ANDROID_WEBVIEW_NAVIGATE, "document"),  # X-Requested-With: package name, not XHR
        (SAFARI15_NAVIGATE, "document"),
        (CHROME_IMG, "image"),
        (FIREFOX_IMG, "image"),
        (SAFARI15_IMG, "image"),  # video/* is listed, but below the image types
        (CHROME_SCRIPT, "script"),
        (CHROME_MODULE_SCRIPT, "script"),
        (CHROME_WORKER, "script"),
        (CHROME_SERVICE_WORKER, "script"),
        (("*/*", "sharedworker", "same-origin", None), "script"),
        (("*/*", "paintworklet", "cors", None), "script"),
        (CHROME_STYLE, "style"),
        (SAFARI15_STYLE, "style"),
        (JQUERY_AJAX, "data"),
        (JQUERY_AJAX_HTML, "data"),  # fetch/XHR never gets the HTML page
        (AXIOS, "data"),
        (CHROME_FETCH_JSON, "data"),
        (("application/problem+json", "empty", "cors", None), "data"),
        (SAFARI15_XHR, "data"),
        (("application/json", "json", "cors", None), "data"),  # JSON module import
        (CHROME_FETCH, "other"),
        (("text/html", "empty", "cors", None), "other"),  # fetch() of HTML: no page either
        (("image/png", "empty", "cors", None), "other"),
        (ANDROID_WEBVIEW_FETCH, "other"),
        (CHROME_FONT, "other"),
        (CHROME_VIDEO, "other"),
        (FIREFOX_AUDIO, "other"),
        (CHROME_MANIFEST, "other"),
        (CHROME_WEBSOCKET, "other"),
        (("*/*", "track", "cors", None), "other"),
        (("*/*", "object", "no-cors", None), "other"),
        (("*/*", "embed", "no-cors", None), "other"),
        (("*/*", "report", "cors", None), "other"),
        (SAFARI15_SCRIPT, "other"),  # */* alone says nothing
        (CURL, "other"),
        (NOTHING, "other"),
        # Sec-Fetch-Dest wins over Accept
        (("application/json", "document", "navigate", None), "document"),
        (("text/html", "image", "no-cors", None), "image"),
        (("text/html", "script", "no-cors", None), "script"),
        (("image/png", "style", "no-cors", None), "style"),
        # header values are trimmed and compared case-insensitively
        ((None, " Document ", None, None), "document"),
        (("*/*", "empty", "cors", "xmlhttprequest"), "data"),
        # an unknown destination: the other headers decide
        (("text/html", "someday", None, None), "document"),
        (("*/*", "someday", None, None), "other"),
        ((None, None, "navigate", None), "document"),
        ((None, "", "navigate", None), "document"),
        # Accept alone
        (("text/html", None, None, None), "document"),
        (("application/xhtml+xml", None, None, None), "document"),
        (("image/*", None, None, None), "image"),
        (("image/png", None, None, None), "image"),
        (("image/webp,*/*", None, None, None), "image"),
        (("application/json", None, None, None), "data"),
        (("text/css", None, None, None), "style"),
        (("application/javascript", None, None, None), "script"),
        (("text/javascript, */*;q=0.1", None, None, None), "script"),
        (("text/plain", None, None, None), "other"),
        (("application/octet-stream", None, None, None), "other"),
        (("*/*;q=0.8", None, None, None), "other"),
        (("text/html;q=0, */*", None, None, None), "other"),  # q=0: not acceptable
        (("text/html;q=2", None, None, None), "other"),  # malformed q: ignored
        (("text/css;q=0.9, image/png", None, None, None), "image"),  # highest q decides
        (("image/webp, text/html", None, None, None), "image"),  # then the first listed
        (("text/plain, text/html", None, None, None), "document"),  # the first recognised
        (("text html", None, None, None), "other"),
        (("<script>", None, None, None), "other"),
        (("image/png;q=0.1," * 5_000 + "text/html", None, None, None), "image"),  # bounded
    ],
)
def test_request_kind(request_headers, expected):
    assert request_kind(*request_headers) == expected
    assert expected in blockpage.KINDS


# --- policy, status, mode -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": 399}, "400 to 599"),
        ({"status": 600}, "400 to 599"),
        ({"status": 200}, "400 to 599"),
        ({"status": 302}, "400 to 599"),
        ({"status": True}, "400 to 599"),
        ({"status": "451"}, "400 to 599"),
        ({"status": 451.0}, "400 to 599"),
        ({"status": 401}, "credentials"),
        ({"status": 407}, "credentials"),
        ({"mode": "block"}, "mode"),
        ({"mode": "SPLASH"}, "mode"),
        ({"mode": ""}, "mode"),
        ({"reason": ""}, "reason"),
        ({"reason": " \n\t"}, "reason"),
        ({"reason": None}, "reason"),
    ],
)
def test_list_policy_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ListPolicy(**kwargs)


@pytest.mark.parametrize(
    ("policy", "kind", "status", "content_type"),
    [
        (ListPolicy(), "document", 451, "text/html; charset=utf-8"),
        (ListPolicy(status=403), "document", 403, "text/html; charset=utf-8"),
        (ListPolicy(status=400), "image", 400, "image/svg+xml"),
        (ListPolicy(status=599), "data", 599, "application/json"),
        (ListPolicy(status=410, reason="Gone."), "script", 410, "text/javascript; charset=utf-8"),
        (ListPolicy(mode="notfound"), "document", 404, "text/plain; charset=utf-8"),
        (ListPolicy(mode="notfound", status=403), "image", 404, "text/plain; charset=utf-8"),
        (ListPolicy(mode="notfound"), "data", 404, "text/plain; charset=utf-8"),
    ],
)
def test_status_and_mode(policy, kind, status, content_type):
    response = call(kind, policy=policy)
    assert response.status == status
    assert header(response, "Content-Type") == content_type


@pytest.mark.parametrize("kind", list(BY_KIND))
def test_mode_close_has_no_response(kind):
    with pytest.raises(ValueError, match="drop the connection"):
        call(kind, policy=ListPolicy(mode="close", status=403))


@pytest.mark.parametrize("kind", list(BY_KIND))
def test_notfound_gives_no_hint_of_blocking(kind):
    page = PageSettings(operator_name="Hotline Filter", appeal_url=APPEAL, help_url=HELP)
    response = call(kind, policy=ListPolicy(mode="notfound"), page=page, list_name="iwf-x")
    assert response == BlockResponse(
        404,
        (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")),
        b"Not Found\n",
    )


# --- headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(BY_KIND))
def test_splash_headers(kind):
    response = call(kind, accept_language="fr-CH")
    names = [name.lower() for name, _ in response.headers]
    assert len(names) == len(set(names)), "header names must be unique (the addon uses dict())"
    assert header(response, "Link") == f'<{OPERATOR}>; rel="blocked-by"'
    assert header(response, "Cache-Control") == "no-store"
    assert header(response, "X-Content-Type-Options") == "nosniff"
    assert header(response, "Referrer-Policy") == "no-referrer"
    assert header(response, "Content-Type") == CONTENT_TYPES[kind]
    csp = header(response, "Content-Security-Policy")
    for directive in (
        "default-src 'none'",
        "style-src 'unsafe-inline'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
    ):
        assert directive in csp
    assert "script-src" not in csp
    assert header(response, "Content-Language") == ("fr" if kind in ("document", "image") else None)


@pytest.mark.parametrize(
    "operator_url",
    [
        "",
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://operator.example/",
        "//operator.example/about",
        "operator.example/about",
        "https://",
        "https:///about",
        "https://operator.example/a>; rel=\"x\"",
        "https://operator.example/\r\nSet-Cookie: a=b",
        "https://operator.example/\nx",
        " https://operator.example/",
        "https://operator.example/ about",
        'https://operator.example/"',
        "https://operator.example/<x>",
        "https://opérateur.example/",
        "https://[operator.example/",
        "https://operator.example/" + "a" * blockpage.MAX_URL_CHARS,
    ],
)
def test_link_header_left_out_for_unusable_operator_url(operator_url):
    response = call("document", page=PageSettings(operator_url=operator_url))
    assert header(response, "Link") is None
    assert all("\r" not in v and "\n" not in v for _, v in response.headers)
    assert response.status == 451


@pytest.mark.parametrize(
    "operator_url",
    [
        "https://operator.example/about",
        "HTTP://operator.example",
        "https://operator.example:8443/a/b?c=d&e=f#g",
        "http://127.0.0.1/",
        "http://[::1]/blocked",
        "https://operator.example/%C3%A9",
    ],
)
def test_link_header_for_http_urls(operator_url):
    response = call("other", page=PageSettings(operator_url=operator_url))
    assert header(response, "Link") == f'<{operator_url}>; rel="blocked-by"'


# --- the HTML page ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept_language", "language", "heading"),
    [
        (None, "en", "This page has been blocked"),
        ("en-GB", "en", "This page has been blocked"),
        ("de-AT,de;q=0.9", "de", "Diese Seite wurde gesperrt"),
        ("fr-BE", "fr", "Cette page a été bloquée"),
        ("es,fr;q=0.4,de;q=0.2", "fr", "Cette page a été bloquée"),
    ],
)
def test_page_language(accept_language, language, heading):
    response = call("document", accept_language=accept_language)
    page = response.body.decode("utf-8")
    assert header(response, "Content-Language") == language
    assert f'<html lang="{language}"' in page
    assert f"<h1>{heading}</h1>" in page
    assert "Example Library" in page
    assert "<code>iwf:4711</code>" in page


@pytest.mark.parametrize(
    ("accept_language", "default_reason"),
    [
        ("en", DEFAULT_REASON),
        ("de", "Der Zugriff auf diese Seite wurde gesperrt"),
        ("fr", "L’accès à cette page a été bloqué"),
    ],
)
def test_default_reason_is_translated_and_operator_reason_is_verbatim(
    accept_language, default_reason
):
    default_page = call("document", accept_language=accept_language).body.decode()
    assert default_reason in default_page
    licensor = "This URL is on the Example Hotline list of child sexual abuse imagery."
    page = call("document", policy=ListPolicy(reason=licensor), accept_language=accept_language)
    assert licensor in page.body.decode()
    assert default_reason not in page.body.decode()


def test_default_reason_matches_english_template():
    assert blockpage._TEMPLATES["en"].parts["default_reason"].substitute() == DEFAULT_REASON


@pytest.mark.parametrize(
    ("page", "hrefs", "shown", "not_shown"),
    [
        (
            PAGE,
            [APPEAL, HELP],
            ["ask for a review", "Talk to someone, in confidence.", "Get confidential help"],
            [],
        ),
        (
            PageSettings(appeal_url=APPEAL),
            [APPEAL],
            ["ask for a review"],
            ['class="help"', "confidential help"],
        ),
        (
            PageSettings(help_url=HELP),
            [HELP],
            ["confidential and anonymous help is available", "Get confidential help"],
            ['class="appeal"'],
        ),
        (
            PageSettings(help_text="Call the helpline: 0800 000 000 (free, anonymous)."),
            [],
            ["Call the helpline: 0800 000 000 (free, anonymous)."],
            ["Get confidential help", 'class="appeal"'],
        ),
        (PageSettings(), [], [], ['class="appeal"', 'class="help"']),
        (
            PageSettings(appeal_url="javascript:alert(1)", help_url="data:text/html,x"),
            [],
            [],
            ['class="appeal"', 'class="help"', "javascript:", "data:"],
        ),
    ],
)
def test_page_links(page, hrefs, shown, not_shown):
    body = call("document", page=page).body.decode()
    markup = Markup(body)
    assert markup.hrefs == hrefs
    for text in shown:
        assert text in markup.text or text in body
    for text in not_shown:
        assert text not in body
    assert "This notice comes from the web filter that" in body


@pytest.mark.parametrize(
    ("field", "value", "escaped"),
    [
        (
            "operator_name",
            "A \"quoted\" & 'single' <b>",
            "A &quot;quoted&quot; &amp; &#x27;single&#x27; &lt;b&gt;",
        ),
        ("reason", "No: <i>x</i> & \"y\"", "No: &lt;i&gt;x&lt;/i&gt; &amp; &quot;y&quot;"),
        ("list_name", "l'st", "<code>l&#x27;st:4711</code>"),
        ("entry_id", "\"1\"", "<code>iwf:&quot;1&quot;</code>"),
        ("help_text", "Call <now> & 'talk'", "<p>Call &lt;now&gt; &amp; &#x27;talk&#x27;</p>"),
    ],
)
def test_page_escapes_values(field, value, escaped):
    assert escaped in hostile_call("document", field, value).body.decode()


@pytest.mark.parametrize("language", blockpage.LANGUAGES)
def test_page_has_no_external_resources(language):
    body = call("document", accept_language=language).body.decode()
    without_links = body.replace(APPEAL.replace("&", "&amp;"), "").replace(HELP, "").lower()
    markers = ("<script", "<img", "<link", "<iframe", "<form", "<object", "<embed", "<base")
    for marker in (*markers, "src=", "url(", "@import", "//"):
        assert marker not in without_links, marker
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in body
    assert "<style>" in body and "@media (max-width:" in body


@pytest.mark.parametrize("kind", list(BY_KIND))
@pytest.mark.parametrize("language", blockpage.LANGUAGES)
def test_no_url_beyond_configured_links(kind, language):
    response = call(kind, accept_language=language, list_name="iwf-2024", entry_id="000123")
    text = response.body.decode("latin-1")
    urlish = re.findall(r"[a-z][a-z0-9+.-]*://[^\s\"'<>]*|www\.[^\s\"'<>]*", text, re.IGNORECASE)
    assert set(urlish) <= {APPEAL.replace("&", "&amp;"), HELP, SVG_NAMESPACE}
    assert OPERATOR not in text  # the operator URL only goes in the Link header
    if kind == "document":
        assert sorted(Markup(text).hrefs) == sorted([APPEAL, HELP])


# --- other body kinds ---------------------------------------------------------------------------


def gif_blocks(data: bytes) -> dict:
    """Walk a GIF's structure (GIF89a spec) and return what it says; assert it is complete."""
    assert data[:6] == b"GIF89a"
    width, height, packed, _background, _aspect = struct.unpack("<HHBBB", data[6:13])
    position = 13
    if packed & 0x80:
        position += 3 * (2 << (packed & 0x07))
    info = {"width": width, "height": height, "images": 0, "transparent": False}
    while True:
        introducer = data[position]
        if introducer == 0x3B:
            assert position == len(data) - 1, "bytes after the trailer"
            return info
        if introducer == 0x21:
            label = data[position + 1]
            position += 2
            if label == 0xF9:
                assert data[position] == 4
                info["transparent"] = bool(data[position + 1] & 0x01)
            while data[position]:
                position += data[position] + 1
            position += 1
        elif introducer == 0x2C:
            _x, _y, w, h, local = struct.unpack("<HHHHB", data[position + 1 : position + 10])
            assert (w, h) == (1, 1)
            position += 10
            if local & 0x80:
                position += 3 * (2 << (local & 0x07))
            assert 2 <= data[position] <= 8  # LZW minimum code size
            position += 1
            while data[position]:
                position += data[position] + 1
            position += 1
            info["images"] += 1
        else:
            raise AssertionError(f"unexpected block 0x{introducer:02x} at {position}")


SVG_NAMESPACE = "http://www.w3.org/2000/svg"
SVG_SHAPES = {"svg", "rect", "circle", "line", "text"}


def svg_elements(body: bytes) -> list:
    """The placeholder's elements; asserts it is well-formed SVG with no script, link or handler."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(body)
    elements = list(root.iter())
    for element in elements:
        assert element.tag.startswith("{%s}" % SVG_NAMESPACE) and element.tag.split("}")[1] in SVG_SHAPES
        assert not any(name.lower().startswith("on") or "href" in name for name in element.attrib)
    return elements


@pytest.mark.parametrize(
    ("request_headers", "language", "text"),
    [(CHROME_IMG, "de", "Bild gesperrt"), (FIREFOX_IMG, "fr-CH", "Image bloquée"), (SAFARI15_IMG, None, "Image blocked")],
)
def test_image_is_a_visible_placeholder_in_the_page_language(request_headers, language, text):
    response = call(request_headers, accept_language=language)
    assert header(response, "Content-Type") == "image/svg+xml"
    elements = svg_elements(response.body)
    root = elements[0]
    assert (root.get("width"), root.get("height")) == (str(blockpage.IMAGE_WIDTH), str(blockpage.IMAGE_HEIGHT))
    assert root.get("aria-label") == text
    assert [e.text for e in elements if e.tag.endswith("text")] == [text, "Example Library"]


@pytest.mark.parametrize(("name", "shown"), [
    ("A" * 24, "A" * 24),
    ("A" * 25, "A" * 23 + "\u2026"),
    ("<b>&amp;</b>", "<b>&amp;</b>"),
])
def test_image_placeholder_shows_the_operator_name_cut_to_fit(name, shown):
    response = call("image", page=PageSettings(operator_name=name))
    assert [e.text for e in svg_elements(response.body) if e.tag.endswith("text")][1] == shown


# an image client that lists only bitmap types (no SVG, no wildcard): the invisible GIF
BITMAP_ONLY_IMG = ("image/png,image/jpeg", "image", "no-cors", None)


@pytest.mark.parametrize("request_headers", [BITMAP_ONLY_IMG, ("image/webp", None, None, None)])
def test_image_is_a_valid_transparent_gif_for_clients_without_svg(request_headers):
    response = call(request_headers)
    assert header(response, "Content-Type") == "image/gif"
    assert response.body.startswith(b"GIF89a")
    assert len(response.body) == 43
    assert gif_blocks(response.body) == {"width": 1, "height": 1, "images": 1, "transparent": True}


@pytest.mark.parametrize(
    ("kind", "operator_name", "expected"),
    [
        ("script", "Example Library", b"/* blocked by Example Library */\n"),
        ("style", "Example Library", b"/* blocked by Example Library */\n"),
        ("script", "Städtische Bücherei", "/* blocked by Städtische Bücherei */\n".encode()),
        ("script", "a */ alert(1) /*", b"/* blocked by a * / alert(1) /* */\n"),
        ("style", "*/body{display:none}/*", b"/* blocked by * /body{display:none}/* */\n"),
        ("script", "x*", b"/* blocked by x* */\n"),
        ("script", "**//", b"/* blocked by ** // */\n"),
        ("script", "a\n*/\r\nb\u2028c", b"/* blocked by a * /  b c */\n"),
        (
            "script",
            "</script><script>alert(1)</script>",
            "/* blocked by ‹/script›‹script›alert(1)‹/script› */\n".encode(),
        ),
    ],
)
def test_script_and_style_comment(kind, operator_name, expected):
    response = call(kind, page=PageSettings(operator_name=operator_name))
    assert response.body == expected
    assert response.body.count(b"*/") == 1


@pytest.mark.parametrize(
    ("list_name", "entry_id", "operator_name"),
    [
        ("iwf", "4711", "Example Library"),
        ('li"st', "id\\1", "Opé<rator>"),
        ("</script>", "'; alert(1); '", "&amp;"),
        ("\u2028", "\x00\x1f", "\ud800"),
    ],
)
def test_data_is_json(list_name, entry_id, operator_name):
    page = PageSettings(operator_name=operator_name)
    response = call("data", list_name=list_name, entry_id=entry_id, page=page)
    assert response.body.isascii()
    assert not set(response.body.decode()) & set("<>&")
    assert json.loads(response.body) == {
        "blocked": True,
        "list": visible(list_name),
        "reference": visible(f"{list_name}:{entry_id}"),
        "operator": visible(operator_name),
    }


def test_other_is_empty():
    response = call("other")
    assert response.body == b""
    assert header(response, "Content-Type") == "text/plain; charset=utf-8"


# --- hostile values -----------------------------------------------------------------------------

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "</style><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "*/alert(1)/*",
    "javascript:alert(1)",
    "<!--",
    "]]><![CDATA[",
    "&lt;script&gt;",
    "$operator_name ${reason} $$",
    "\x00<\x00script>",
    "a\u2028b\u2029c",
]
FIELDS = ["operator_name", "reason", "list_name", "entry_id", "help_text"]


def hostile_call(kind, field, value):
    settings_fields = {"operator_name": "Example Library", "help_url": HELP, "appeal_url": APPEAL}
    arguments = {"list_name": "iwf", "entry_id": "4711"}
    policy = ListPolicy()
    if field == "reason":
        policy = ListPolicy(reason=value)
    elif field in arguments:
        arguments[field] = value
    else:
        settings_fields[field] = value
    return call(kind, policy=policy, page=PageSettings(**settings_fields), **arguments)


@pytest.mark.parametrize("kind", list(BY_KIND))
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_never_break_out(kind, field, value):
    response = hostile_call(kind, field, value)
    if kind == "image":
        if field != "operator_name":
            assert response.body == call("image").body
        svg_elements(response.body)  # well-formed, nothing but the placeholder's shapes and text
        return
    body = response.body.decode("utf-8")
    lowered = body.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert "<!--" not in body
    if kind == "document":
        expected = Markup(call("document").body.decode())
        markup = Markup(body)
        assert [e[:2] for e in markup.events] == [e[:2] for e in expected.events]
        assert body.count("<") == len(markup.events)
        assert lowered.count("</style") == 1
        assert markup.hrefs == [APPEAL, HELP]
        assert visible(value) in markup.text
    elif kind in ("script", "style"):
        assert body.startswith("/* blocked by ") and body.endswith(" */\n")
        assert body.count("*/") == 1
        assert "<" not in body and ">" not in body
    elif kind == "data":
        assert "<" not in body and ">" not in body
        assert json.loads(body)["blocked"] is True
    else:
        assert body == ""


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://appeal.example/\"><script>alert(1)</script>",
        "https://appeal.example/'onmouseover='alert(1)",  # quotes are RFC 3986 characters: escaped
        "//appeal.example/",
        "mailto:appeal@appeal.example",
        "https://appeal.example/</style>",
    ],
)
def test_hostile_link_targets(url):
    body = call("document", page=PageSettings(appeal_url=url, help_url=url)).body.decode()
    markup = Markup(body)
    for href in markup.hrefs:
        assert href.startswith("https://") and href == url
    for scheme in ("javascript:", "vbscript:", "data:text", "mailto:"):
        assert scheme not in body.lower()
    assert "<script" not in body
    assert body.count("<") == len(markup.events)


# --- templates ----------------------------------------------------------------------------------


def copy_templates(tmp_path):
    source = resources.files("urlwarden").joinpath("templates")
    for name in ["block.css", *(f"block.{lang}.html" for lang in blockpage.LANGUAGES)]:
        text = source.joinpath(name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_shipped_templates_load(tmp_path):
    loaded = blockpage._load_templates(copy_templates(tmp_path), blockpage.LANGUAGES)
    assert sorted(loaded) == sorted(blockpage.LANGUAGES)
    for language, templates in loaded.items():
        assert f'<html lang="{language}"' in templates.parts["page"].template


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "block.de.html",
            "<code>$reference</code>",
            "<code></code>",
            "missing placeholders \\['reference'\\]",
        ),
        ("block.fr.html", "$help\n", "$help $bogus\n", "unknown \\['bogus'\\]"),
        ("block.en.html", 'href="$appeal_url"', 'href="#"', "appeal: missing placeholders"),
        (
            "block.en.html",
            "<!--@fragment help_default-->",
            "<!--@fragment help_defualt-->",
            "missing fragments",
        ),
        ("block.de.html", "<!--@fragment appeal-->", "<!--@fragment help-->", "appears twice"),
        ("block.en.html", "Reference:", "Reference $:", "not a placeholder"),
        ("block.css", "*{", "</style><style>*{", "not allowed"),
    ],
)
def test_broken_template_fails_loudly(tmp_path, file, old, new, message):
    root = copy_templates(tmp_path)
    text = (root / file).read_text(encoding="utf-8")
    assert old in text
    (root / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(RuntimeError, match=message):
        blockpage._load_templates(root, blockpage.LANGUAGES)


@pytest.mark.parametrize("missing", ["block.fr.html", "block.css"])
def test_missing_template_file_fails_loudly(tmp_path, missing):
    root = copy_templates(tmp_path)
    (root / missing).unlink()
    with pytest.raises(RuntimeError, match=re.escape(missing)):
        blockpage._load_templates(root, blockpage.LANGUAGES)


def test_unknown_language_fails_loudly(tmp_path):
    with pytest.raises(RuntimeError, match=r"block\.nl\.html"):
        blockpage._load_templates(copy_templates(tmp_path), ("en", "nl"))


def test_templates_are_read_once(monkeypatch):
    class NoFiles:
        def __getattr__(self, name):
            raise AssertionError("render read a template file")

    monkeypatch.setattr(blockpage, "resources", NoFiles())
    for language in blockpage.LANGUAGES:
        assert b"<h1>" in call("document", accept_language=language).body


# --- properties ---------------------------------------------------------------------------------

LINK_EXAMPLES = [APPEAL, HELP, "http://help.example", "javascript:alert(1)", "https://x.test/<b>"]
links = st.one_of(
    st.none(),
    st.text(),
    st.sampled_from(LINK_EXAMPLES),
    st.builds("https://link.example/{}".format, st.text()),
)
reasons = st.one_of(st.just(DEFAULT_REASON), st.text().filter(str.strip))
statuses = st.integers(400, 599).filter(lambda status: status not in (401, 407))
header_values = st.one_of(st.none(), st.text(max_size=200))


def skeletons(language: str) -> set[tuple]:
    """The markup of every page a language can produce (appeal and help present or not)."""
    shapes = set()
    for appeal in (None, APPEAL):
        for help_url in (None, HELP):
            for help_text in (None, "text"):
                page = PageSettings(appeal_url=appeal, help_url=help_url, help_text=help_text)
                body = call("document", page=page, accept_language=language).body.decode()
                shapes.add(tuple(Markup(body).events))
    return shapes


SKELETONS = {language: skeletons(language) for language in blockpage.LANGUAGES}


@settings(deadline=None, max_examples=300)
@given(
    operator_name=st.text(),
    operator_url=links,
    appeal_url=links,
    help_url=links,
    help_text=st.one_of(st.none(), st.text()),
    reason=reasons,
    list_name=st.text(),
    entry_id=st.text(),
    language=st.sampled_from(blockpage.LANGUAGES),
)
def test_property_html_markup_comes_only_from_the_template(
    operator_name,
    operator_url,
    appeal_url,
    help_url,
    help_text,
    reason,
    list_name,
    entry_id,
    language,
):
    page = PageSettings(operator_name, operator_url, appeal_url, help_url, help_text)
    response = call(
        "document",
        policy=ListPolicy(reason=reason),
        page=page,
        list_name=list_name,
        entry_id=entry_id,
        accept_language=language,
    )
    body = response.body.decode("utf-8")
    markup = Markup(body)
    assert body.count("<") == len(markup.events), "a '<' that is not the template's markup"
    assert tuple(markup.events) in SKELETONS[language]
    assert set(markup.hrefs) <= {appeal_url, help_url}
    assert all(re.match(r"https?://", href, re.IGNORECASE) for href in markup.hrefs)
    shown_reason = None if reason == DEFAULT_REASON else reason  # else the translation is shown
    for value in (operator_name, f"{list_name}:{entry_id}", help_text, shown_reason):
        if value is not None:
            assert visible(value) in markup.text


@settings(deadline=None, max_examples=300)
@given(
    strings=st.fixed_dictionaries(
        {"operator_name": st.text(), "list_name": st.text(), "entry_id": st.text()}
    ),
    page_links=st.tuples(links, links, links, st.one_of(st.none(), st.text())),
    reason=reasons,
    status=statuses,
    mode=st.sampled_from(["splash", "notfound"]),
    request_headers=st.one_of(
        st.sampled_from(REAL_REQUESTS),
        st.tuples(header_values, header_values, header_values, header_values),
    ),
    accept_language=header_values,
)
def test_property_render_never_raises_for_valid_policies(
    strings, page_links, reason, status, mode, request_headers, accept_language
):
    operator_url, appeal_url, help_url, help_text = page_links
    page = PageSettings(strings["operator_name"], operator_url, appeal_url, help_url, help_text)
    policy = ListPolicy(reason=reason, status=status, mode=mode)
    response = call(
        request_headers,
        policy=policy,
        page=page,
        list_name=strings["list_name"],
        entry_id=strings["entry_id"],
        accept_language=accept_language,
    )
    assert response.status == (status if mode == "splash" else 404)
    assert isinstance(response.body, bytes)
    names = [name.lower() for name, _ in response.headers]
    assert len(names) == len(set(names))
    for name, value in response.headers:
        assert value.isascii() and value.isprintable(), (name, value)
    content_type = header(response, "Content-Type")
    if content_type.startswith("text/html"):
        body = response.body.decode("utf-8")
        assert body.count("<") == len(Markup(body).events)
    elif content_type.startswith(("text/javascript", "text/css")):
        assert response.body.count(b"*/") == 1 and response.body.endswith(b" */\n")
    elif content_type == "application/json":
        assert json.loads(response.body)["operator"] == visible(strings["operator_name"])
    elif content_type == "image/gif":
        assert gif_blocks(response.body)["transparent"]
    elif content_type == "image/svg+xml":
        svg_elements(response.body)
    else:
        assert response.body in (b"", b"Not Found\n")


# --- operator texts per language, the operator's own template -------------------------------------


LOCALIZED_REASON = blockpage.Localized.of({"en": "Listed by the hotline.", "de": "Von der Meldestelle gelistet."})


@pytest.mark.parametrize(("accept_language", "shown"), [
    ("de-DE,de;q=0.9", "Von der Meldestelle gelistet."),
    ("en", "Listed by the hotline."),
    ("fr", "Listed by the hotline."),  # no French text: the default language's
])
def test_localized_reason_and_help_text(accept_language, shown):
    page = PageSettings(help_text=blockpage.Localized.of({"en": "Help in English.", "de": "Hilfe auf Deutsch."}))
    body = call("document", policy=ListPolicy(reason=LOCALIZED_REASON), page=page,
                accept_language=accept_language).body.decode()
    assert shown in body
    assert ("Hilfe auf Deutsch." if shown.startswith("Von") else "Help in English.") in body


@pytest.mark.parametrize(("texts", "message"), [
    ({"de": "Nur Deutsch."}, "default language 'en' is missing"),
    ({"en": "x", "xx": "y"}, "unknown language 'xx'"),
    ({"en": " "}, "en: must be non-blank text"),
])
def test_localized_rules(texts, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        blockpage.Localized.of(texts)


def test_operator_template_is_rendered_with_autoescaping(tmp_path):
    from urlwarden.blocktemplate import load_template

    path = tmp_path / "block.html"
    path.write_text("<title>{{ operator_name }}</title><p lang=\"{{ language }}\">{{ reason or default_reason }}</p>"
                    "<p>{{ reference }}</p>{% if appeal_url %}<a href=\"{{ appeal_url }}\">appeal</a>{% endif %}\n")
    page = PageSettings(operator_name="<script>x</script>", appeal_url=APPEAL, template=load_template(path))
    response = call("document", page=page, policy=ListPolicy(reason=LOCALIZED_REASON), accept_language="de")
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    assert header(response, "Content-Language") == "de"
    assert response.body.decode() == (
        "<title>&lt;script&gt;x&lt;/script&gt;</title><p lang=\"de\">Von der Meldestelle gelistet.</p>"
        f"<p>iwf:4711</p><a href=\"{APPEAL.replace('&', '&amp;')}\">appeal</a>\n")
    # other kinds are not the template's business
    assert header(call("image", page=page), "Content-Type") == "image/svg+xml"


@pytest.mark.parametrize(("text", "message"), [
    ("<p>\n{{ reason }\n", ":2: unexpected '}'"),
    ("<p>\n\n{{ reasn }}\n", ":3: 'reasn' is undefined"),
    ("{{ operator_name.__class__.__mro__ }}", ":1: access to attribute '__class__'"),
    (None, ": cannot read the block page template"),
])
def test_operator_template_errors_name_the_file_and_line(tmp_path, text, message):
    from urlwarden.blocktemplate import load_template
    from urlwarden.errors import ConfigError

    path = tmp_path / "block.html"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_template(path)
    assert str(caught.value).startswith(f"{path}{message}"), str(caught.value)
    assert "\n" not in str(caught.value)
