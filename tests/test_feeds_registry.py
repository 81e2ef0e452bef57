"""Tests for the urlwarden.feeds interface and registry, and the third-party example package."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import urlwarden.feeds as feeds
from urlwarden.errors import FeedError, UrlwardenError
from urlwarden.feeds import (
    FeedAdapter,
    FeedPayload,
    FeedVersion,
    adapter_names,
    get_adapter,
    make_adapter,
    register_adapter,
)
from urlwarden.feeds.file import FileAdapter
from urlwarden.feeds.http import HttpAdapter

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "urlwarden-feed-example"
PIP_TIMEOUT = 300


class _Memory(FeedAdapter):
    def __init__(self, *, feed_name: str = "feed", text: str = "memory.test/\n"):
        super().__init__(feed_name=feed_name)
        self.text = text

    def fetch(self, since):
        return FeedPayload(body=self.text.encode(), version=FeedVersion(serial="1"))


@pytest.fixture
def clean_registry():
    saved = dict(feeds._registered)
    yield
    feeds._registered.clear()
    feeds._registered.update(saved)


def test_all_is_curated():
    assert sorted(feeds.__all__) == sorted(
        [
            "ENTRY_POINT_GROUP",
            "FeedAdapter",
            "FeedPayload",
            "FeedVersion",
            "adapter_names",
            "get_adapter",
            "make_adapter",
            "register_adapter",
        ]
    )
    for name in feeds.__all__:
        assert hasattr(feeds, name)


@pytest.mark.parametrize("module", ["file", "http", "payload", "store", "manager"])
def test_submodule_all_is_real(module):
    mod = importlib.import_module(f"urlwarden.feeds.{module}")
    assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__)


def test_feed_error_is_a_urlwarden_error():
    assert issubclass(FeedError, UrlwardenError)


def test_builtins():
    assert get_adapter("file") is FileAdapter
    assert get_adapter("http") is HttpAdapter
    assert {"file", "http"} <= set(adapter_names())


def test_unknown_adapter_names_it_and_lists_known_ones():
    with pytest.raises(FeedError) as info:
        get_adapter("ftp")
    message = str(info.value)
    assert "'ftp'" in message and "file" in message and "http" in message


def test_register_and_make(clean_registry):
    register_adapter("memory", _Memory)
    assert "memory" in adapter_names()
    adapter = make_adapter("memory", {"text": "a.test/\n"}, "mem")
    assert adapter.feed_name == "mem"
    assert adapter.fetch(None).body == b"a.test/\n"
    with pytest.raises(FeedError, match="already registered"):
        register_adapter("memory", _Memory)
    register_adapter("memory", _Memory, replace=True)


@pytest.mark.parametrize(("name", "cls"), [("Bad Name", _Memory), ("ok", object), ("ok", len)])
def test_register_rejects(clean_registry, name, cls):
    with pytest.raises(FeedError):
        register_adapter(name, cls)


def test_make_adapter_unknown_option_names_it_without_its_value(tmp_path):
    with pytest.raises(FeedError) as info:
        make_adapter("file", {"path": str(tmp_path / "x"), "token": "s3cr3t-value"}, "f")
    message = str(info.value)
    assert "'token'" in message and "s3cr3t-value" not in message
    assert "known:" in message and "path" in message


def test_make_adapter_missing_required_option():
    with pytest.raises(FeedError, match="missing required option 'url'"):
        make_adapter("http", {}, "f")


def test_make_adapter_reserved_and_invalid_values():
    with pytest.raises(FeedError, match="unknown option 'feed_name'"):
        make_adapter("file", {"path": "x", "feed_name": "other"}, "f")
    with pytest.raises(FeedError, match="'max_bytes'"):
        make_adapter("file", {"path": "x", "max_bytes": -1}, "f")
    with pytest.raises(FeedError, match="options must be a mapping"):
        make_adapter("file", ["path"], "f")


def test_make_adapter_wraps_third_party_constructor_errors(clean_registry):
    class Broken(FeedAdapter):
        def __init__(self, *, feed_name="feed", n: int = 1):
            super().__init__(feed_name=feed_name)
            raise ValueError("n out of range")

        def fetch(self, since):
            raise AssertionError

    register_adapter("broken", Broken)
    with pytest.raises(FeedError, match="n out of range"):
        make_adapter("broken", {"n": 5}, "f")


def test_payload_repr_hides_body():
    payload = FeedPayload(body=b"secret-list.test/\n", version=FeedVersion())
    assert "secret-list" not in repr(payload)


# --- the example third-party package, installed for real ------------------------------------


def _pip_unavailable() -> str | None:
    """Why the example cannot be installed offline here, or None."""
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed in this venv"
    if importlib.util.find_spec("setuptools") is None:
        return "setuptools (the example's build backend, used with --no-build-isolation) is not installed"
    installed = importlib.metadata.version("setuptools")  # not imported: it patches distutils
    version = tuple(int(part) for part in installed.split(".")[:2] if part.isdigit())
    if version < (70, 1) and importlib.util.find_spec("wheel") is None:
        return (
            f"setuptools {installed} builds editable installs only with the 'wheel' "
            "package (or setuptools >= 70.1) in the venv; neither is installed"
        )
    return None


@pytest.fixture
def example_installed(tmp_path):
    """pip install -e a copy of the example (offline: --no-deps --no-build-isolation);
    uninstalled afterwards."""
    reason = _pip_unavailable()
    if reason is not None:
        pytest.skip(f"cannot install the example adapter package: {reason}")
    copy = tmp_path / "urlwarden-feed-example"
    shutil.copytree(EXAMPLE, copy)  # build artefacts stay out of the repository
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    pip = [sys.executable, "-m", "pip"]
    already = subprocess.run(
        [*pip, "show", "urlwarden-feed-example"], capture_output=True, env=env, timeout=PIP_TIMEOUT
    )
    result = subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", "-q", "-e", str(copy)],
        capture_output=True,
        text=True,
        env=env,
        timeout=PIP_TIMEOUT,
    )
    if result.returncode != 0:
        pytest.skip(f"pip could not install the example offline: {result.stderr.strip()[-500:]}")
    try:
        yield copy
    finally:
        if already.returncode != 0:  # only remove what this test installed
            subprocess.run(
                [*pip, "uninstall", "-y", "-q", "urlwarden-feed-example"],
                capture_output=True,
                env=env,
                timeout=PIP_TIMEOUT,
            )


def test_example_package_is_found_through_its_entry_point(example_installed):
    # A fresh interpreter: an editable install's path hook only takes effect at start-up.
    code = (
        "from urlwarden.feeds import adapter_names, get_adapter, make_adapter\n"
        "assert 'example-static' in adapter_names(), adapter_names()\n"
        "cls = get_adapter('example-static')\n"
        "a = make_adapter('example-static', {'entries': ['demo.test/'], 'serial': '3'}, 'demo')\n"
        "p = a.fetch(None)\n"
        "assert p.body == b'demo.test/\\n' and p.version.serial == '3'\n"
        "assert a.fetch(p.version).not_modified\n"
        "print(cls.__module__, cls.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=example_installed
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "urlwarden_feed_example StaticAdapter"
