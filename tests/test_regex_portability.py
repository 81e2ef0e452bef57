"""No regular expression in urlwarden uses a possessive quantifier or an atomic group.

CPython 3.11.0 to 3.11.4 (Debian 12 and Raspberry Pi OS ship 3.11.2) mis-match them
(gh-106052): canon's possessive scheme group once made every scheme-less list entry lose its
first character there. Both constructs are new in 3.11 and the package admits 3.11, so they
are banned outright; a look-ahead or a second match does the same job (see canon's
``_SCHEME_PART``). The check reads every compiled pattern of the package and every literal
pattern passed to an ``re`` function anywhere in the repository, through the ``re`` parser,
so a ``*+`` inside a character class is not mistaken for one.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import re._constants as sre_constants
import re._parser as sre_parser
from pathlib import Path

import urlwarden

ROOT = Path(__file__).resolve().parent.parent
BANNED = {sre_constants.POSSESSIVE_REPEAT, sre_constants.ATOMIC_GROUP}
RE_FUNCTIONS = {"compile", "match", "fullmatch", "search", "sub", "subn", "split", "findall", "finditer"}


def banned_ops(pattern: str | bytes) -> set[str]:
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, sre_parser.SubPattern):
            for op, av in node.data:
                if op in BANNED:
                    found.add(str(op))
                walk(av)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)

    walk(sre_parser.parse(pattern))
    return found


def package_patterns() -> list[tuple[str, re.Pattern]]:
    patterns = []
    for info in pkgutil.walk_packages(urlwarden.__path__, "urlwarden."):
        if info.name == "urlwarden.frontends.proxy.addon":
            continue  # imports mitmproxy; its patterns are covered by the source scan below
        module = importlib.import_module(info.name)
        patterns += [(f"{info.name}.{k}", v) for k, v in vars(module).items() if isinstance(v, re.Pattern)]
    return patterns


def literal_patterns() -> list[tuple[str, str | bytes]]:
    found = []
    for folder in ("src", "addons", "tests", "benchmarks", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                        and node.func.attr in RE_FUNCTIONS and node.args
                        and isinstance(node.args[0], ast.Constant)
                        and isinstance(node.args[0].value, (str, bytes))):
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.args[0].value))
    return found


def test_the_checker_sees_both_constructs():
    assert banned_ops(r"(?:ab)?+c") and banned_ops(r"(?>a|b)c") and banned_ops(rb"a*+")
    assert not banned_ops(r"[*+]+(?:x)?(?=y)")


def test_package_patterns_use_neither():
    patterns = package_patterns()
    assert any(name == "urlwarden.core.canon._SIMPLE_URL" for name, _ in patterns)
    offenders = {name: banned_ops(p.pattern) for name, p in patterns if banned_ops(p.pattern)}
    assert offenders == {}


def test_literal_patterns_in_the_repository_use_neither():
    patterns = literal_patterns()
    assert patterns  # the scan found the repository's re calls
    offenders = {where: banned_ops(p) for where, p in patterns if banned_ops(p)}
    assert offenders == {}

