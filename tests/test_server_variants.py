"""Server variants: URL forms the Safe Browsing canonicalization leaves apart but common servers
serve as the same resource. Each decision documented in docs/lists.md ("Server variants") is
tested both ways: the variant of a listed URL, and a near-miss that must stay allowed. Lists and
requests go through the same canonicalizer (canon.parse, canon.lookup_paths) as in the proxy.
"""

from __future__ import annotations

import pytest

from urlwarden.core.lists import ListSpec, parse_text
from urlwarden.core.matcher import build

LIST = """\
variants.test/folder/page.html
variants.test/app/view.jsp
variants.test/Docs/
variants.test/files/
"""


@pytest.fixture(scope="module")
def snapshot():
    return build([parse_text(LIST, ListSpec("variants.txt", "plain", "variants"))], [])


def blocked(snapshot, url: str) -> bool:
    verdict = snapshot.match(url)
    return verdict is not None and verdict.blocked


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # backslash for slash (IIS; browsers send "/"): blocked, raw or escaped
        ("http://variants.test/folder\\page.html", True),
        ("http://variants.test\\folder\\page.html", True),
        ("http://variants.test/folder%5Cpage.html", True),
        ("http://variants.test/folder%5Cpage.htm", False),  # near-miss: another page
        ("http://variants.test/folderpage.html", False),
        # overlong UTF-8 slash (old IIS): blocked
        ("http://variants.test/folder%c0%afpage.html", True),
        ("http://variants.test/folder%e0%80%afpage.html", True),
        ("http://variants.test/folder%c3%afpage.html", False),  # near-miss: a real character (U+00EF)
        # ;params (servlet containers drop them): blocked
        ("http://variants.test/app/view.jsp;jsessionid=0A1B", True),
        ("http://variants.test/app;v=2/view.jsp?x=1", True),
        ("http://variants.test/app/view.jspx;jsessionid=0A1B", False),  # near-miss: another page
        ("http://variants.test/app/view;.jsp", False),
        # %00 after a page (C/CGI, old PHP stop at NUL): blocked
        ("http://variants.test/folder/page.html%00.jpg", True),
        ("http://variants.test/folder/page.htm%00l", False),  # near-miss: the name before NUL differs
        ("http://variants.test/folder/%00/page.html", False),  # cut at NUL: "/folder/" is not listed
        # upper-case folders on case-insensitive servers: NOT folded (docs/lists.md says why)
        ("http://variants.test/Docs/a.pdf", True),
        ("http://variants.test/docs/a.pdf", False),
        ("http://variants.test/FOLDER/page.html", False),
        ("http://variants.test/folder/page.html", True),
    ],
)
def test_server_variant_decisions(snapshot, url, expected):
    assert blocked(snapshot, url) is expected


def test_entries_written_as_variants_match_the_plain_request():
    listed = parse_text("variants.test\\a\\b.html\nhttp:variants.test/c%5Cd/\n", ListSpec("v.txt", "plain", "v"))
    snapshot = build([listed], [])
    assert blocked(snapshot, "http://variants.test/a/b.html")
    assert blocked(snapshot, "http://variants.test/c/d/e")
    assert not blocked(snapshot, "http://variants.test/c/e")
