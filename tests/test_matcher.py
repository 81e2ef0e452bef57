"""Tests for urlwarden.core.matcher: Safe Browsing semantics, allow lists, HostStatus, equivalences.

Every entry and URL is synthetic (.test / .example / .invalid names, loopback addresses).
"""

from __future__ import annotations

import hashlib
import tempfile
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urlwarden.core import canon, matcher
from urlwarden.core.lists import ListSpec, ParsedList, digest, load_list, parse_text, write_sha256_list
from urlwarden.core.matcher import ALLOW, BLOCK, HostStatus, Snapshot, Verdict, build


def plain(lines: list[str], name: str = "block") -> ParsedList:
    return parse_text("\n".join(lines) + "\n", ListSpec(f"{name}.txt", "plain", name))


def csv_list(text: str, name: str = "block") -> ParsedList:
    return parse_text(text, ListSpec(f"{name}.csv", "csv", name))


def hashed(parsed: ParsedList, host_keys: bool = True) -> ParsedList:
    """The list as `urlwarden hash-list` would ship it (optionally stripped of host keys)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{parsed.name}.sha256"
        write_sha256_list(parsed, out)
        if not host_keys:
            kept = [line for line in out.read_text().splitlines() if not line.startswith("host:")]
            out.write_text("\n".join(kept) + "\n")
        return load_list(ListSpec(str(out), "sha256", parsed.name))


def short_id(expression: str) -> str:
    return hashlib.sha256(expression.encode()).hexdigest()[:12]


# --- Safe Browsing semantics -------------------------------------------------------------------

SB_ENTRIES = [
    "listed.test/",
    "paths.test/folder/",
    "paths.test/page.html",
    "paths.test/q.php?id=7",
    "127.0.0.66/bad/",
    "deep.test/a/b/c/",
]

SB_CASES = [
    # whole host, and every subdomain through host suffixes
    ("http://listed.test/", "listed.test/"),
    ("https://listed.test/any/thing.html?x=1", "listed.test/"),
    ("http://www.listed.test/", "listed.test/"),
    ("http://a.b.c.listed.test/x", "listed.test/"),
    ("HTTP://LISTED.test:8443/x", "listed.test/"),
    ("listed.test", "listed.test/"),
    ("http://listed.test./x", "listed.test/"),
    # look-alike hosts
    ("http://xlisted.test/", None),
    ("http://listed.test.example/", None),
    ("http://listed.testx/", None),
    ("http://test/", None),
    # a folder: everything below it, nothing beside or above it
    ("http://paths.test/folder/", "paths.test/folder/"),
    ("http://paths.test/folder/sub/x.html?y=2", "paths.test/folder/"),
    ("http://www.paths.test/folder/x", "paths.test/folder/"),
    ("http://paths.test/%66older/x", "paths.test/folder/"),
    ("http://paths.test/a/../folder/x", "paths.test/folder/"),
    ("http://paths.test/folder", None),
    ("http://paths.test/", None),
    ("http://paths.test/folderx/", None),
    ("http://paths.test/other/folder/", None),
    # a page: with any query
    ("http://paths.test/page.html", "paths.test/page.html"),
    ("http://paths.test/page.html?any=1", "paths.test/page.html"),
    ("http://paths.test/page.html#frag", "paths.test/page.html"),
    ("http://paths.test/page.html/", None),
    ("http://paths.test/page.htm", None),
    ("http://paths.test/sub/page.html", None),
    # a query: that query only
    ("http://paths.test/q.php?id=7", "paths.test/q.php?id=7"),
    ("http://paths.test/q.php?id=8", None),
    ("http://paths.test/q.php", None),
    ("http://paths.test/q.php?id=7&x=1", None),
    # an IPv4 folder, in any IPv4 encoding
    ("http://127.0.0.66/bad/x", "127.0.0.66/bad/"),
    ("http://2130706498/bad/", "127.0.0.66/bad/"),
    ("http://[::ffff:127.0.0.66]/bad/", "127.0.0.66/bad/"),
    ("http://127.0.0.67/bad/", None),
    ("http://127.0.0.66/good/", None),
    # a deep folder
    ("http://deep.test/a/b/c/d.html", "deep.test/a/b/c/"),
    ("http://deep.test/a/b/c/d/e/f/g/", "deep.test/a/b/c/"),
    ("http://deep.test/a/b/", None),
    # nothing listed
    ("http://clean.example/folder/page.html?id=7", None),
]


@pytest.fixture(scope="module")
def sb_snapshots() -> dict[str, Snapshot]:
    source = plain(SB_ENTRIES)
    return {
        "plain": build([source]),
        "sha256": build([hashed(source)]),
        "sha256-no-host-keys": build([hashed(source, host_keys=False)]),
    }


@pytest.mark.parametrize("kind", ["plain", "sha256", "sha256-no-host-keys"])
@pytest.mark.parametrize(("url", "expression"), SB_CASES)
def test_safe_browsing_semantics(sb_snapshots, kind, url, expression):
    snap = sb_snapshots[kind]
    verdict = snap.match(url)
    if expression is None:
        assert verdict is None
    else:
        assert verdict == Verdict(BLOCK, "block", short_id(expression), None, expression)
    assert snap._match_reference(url) == verdict


def test_match_accepts_bytes_and_canonical_url(sb_snapshots):
    snap = sb_snapshots["plain"]
    expected = snap.match("http://www.listed.test/x")
    assert expected is not None and expected.blocked
    assert snap.match(b"http://www.listed.test/x") == expected
    assert snap.match(canon.parse("http://www.listed.test/x")) == expected


@pytest.mark.parametrize("url", ["http://:80/nohost", "", "//"])
def test_match_without_host_raises_value_error(sb_snapshots, url):
    with pytest.raises(ValueError):
        sb_snapshots["plain"].match(url)


# --- verdicts and provenance -------------------------------------------------------------------


def test_verdict_carries_csv_id_and_category():
    snap = build([csv_list("url,id,category\nlisted.test/,L-1,whole\npaths.test/page.html,,page\n", "iwf")])
    assert snap.match("https://www.listed.test/x") == Verdict(BLOCK, "iwf", "L-1", "whole", "listed.test/")
    verdict = snap.match("http://paths.test/page.html?x")
    assert verdict == Verdict(BLOCK, "iwf", short_id("paths.test/page.html"), "page", "paths.test/page.html")
    assert verdict.blocked


def test_entry_id_is_the_same_for_plain_and_hashed_and_never_the_url():
    source = plain(["listed.test/secret-folder/"])
    url = "http://listed.test/secret-folder/x"
    plain_verdict = build([source]).match(url)
    hashed_verdict = build([hashed(source)]).match(url)
    assert plain_verdict.entry_id == hashed_verdict.entry_id == short_id("listed.test/secret-folder/")
    assert "secret" not in plain_verdict.entry_id


def test_duplicates_keep_the_first_provenance():
    first = csv_list("url,id\nlisted.test/,FIRST\n", "first")
    second = csv_list("url,id\nLISTED.TEST/,SECOND\npaths.test/x.html,S-2\n", "second")
    snap = build([first, second])
    assert snap.stats.block_entries == 2
    assert snap.match("http://listed.test/") == Verdict(BLOCK, "first", "FIRST", None, "listed.test/")
    expected = Verdict(BLOCK, "second", "S-2", None, "paths.test/x.html")
    assert snap.match("http://paths.test/x.html") == expected


def test_mixed_lists_with_and_without_ids():
    with_ids = csv_list("url,id\npaths.test/x.html,C-1\n", "csvlist")
    snap = build([plain(["listed.test/"], "plainlist"), with_ids])
    assert snap.match("http://listed.test/").entry_id == short_id("listed.test/")
    assert snap.match("http://paths.test/x.html").entry_id == "C-1"


def test_first_expression_in_canon_order_is_reported():
    snap = build([plain(["listed.test/", "www.listed.test/a/", "www.listed.test/a/b.html"])])
    assert snap.match("http://www.listed.test/a/b.html").expression == "www.listed.test/a/b.html"
    assert snap.match("http://www.listed.test/a/c.html").expression == "www.listed.test/a/"
    assert snap.match("http://other.listed.test/a/b.html").expression == "listed.test/"


# --- allow lists -------------------------------------------------------------------------------

ALLOW_BLOCK = ["listed.test/", "paths.test/folder/"]
ALLOW_ENTRIES = ["listed.test/ok/", "paths.test/folder/fine.html", "free.test/open/", "www.listed.test/"]

ALLOW_CASES = [
    ("http://listed.test/ok/x.html", ALLOW, "listed.test/ok/"),
    ("http://listed.test/ok", BLOCK, "listed.test/"),
    ("http://listed.test/no", BLOCK, "listed.test/"),
    ("http://sub.listed.test/ok/x", ALLOW, "listed.test/ok/"),  # allow entries cover subdomains too
    ("http://www.listed.test/anything", ALLOW, "www.listed.test/"),
    ("http://a.www.listed.test/anything", ALLOW, "www.listed.test/"),
    ("http://paths.test/folder/fine.html?z=1", ALLOW, "paths.test/folder/fine.html"),
    ("http://paths.test/folder/other.html", BLOCK, "paths.test/folder/"),
    ("http://free.test/open/x", ALLOW, "free.test/open/"),
    ("http://free.test/closed/x", None, None),
    ("http://clean.example/", None, None),
]


@pytest.fixture(scope="module")
def allow_snapshots() -> dict[str, Snapshot]:
    block, allow = plain(ALLOW_BLOCK), plain(ALLOW_ENTRIES, "allow")
    return {
        "plain": build([block], [allow]),
        "hashed": build([hashed(block)], [hashed(allow)]),
        "hashed-no-host-keys": build([hashed(block, False)], [hashed(allow, False)]),
    }


@pytest.mark.parametrize("kind", ["plain", "hashed", "hashed-no-host-keys"])
@pytest.mark.parametrize(("url", "action", "expression"), ALLOW_CASES)
def test_allow_overrides_block(allow_snapshots, kind, url, action, expression):
    snap = allow_snapshots[kind]
    verdict = snap.match(url)
    if action is None:
        assert verdict is None
    else:
        name = "allow" if action == ALLOW else "block"
        assert verdict == Verdict(action, name, short_id(expression), None, expression)
        assert verdict.blocked == (action == BLOCK)
    assert snap._match_reference(url) == verdict


# --- HostStatus --------------------------------------------------------------------------------

HOST_BLOCK = [
    "listed.test/",
    "paths.test/folder/",
    "sub.partial.test/",
    "127.0.0.66/bad/",
    "127.0.0.68/",
    "allowedpart.test/",
]
HOST_ALLOW = ["allowedpart.test/ok/", "deep.allowedsub.test/x/"]
HOST_CASES = [
    ("listed.test", HostStatus.WHOLE),
    ("www.listed.test", HostStatus.WHOLE),
    ("a.b.c.listed.test", HostStatus.WHOLE),
    ("LISTED.TEST:443", HostStatus.WHOLE),
    ("listed.test.", HostStatus.WHOLE),
    ("xlisted.test", HostStatus.CLEAN),
    ("listed.test.example", HostStatus.CLEAN),
    ("paths.test", HostStatus.PATHS),
    ("www.paths.test", HostStatus.PATHS),
    ("partial.test", HostStatus.CLEAN),
    ("sub.partial.test", HostStatus.WHOLE),
    ("x.sub.partial.test", HostStatus.WHOLE),
    ("127.0.0.66", HostStatus.PATHS),
    ("127.0.0.68", HostStatus.WHOLE),
    ("127.0.0.68:8443", HostStatus.WHOLE),
    ("127.0.0.67", HostStatus.CLEAN),
    ("allowedpart.test", HostStatus.PATHS),
    ("x.allowedpart.test", HostStatus.PATHS),
    ("allowedsub.test", HostStatus.CLEAN),
    ("clean.example", HostStatus.CLEAN),
]


@pytest.mark.parametrize(("host", "status"), HOST_CASES)
def test_host_status(host, status):
    snap = build([plain(HOST_BLOCK)], [plain(HOST_ALLOW, "allow")])
    assert snap.host_status(host) is status


@pytest.mark.parametrize(("host", "status"), HOST_CASES)
def test_host_status_of_hashed_lists_with_host_keys(host, status):
    snap = build([hashed(plain(HOST_BLOCK))], [hashed(plain(HOST_ALLOW, "allow"))])
    assert snap.host_status(host) is status


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("listed.test", HostStatus.WHOLE),  # whole-host hashed entries still work
        ("www.listed.test", HostStatus.WHOLE),
        ("127.0.0.68", HostStatus.WHOLE),
        ("paths.test", HostStatus.UNKNOWN),
        ("127.0.0.66", HostStatus.UNKNOWN),
        ("clean.example", HostStatus.UNKNOWN),
        ("allowedpart.test", HostStatus.PATHS),  # whole, but allow entries on it
    ],
)
def test_host_status_hashed_without_host_keys_is_unknown(host, status):
    snap = build([hashed(plain(HOST_BLOCK), host_keys=False)], [plain(HOST_ALLOW, "allow")])
    assert snap.host_status(host) is status


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("listed.test", HostStatus.PATHS),  # an allow list without host keys might touch any host
        ("paths.test", HostStatus.PATHS),
        ("clean.example", HostStatus.CLEAN),
    ],
)
def test_host_status_allow_list_without_host_keys(host, status):
    snap = build([plain(HOST_BLOCK)], [hashed(plain(HOST_ALLOW, "allow"), host_keys=False)])
    assert snap.host_status(host) is status


def test_host_status_mixed_lists_knows_what_it_can():
    snap = build([plain(["paths.test/folder/"]), hashed(plain(["other.test/x.html"]), host_keys=False)])
    assert snap.host_status("paths.test") is HostStatus.PATHS
    assert snap.host_status("other.test") is HostStatus.UNKNOWN
    assert snap.stats.fast_path is False


@pytest.mark.parametrize("host", ["", "   ", "[zz::1]"])
def test_host_status_of_an_invalid_host_raises_value_error(host):
    with pytest.raises(ValueError):
        build([plain(["listed.test/"])]).host_status(host)


# --- empty snapshot and stats ------------------------------------------------------------------


def test_empty_snapshot():
    snap = Snapshot.empty()
    assert snap.match("http://listed.test/") is None
    assert snap.host_status("listed.test") is HostStatus.CLEAN
    assert (snap.stats.block_entries, snap.stats.allow_entries, snap.stats.lists) == (0, 0, ())
    assert snap.stats.fast_path is True


def test_stats():
    block = plain(["listed.test/", "paths.test/a/b/", "LISTED.TEST/"])
    allow = plain(["listed.test/ok.html"], "allow")
    snap = build([block, hashed(plain(["other.test/x/"], "h"))], [allow])
    stats = snap.stats
    assert [(s.name, s.action, s.format, s.entries, s.host_keys) for s in stats.lists] == [
        ("block", BLOCK, "plain", 3, 2),
        ("h", BLOCK, "sha256", 1, 1),
        ("allow", ALLOW, "plain", 1, 1),
    ]
    assert (stats.block_entries, stats.allow_entries) == (3, 1)
    assert (stats.block_hosts, stats.allow_hosts) == (3, 1)
    assert stats.max_prefixes == canon.MAX_PATH_PREFIXES  # a hashed list may be any depth
    assert stats.fast_path is True


@pytest.mark.parametrize(
    ("lines", "max_prefixes"),
    [(["paths.test/page.html"], 0), (["listed.test/"], 1), (["paths.test/a/b/", "listed.test/"], 3)],
)
def test_plain_lists_generate_only_needed_prefixes(lines, max_prefixes):
    assert build([plain(lines)]).stats.max_prefixes == max_prefixes


def test_host_memo_turnover_keeps_answers(monkeypatch):
    monkeypatch.setattr(matcher, "HOST_MEMO_SIZE", 4)
    snap = build([plain(SB_ENTRIES)])
    urls = [url for url, _ in SB_CASES]
    first = [snap.match(url) for url in urls]
    second = [snap.match(url) for url in urls]
    assert first == second == [snap._match_reference(url) for url in urls]
    assert len(snap._host_memo._new) <= 4 and len(snap._host_memo._old) <= 4


# --- properties --------------------------------------------------------------------------------

BASE_HOSTS = ["x.test", "y.test", "www.x.test", "127.0.0.5", "a.b.c.d.y.test"]
SUBDOMAINS = ["", "www.", "m.", "a.b."]
SEGMENTS = ["p", "q", "r.html", "%41", "."]
QUERIES = [None, "", "id=1", "id=2"]

segments = st.lists(st.sampled_from(SEGMENTS), max_size=4)


@st.composite
def entries(draw) -> str:
    host = draw(st.sampled_from(BASE_HOSTS))
    if not host[0].isdigit():
        host = draw(st.sampled_from(SUBDOMAINS)) + host
    path = "/" + "/".join(draw(segments))
    if draw(st.booleans()) and not path.endswith("/"):
        path += "/"
    query = draw(st.sampled_from(QUERIES))
    return host + path + ("" if query is None else "?" + query)


@st.composite
def urls(draw) -> str:
    scheme = draw(st.sampled_from(["http://", "https://", "", "HTTP://"]))
    port = draw(st.sampled_from(["", ":8080"]))
    entry = draw(entries())
    host, _, rest = entry.partition("/")
    if draw(st.booleans()):
        host = host.upper()
    extra = draw(st.sampled_from(["", "more/", "z.html", "more/z.html?id=1"]))
    if extra and "?" not in rest and (rest == "" or rest.endswith("/")):
        rest += extra
    return f"{scheme}{host}{port}/{rest}"


def near(entries_: list[str]) -> list[str]:
    """Requests on and around the listed entries, so that hits and near misses are common."""
    out = []
    for entry in entries_:
        bare = entry.rstrip("/")
        out += [f"http://{entry}", f"https://www.{entry}", f"http://{entry}z", f"http://{bare}/more/x"]
    return out


def oracle(url: str, block: list[str], allow: list[str]) -> tuple[str, str] | None:
    """The reference semantics, straight from canon: first allow hit, else first block hit."""
    exprs = canon.expressions(url)
    canonical = lambda lines: {canon.parse(line).expression for line in lines}  # noqa: E731
    for action, lines in ((ALLOW, allow), (BLOCK, block)):
        listed = canonical(lines)
        hit = next((e for e in exprs if e in listed), None)
        if hit is not None:
            return action, hit
    return None


def outcome(verdict: Verdict | None) -> tuple[str, str] | None:
    return None if verdict is None else (verdict.action, verdict.expression)


@settings(max_examples=150, deadline=None)
@given(block=st.lists(entries(), min_size=1, max_size=12), allow=st.lists(entries(), max_size=3),
       requests=st.lists(urls(), min_size=1, max_size=12))
def test_property_plain_and_hashed_lists_give_identical_verdicts(block, allow, requests):
    block_list, allow_lists = plain(block), [plain(allow, "allow")] if allow else []
    plain_snap = build([block_list], allow_lists)
    hashed_snap = build([hashed(block_list)], [hashed(pl) for pl in allow_lists])
    for url in requests + near(block + allow):
        verdict = plain_snap.match(url)
        assert hashed_snap.match(url) == verdict
        assert outcome(verdict) == oracle(url, block, allow)


@settings(max_examples=150, deadline=None)
@given(block=st.lists(entries(), min_size=1, max_size=12), allow=st.lists(entries(), max_size=3),
       requests=st.lists(urls(), min_size=1, max_size=12))
def test_property_fast_path_agrees_with_full_path(block, allow, requests):
    allow_lists = [plain(allow, "allow")] if allow else []
    snap = build([plain(block)], allow_lists)
    for url in requests + near(block + allow):
        reference = snap._match_reference(url)
        assert snap.match(url) == reference
        assert snap.match(url) == reference  # again, answered from the host memo
        assert snap.match(url.encode()) == reference


@settings(max_examples=100, deadline=None)
@given(block=st.lists(entries(), min_size=1, max_size=12), host=st.sampled_from(
    [s + b for s in SUBDOMAINS for b in BASE_HOSTS if not b[0].isdigit()] + ["127.0.0.5", "clean.example"]))
def test_property_host_status_is_consistent_with_match(block, host):
    snap = build([plain(block)])
    status = snap.host_status(host)
    probes = [f"http://{host}/", f"http://{host}/p/q/r.html?id=1", f"http://{host}/zz-unlisted-{len(block)}"]
    verdicts = [snap.match(url) for url in probes]
    if status is HostStatus.CLEAN:
        assert verdicts == [None, None, None]
    elif status is HostStatus.WHOLE:
        assert all(v is not None and v.blocked for v in verdicts)
    else:
        assert status is HostStatus.PATHS
        listed_hosts = {canon.parse(e).host for e in block}
        assert set(canon.host_suffixes(canon.canonical_host(host))) & listed_hosts


def test_digest_helper_matches_hashlib():
    assert digest("listed.test/") == hashlib.sha256(b"listed.test/").digest()


def collision_list(digests: list[bytes], ids: list[str]) -> ParsedList:
    """A hashed list built by hand, to hold digests that share their first 8 bytes."""
    return ParsedList(
        name="forged", path="forged.csv", format="csv", digests=b"".join(digests), ids=tuple(ids),
        categories=None, host_keys=None, max_folder_depth=None, bad_lines=0, problems=(),
    )


def test_equal_prefixes_are_told_apart_by_the_full_digest():
    real = digest("listed.test/")
    forged = real[: matcher.PREFIX_SIZE] + bytes(32 - matcher.PREFIX_SIZE)  # same 8-byte prefix
    assert forged != real
    only_forged = build([collision_list([forged], ["FORGED"])])
    assert only_forged.match("http://listed.test/") is None
    both = build([collision_list([forged, real, forged, real], ["FORGED", "REAL", "DUP1", "DUP2"])])
    assert both.stats.block_entries == 2
    assert both.match("http://listed.test/x").entry_id == "REAL"
    assert both.host_status("listed.test") is HostStatus.WHOLE


def test_public_api_is_exported():
    assert all(hasattr(matcher, name) for name in matcher.__all__)
    assert {"Snapshot", "Verdict", "HostStatus", "build"} <= set(matcher.__all__)


# --- segments, filters and the shared digest blob ----------------------------------------------


def sorted_hashed(lines: list[str], name: str) -> ParsedList:
    """A hashed list as `hash-list` ships it: digests sorted and distinct, host keys."""
    return hashed(plain(lines, name))


def build_with_threshold(threshold: int, block, allow=()):
    """`build` with SHARED_SEGMENT_MIN_ENTRIES set (1: every sorted list shared; huge: all merged)."""
    saved = matcher.SHARED_SEGMENT_MIN_ENTRIES
    matcher.SHARED_SEGMENT_MIN_ENTRIES = threshold
    try:
        return build(block, allow)
    finally:
        matcher.SHARED_SEGMENT_MIN_ENTRIES = saved


def test_sorted_lists_share_their_blob_and_keep_the_first_lists_provenance():
    first = csv_list("url,id\nlisted.test/,FIRST\n", "first")  # csv: file order, merged
    second = sorted_hashed(["listed.test/", "paths.test/x.html", "other.test/"], "second")
    third = sorted_hashed(["paths.test/x.html", "third.test/"], "third")
    snap = build_with_threshold(1, [first, second, third])
    kinds = sorted((s.blob is second.digests, s.blob is third.digests) for s in snap._block.segments)
    assert kinds == [(False, False), (False, True), (True, False)]
    assert snap.stats.block_entries == 4
    assert snap.match("http://listed.test/") == Verdict(BLOCK, "first", "FIRST", None, "listed.test/")
    assert snap.match("http://paths.test/x.html").list_name == "second"
    assert snap.match("http://third.test/a").list_name == "third"
    merged = build_with_threshold(10**9, [first, second, third])
    assert len(merged._block.segments) == 1
    urls = ["http://listed.test/", "http://paths.test/x.html", "http://third.test/a", "http://other.test/",
            "http://clean.example/"]
    assert [merged.match(u) for u in urls] == [snap.match(u) for u in urls]
    assert merged.stats == snap.stats


@settings(max_examples=80, deadline=None)
@given(lists=st.lists(st.lists(entries(), min_size=1, max_size=8), min_size=1, max_size=4),
       allow=st.lists(entries(), max_size=3), kinds=st.lists(st.booleans(), min_size=4, max_size=4),
       requests=st.lists(urls(), min_size=1, max_size=8))
def test_property_shared_segments_agree_with_one_merged_table(lists, allow, kinds, requests):
    block = [sorted_hashed(lines, f"l{n}") if kinds[n] else plain(lines, f"l{n}") for n, lines in enumerate(lists)]
    allow_lists = [sorted_hashed(allow, "allow")] if allow else []
    shared = build_with_threshold(1, block, allow_lists)
    merged = build_with_threshold(10**9, block, allow_lists)
    probes = requests + near([line for lines in lists for line in lines] + allow)
    for url in probes:
        assert shared.match(url) == merged.match(url) == merged._match_reference(url)
    for host in BASE_HOSTS + ["www.x.test", "clean.example"]:
        assert shared.host_status(host) is merged.host_status(host)
    assert shared.stats == merged.stats


digests_with_collisions = st.lists(
    st.builds(lambda prefix, rest: prefix + rest, st.sampled_from([bytes(8), b"\xff" * 8, b"\x01" * 8]) |
              st.binary(min_size=8, max_size=8), st.sampled_from([bytes(24), b"\x01" * 24]) |
              st.binary(min_size=24, max_size=24)),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(listed=digests_with_collisions, probes=digests_with_collisions, shared=st.booleans())
def test_property_table_lookup_is_exact(listed, probes, shared):
    """Equal 8-byte prefixes, duplicates, sorted (shared) or not: found iff listed."""
    if shared:
        listed = sorted(set(listed))
    table = build_with_threshold(1 if shared else 10**9, [collision_list(listed, [f"I{n}" for n in range(len(listed))])])
    for value in listed + probes:
        found = table._block.find(value)
        assert (found is not None) == (value in listed)
        if found is not None:
            segment, i = found
            assert segment.digest_at(i) == value
            assert segment.ids[i] == f"I{listed.index(value)}"  # the first occurrence


def test_bit_filter_has_no_false_negatives_and_few_false_positives():
    import random

    rng = random.Random(7)
    keys = array("Q", sorted(rng.getrandbits(64) for _ in range(5000)))
    bits, shift = matcher._bit_filter(keys)
    assert all(bits[(k >> shift) >> 3] >> ((k >> shift) & 7) & 1 for k in keys)
    others = [rng.getrandbits(64) for _ in range(20000)]
    passed = sum(bits[(k >> shift) >> 3] >> ((k >> shift) & 7) & 1 for k in others) / len(others)
    assert passed < 2 / matcher.FILTER_BITS_PER_KEY  # about 1 - exp(-1/16..1/32)
    assert len(bits) * 8 >= len(keys) * matcher.FILTER_BITS_PER_KEY


def test_host_index_counts_distinct_keys_over_lists():
    one = plain(["a.test/", "b.test/x/"], "one")
    two = plain(["b.test/y.html", "c.test/"], "two")
    index = matcher._HostIndex([one, two, hashed(plain(["d.test/"]), host_keys=False)])
    assert len(index) == 3
    assert all(digest(h) in index for h in ("a.test", "b.test", "c.test"))
    assert digest("d.test") not in index and digest("e.test") not in index
    assert len(matcher._HostIndex([])) == 0 and digest("a.test") not in matcher._HostIndex([])


def test_sha256_used_for_lookups_is_sha256():
    for text in (b"", b"listed.test/", b"x" * 1000):
        assert matcher._sha256(text).digest() == hashlib.sha256(text).digest()
