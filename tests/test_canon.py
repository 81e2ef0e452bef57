"""Tests of urlwarden.core.canon.

The first table is every example of the Safe Browsing v4 "URLs and Hashing" document, row for
row, with one change: the document's real domains are renamed to reserved names (``.example``,
``.test``) and its public IP addresses to loopback ones, because this project holds no real
hosts. Each rename keeps what the row exercises (the same escapes, dots, case and encodings).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from urlwarden.core import canon

SPEC_EXAMPLES = [
    ("http://host/%25%32%35", "http://host/%25"),
    ("http://host/%25%32%35%25%32%35", "http://host/%25%25"),
    ("http://host/%2525252525252525", "http://host/%25"),
    ("http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
    ("http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"),
    ("http://www.example.test/", "http://www.example.test/"),
    # 127.188.99.26, percent-encoded the way the document encodes 168.188.99.26
    (
        "http://%31%32%37%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%65%78%61%6D%70%6C%65/",
        "http://127.188.99.26/.secure/www.ebay.example/",
    ),
    (
        "http://127.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
        "http://127.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
    ),
    (
        "http://host%23.example/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833%252944_55%252B",
        "http://host%23.example/~a!b@c%23d$e%25f^00&11*22(33)44_55+",
    ),
    ("http://2139029515/blah", "http://127.127.0.11/blah"),  # 3279880203 in the document
    ("http://www.example.test/blah/..", "http://www.example.test/"),
    ("www.example.test/", "http://www.example.test/"),
    ("www.example.test", "http://www.example.test/"),
    ("http://www.evil.test/blah#frag", "http://www.evil.test/blah"),
    ("http://www.EXAmple.test/", "http://www.example.test/"),
    ("http://www.example.test.../", "http://www.example.test/"),
    ("http://www.example.test/foo\tbar\rbaz\n2", "http://www.example.test/foobarbaz2"),
    ("http://www.example.test/q?", "http://www.example.test/q?"),
    ("http://www.example.test/q?r?", "http://www.example.test/q?r?"),
    ("http://www.example.test/q?r?s", "http://www.example.test/q?r?s"),
    ("http://evil.test/foo#bar#baz", "http://evil.test/foo"),
    ("http://evil.test/foo;", "http://evil.test/foo;"),
    ("http://evil.test/foo?bar;", "http://evil.test/foo?bar;"),
    # the raw bytes 0x01 0x80 of the document's example; a str carries 0x80 as surrogate \udc80
    ("http://\x01\udc80.example/", "http://%01%80.example/"),
    (b"http://\x01\x80.example/", "http://%01%80.example/"),
    ("http://notrailingslash.example", "http://notrailingslash.example/"),
    ("http://www.gotaport.example:1234/", "http://www.gotaport.example/"),
    ("  http://www.example.test/  ", "http://www.example.test/"),
    ("http:// leadingspace.example/", "http://%20leadingspace.example/"),
    ("http://%20leadingspace.example/", "http://%20leadingspace.example/"),
    ("%20leadingspace.example/", "http://%20leadingspace.example/"),
    ("https://www.securesite.example/", "https://www.securesite.example/"),
    ("http://host.example/ab%23cd", "http://host.example/ab%23cd"),
    ("http://host.example//twoslashes?more//slashes", "http://host.example/twoslashes?more//slashes"),
]


@pytest.mark.parametrize(("url", "expected"), SPEC_EXAMPLES)
def test_spec_examples(url, expected):
    assert canon.canonicalize(url) == expected


BEYOND_SPEC = [
    # every legal IPv4 encoding
    ("http://0x7f.0.0.1/", "http://127.0.0.1/"),
    ("http://0177.0.0.01/", "http://127.0.0.1/"),
    ("http://0x7f000001/", "http://127.0.0.1/"),
    ("http://017700000001/", "http://127.0.0.1/"),
    ("http://127.1/", "http://127.0.0.1/"),
    ("http://127.0.1/", "http://127.0.0.1/"),
    ("http://127.0.0.1./", "http://127.0.0.1/"),
    ("http://0X7F.0x00.0.0x01/", "http://127.0.0.1/"),
    ("http://127.65535/", "http://127.0.255.255/"),
    ("http://%30x7f.1/", "http://127.0.0.1/"),
    # not IPv4: out of range, bad digits, too many parts
    ("http://256.1.1.1/", "http://256.1.1.1/"),
    ("http://127.0.0.1.5/", "http://127.0.0.1.5/"),
    ("http://09.1.1.1/", "http://09.1.1.1/"),
    ("http://1.2.3.4294967296/", "http://1.2.3.4294967296/"),
    # IPv6 literals, IPv4-mapped to IPv4
    ("http://[::ffff:127.0.0.2]/x", "http://127.0.0.2/x"),
    ("http://[::FFFF:7f00:2]:8080/x", "http://127.0.0.2/x"),
    ("http://[0:0:0:0:0:0:0:1]/", "http://[::1]/"),
    ("http://[FE80::0001%25eth0]/", "http://[fe80::1]/"),
    # IDN
    ("http://B\u00fccher.test/", "http://xn--bcher-kva.test/"),
    ("http://xn--bcher-kva.TEST/", "http://xn--bcher-kva.test/"),
    ("http://b%C3%BCcher.test/", "http://xn--bcher-kva.test/"),
    ("http://listed\uff0etest/", "http://listed.test/"),
    ("http://listed\u3002test/", "http://listed.test/"),
    ("http://\uff11\uff12\uff17.0.0.1/", "http://127.0.0.1/"),
    # userinfo and ports
    ("http://user:pw@listed.test:8443/a", "http://listed.test/a"),
    ("http://evil.test%40listed.test/", "http://listed.test/"),
    ("listed.test:8080/x", "http://listed.test/x"),
    ("//listed.test/x", "http://listed.test/x"),
    ("HTTPS://LISTED.TEST/A", "https://listed.test/A"),
    ("ws://listed.test/chat", "ws://listed.test/chat"),
    # paths
    ("http://listed.test/a/./b/../c", "http://listed.test/a/c"),
    ("http://listed.test/a/%2E%2E/b", "http://listed.test/b"),
    ("http://listed.test/../../x", "http://listed.test/x"),
    ("http://listed.test/a/.", "http://listed.test/a/"),
    ("http://listed.test/.hidden/x", "http://listed.test/.hidden/x"),
    ("http://listed.test/a%3Fb", "http://listed.test/a?b"),
    ("http://listed.test/%7f%FF", "http://listed.test/%7F%FF"),
    ("http://listed.test/x?a=/../b", "http://listed.test/x?a=/../b"),
    ("http://listed.test/%25%25%25%2541", "http://listed.test/%25%25%25A"),
]


@pytest.mark.parametrize(("url", "expected"), BEYOND_SPEC)
def test_beyond_spec(url, expected):
    assert canon.canonicalize(url) == expected


@pytest.mark.parametrize(
    "url",
    ["", "   ", "\x01\x1f ", "http://", "http:///", "http:\\\\/?x", "http://.../", "http://user@/x", "http://[::1/", "http://[zz]/",
     "http://.[::1]/", "http://a[b.test/", "//", "http://%2E%2E/"],
)
def test_no_valid_host_raises_value_error(url):
    with pytest.raises(ValueError):
        canon.canonicalize(url)


SPEC_EXPRESSIONS = [
    (
        "http://a.b.c/1/2.html?param=1",
        ["a.b.c/1/2.html?param=1", "a.b.c/1/2.html", "a.b.c/", "a.b.c/1/",
         "b.c/1/2.html?param=1", "b.c/1/2.html", "b.c/", "b.c/1/"],
    ),
    (
        "http://a.b.c.d.e.f.g/1.html",
        ["a.b.c.d.e.f.g/1.html", "a.b.c.d.e.f.g/", "c.d.e.f.g/1.html", "c.d.e.f.g/",
         "d.e.f.g/1.html", "d.e.f.g/", "e.f.g/1.html", "e.f.g/", "f.g/1.html", "f.g/"],
    ),
    ("http://127.2.3.4/1/", ["127.2.3.4/1/", "127.2.3.4/"]),  # 1.2.3.4 in the document
    ("http://localhost/x", ["localhost/x", "localhost/"]),
    ("http://[::1]/a/b", ["[::1]/a/b", "[::1]/", "[::1]/a/"]),
    ("http://listed.test/q?", ["listed.test/q?", "listed.test/q", "listed.test/"]),
]


@pytest.mark.parametrize(("url", "expected"), SPEC_EXPRESSIONS)
def test_expressions(url, expected):
    assert canon.expressions(url) == expected


def test_path_prefixes_go_deeper_than_the_spec():
    url = "http://deep.test/1/2/3/4/5/6/page.html"
    exprs = canon.expressions(url)
    assert "deep.test/1/2/3/4/5/6/" in exprs  # the spec stops at /1/2/3/
    assert exprs[:2] == ["deep.test/1/2/3/4/5/6/page.html", "deep.test/"]


def test_path_prefixes_are_bounded():
    url = "http://deep.test/" + "d/" * 500 + "x"
    exprs = canon.expressions(url)
    assert len(exprs) == 1 + canon.MAX_PATH_PREFIXES
    assert len(canon.expressions(url, max_prefixes=3)) == 4


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("a.b.c.d.e.f.g", ["a.b.c.d.e.f.g", "c.d.e.f.g", "d.e.f.g", "e.f.g", "f.g"]),
        ("listed.test", ["listed.test"]),
        ("www.listed.test", ["www.listed.test", "listed.test"]),
        ("test", ["test"]),
        ("127.0.0.1", ["127.0.0.1"]),
        ("[::1]", ["[::1]"]),
    ],
)
def test_host_suffixes(host, expected):
    assert canon.host_suffixes(host) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Listed.TEST", "listed.test"),
        ("listed.test:443", "listed.test"),
        ("listed.test.", "listed.test"),
        ("[::1]:8080", "[::1]"),
        ("::ffff:7f00:1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("b\u00fccher.test", "xn--bcher-kva.test"),
        ("listed%2Etest", "listed.test"),
    ],
)
def test_canonical_host(name, expected):
    assert canon.canonical_host(name) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://www.Listed.test/x", "www.listed.test"),
        ("listed.test", "listed.test"),
        ("https://listed.test.:8443?q", "listed.test"),
        ("http://listed.test#f", "listed.test"),
        ("http://127.0.0.1/", "127.0.0.1"),  # canonical dotted decimal: read off directly
        ("http://127.000.0.1/", None),  # leading zeros (octal in some parsers): the pipeline decides
        ("http://0x7f.1/", None),
        ("http://a.test@b.test/", None),
        ("http://li%73ted.test/", None),
        ("http:/\t/listed.test/", None),
        ("http://b\u00fccher.test/", None),
        ("http://..listed.test/", None),
        (" http://listed.test/", None),
    ],
)
def test_fast_host(url, expected):
    assert canon.fast_host(url) == expected


# --- properties -----------------------------------------------------------------------------

URL_ALPHABET = st.sampled_from(
    list("abcXYZ019.-_/?#%@:[]~!$&'()*+,;= \t\r\n")
    + ["%2", "%25", "%2E", "%2F", "%3F", "%23", "%40", "%00", "%80", "%C3%BC", "0x", "..", "//", "\u00fc",
       "\uff0e", "\u3002", "\uff0f", "\uff05", "\uff1a", "\udc80", "\ud800", "http://", "https://", "[::1]",
       "[::ffff:127.0.0.1]", "xn--"]
)
url_text = st.lists(URL_ALPHABET, max_size=40).map("".join) | st.text(max_size=60)
url_like = st.builds(
    lambda scheme, host, path: scheme + host + path,
    st.sampled_from(["", "http://", "https://", "HTTP://", "//"]),
    st.lists(URL_ALPHABET, min_size=1, max_size=12).map("".join),
    st.lists(URL_ALPHABET, max_size=20).map("".join),
)


@settings(max_examples=2000, deadline=None)
@given(url_text | url_like)
@example("http://.[::1]/")
@example("http://\uff0f.test/")
@example("http://\uff05\uff14\uff11.test/")
def test_canonicalize_is_idempotent_and_raises_only_value_error(url):
    try:
        once = canon.canonicalize(url)
    except ValueError:
        return
    assert once.isascii()
    assert canon.canonicalize(once) == once


@settings(max_examples=1000, deadline=None)
@given(url_text | url_like)
def test_expressions_include_the_exact_host_and_path(url):
    try:
        cu = canon.parse(url)
    except ValueError:
        return
    exprs = canon.expressions(url)
    assert cu.host + cu.path in exprs
    assert cu.expression == exprs[0]
    assert len(exprs) == len(set(exprs))
    assert len(exprs) <= canon.MAX_HOST_SUFFIXES * 2 * (2 + canon.MAX_PATH_PREFIXES)  # 2: server variant


@settings(max_examples=2000, deadline=None)
@given(url_text | url_like)
def test_fast_host_agrees_with_full_parse(url):
    host = canon.fast_host(url)
    if host is not None:
        assert canon.parse(url).host == host


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=3000))
def test_deeply_nested_escapes_unescape_fully(depth):
    url = "http://listed.test/%" + "25" * depth + "41"
    assert canon.canonicalize(url) == "http://listed.test/A"


def test_huge_input_is_handled():
    url = "http://" + "a." * 50_000 + "test/" + "%25" * 50_000 + "x" * 100_000
    assert canon.canonicalize(url).startswith("http://")
    assert canon.canonicalize("http://" + "9" * 10_000 + "/") == "http://" + "9" * 10_000 + "/"


# --- browser forms (WHATWG URL Standard) ------------------------------------------------------
#
# A URL as typed and as a browser sends it must canonicalize alike. Inputs and browser results are
# cases of web-platform-tests' url/resources/urltestdata.json (the WHATWG URL Standard's test
# data), hosts renamed to reserved names; the third column is our canonical form.

BROWSER_FORMS = [
    # backslashes are slashes in special URLs (urltestdata: "http:\\\\www.google.com\\foo")
    ("http:\\\\www.example.test\\foo", "http://www.example.test/foo", "http://www.example.test/foo"),
    ("http://example.test\\\\foo\\\\bar", "http://example.test//foo//bar", "http://example.test/foo/bar"),
    ("http://example.test\\a\\..\\b", "http://example.test/b", "http://example.test/b"),
    # one slash or none after a special scheme (urltestdata: "http:/example.com/", "http:example.com/")
    ("http:/example.test/", "http://example.test/", "http://example.test/"),
    ("http:example.test/", "http://example.test/", "http://example.test/"),
    ("https:example.test/a", "https://example.test/a", "https://example.test/a"),
    ("HTTP:///example.test/", "http://example.test/", "http://example.test/"),
    ("ws:/example.test/chat", "ws://example.test/chat", "ws://example.test/chat"),
    # leading and trailing C0 controls and spaces (urltestdata: "\u0000\u001b\u0004\u0012 http://example.com/\u001f \r ")
    ("\x00\x1b\x04\x12 http://example.test/\x1f \r ", "http://example.test/", "http://example.test/"),
    # percent-encoded hosts are decoded, then IDNA (UTS #46) (urltestdata: "https://%e2%98%83")
    ("https://%e2%98%83.test", "https://xn--n3h.test/", "https://xn--n3h.test/"),
    ("https://\u2603.test/", "https://xn--n3h.test/", "https://xn--n3h.test/"),
    ("http://%41.test/", "http://a.test/", "http://a.test/"),
]


@pytest.mark.parametrize(("typed", "sent", "expected"), BROWSER_FORMS)
def test_typed_and_browser_forms_canonicalize_alike(typed, sent, expected):
    assert canon.canonicalize(typed) == canon.canonicalize(sent) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Safe Browsing's own rules where they deliberately differ from what a browser would send
        ("http://example.test/a//../b", "http://example.test/b"),  # browser: /a/b (runs collapse first)
        ("abc:/x/y", "http://abc/x/y"),  # not a special scheme: no WHATWG slash rule
        ("http://evil.test\\@listed.test/", "http://listed.test/"),  # browser: host evil.test
        ("http://listed.test/q?a\\b", "http://listed.test/q?a\\b"),  # the query keeps its backslash
    ],
)
def test_where_safe_browsing_rules_win(url, expected):
    assert canon.canonicalize(url) == expected


SPECIAL = st.sampled_from(["http", "https", "HTTP", "ws", "wss", "ftp"])
LABEL = st.text("abcxyz019-", min_size=1, max_size=6).filter(lambda s: not s.isdigit())
SEGMENT = st.text("abcXYZ019-_.~;=!", max_size=6)
C0 = st.text("".join(map(chr, range(0x21))), max_size=3)


@settings(max_examples=1000, deadline=None)
@given(SPECIAL, st.lists(LABEL, min_size=1, max_size=4), st.lists(SEGMENT, max_size=5),
       st.lists(st.sampled_from(["/", "\\"]), min_size=5, max_size=5), st.sampled_from(["", "/", "\\", "//", "\\\\/", "///"]),
       C0, C0)
def test_a_typed_url_and_its_browser_serialization_canonicalize_alike(scheme, labels, segments, seps, slashes, lead, trail):
    host = ".".join(labels) + ".test"
    typed_path = "".join(sep + seg for sep, seg in zip(seps, segments))
    sent_path = typed_path.replace("\\", "/")
    typed = f"{lead}{scheme}:{slashes}{host}{typed_path}{trail}"
    sent = f"{scheme.lower()}://{host}{sent_path or '/'}"
    once = canon.canonicalize(typed)
    assert once == canon.canonicalize(sent)
    assert canon.canonicalize(once) == once


@settings(max_examples=1000, deadline=None)
@given(url_text | url_like)
def test_expressions_of_the_canonical_form_are_the_same(url):
    try:
        exprs = canon.expressions(url)
    except ValueError:
        return
    assert canon.expressions(canon.canonicalize(url)) == exprs
