"""Tests for urlwarden.core.compiled and the compiled last-known-good copy in urlwarden.feeds.store.

Every entry is synthetic (.test names). The properties: a round trip gives an equal list and a
snapshot with identical verdicts and host statuses; any damaged, truncated, outdated or foreign
compiled file is refused, and the store then parses the list file instead, with the same result.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from urlwarden.core import compiled, matcher
from urlwarden.errors import ListError
from urlwarden.feeds import FeedVersion
from urlwarden.feeds.payload import checksum, normalize
from urlwarden.feeds.store import COMPILED_SUFFIX, LastKnownGood
from urlwarden.core.lists import ListSpec, ParsedList, digest, load_list, parse_text, write_sha256_list
from urlwarden.core.matcher import HostStatus

SOURCE = "list.sha256:1:2:3"


def plain(lines: list[str], name: str = "block") -> ParsedList:
    return parse_text("\n".join(lines) + "\n", ListSpec(f"{name}.txt", "plain", name))


def csv_list(text: str, name: str = "block") -> ParsedList:
    return parse_text(text, ListSpec(f"{name}.csv", "csv", name))


ENTRIES = ["listed.test/", "paths.test/folder/", "paths.test/page.html", "paths.test/q.php?id=7",
           "127.0.0.66/bad/", "deep.test/a/b/c/", "www.sub.test/x/"]

LISTS = {
    "plain": normalize(plain(ENTRIES)),
    "one-entry": normalize(plain(["listed.test/"])),
    "no-host-keys": normalize(replace(plain(ENTRIES), host_keys=None, max_folder_depth=None, format="sha256")),
    "empty-host-keys": normalize(replace(plain(ENTRIES), host_keys=frozenset())),
    "ids-and-categories": normalize(csv_list(
        "url,id,category\nlisted.test/,L-1,whole\npaths.test/page.html,,page\npaths.test/folder/,F-\u00e9,\n"
        "LISTED.TEST/,DUP,dup\n")),
    "categories-only": normalize(csv_list("url,category\nlisted.test/,c1\npaths.test/x.html,c2\n")),
    "with-problems": normalize(plain(["listed.test/", "not a url", "paths.test/ # note"])),
    "empty": ParsedList(name="empty", path="e", format="sha256", digests=b"", ids=None, categories=None,
                        host_keys=None, max_folder_depth=None, bad_lines=0, problems=()),
}

HOSTS = ["listed.test", "www.listed.test", "paths.test", "www.paths.test", "sub.test", "www.sub.test",
         "127.0.0.66", "deep.test", "clean.example"]
URLS = [f"http://{h}/{p}" for h in HOSTS for p in ["", "folder/x", "page.html?q=1", "q.php?id=7", "bad/y",
                                                     "a/b/c/d", "x/"]]


# --- the file format ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(LISTS))
def test_round_trip_gives_an_equal_list(tmp_path, kind):
    parsed = LISTS[kind]
    path = tmp_path / "list.compiled"
    compiled.write(parsed, path, source=SOURCE)
    found = compiled.read(path, source=SOURCE)
    assert found.parsed == parsed
    assert found.checksum == checksum(parsed)
    assert compiled.read(path).parsed == parsed  # no source given: not compared


@pytest.mark.parametrize("kind", sorted(set(LISTS) - {"empty"}))
def test_round_trip_gives_identical_verdicts_and_host_statuses(tmp_path, kind):
    parsed = LISTS[kind]
    compiled.write(parsed, tmp_path / "list.compiled")
    again = compiled.read(tmp_path / "list.compiled").parsed
    before, after = matcher.build([parsed]), matcher.build([again])
    assert [after.match(url) for url in URLS] == [before.match(url) for url in URLS]
    assert [after.host_status(h) for h in HOSTS] == [before.host_status(h) for h in HOSTS]
    assert after.stats == before.stats


def test_file_starts_with_magic_and_holds_no_url_in_clear(tmp_path):
    path = tmp_path / "list.compiled"
    compiled.write(normalize(plain(["secret-path.test/hidden/page.html", "listed.test/"])), path)
    data = path.read_bytes()
    assert data.startswith(compiled.MAGIC)
    assert b"secret-path" not in data and b"listed.test" not in data
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_only_normalized_lists_are_compiled(tmp_path):
    normalized = LISTS["plain"]
    chunks = [normalized.digests[i : i + 32] for i in range(0, len(normalized.digests), 32)]
    for digests in (b"".join(reversed(chunks)), chunks[0] * 2):  # out of order; a duplicate
        assert not compiled.is_normalized(digests)
        with pytest.raises(ListError, match="not normalized"):
            compiled.write(replace(normalized, digests=digests), tmp_path / "x.compiled")
    assert not (tmp_path / "x.compiled").exists()


@pytest.mark.parametrize("value", ["", "two\nlines"])
def test_values_the_format_cannot_hold_are_refused(tmp_path, value):
    parsed = replace(LISTS["one-entry"], ids=(value,))
    with pytest.raises(ListError, match="cannot compile"):
        compiled.write(parsed, tmp_path / "x.compiled")


def test_is_normalized_handles_equal_prefixes():
    a = bytes(8) + b"\x01" * 24
    b = bytes(8) + b"\x02" * 24
    assert compiled.is_normalized(a + b)
    assert not compiled.is_normalized(b + a)
    assert not compiled.is_normalized(a + a)
    assert compiled.is_normalized(b"")
    assert not compiled.is_normalized(b"\x00" * 31)


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("compiled") / "list.compiled"
    compiled.write(LISTS["ids-and-categories"], path, source=SOURCE)
    return path.read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_is_refused(tmp_path, sample_file, data):
    position = data.draw(st.integers(min_value=0, max_value=len(sample_file) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    damaged = bytearray(sample_file)
    damaged[position] ^= flip
    path = tmp_path / "damaged.compiled"
    path.write_bytes(bytes(damaged))
    with pytest.raises(ListError):
        compiled.read(path, source=SOURCE)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d[:-1], "bytes, the header describes"),
        (lambda d: d + b"\x00", "bytes, the header describes"),
        (lambda d: d[:50], "not a compiled list"),
        (lambda d: b"", "not a compiled list"),
        (lambda d: b"#" + d[1:], "not a compiled list"),
        (lambda d: d[:8] + struct.pack("<I", compiled.FORMAT_VERSION + 1) + d[12:], "format version"),
        (lambda d: d[:12] + struct.pack("<I", 8) + d[16:], "unknown flags"),
        (lambda d: d[:16] + struct.pack("<Q", 2**60) + d[24:], "impossible section sizes"),
        (lambda d: d[:-40] + bytes(40), "checksum mismatch"),
    ],
)
def test_damage_is_reported_with_what_is_wrong(tmp_path, sample_file, change, message):
    path = tmp_path / "damaged.compiled"
    path.write_bytes(change(sample_file))
    with pytest.raises(ListError, match=message):
        compiled.read(path, source=SOURCE)


def test_a_compiled_file_of_another_source_is_refused(tmp_path):
    path = tmp_path / "list.compiled"
    compiled.write(LISTS["plain"], path, source=SOURCE)
    with pytest.raises(ListError, match="another version of its list"):
        compiled.read(path, source="list.sha256:1:2:4")


def test_a_missing_file_is_a_list_error(tmp_path):
    with pytest.raises(ListError, match="cannot read"):
        compiled.read(tmp_path / "absent.compiled")


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "list.compiled"
    compiled.write(LISTS["plain"], path)
    compiled.write(LISTS["one-entry"], path)
    assert compiled.read(path).parsed == LISTS["one-entry"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.compiled"]
    with pytest.raises(ListError, match="cannot write"):
        compiled.write(LISTS["plain"], tmp_path / "no-such-dir" / "x.compiled")


def test_public_api_is_exported():
    assert all(hasattr(compiled, name) for name in compiled.__all__)


# --- properties ----------------------------------------------------------------------------------

HOST_NAMES = ["a.test", "b.test", "www.a.test", "x.y.b.test", "127.0.0.9"]
PATHS = ["", "p/", "p/q.html", "q.php?id=1", "d/e/"]
entry = st.builds(lambda h, p: f"{h}/{p}", st.sampled_from(HOST_NAMES), st.sampled_from(PATHS))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(entry, min_size=1, max_size=15), with_ids=st.booleans(), host_keys=st.booleans())
def test_property_round_trip_keeps_verdicts_and_host_statuses(tmp_path, lines, with_ids, host_keys):
    if with_ids:
        rows = "".join(f"{line},ID-{n},{'c' if n % 2 else ''}\n" for n, line in enumerate(lines))
        parsed = csv_list("url,id,category\n" + rows)
    else:
        parsed = plain(lines)
    parsed = normalize(parsed if host_keys else replace(parsed, host_keys=None, max_folder_depth=None))
    path = tmp_path / "p.compiled"
    compiled.write(parsed, path)
    again = compiled.read(path).parsed
    assert again == parsed
    before, after = matcher.build([parsed]), matcher.build([again])
    urls = [f"https://www.{line}" for line in lines] + [f"http://{h}/{p}z" for h in HOST_NAMES for p in PATHS]
    assert [after.match(u) for u in urls] == [before.match(u) for u in urls]
    assert [after.host_status(h) for h in HOST_NAMES] == [before.host_status(h) for h in HOST_NAMES]


# --- the feed store's compiled last-known-good ---------------------------------------------------


def save(store: LastKnownGood, parsed: ParsedList, name: str = "iwf") -> str:
    return store.save(name, parsed, version=FeedVersion(etag='"e1"', serial="7"), checksum=checksum(parsed),
                      last_success=1000.0, feed_format=parsed.format, config_id="cfg")


def parsed_feed_list(store: LastKnownGood, name: str, list_path: str) -> ParsedList:
    """What the store gives when it parses the list file (no compiled copy)."""
    fmt = "csv" if list_path.endswith(".csv") else "sha256"
    return replace(normalize(load_list(ListSpec(list_path, fmt, name))), path=f"feed:{name}")


FEED_LISTS = {
    "plain": plain(ENTRIES, "iwf"),
    "csv-with-ids": csv_list("url,id,category\nlisted.test/,L-1,whole\npaths.test/page.html,,page\n", "iwf"),
    "hashed-without-host-keys": normalize(replace(plain(ENTRIES, "iwf"), host_keys=None, format="sha256")),
}


@pytest.mark.parametrize("kind", sorted(FEED_LISTS))
def test_store_writes_a_compiled_copy_that_loads_as_the_list_file_would(tmp_path, kind):
    store = LastKnownGood(tmp_path / "state")
    list_path = save(store, FEED_LISTS[kind])
    assert os.path.isfile(store.compiled_path("iwf"))
    fast = store.load("iwf")
    assert fast.parsed == parsed_feed_list(store, "iwf", list_path)
    os.unlink(store.compiled_path("iwf"))
    slow = store.load("iwf")
    assert slow == fast  # same list, checksum, version, times
    assert os.path.isfile(store.compiled_path("iwf"))  # written again for the next start


def test_store_uses_the_compiled_copy_without_parsing(tmp_path, monkeypatch):
    store = LastKnownGood(tmp_path / "state")
    save(store, FEED_LISTS["plain"])
    expected = store.load("iwf")

    def no_parsing(*args, **kwargs):
        raise AssertionError("the list file was parsed")

    monkeypatch.setattr("urlwarden.feeds.store.load_list", no_parsing)
    assert store.load("iwf") == expected
    assert expected.version == FeedVersion(etag='"e1"', last_modified=None, serial="7")


def test_store_ignores_a_compiled_copy_of_an_older_list(tmp_path):
    store = LastKnownGood(tmp_path / "state")
    save(store, FEED_LISTS["plain"])
    old_compiled = Path(store.compiled_path("iwf")).read_bytes()
    list_path = save(store, plain(["other.test/"], "iwf"))
    Path(store.compiled_path("iwf")).write_bytes(old_compiled)  # as if the new one was never written
    loaded = store.load("iwf")
    assert loaded.parsed == parsed_feed_list(store, "iwf", list_path)
    assert matcher.build([loaded.parsed]).match("http://other.test/") is not None
    assert compiled.read(store.compiled_path("iwf")).parsed == loaded.parsed  # repaired


def test_store_ignores_a_list_file_edited_in_place(tmp_path):
    store = LastKnownGood(tmp_path / "state")
    list_path = save(store, FEED_LISTS["plain"])
    with open(list_path, "a", encoding="utf-8") as f:
        f.write(digest("added.test/").hex() + "\nhost:" + digest("added.test").hex() + "\n")
    loaded = store.load("iwf")
    assert matcher.build([loaded.parsed]).match("http://added.test/") is not None
    assert loaded.version is None  # the metadata's checksum no longer matches the list


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "directory"])
def test_store_falls_back_to_the_list_file_when_the_compiled_copy_is_damaged(tmp_path, damage):
    store = LastKnownGood(tmp_path / "state")
    list_path = save(store, FEED_LISTS["csv-with-ids"])
    expected = parsed_feed_list(store, "iwf", list_path)
    target = Path(store.compiled_path("iwf"))
    if damage == "garbage":
        target.write_bytes(os.urandom(500))
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:-10])
    elif damage == "empty":
        target.write_bytes(b"")
    else:
        target.unlink()
        target.mkdir()
    loaded = store.load("iwf")
    assert loaded.parsed == expected
    assert loaded.version is not None  # the list itself is fine, and so is its metadata


def test_store_never_uses_a_compiled_copy_without_its_list(tmp_path):
    store = LastKnownGood(tmp_path / "state")
    list_path = save(store, FEED_LISTS["plain"])
    os.unlink(list_path)
    assert store.load("iwf") is None


def test_store_never_uses_another_feeds_compiled_copy(tmp_path):
    store = LastKnownGood(tmp_path / "state")
    save(store, FEED_LISTS["plain"], "one")
    list_path = save(store, plain(["other.test/"], "two"), "two")
    os.replace(store.compiled_path("one"), store.compiled_path("two"))
    loaded = store.load("two")
    assert loaded.parsed == parsed_feed_list(store, "two", list_path)


def test_store_save_replaces_the_compiled_copy_and_keeps_files_private(tmp_path):
    store = LastKnownGood(tmp_path / "state")
    save(store, FEED_LISTS["plain"])
    save(store, FEED_LISTS["csv-with-ids"])  # now a csv: the .sha256 goes, the compiled is renewed
    names = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert names == ["iwf" + COMPILED_SUFFIX, "iwf.csv", "iwf.json"]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (tmp_path / "state").iterdir())
    assert compiled.read(store.compiled_path("iwf")).parsed.ids == ("L-1", None)
    assert json.loads((tmp_path / "state" / "iwf.json").read_text())["list_file"] == "iwf.csv"


def test_hashed_list_written_by_hash_list_is_shared_not_copied(tmp_path, monkeypatch):
    """A hashed list as `hash-list` writes it is sorted: the matcher shares its blob."""
    monkeypatch.setattr(matcher, "SHARED_SEGMENT_MIN_ENTRIES", 1)
    out = tmp_path / "h.sha256"
    write_sha256_list(plain(ENTRIES), out)
    hashed = load_list(ListSpec(str(out), "sha256", "h"))
    snap = matcher.build([hashed])
    (segment,) = snap._block.segments
    assert segment.blob is hashed.digests
    assert snap.host_status("www.listed.test") is HostStatus.WHOLE
