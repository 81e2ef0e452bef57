"""The package tree shows the architecture, and imports flow one way (docs/architecture.md).

    core  <-  feeds  <-  runtime  <-  frontends
      ^         ^          ^
      +----- exports ------+          (top level: errors, config, logs, metrics, blockpage, cli)

A module may import from its own room and from the rooms it points at, never back. Only the
mitmproxy front end (`urlwarden.frontends.proxy`) imports mitmproxy. Every import counts,
also the ones inside functions, so a lazy import cannot hide a cycle between rooms.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import urlwarden

PACKAGE_DIR = Path(urlwarden.__file__).resolve().parent

# What each room may import from urlwarden, by the first part of the name below `urlwarden`.
# "version" is the package itself (`from urlwarden import __version__`).
SHARED = {"version", "errors"}
ALLOWED = {
    "core": SHARED | {"core"},
    "feeds": SHARED | {"core", "feeds", "metrics", "logs"},
    "exports": SHARED | {"core", "feeds", "exports"},
    "runtime": SHARED | {"core", "feeds", "runtime", "config", "metrics", "logs", "blockpage", "exports"},
    "frontends": SHARED | {"core", "feeds", "runtime", "frontends", "exports", "config", "metrics", "logs",
                           "blockpage", "selftest"},
    # top-level modules
    "errors": {"version"},
    "logs": SHARED,
    "metrics": SHARED,
    "blockpage": SHARED | {"core", "blocktemplate"},
    "blocktemplate": SHARED | {"core"},
    "config": SHARED | {"core", "feeds", "exports", "blockpage", "blocktemplate", "logs"},
    "selftest": SHARED | {"core", "config"},
    "cli": None,  # the command line is the top of the tree: anything
    "__main__": None,
    "version": SHARED,
}
MITMPROXY_ROOM = ("frontends", "proxy")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py"))


def _room(path: Path, package_dir: Path = PACKAGE_DIR) -> tuple[str, ...]:
    parts = path.relative_to(package_dir).with_suffix("").parts
    if parts == ("__init__",):
        return ("version",)
    return parts


def _imports(path: Path, package_dir: Path = PACKAGE_DIR) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ("urlwarden",) + path.relative_to(package_dir).parent.parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ((node.module,) if node.module else ()))
            else:
                module = node.module or ""
            if module == "urlwarden":
                found += [(node.lineno, f"urlwarden.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def _target_room(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 1 or parts[1].startswith("__"):
        return "version"
    return parts[1]


def violations(path: Path, package_dir: Path = PACKAGE_DIR) -> list[str]:
    room = _room(path, package_dir)
    if room[0] not in ALLOWED:
        return [f"a module outside the known rooms ({room[0]}); add its room to ALLOWED and the docs"]
    allowed = ALLOWED[room[0]]
    wrong = []
    for line, name in _imports(path, package_dir):
        if name.split(".")[0] == "mitmproxy" and room[:2] != MITMPROXY_ROOM:
            wrong.append(f"line {line}: imports {name} outside urlwarden.frontends.proxy")
        if name.split(".")[0] == "urlwarden" and allowed is not None and _target_room(name) not in allowed:
            wrong.append(f"line {line}: {room[0]} imports {name}")
    return wrong


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_imports_flow_one_way(path):
    wrong = violations(path)
    assert not wrong, f"{path.relative_to(PACKAGE_DIR)}: " + "; ".join(wrong)


def test_every_room_is_a_package_with_a_docstring():
    for room in ("core", "feeds", "runtime", "frontends", "frontends/proxy", "exports"):
        init = PACKAGE_DIR / room / "__init__.py"
        assert init.exists(), room
        assert ast.get_docstring(ast.parse(init.read_text())), f"{room}/__init__.py says what the room is for"


@pytest.mark.parametrize("where, source, expected", [
    ("core/bad.py", "from urlwarden.runtime import engine\n", ["line 1: core imports urlwarden.runtime"]),
    ("core/bad.py", "def f():\n    from ..frontends import admin\n", ["line 2: core imports urlwarden.frontends"]),
    ("core/bad.py", "from urlwarden import config\n", ["line 1: core imports urlwarden.config"]),
    ("feeds/bad.py", "import mitmproxy.http\n", ["line 1: imports mitmproxy.http outside urlwarden.frontends.proxy"]),
    ("config.py", "from .frontends.admin import AdminServer\n", ["line 1: config imports urlwarden.frontends.admin"]),
    ("runtime/ok.py", "from urlwarden.core import canon\nfrom ..feeds import manager\n", []),
    ("frontends/proxy/ok.py", "from mitmproxy import http\nfrom urlwarden.runtime import engine\n", []),
    ("core/ok.py", "from . import lists\nfrom urlwarden import __version__\nimport os\n", []),
])
def test_the_checker_reports_backward_imports(tmp_path, where, source, expected):
    path = tmp_path / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    found = violations(path, tmp_path)
    assert found == expected
