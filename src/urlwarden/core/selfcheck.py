"""Start-up self-check: the canonicalizer gives the known answers on this interpreter.

A canonicalizer that is wrong blocks nothing and says nothing: on CPython 3.11.0 to 3.11.4 a
regular-expression bug (gh-106052) once made every list entry without a scheme lose its first
character, so ``listed.test/`` was stored as ``isted.test/`` and the lists matched no request.
Every front end that canonicalizes (the mitmproxy addon, the Squid helper, the ``urlwarden``
command) calls `verify` before it loads a list or reads a request, and refuses to start with
one line naming the interpreter and the first wrong answer.

The vectors are the Safe Browsing v4 "URLs and Hashing" canonicalization examples (real domains
renamed to ``.example``/``.test`` names and public addresses to loopback ones, as in
tests/test_canon.py), list entries without a scheme (the path that broke), the fast shortcuts,
bare host names and lookup expressions. Together they take both the shortcut regexes and the
step-by-step pipeline through every step. `verify` runs them once per process (well under a
millisecond of work) and remembers success.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from urlwarden.core import canon
from urlwarden.errors import SelfCheckError

__all__ = ["VECTORS", "verify"]


def _entry(text: str) -> str:
    """What a list stores for an entry: its lookup expression."""
    return canon.parse(text).expression


def _expressions(url: str) -> str:
    return " ".join(canon.expressions(url))


# (name, function): each looks canon's functions up when called, so the answers checked are the
# ones the rest of urlwarden gets
_CANONICALIZE = ("canonicalize", lambda url: canon.canonicalize(url))
_ENTRY = ("entry", _entry)
_FAST_HOST = ("fast_host", lambda url: str(canon.fast_host(url)))
_HOST = ("canonical_host", lambda name: canon.canonical_host(name))
_EXPRESSIONS = ("expressions", _expressions)

VECTORS: tuple[tuple[tuple[str, Callable[[str], str]], str, str], ...] = (
    # Safe Browsing v4 canonicalization examples
    (_CANONICALIZE, "http://host/%25%32%35", "http://host/%25"),
    (_CANONICALIZE, "http://host/%25%32%35%25%32%35", "http://host/%25%25"),
    (_CANONICALIZE, "http://host/%2525252525252525", "http://host/%25"),
    (_CANONICALIZE, "http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
    (_CANONICALIZE, "http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"),
    (_CANONICALIZE, "http://www.example.test/", "http://www.example.test/"),
    (_CANONICALIZE, "http://%31%32%37%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%78%61%6D%70%6C%65/",
     "http://127.188.99.26/.secure/www.example/"),
    (_CANONICALIZE, "http://127.127.0.11/uploads/%20%20%20%20/.verify/.x=y/", "http://127.127.0.11/uploads/%20%20%20%20/.verify/.x=y/"),
    (_CANONICALIZE, "http://host%23.example/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833%252944_55%252B",
     "http://host%23.example/~a!b@c%23d$e%25f^00&11*22(33)44_55+"),
    (_CANONICALIZE, "http://2139029515/blah", "http://127.127.0.11/blah"),
    (_CANONICALIZE, "http://www.example.test/blah/..", "http://www.example.test/"),
    (_CANONICALIZE, "www.example.test/", "http://www.example.test/"),
    (_CANONICALIZE, "www.example.test", "http://www.example.test/"),
    (_CANONICALIZE, "http://www.evil.test/blah#frag", "http://www.evil.test/blah"),
    (_CANONICALIZE, "http://www.EXAmple.test/", "http://www.example.test/"),
    (_CANONICALIZE, "http://www.example.test.../", "http://www.example.test/"),
    (_CANONICALIZE, "http://www.example.test/foo\tbar\rbaz\n2", "http://www.example.test/foobarbaz2"),
    (_CANONICALIZE, "http://www.example.test/q?", "http://www.example.test/q?"),
    (_CANONICALIZE, "http://www.example.test/q?r?s", "http://www.example.test/q?r?s"),
    (_CANONICALIZE, "http://evil.test/foo#bar#baz", "http://evil.test/foo"),
    (_CANONICALIZE, "http://evil.test/foo?bar;", "http://evil.test/foo?bar;"),
    (_CANONICALIZE, "http://\x01\udc80.example/", "http://%01%80.example/"),
    (_CANONICALIZE, "http://notrailingslash.example", "http://notrailingslash.example/"),
    (_CANONICALIZE, "http://www.gotaport.example:1234/", "http://www.gotaport.example/"),
    (_CANONICALIZE, "  http://www.example.test/  ", "http://www.example.test/"),
    (_CANONICALIZE, "http:// leadingspace.example/", "http://%20leadingspace.example/"),
    (_CANONICALIZE, "%20leadingspace.example/", "http://%20leadingspace.example/"),
    (_CANONICALIZE, "https://www.securesite.example/", "https://www.securesite.example/"),
    (_CANONICALIZE, "http://host.example/ab%23cd", "http://host.example/ab%23cd"),
    (_CANONICALIZE, "http://host.example//twoslashes?more//slashes", "http://host.example/twoslashes?more//slashes"),
    # beyond the document: IPv4 encodings, IPv6, IDN, userinfo
    (_CANONICALIZE, "http://0x7f.1/", "http://127.0.0.1/"),
    (_CANONICALIZE, "http://[::ffff:127.0.0.2]:8080/x", "http://127.0.0.2/x"),
    (_CANONICALIZE, "http://B\u00fccher.test/", "http://xn--bcher-kva.test/"),
    (_CANONICALIZE, "http://user:pw@listed.test:8443/a", "http://listed.test/a"),
    # browser forms (WHATWG URL Standard) and server variants (docs/lists.md)
    (_CANONICALIZE, "http:\\\\www.example.test\\a\\b", "http://www.example.test/a/b"),
    (_CANONICALIZE, "http:example.test/", "http://example.test/"),
    (_CANONICALIZE, "\x00\x1b http://example.test/\x1f ", "http://example.test/"),
    (_CANONICALIZE, "https://%e2%98%83.test", "https://xn--n3h.test/"),
    (_CANONICALIZE, "http://example.test/a%c0%afb", "http://example.test/a/b"),
    (_EXPRESSIONS, "http://example.test/a;s=1/p.jsp%00.x", "example.test/a;s=1/p.jsp%00.x example.test/a/p.jsp "
     "example.test/ example.test/a;s=1/ example.test/a/"),
    # list entries without a scheme: the path gh-106052 broke
    (_ENTRY, "listed.test/", "listed.test/"),
    (_ENTRY, "www.listed.test/a/b.html?id=7", "www.listed.test/a/b.html?id=7"),
    (_ENTRY, "paths.test/folder/", "paths.test/folder/"),
    (_ENTRY, "Listed.Test.:8080/x", "listed.test/x"),
    (_ENTRY, "127.0.0.66/bad/", "127.0.0.66/bad/"),
    (_ENTRY, "//listed.test/x", "listed.test/x"),
    (_ENTRY, "http://listed.test/", "listed.test/"),
    # the shortcuts (fast_host declines with None where the pipeline must decide)
    (_FAST_HOST, "listed.test/x", "listed.test"),
    (_FAST_HOST, "http://www.Listed.test/x", "www.listed.test"),
    (_FAST_HOST, "https://listed.test.:8443?q", "listed.test"),
    (_FAST_HOST, "http://127.0.0.1/", "127.0.0.1"),
    (_FAST_HOST, "http://[::1]/", "None"),
    (_FAST_HOST, "http://0x7f.1/", "None"),
    (_HOST, "Listed.TEST:443", "listed.test"),
    (_HOST, "listed.test.", "listed.test"),
    (_HOST, "[::1]:8080", "[::1]"),
    (_HOST, "2130706433", "127.0.0.1"),
    # lookup expressions, in Safe Browsing order
    (_EXPRESSIONS, "http://a.b.c/1/2.html?param=1",
     "a.b.c/1/2.html?param=1 a.b.c/1/2.html a.b.c/ a.b.c/1/ b.c/1/2.html?param=1 b.c/1/2.html b.c/ b.c/1/"),
    (_EXPRESSIONS, "http://a.b.c.d.e.f.g/1.html",
     "a.b.c.d.e.f.g/1.html a.b.c.d.e.f.g/ c.d.e.f.g/1.html c.d.e.f.g/ d.e.f.g/1.html d.e.f.g/ e.f.g/1.html e.f.g/ f.g/1.html f.g/"),
    (_EXPRESSIONS, "www.listed.test/a/", "www.listed.test/a/ www.listed.test/ listed.test/a/ listed.test/"),
)

_passed = False


def verify() -> None:
    """Run the vectors once per process; `SelfCheckError` (one line) at the first wrong answer."""
    global _passed
    if _passed:
        return
    for (name, function), given, expected in VECTORS:
        try:
            got = function(given)
        except Exception as exc:  # any failure is a wrong answer here, reported, never hidden
            got = f"{type(exc).__name__}: {exc}"
        if got != expected:
            raise SelfCheckError(
                f"the URL canonicalizer gives wrong answers on this interpreter ({_interpreter()}): "
                f"{name}({given!r}) gave {got!r}, expected {expected!r}; refusing to start, "
                "because lists would silently block nothing"
            )
    _passed = True


def _interpreter() -> str:
    version = " ".join(sys.version.split())  # some builds put a newline in sys.version
    return f"Python {version} at {sys.executable}"
