"""The start-up self-check of the canonicalizer (urlwarden.core.selfcheck) and the front ends
that must refuse to start when it fails: the ``urlwarden`` command, the Squid helper and the
mitmproxy addon.

A wrong canonicalizer is simulated the way CPython gh-106052 broke it on 3.11.0-3.11.4: a URL
without a scheme loses its first character.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from urlwarden import cli
from urlwarden.core import canon, selfcheck as canon_selfcheck
from urlwarden.frontends import squid
from urlwarden.frontends.proxy.addon import UrlWarden
from urlwarden.config import load_config
from urlwarden.errors import SelfCheckError

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
REAL_PARSE = canon.parse


def parse_like_gh_106052(url):
    """canon.parse as CPython 3.11.2 ran it with the old possessive scheme group."""
    if isinstance(url, str) and "://" not in url and not url.startswith("//"):
        url = url[1:]
    return REAL_PARSE(url)


@pytest.fixture
def broken_canon(monkeypatch):
    monkeypatch.setattr(canon, "parse", parse_like_gh_106052)
    monkeypatch.setattr(canon_selfcheck, "_passed", False)


@pytest.fixture
def fresh_check(monkeypatch):
    monkeypatch.setattr(canon_selfcheck, "_passed", False)


@pytest.mark.parametrize(("vector"), canon_selfcheck.VECTORS, ids=lambda v: f"{v[0][0]}:{v[1]!r}")
def test_every_vector_holds_on_this_interpreter(vector):
    (_name, function), given, expected = vector
    assert function(given) == expected


def test_the_vectors_cover_every_checked_function():
    names = {name for (name, _), _, _ in canon_selfcheck.VECTORS}
    assert names == {"canonicalize", "entry", "fast_host", "canonical_host", "expressions"}
    assert len(canon_selfcheck.VECTORS) >= 36


def test_verify_passes_and_is_remembered(fresh_check, monkeypatch):
    canon_selfcheck.verify()
    assert canon_selfcheck._passed
    monkeypatch.setattr(canon, "parse", parse_like_gh_106052)
    canon_selfcheck.verify()  # once per process: not run again


def test_a_wrong_answer_is_one_line_naming_interpreter_and_vector(broken_canon):
    with pytest.raises(SelfCheckError) as caught:
        canon_selfcheck.verify()
    message = str(caught.value)
    assert "\n" not in message
    assert sys.executable in message and " ".join(sys.version.split()) in message
    assert "canonicalize('www.example.test/') gave 'http://ww.example.test/'" in message
    assert not canon_selfcheck._passed


def test_an_exception_is_a_wrong_answer_too(fresh_check, monkeypatch):
    def raising(_url):
        raise ValueError("URL has no host")

    monkeypatch.setattr(canon, "canonical_host", raising)
    with pytest.raises(SelfCheckError, match=r"canonical_host\('Listed.TEST:443'\) gave 'ValueError: URL has no host'"):
        canon_selfcheck.verify()


@pytest.mark.parametrize("argv", [["check", "http://listed.test/"], ["canon", "http://listed.test/"],
                                  ["hash-list", "in.txt", "out.sha256"]])
def test_the_command_refuses_with_exit_2(broken_canon, capsys, argv):
    assert cli.main(argv) == cli.EXIT_ERROR
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("urlwarden: the URL canonicalizer gives wrong answers") and err.count("\n") == 1


def test_the_squid_helper_refuses_before_reading_a_request(broken_canon, tmp_path):
    (tmp_path / "block.txt").write_text("listed.test/\n")
    config = tmp_path / "urlwarden.yaml"
    config.write_text("lists:\n  - name: hot\n    path: block.txt\n")
    stdin, stdout = io.BytesIO(b"0 http://listed.test/ -\n"), io.BytesIO()
    with pytest.raises(SelfCheckError):
        squid.serve(load_config(config), stdin, stdout)
    assert stdin.tell() == 0 and stdout.getvalue() == b""


def test_the_addon_refuses_start_up(broken_canon, tmp_path, caplog):
    """At start-up the addon logs the one line as an error (mitmproxy's start-up error check
    then exits before any server binds) and loads nothing."""
    (tmp_path / "block.txt").write_text("listed.test/\n")
    config = tmp_path / "urlwarden.yaml"
    config.write_text("lists:\n  - name: hot\n    path: block.txt\n")
    addon = UrlWarden()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_config=str(config))
        assert addon.state is None  # nothing loaded, so nothing can be served
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert errors[0].startswith("urlwarden: the URL canonicalizer gives wrong answers") and "\n" not in errors[0]


def test_the_addon_refuses_a_reload_once_running(tmp_path, monkeypatch, fresh_check):
    """After start-up a configure that meets a wrong canonicalizer is an OptionsError (rolled back)."""
    (tmp_path / "block.txt").write_text("listed.test/\n")
    config = tmp_path / "urlwarden.yaml"
    config.write_text("lists:\n  - name: hot\n    path: block.txt\n")
    other = tmp_path / "other.yaml"
    other.write_text("lists:\n  - name: hot\n    path: block.txt\n")
    addon = UrlWarden()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, urlwarden_config=str(config))
        good = addon.state
        assert good is not None
        monkeypatch.setattr(canon, "parse", parse_like_gh_106052)
        monkeypatch.setattr(canon_selfcheck, "_passed", False)
        with pytest.raises(exceptions.OptionsError, match="canonicalizer gives wrong answers"):
            tctx.configure(addon, urlwarden_config=str(other))
        assert addon.state is good


def test_urlwarden_check_subprocess_refuses_on_a_broken_canonicalizer(tmp_path):
    """The real console script, with the breakage injected at interpreter start (sitecustomize)."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        from urlwarden.core import canon
        real = canon.parse
        canon.parse = lambda url: real(url[1:] if isinstance(url, str) and "://" not in url else url)
    """))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([URLWARDEN, "check", "http://listed.test/"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("urlwarden: the URL canonicalizer gives wrong answers on this interpreter (Python ")
    healthy = subprocess.run([URLWARDEN, "check", "http://listed.test/"], capture_output=True, text=True, timeout=60)
    assert healthy.returncode == 1 and healthy.stdout.startswith("BLOCK ")
