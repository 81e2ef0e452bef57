"""Tests for urlwarden.core.lists: specs, the three formats, bad lines, ListError cases, hash-list.

Every entry is synthetic (.test / .example / .invalid names, loopback addresses).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path

import pytest

from urlwarden.core import canon
from urlwarden.errors import ListError
from urlwarden.core.lists import (
    FORMATS,
    MAX_ENTRY_LENGTH,
    MAX_LABEL_LENGTH,
    MAX_REPORTED_PROBLEMS,
    ListSpec,
    ParsedList,
    digest,
    load_list,
    make_spec,
    parse_list_spec,
    parse_text,
    write_sha256_list,
)

LISTS_DIR = Path(__file__).resolve().parent.parent / "lists"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def spec(fmt: str = "plain", path: str | None = None) -> ListSpec:
    path = path or {"plain": "t.txt", "sha256": "t.sha256", "csv": "t.csv"}[fmt]
    return ListSpec(path=path, format=fmt, name="t")


def parse(text: str, fmt: str = "plain") -> ParsedList:
    return parse_text(text, spec(fmt))


def digest_set(parsed: ParsedList) -> set[bytes]:
    return {parsed.digest_at(i) for i in range(parsed.count)}


# --- specs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lists/a.txt", ListSpec("lists/a.txt", "plain", "a")),
        ("a.csv", ListSpec("a.csv", "csv", "a")),
        ("a.CSV", ListSpec("a.CSV", "csv", "a")),
        ("a.sha256", ListSpec("a.sha256", "sha256", "a")),
        ("a.list", ListSpec("a.list", "plain", "a")),
        ("noext", ListSpec("noext", "plain", "noext")),
        ("lists/a.txt:csv", ListSpec("lists/a.txt", "csv", "a")),
        ("hashes.bin:sha256", ListSpec("hashes.bin", "sha256", "hashes")),
        ("a.csv:plain", ListSpec("a.csv", "plain", "a")),
        ("odd:name.txt:plain", ListSpec("odd:name.txt", "plain", "odd:name")),
        ("C:\\lists\\a.txt", ListSpec("C:\\lists\\a.txt", "plain", "C:\\lists\\a")),
        ("dir:x/a.txt", ListSpec("dir:x/a.txt", "plain", "a")),
    ],
)
def test_parse_list_spec(text, expected):
    assert parse_list_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.txt:gzip", "unknown list format 'gzip' (known: plain, sha256, csv)"),
        ("a.txt:", "unknown list format ''"),
        ("odd:name.txt", "unknown list format 'name.txt'"),
        (":csv", "empty list path"),
        ("", "empty list path"),
    ],
)
def test_parse_list_spec_errors(text, message):
    with pytest.raises(ListError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_list_spec(text)


def test_make_spec_keeps_explicit_name():
    assert make_spec("lists/x.csv", name="licensed") == ListSpec("lists/x.csv", "csv", "licensed")
    assert make_spec(Path("lists/x.txt")).path == "lists/x.txt"


# --- plain -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expression"),
    [
        ("listed.test/", "listed.test/"),
        ("listed.test", "listed.test/"),
        ("HTTP://Listed.TEST:8080/", "listed.test/"),
        ("https://user@listed.test/", "listed.test/"),
        ("https://paths.test/folder/", "paths.test/folder/"),
        ("paths.test/page.html", "paths.test/page.html"),
        ("paths.test/q.php?id=7", "paths.test/q.php?id=7"),
        ("paths.test/q.php?", "paths.test/q.php?"),
        ("127.0.0.66/bad/", "127.0.0.66/bad/"),
        ("http://0x7f.0.0.66/bad/", "127.0.0.66/bad/"),
        ("paths.test/a/./b/../c.html", "paths.test/a/c.html"),
        ("paths.test/%7Euser/", "paths.test/~user/"),
        ("paths.test/page.html#fragment", "paths.test/page.html"),
        ("   listed.test/   ", "listed.test/"),
    ],
)
def test_plain_entry_is_canonical_expression(line, expression):
    parsed = parse(line + "\n")
    assert (parsed.count, parsed.bad_lines, parsed.problems) == (1, 0, ())
    assert parsed.digests == digest(expression)
    assert parsed.digests == hashlib.sha256(canon.parse(line).expression.encode()).digest()


def test_plain_comments_blank_lines_and_line_endings():
    text = (
        "# header\r\n\r\n   \n  # indented comment\n"
        "listed.test/\r\npaths.test/folder/\rpaths.test/page.html"
    )
    parsed = parse(text)
    assert parsed.count == 3
    assert parsed.bad_lines == 0
    expected = {digest("listed.test/"), digest("paths.test/folder/"), digest("paths.test/page.html")}
    assert digest_set(parsed) == expected


def test_plain_value_fields():
    parsed = parse("listed.test/\npaths.test/folder/\nwww.paths.test/x.html\n")
    assert (parsed.name, parsed.path, parsed.format) == ("t", "t.txt", "plain")
    assert parsed.ids is None and parsed.categories is None
    assert parsed.host_keys == {digest("listed.test"), digest("paths.test"), digest("www.paths.test")}
    assert parsed.hashed is False
    assert parsed.digest_at(1) == digest("paths.test/folder/")


DEEP_OK = "deep.test/" + "d/" * (canon.MAX_PATH_PREFIXES - 1)  # path has MAX_PATH_PREFIXES slashes
DEEP_BAD = "deep.test/" + "d/" * canon.MAX_PATH_PREFIXES


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("http://:80/nohost", "not a URL: URL has no host"),
        ("//", "not a URL: URL has no host"),
        ("paths.test/a b.html", "contains whitespace (no inline comments; write a space in a URL as %20)"),
        ("listed.test/ # note", "contains whitespace"),
        ("listed.test/\tx", "contains whitespace"),
        ("x.test/" + "a" * MAX_ENTRY_LENGTH, f"entry longer than {MAX_ENTRY_LENGTH} characters"),
        (DEEP_BAD, f"folder entry deeper than {canon.MAX_PATH_PREFIXES} levels cannot match below it"),
        (sha("listed.test/"), "a SHA-256 digest, not a URL (hashed entries belong in a sha256 list)"),
        ("host:" + sha("listed.test"), "a SHA-256 digest, not a URL"),
    ],
)
def test_plain_bad_line_is_skipped_and_reported(line, reason):
    parsed = parse(f"# list\nlisted.test/\n{line}\npaths.test/page.html\n")
    assert parsed.count == 2
    assert parsed.bad_lines == 1
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith(f"t.txt:3: {reason}")


@pytest.mark.parametrize(
    "line",
    [DEEP_OK, DEEP_BAD + "page.html", DEEP_BAD + "?q=1", "xn--bcher-kva.test/", "b\u00fccher.test/"],
)
def test_plain_edge_lines_that_are_valid(line):
    parsed = parse(line + "\n")
    assert (parsed.count, parsed.bad_lines) == (1, 0)


def test_plain_problems_capped_but_all_counted():
    bad = [f"http://:80/bad{i}" for i in range(MAX_REPORTED_PROBLEMS + 4)]
    parsed = parse("\n".join(["listed.test/", *bad]) + "\n")
    assert parsed.bad_lines == len(bad)
    assert len(parsed.problems) == MAX_REPORTED_PROBLEMS
    assert [p.split(":")[1] for p in parsed.problems] == [str(n) for n in range(2, 2 + MAX_REPORTED_PROBLEMS)]


@pytest.mark.parametrize(
    ("lines", "depth"),
    [
        (["paths.test/page.html"], 0),
        (["paths.test/q.php?id=7", "paths.test/dir/?q"], 0),
        (["listed.test/"], 1),
        (["paths.test/folder/", "listed.test/"], 2),
        (["a.test/x/y/z/", "b.test/x/", "c.test/deep/page.html"], 4),
        ([DEEP_OK], canon.MAX_PATH_PREFIXES),
    ],
)
def test_plain_max_folder_depth(lines, depth):
    assert parse("\n".join(lines)).max_folder_depth == depth


def test_plain_duplicates_are_kept_in_file_order():
    parsed = parse("listed.test/\nHTTP://LISTED.TEST/\nlisted.test\n")
    assert parsed.count == 3
    assert digest_set(parsed) == {digest("listed.test/")}


# --- sha256 ------------------------------------------------------------------------------------


def test_sha256_entries_and_host_keys():
    text = "\n".join(
        [
            "# hashed",
            sha("listed.test/"),
            sha("paths.test/folder/").upper(),
            "",
            "host:" + sha("listed.test"),
            "HOST:" + sha("paths.test").upper(),
        ]
    )
    parsed = parse(text, "sha256")
    assert (parsed.count, parsed.bad_lines) == (2, 0)
    assert digest_set(parsed) == {digest("listed.test/"), digest("paths.test/folder/")}
    assert parsed.host_keys == {digest("listed.test"), digest("paths.test")}
    assert parsed.max_folder_depth is None and parsed.hashed
    assert parsed.ids is None and parsed.categories is None


def test_sha256_without_host_keys_has_none():
    parsed = parse(sha("listed.test/") + "\n", "sha256")
    assert parsed.host_keys is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("z" * 64, "not a SHA-256 digest (64 hex digits)"),
        (sha("x")[:63], "not a SHA-256 digest"),
        (sha("x") + "0", "not a SHA-256 digest"),
        (sha("x") + "  listed.txt", "not a SHA-256 digest"),
        ("listed.test/", "not a SHA-256 digest"),
        ("host:abc", "not a host SHA-256 digest (64 hex digits)"),
        ("host:", "not a host SHA-256 digest"),
    ],
)
def test_sha256_bad_lines(line, reason):
    parsed = parse(f"{sha('listed.test/')}\n{line}\n", "sha256")
    assert (parsed.count, parsed.bad_lines) == (1, 1)
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith(f"t.sha256:2: {reason}")


# --- csv ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["url", "URL", " Url ", "url,id,category", "id,url", "extra,url,notes", "\ufeffurl", "url,sha256_note"],
)
def test_csv_url_header_variants(header):
    names = [c.strip().lower().lstrip("\ufeff") for c in header.split(",")]
    row = ["listed.test/" if name == "url" else "" for name in names]
    parsed = parse(f"{header}\n{','.join(row)}\n", "csv")
    assert parsed.digests == digest("listed.test/")
    assert parsed.host_keys == {digest("listed.test")}


def test_csv_url_with_ids_and_categories():
    text = (
        "Category, ID ,url,added\n"
        "whole,A-1,listed.test/,2024-01-01\n"
        ",A-2,paths.test/folder/,2024-01-02\n"
        "page,,paths.test/page.html\n"
        "\n"
        '"query, quoted",A-4,"paths.test/q.php?id=7",x\n'
    )
    parsed = parse(text, "csv")
    assert parsed.count == 4 and parsed.bad_lines == 0
    assert parsed.ids == ("A-1", "A-2", None, "A-4")
    assert parsed.categories == ("whole", None, "page", "query, quoted")
    assert parsed.max_folder_depth == 2
    assert parsed.format == "csv" and not parsed.hashed


def test_csv_empty_id_column_is_no_ids():
    parsed = parse("url,id\nlisted.test/,\npaths.test/x.html,\n", "csv")
    assert parsed.ids is None


def test_csv_sha256_with_host_keys_and_host_only_rows():
    text = (
        "sha256,id,category,host_sha256\n"
        f"{sha('listed.test/')},H-1,whole,{sha('listed.test')}\n"
        f"{sha('paths.test/folder/').upper()},H-2,,\n"
        f",,,{sha('paths.test')}\n"
    )
    parsed = parse(text, "csv")
    assert parsed.count == 2 and parsed.bad_lines == 0
    assert parsed.ids == ("H-1", "H-2")
    assert parsed.categories == ("whole", None)
    assert parsed.host_keys == {digest("listed.test"), digest("paths.test")}
    assert parsed.hashed


@pytest.mark.parametrize(
    "text",
    [
        f"sha256,id\n{sha('listed.test/')},H-1\n",
        f"sha256,host_sha256\n{sha('listed.test/')},\n",
        f"sha256,url_note\n{sha('listed.test/')},listed\n",
    ],
)
def test_csv_sha256_without_host_keys(text):
    parsed = parse(text, "csv")
    assert parsed.count == 1
    assert parsed.host_keys is None


@pytest.mark.parametrize(
    ("header", "row", "reason"),
    [
        ("url,id", ",X-1", "empty url cell"),
        ("id,url", "X-1", "empty url cell"),
        ("url", "http://:80/nohost", "not a URL: URL has no host"),
        ("url", "listed.test/ x", "contains whitespace"),
        ("url", sha("listed.test/"), "a SHA-256 digest, not a URL"),
        (
            "url,id",
            "listed.test/," + "i" * (MAX_LABEL_LENGTH + 1),
            f"id is not printable or longer than {MAX_LABEL_LENGTH}",
        ),
        ("url,category", 'listed.test/,"bad\tcategory"', "category is not printable"),
        ("sha256,id", ",X-1", "empty sha256 cell"),
        ("sha256", "not-a-digest", "not a SHA-256 digest (64 hex digits)"),
        ("sha256,host_sha256", f"{sha('a.test/')},nothex", "not a host_sha256 digest (64 hex digits)"),
    ],
)
def test_csv_bad_rows(header, row, reason):
    key = "sha256" if header.startswith("sha256") else "url"
    good = sha("good.test/") if key == "sha256" else "good.test/"
    cells = header.split(",")
    good_row = ",".join(good if c == key else "" for c in cells)
    parsed = parse(f"{header}\n{good_row}\n{row}\n", "csv")
    assert (parsed.count, parsed.bad_lines) == (1, 1)
    assert parsed.problems[0].startswith(f"t.csv:3: {reason}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "t.csv: empty csv file (a header row is required)"),
        ("\n\n", "t.csv: empty csv file"),
        ("id,category\n1,x\n", "the csv header needs exactly one of a 'url' or a 'sha256' column, found neither"),
        ("listed.test/\npaths.test/x.html\n", "found neither"),
        (f"url,sha256\nlisted.test/,{sha('listed.test/')}\n", "found both"),
        ("url,URL\nlisted.test/,listed.test/\n", "t.csv: csv column 'url' appears twice"),
        ("url\n", "t.csv: no valid entries"),
        ("url\nhttp://:80/x\n", "t.csv: no valid entries (1 bad lines; first: t.csv:2: not a URL"),
        ('url\n"listed.test/' + "x" * 200_000 + '"\n', "t.csv:2: malformed csv"),
    ],
)
def test_csv_list_errors(text, message):
    with pytest.raises(ListError) as info:
        parse(text, "csv")
    assert str(info.value).startswith("t.csv")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --- whole-file errors -------------------------------------------------------------------------


def write(tmp_path: Path, name: str, data: bytes) -> ListSpec:
    path = tmp_path / name
    path.write_bytes(data)
    return make_spec(path)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("nul.txt", b"listed.test/\n\x00\x01\x02\n", "contains NUL bytes at line 2 (a binary file?)"),
        ("latin1.txt", b"listed.test/\ncaf\xe9.test/\n", "not UTF-8 text (invalid byte 0xe9)"),
        ("empty.txt", b"", "no valid entries"),
        ("comments.txt", b"# only\n\n# comments\n", "no valid entries"),
        ("allbad.txt", b"http://:80/a\nhttp://:80/b\n", "no valid entries (2 bad lines; first: "),
        (
            "hashes.txt",
            (sha("a.test/") + "\n" + sha("b.test/") + "\nlisted.test/\n").encode(),
            "looks like a sha256 list (2 of 3 entries are SHA-256 digests); load it as ",
        ),
        ("table.txt", b"url,id,category\nlisted.test/,1,x\n", "looks like a csv list (header 'url,id,category')"),
        ("urls.sha256", b"listed.test/\npaths.test/x.html\n", "no valid entries (2 bad lines; first: "),
        ("hostonly.sha256", ("host:" + sha("listed.test") + "\n").encode(), "no valid entries"),
        ("nul.csv", b"url\x00\nlisted.test/\n", "contains NUL bytes at line 1"),
    ],
)
def test_load_list_errors(tmp_path, name, data, message):
    spec_ = write(tmp_path, name, data)
    with pytest.raises(ListError) as info:
        load_list(spec_)
    text = str(info.value)
    assert text.startswith(f"{spec_.path}: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_load_list_unreadable(tmp_path, kind):
    path = tmp_path / "gone.txt"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(ListError, match=r"gone\.txt: cannot read \("):
        load_list(make_spec(path))


def test_load_list_reads_file_with_bom_and_crlf(tmp_path):
    spec_ = write(tmp_path, "bom.csv", "\ufeffurl,id\r\nlisted.test/,B-1\r\n".encode())
    parsed = load_list(spec_)
    assert parsed.ids == ("B-1",)
    assert parsed.digests == digest("listed.test/")


def test_mostly_urls_with_a_stray_digest_loads():
    parsed = parse(f"listed.test/\npaths.test/x.html\n{sha('a.test/')}\n")
    assert (parsed.count, parsed.bad_lines) == (2, 1)


def test_unknown_format_in_a_handmade_spec():
    with pytest.raises(ListError, match=r"t\.xml: unknown list format 'xml' \(known: plain, sha256, csv\)"):
        parse_text("listed.test/\n", ListSpec("t.xml", "xml", "t"))
    assert FORMATS == ("plain", "sha256", "csv")


# --- hash-list ---------------------------------------------------------------------------------


PLAIN = "# sample\nlisted.test/\npaths.test/folder/\npaths.test/page.html\nLISTED.test/\n127.0.0.66/bad/\n"


def test_write_sha256_list_round_trip(tmp_path):
    source = parse(PLAIN)
    out = tmp_path / "out.sha256"
    assert write_sha256_list(source, out) == 4  # the duplicate is written once
    hashed = load_list(make_spec(out))
    assert hashed.format == "sha256" and hashed.hashed
    assert digest_set(hashed) == digest_set(source)
    assert hashed.host_keys == source.host_keys
    assert hashed.bad_lines == 0


def test_write_sha256_list_layout(tmp_path):
    out = tmp_path / "out.sha256"
    write_sha256_list(parse(PLAIN), out)
    lines = out.read_text(encoding="ascii").splitlines()
    comments = [line for line in lines if line.startswith("#")]
    entries = [line for line in lines if line and not line.startswith(("#", "host:"))]
    hosts = [line for line in lines if line.startswith("host:")]
    assert lines[0].startswith("# urlwarden hashed list") and len(comments) == 3
    assert entries == sorted(entries) and len(entries) == 4
    assert hosts == sorted(hosts) and len(hosts) == 3
    assert "listed.test" not in out.read_text(encoding="ascii")
    assert sorted(os.listdir(tmp_path)) == ["out.sha256"]  # no temp file left behind


def test_write_sha256_list_replaces_existing_file(tmp_path):
    out = tmp_path / "out.sha256"
    out.write_text("old\n")
    write_sha256_list(parse("listed.test/\n"), out)
    assert load_list(make_spec(out)).digests == digest("listed.test/")


def test_write_sha256_list_without_host_keys_stays_without(tmp_path):
    out = tmp_path / "out.sha256"
    write_sha256_list(parse(sha("listed.test/") + "\n", "sha256"), out)
    assert "no host keys" in out.read_text()
    assert load_list(make_spec(out)).host_keys is None


def test_write_csv_keeps_ids_and_categories(tmp_path):
    source = parse(
        "url,id,category\nlisted.test/,A-1,whole\npaths.test/folder/,A-2,\nLISTED.TEST/,A-3,dup\n", "csv"
    )
    out = tmp_path / "out.csv"
    assert write_sha256_list(source, out) == 2
    hashed = load_list(make_spec(out))
    assert hashed.hashed and hashed.host_keys == source.host_keys
    by_digest = {hashed.digest_at(i): (hashed.ids[i], hashed.categories[i]) for i in range(hashed.count)}
    assert by_digest == {
        digest("listed.test/"): ("A-1", "whole"),
        digest("paths.test/folder/"): ("A-2", None),
    }


def test_write_refuses_to_drop_ids(tmp_path):
    source = parse("url,id\nlisted.test/,A-1\n", "csv")
    with pytest.raises(ListError, match=r"has ids or categories; write to a \.csv file"):
        write_sha256_list(source, tmp_path / "out.sha256")
    assert not (tmp_path / "out.sha256").exists()


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(ListError, match="cannot write"):
        write_sha256_list(parse("listed.test/\n"), tmp_path / "missing" / "out.sha256")


# --- the shipped sample lists ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "selftest"),
    [
        ("sample-block.txt", "selftest.urlwarden.test/"),
        ("sample-block.csv", "csv.selftest.urlwarden.test/"),
        ("sample-allow.txt", "selftest.urlwarden.test/allowed/"),
    ],
)
def test_sample_lists_load_cleanly(name, selftest):
    parsed = load_list(make_spec(LISTS_DIR / name))
    assert parsed.bad_lines == 0
    assert digest(selftest) in digest_set(parsed)

    text = (LISTS_DIR / name).read_text(encoding="utf-8")
    if name.endswith(".csv"):
        urls = [row["url"] for row in csv.DictReader(io.StringIO(text))]
    else:
        urls = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    hosts = {canon.parse(url).host for url in urls}
    assert all(h.endswith(".test") or h.startswith("127.") for h in hosts), hosts


def test_public_api_is_exported():
    from urlwarden.core import lists

    assert all(hasattr(lists, name) for name in lists.__all__)
    assert {"ListSpec", "ParsedList", "load_list", "parse_text", "write_sha256_list"} <= set(lists.__all__)
