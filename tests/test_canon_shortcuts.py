"""Tests for canon's shortcuts: each must give exactly what the full pipeline gives, or decline.

`canon.parse`, `canon.fast_host`, `canon.canonical_host` and `canon.host_suffixes` have fast
paths for the common case (speed work for the matcher); these properties pin them to the
step-by-step pipeline and to the previous implementations. Synthetic names only.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from urlwarden.core import canon

PIECES = (
    list("abcXYZ019.-_/?#%@:[]~!$&'()*+,;=\\ \t\r\n\x0b\x7f")
    + ["%2", "%25", "%2E", "%2F", "%41", "0x", "0X1f", "..", "//", "/./", "/../", "\u00fc", "\uff0e",
       "\udc80", "http://", "https://", "HTTP://", "a+b.c-d://", "[::1]", ":8080", ":", "?", "#",
       "listed.test", "www.", "127.0.0.1", "1.2", ".test", "xn--", "#frag \t"]
)
text = st.lists(st.sampled_from(PIECES), max_size=24).map("".join) | st.text(max_size=40)
simple = st.builds(
    lambda scheme, labels, port, path, query, fragment: scheme + ".".join(labels) + port + path + query + fragment,
    st.sampled_from(["", "http://", "HTTPS://", "git+ssh://", "1x://", "//"]),
    st.lists(st.sampled_from(["a", "B", "0", "0x1", "12", "x-y", "-", "www", "test", ""]), min_size=1, max_size=5),
    st.sampled_from(["", ":", ":80", ":x", "."]),
    st.lists(st.sampled_from(["/", "a", ".", "..", "/./", "//", "b.html", "\\", "@", ";"]), max_size=6).map("".join),
    st.sampled_from(["", "?", "?a=1", "?a/b//c", "?%41", "??"]),
    st.sampled_from(["", "#", "#x y", "#\t"]),
)


def pipeline(url):
    try:
        return canon._parse_pipeline(url)
    except ValueError:
        return ValueError


def shortcut(url):
    try:
        return canon.parse(url)
    except ValueError:
        return ValueError


@settings(max_examples=3000, deadline=None)
@given(text | simple)
@example("http://listed.test")
@example("listed.test.:8080?q#f")
@example("abc:/x/y")
@example("http://0x1f.test.0x1f/")
@example("http://a.b.0x/")
def test_parse_shortcut_equals_the_pipeline(url):
    assert shortcut(url) == pipeline(url)


octet = st.integers(0, 255).map(str) | st.sampled_from(["00", "01", "007", "256", "999", "0x7f", "0X1", ""])
addresses = st.builds(
    lambda scheme, parts, tail: scheme + ".".join(parts) + tail,
    st.sampled_from(["", "http://", "HTTPS://", "//", "x://"]),
    st.lists(octet, min_size=1, max_size=5),
    st.sampled_from(["", "/", ":80/", ":/x", "?q", "#f", ".", "./", ".x/", "@h/", "\t/", "%2e/", "/a b"]),
)


@settings(max_examples=3000, deadline=None)
@given(text | simple | addresses)
@example("abc:/\t/listed.test/")
@example("http://127.0.0.1:8080/x")
@example("http://1.2.3.4./")
@example("http://01.2.3.4/")
def test_fast_host_is_the_pipeline_host_or_none(url):
    host = canon.fast_host(url)
    if host is not None:
        assert pipeline(url).host == host


@given(st.lists(st.integers(0, 255), min_size=4, max_size=4), st.sampled_from(["", "http://", "HTTP://"]),
       st.sampled_from(["", ":80", ":"]), st.sampled_from(["", "/", "/x?y", "?q", "#f"]))
def test_fast_host_reads_dotted_decimal_addresses(octets, scheme, port, rest):
    address = ".".join(map(str, octets))
    assert canon.fast_host(scheme + address + port + rest) == address == pipeline(scheme + address + port + rest).host


def old_host_suffixes(host: str) -> list[str]:
    """host_suffixes as it was before the speed work (the reference)."""
    if canon.is_ip_literal(host):
        return [host]
    suffixes = []
    pos = host.rfind(".")
    for _ in range(4):
        pos = host.rfind(".", 0, pos) if pos > 0 else -1
        if pos < 0:
            break
        suffixes.append(host[pos + 1:])
    suffixes.append(host)
    suffixes.reverse()
    return suffixes


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", ".", "1", "[", "]", ":", "0x"]), min_size=1, max_size=16).map("".join))
def test_host_suffixes_unchanged(host):
    assert canon.host_suffixes(host) == old_host_suffixes(host)


@settings(max_examples=2000, deadline=None)
@given(text | st.builds(lambda h, p: h + p, st.sampled_from(["listed.test", "A.b", "1.2.3", "x.0x1"]),
                        st.sampled_from(["", ":443", ".", ".:80", ":", " "])))
def test_canonical_host_shortcut_equals_the_pipeline(name):
    def slow(name):
        raw = canon._to_bytes(name).strip(canon._WHITESPACE)
        if raw[:1] != b"[" and raw.count(b":") > 1:
            raw = b"[" + raw + b"]"
        return canon._parse_pipeline(b"http://" + raw + b"/").host

    try:
        expected = slow(name)
    except ValueError:
        expected = ValueError
    try:
        got = canon.canonical_host(name)
    except ValueError:
        got = ValueError
    assert got == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTPS://WWW.Listed.TEST.:8443/a/b.html?Q=1#x", ("https", "www.listed.test", "/a/b.html", "Q=1")),
        ("listed.test", ("http", "listed.test", "/", None)),
        ("listed.test?", ("http", "listed.test", "/", "")),
        ("http://listed.test/a//b", ("http", "listed.test", "/a/b", None)),  # declined: slashes
        ("http://listed.test/a/./b", ("http", "listed.test", "/a/b", None)),  # declined: dot segment
    ],
)
def test_parse_examples(url, expected):
    cu = canon.parse(url)
    assert (cu.scheme, cu.host, cu.path, cu.query) == expected


@pytest.mark.parametrize("cu", [canon.parse("http://a.b.test/x/y/z.html?q"), canon.parse("a.test"),
                                canon.parse("http://a.test/d/")])
@pytest.mark.parametrize("max_prefixes", [0, 1, 3, canon.MAX_PATH_PREFIXES])
def test_lookup_paths_are_the_path_parts_of_expressions(cu, max_prefixes):
    paths = canon.lookup_paths(cu, max_prefixes)
    expected = canon.expressions(cu, max_prefixes)
    assert [h + p for h in canon.host_suffixes(cu.host) for p in paths] == expected


ADVERSARIAL_SIZE = 100_000
"""Long enough that a shortcut regex with super-linear backtracking would not finish (10^10
steps); the whole table runs in about a second when matching is linear."""


@pytest.mark.parametrize(
    "url",
    [
        "a" * ADVERSARIAL_SIZE + "!",  # one long label that ends badly
        "a." * ADVERSARIAL_SIZE + "!",  # many labels, then a byte no name may hold
        "-." * ADVERSARIAL_SIZE + "0x",  # hyphen labels, numeric-looking last label
        "1." * ADVERSARIAL_SIZE + "1/",  # a "numeric" host far too long for IPv4
        "a+" * ADVERSARIAL_SIZE + ":/",  # a scheme that never gets its "//"
        "http://" + "a." * ADVERSARIAL_SIZE + "[",  # a scheme, then a host that fails at the end
        "a" * ADVERSARIAL_SIZE + ":" + "1" * ADVERSARIAL_SIZE + "x",  # scheme-or-port ambiguity
        "http://a.test:" + "9" * ADVERSARIAL_SIZE + "!",
        "http://a.test/" + "a/" * ADVERSARIAL_SIZE + "%",
        "http://a.test/?" + "a" * ADVERSARIAL_SIZE + "%",
    ],
    ids=["label", "labels", "hyphens", "numeric", "scheme", "scheme-host", "port-or-scheme", "port", "path", "query"],
)
def test_adversarial_long_input_finishes_and_agrees(url):
    assert shortcut(url) == pipeline(url)
    host = canon.fast_host(url)
    assert host is None or host == pipeline(url).host
