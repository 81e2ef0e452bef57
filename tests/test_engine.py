"""Tests of urlwarden.runtime.engine: request verdicts over every name, TLS actions per host."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from urlwarden.config import HttpsPolicy
from urlwarden.runtime.engine import TlsAction, UnparseableName, connection_status, request_verdict, tls_action, url_for
from urlwarden.core.lists import make_spec, parse_text
from urlwarden.core.matcher import HostStatus, build

PLAIN = "listed.test/\npaths.test/folder/\n"


def snapshot(text=PLAIN, fmt="plain", allow=""):
    block = [parse_text(text, make_spec("block.txt", fmt, "hot"))]
    allow_lists = [parse_text(allow, make_spec("allow.txt", "plain", "exc"))] if allow else []
    return build(block, allow_lists)


def hashed_without_host_keys():
    lines = [hashlib.sha256(e.encode()).hexdigest() for e in ("listed.test/", "paths.test/folder/")]
    return snapshot("\n".join(lines) + "\n", "sha256")


@pytest.mark.parametrize(
    ("names", "blocked_by"),
    [
        (["unlisted.test"], None),
        (["unlisted.test", "listed.test"], "listed.test/"),
        (["unlisted.test", None, "", "www.listed.test:8080"], "listed.test/"),
        (["::1", "listed.test"], "listed.test/"),
        (["paths.test"], None),
    ],
)
def test_request_verdict_checks_every_name(names, blocked_by):
    verdict = request_verdict(snapshot(), "http", names, "/x")
    assert (verdict.expression if verdict else None) == blocked_by


def test_allow_entry_rescues_only_the_name_it_matches():
    snap = snapshot(allow="listed.test/ok\n")
    assert request_verdict(snap, "http", ["listed.test"], "/ok").action == "allow"
    assert request_verdict(snap, "http", ["listed.test", "paths.test"], "/folder/ok").blocked


@pytest.mark.parametrize(
    ("name", "path", "url"),
    [("::1", "/a", "http://[::1]/a"), ("a.test:81", "*", "http://a.test:81/"), ("[::1]", "", "http://[::1]/")],
)
def test_url_for(name, path, url):
    assert url_for("http", name, path) == url


@pytest.mark.parametrize(
    ("intercept", "uninspected", "names", "action"),
    [
        ("listed-hosts", "refuse", ["unlisted.test"], TlsAction.PASSTHROUGH),
        ("listed-hosts", "refuse", ["paths.test"], TlsAction.INTERCEPT),
        ("listed-hosts", "refuse", ["unlisted.test", "www.listed.test"], TlsAction.INTERCEPT),
        ("all", "refuse", ["unlisted.test"], TlsAction.INTERCEPT),
        ("none", "refuse", ["unlisted.test"], TlsAction.PASSTHROUGH),
        ("none", "refuse", ["paths.test"], TlsAction.REFUSE),
        ("none", "pass", ["paths.test"], TlsAction.PASSTHROUGH),
        ("none", "pass", ["listed.test"], TlsAction.REFUSE),
    ],
)
def test_tls_action(intercept, uninspected, names, action):
    assert tls_action(snapshot(), HttpsPolicy(intercept, uninspected), names) is action


@pytest.mark.parametrize(
    ("intercept", "uninspected", "host", "action"),
    [
        # without host keys no host can be ruled out: intercept (safe), or refuse/pass as configured
        ("listed-hosts", "refuse", "unlisted.test", TlsAction.INTERCEPT),
        ("none", "refuse", "unlisted.test", TlsAction.REFUSE),
        ("none", "pass", "unlisted.test", TlsAction.PASSTHROUGH),
        # a whole-host entry is still recognised from its hash
        ("none", "pass", "www.listed.test", TlsAction.REFUSE),
    ],
)
def test_hashed_list_without_host_keys_is_handled_safely(intercept, uninspected, host, action):
    assert tls_action(hashed_without_host_keys(), HttpsPolicy(intercept, uninspected), [host]) is action


# --- names that are not host names ------------------------------------------------------------

@pytest.mark.parametrize("bad", ["[junk", ":80", "a]b", "..", "[::1", ".", "a\r\n b", "a b"])
def test_an_unparseable_name_is_its_own_error(bad):
    with pytest.raises(UnparseableName):
        request_verdict(snapshot(), "http", ["unlisted.test", bad], "/")


def test_connection_status_fails_closed_on_unparseable_names():
    snap = snapshot()
    assert connection_status(snap, ["[junk"]) is HostStatus.UNKNOWN
    assert connection_status(snap, ["[junk", "unlisted.test"]) is HostStatus.UNKNOWN
    assert connection_status(snap, ["[junk", "listed.test"]) is HostStatus.WHOLE
    assert connection_status(snap, ["unlisted.test", None]) is HostStatus.CLEAN


@settings(max_examples=500, deadline=None)
@given(name=st.text(max_size=40) | st.binary(max_size=20).map(lambda b: b.decode("latin-1")))
def test_any_name_is_decided_or_unparseable(name):
    snap = snapshot()
    try:
        request_verdict(snap, "http", [name], "/x")
    except UnparseableName:
        pass  # answered 400 by the addon; any other exception fails this test
    assert connection_status(snap, [name]) in HostStatus
