"""The `urlwarden` command, run as a real subprocess: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([URLWARDEN, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_canon_prints_the_canonical_url_and_expressions():
    done = run("canon", "HTTP://www.Listed.TEST.:8080/a/./b/../c.html?q#frag")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0] == "http://www.listed.test/a/c.html?q"
    assert [line.strip() for line in lines[1:]] == [
        "www.listed.test/a/c.html?q", "www.listed.test/a/c.html", "www.listed.test/", "www.listed.test/a/",
        "listed.test/a/c.html?q", "listed.test/a/c.html", "listed.test/", "listed.test/a/",
    ]


def test_canon_rejects_a_url_without_host():
    done = run("canon", "http://:80/nohost")
    assert done.returncode == 2
    assert done.stderr.startswith("urlwarden: 'http://:80/nohost': ") and done.stderr.count("\n") == 1


@pytest.fixture
def lists(tmp_path):
    (tmp_path / "block.txt").write_text("listed.test/\npaths.test/folder/\n# comment\nhttp://:80/bad\n")
    (tmp_path / "hot.csv").write_text("url,id,category\ncsv.test/page.html,HOT-1,c1\n")
    (tmp_path / "allow.txt").write_text("listed.test/ok.html\n")
    return tmp_path


@pytest.mark.parametrize(
    ("urls", "code", "decisions"),
    [
        (["http://unlisted.test/"], 0, ["ALLOW"]),
        (["http://unlisted.test/", "http://www.listed.test/x"], 1, ["ALLOW", "BLOCK"]),
        (["https://paths.test/folder/a?b"], 1, ["BLOCK"]),
        (["http://listed.test/ok.html"], 0, ["ALLOW"]),
        (["http://csv.test/page.html?x=1"], 1, ["BLOCK"]),
    ],
)
def test_check_exit_codes_and_verdicts(lists, urls, code, decisions):
    done = run("check", "--list", str(lists / "block.txt"), "--list", str(lists / "hot.csv"),
               "--allow", str(lists / "allow.txt"), *urls)
    assert done.returncode == code, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == decisions
    assert f"{lists / 'block.txt'}:4: " in done.stderr  # the bad line is reported, not fatal


def test_check_json_names_list_entry_and_expression(lists):
    done = run("check", "--json", "--list", str(lists / "hot.csv"), "http://csv.test/page.html?x=1")
    record = json.loads(done.stdout)
    assert record == {"url": "http://csv.test/page.html?x=1", "decision": "block", "list": "hot", "entry": "HOT-1",
                      "category": "c1", "expression": "csv.test/page.html", "action": "block"}
    assert done.returncode == 1


def test_check_uses_the_embedded_default_lists():
    done = run("check", "http://selftest.urlwarden.test/", "http://unlisted.test/")
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith("BLOCK http://selftest.urlwarden.test/ list=sample-block")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "--list", "/nonexistent/list.txt", "http://a.test/"], "urlwarden: /nonexistent/list.txt: "),
        (["check", "--list", "x.txt:yaml", "http://a.test/"], "urlwarden: x.txt: unknown list format 'yaml'"),
        (["run", "--listen", "nowhere"], "urlwarden: --listen: must be HOST:PORT"),
        (["hash-list", "/nonexistent/in.txt", "/tmp/out.sha256"], "urlwarden: /nonexistent/in.txt: "),
    ],
)
def test_errors_are_one_line_without_traceback(args, message):
    done = run(*args)
    assert done.returncode == 2
    assert done.stderr.startswith(message), done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_hash_list_round_trip_gives_the_same_verdicts(lists, tmp_path):
    out = tmp_path / "block.sha256"
    done = run("hash-list", str(lists / "block.txt"), str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "listed.test" not in text and "host:" in text
    urls = ["http://a.listed.test/x", "http://paths.test/folder/", "http://paths.test/other", "http://unlisted.test/"]
    plain = run("check", "--list", f"{lists / 'block.txt'}", *urls)
    hashed = run("check", "--list", f"{out}", *urls)
    assert plain.returncode == hashed.returncode == 1
    # same list name (the file stem), same entry ids (digest prefixes), same matched expressions
    assert plain.stdout == hashed.stdout
    assert len(plain.stdout.splitlines()) == len(urls)


def test_passthrough_after_double_dash_is_only_for_run():
    done = run("check", "http://a.test/", "--", "--set", "x=y")
    assert done.returncode == 2
    assert "only for 'urlwarden run'" in done.stderr
