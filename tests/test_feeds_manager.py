"""Tests for urlwarden.feeds.manager over a real feed server on 127.0.0.1, with faults injected.

Every fault must leave the list in force (and its last-known-good copy) untouched and show up in
`FeedStatus`. The clock and random source are injected; nothing sleeps for backoff.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.feedserver import FeedServer, Reply
from urlwarden.core import matcher
from urlwarden.errors import FeedError
from urlwarden.feeds import FeedAdapter, FeedPayload, FeedVersion, register_adapter
from urlwarden.feeds import _registered as registered_adapters
from urlwarden.feeds.http import CHECKSUM_HEADER, SERIAL_HEADER, SINCE_HEADER
from urlwarden.feeds.manager import FeedManager, FeedSpec, FeedStatus
from urlwarden.feeds.payload import checksum, encode_diff, encode_list_header, parse_full

START = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def entries(n: int, prefix: str = "e") -> list[str]:
    return [f"{prefix}{i}.test/" for i in range(n)]


def body(items: list[str], serial: str | None = None) -> bytes:
    head = encode_list_header(serial=serial) if serial else ""
    return (head + "\n".join(items) + "\n").encode()


def sum_of(items: list[str], fmt: str = "plain") -> str:
    return checksum(parse_full(body(items), fmt, "x")[0])


def full_reply(items: list[str], serial: str, etag: str | None = None, **kwargs) -> Reply:
    return Reply(
        body=body(items), etag=etag, headers={SERIAL_HEADER: serial, CHECKSUM_HEADER: sum_of(items)}, **kwargs
    )


def diff_reply(
    base: str,
    serial: str,
    old: list[str],
    new: list[str],
    etag: str | None = None,
    checksum_value: str | None = None,
) -> Reply:
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    return Reply(body=encode_diff(base, serial, checksum_value or sum_of(new), added, removed), etag=etag)


def lkg_files(state: Path) -> dict[str, tuple[int, bytes]]:
    # the last-known-good list and its metadata; the small health record of the latest attempt
    # (<name>.health.json) changes with every failure by design
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(state.iterdir())
            if not p.name.endswith(".health.json")}


@pytest.fixture
def server():
    with FeedServer() as running:
        yield running


class Env:
    """A manager over one http feed 'iwf' at the test server, with injected time."""

    def __init__(self, server: FeedServer, tmp_path: Path, **spec_options):
        self.server = server
        self.state = tmp_path / "state"
        self.clock = Clock()
        self.sleeps = Sleeps()
        self.rng_value = 0.5
        options = {
            "url": server.url("/iwf"),
            "sleep": self.sleeps,
            "rng": lambda: 0.5,
            "retries": 1,
            "connect_timeout": 2.0,
            "read_timeout": 2.0,
        }
        options.update(spec_options.pop("options", {}))
        self.spec = FeedSpec("iwf", "http", options, **{"format": "plain", "max_age": 7200.0, **spec_options})
        self.manager = self.make()

    def make(self, spec: FeedSpec | None = None) -> FeedManager:
        return FeedManager([spec or self.spec], str(self.state), clock=self.clock, rng=lambda: self.rng_value)

    def status(self) -> FeedStatus:
        return self.manager.status("iwf")


@pytest.fixture
def env(server, tmp_path):
    e = Env(server, tmp_path)
    yield e
    e.manager.close()


def prime(env: Env, items: list[str] | None = None, serial: str = "1", etag: str = '"v1"') -> list[str]:
    """Load a good list so there is something to keep."""
    items = items if items is not None else entries(100)
    env.server.script("/iwf", full_reply(items, serial, etag))
    assert env.manager.refresh("iwf") is True
    return items


# --- happy path --------------------------------------------------------------------------------


def test_full_then_diff_then_not_modified(env):
    old = entries(100)
    new = entries(98) + ["n1.test/", "n2.test/deep/"]
    env.server.script("/iwf", full_reply(old, "1", etag='"v1"'))
    assert env.manager.refresh("iwf") is True
    status = env.status()
    assert (status.last_update, status.entries, status.version.serial, status.source) == (
        "full",
        100,
        "1",
        "network",
    )
    assert status.checksum == sum_of(old) and status.last_error is None and not status.stale
    assert status.last_success == START and status.age == 0.0

    env.clock.now += 3600
    env.server.script("/iwf", diff_reply("1", "2", old, new, etag='"v2"'))
    assert env.manager.refresh("iwf") is True
    status = env.status()
    assert (status.last_update, status.entries, status.version.serial, status.version.etag) == (
        "diff",
        100,
        "2",
        '"v2"',
    )
    assert status.checksum == sum_of(new)
    request = env.server.requests_for("/iwf")[1].headers
    assert request[SINCE_HEADER.lower()] == "1" and request["if-none-match"] == '"v1"'
    snapshot = matcher.build(env.manager.lists())
    assert snapshot.match("http://n2.test/deep/x") is not None
    assert snapshot.match("http://e99.test/") is None and snapshot.match("http://e5.test/") is not None

    before = lkg_files(env.state)
    generation = env.manager.generation
    env.clock.now += 3600
    env.server.script("/iwf", Reply(etag='"v2"', body=b"unused"))
    assert env.manager.refresh("iwf") is False
    status = env.status()
    assert (status.last_update, status.entries, status.version.serial) == ("not-modified", 100, "2")
    assert status.last_success == START + 7200
    assert env.server.requests_for("/iwf")[2].headers["if-none-match"] == '"v2"'
    assert lkg_files(env.state) == before  # no rewrite on 304
    assert env.manager.generation == generation


def test_lists_and_current(env):
    assert env.manager.current("iwf") is None and env.manager.lists() == []
    prime(env)
    assert env.manager.lists() == [env.manager.current("iwf")]
    assert env.manager.current("iwf").name == "iwf"
    with pytest.raises(FeedError, match="unknown feed 'nope'"):
        env.manager.current("nope")


def test_identical_content_is_unchanged_and_only_metadata_rewritten(env):
    items = prime(env)
    list_file = env.state / "iwf.sha256"
    mtime = list_file.stat().st_mtime_ns
    env.server.script("/iwf", full_reply(list(reversed(items)), "1", etag='"v1b"'))
    assert env.manager.refresh("iwf") is False
    assert env.status().last_update == "unchanged" and env.status().version.etag == '"v1b"'
    assert list_file.stat().st_mtime_ns == mtime
    assert json.loads((env.state / "iwf.json").read_text())["etag"] == '"v1b"'


# --- faults: the list in force stays, the status tells ------------------------------------------


FAULTS = {
    "http-500": (Reply(status=500), "HTTP 500"),
    "http-404": (Reply(status=404), "HTTP 404"),
    "reset-mid-body": (
        Reply(body=body(entries(200)), reset_after=100),
        "connection reset by peer|closed before",
    ),
    "read-timeout": (Reply(body=body(entries(100)), delay=5.0), "read timed out"),
    "truncated": (Reply(body=body(entries(200)), truncate_to=100), "closed before the whole body"),
    "garbage-binary": (Reply(body=bytes(range(256)) * 4), "not UTF-8|NUL"),
    "garbage-html": (
        Reply(body=b"<html><body><h1>Maintenance</h1>\n<p>back soon</p></body></html>\n"),
        "looks like HTML",
    ),
    "mostly-bad-lines": (
        Reply(body=b"e1.test/\nnot a url\nalso not one\nthird bad line\n"),
        "3 bad lines but only 1 entries",
    ),
    "over-max-bytes": (Reply(body=body(entries(5000))), "larger than max_bytes"),
    "empty": (Reply(body=b""), "no valid entries"),
    "comments-only": (Reply(body=b"# nothing here\n\n"), "no valid entries"),
    "shrink-90": (Reply(body=body(entries(10))), "shrinks the list from 100 to 10"),
    "checksum-header": (
        Reply(body=body(entries(100)), headers={CHECKSUM_HEADER: "0" * 64}),
        "checksum mismatch",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_keeps_last_good_list(server, tmp_path, fault):
    reply, reason = FAULTS[fault]
    env = Env(server, tmp_path, options={"read_timeout": 0.3, "max_bytes": 40_000})
    with env.manager:
        prime(env)
        kept = env.manager.current("iwf")
        saved = lkg_files(env.state)
        generation = env.manager.generation
        env.clock.now += 100
        server.script("/iwf", reply, reply)
        with pytest.raises(FeedError) as info:
            env.manager.refresh("iwf")
        assert str(info.value).startswith("feed 'iwf': ")
        status = env.status()
        assert env.manager.current("iwf") is kept
        assert env.manager.generation == generation
        assert lkg_files(env.state) == saved
        assert status.entries == 100 and status.version.serial == "1" and status.source == "network"
        assert status.consecutive_failures == 1 and status.last_attempt == START + 100
        assert status.last_success == START and status.age == 100
        assert status.last_error == str(info.value)
        assert re.search(reason, status.last_error), status.last_error


def test_connection_refused_keeps_list(env):
    prime(env)
    kept = env.manager.current("iwf")
    env.server.stop()  # nothing listens on the port any more
    with pytest.raises(FeedError, match="connection refused"):
        env.manager.refresh("iwf")
    assert env.manager.current("iwf") is kept
    assert env.status().consecutive_failures == 1 and "connection refused" in env.status().last_error


def test_shrink_rejected_then_forced(server, tmp_path):
    env = Env(server, tmp_path)
    prime(env)
    small = entries(10)
    server.script("/iwf", full_reply(small, "2"), full_reply(small, "2"))
    with pytest.raises(FeedError, match="90% removed"):
        env.manager.refresh("iwf")
    assert env.status().entries == 100
    assert env.manager.refresh("iwf", force=True) is True
    assert env.status().entries == 10 and env.status().consecutive_failures == 0
    env.manager.close()
    forced = Env(server, tmp_path / "forced", force=True)
    prime(forced)
    server.script("/iwf", full_reply(entries(1), "3"))
    assert forced.manager.refresh("iwf") is True and forced.status().entries == 1
    forced.manager.close()


def test_shrink_within_limit_accepted(env):
    prime(env)
    env.server.script("/iwf", full_reply(entries(50), "2"))
    assert env.manager.refresh("iwf") is True and env.status().entries == 50


def test_diff_checksum_mismatch_falls_back_to_full_list(env):
    old = prime(env)
    new = old[:-1] + ["n.test/"]
    env.server.script(
        "/iwf",
        diff_reply("1", "2", old, new, checksum_value="f" * 64),
        full_reply(new, "2", etag='"v2"'),
    )
    assert env.manager.refresh("iwf") is True
    status = env.status()
    assert status.last_update == "full" and status.checksum == sum_of(new) and status.version.serial == "2"
    assert status.consecutive_failures == 0
    assert "checksum" in status.last_error and "fetched the full list instead" in status.last_error
    requests = env.server.requests_for("/iwf")
    assert SINCE_HEADER.lower() in requests[1].headers
    assert SINCE_HEADER.lower() not in requests[2].headers and "if-none-match" not in requests[2].headers
    env.server.script("/iwf", Reply(etag='"v2"'))
    env.manager.refresh("iwf")
    assert env.status().last_error is None  # a clean refresh clears it


def test_diff_for_another_base_falls_back(env):
    old = prime(env)
    new = old + ["n.test/"]
    env.server.script("/iwf", diff_reply("7", "8", old, new), full_reply(new, "8"))
    assert env.manager.refresh("iwf") is True
    assert "does not apply" in env.status().last_error and env.status().version.serial == "8"


def test_diff_fallback_that_fails_keeps_list(env):
    old = prime(env)
    env.server.script(
        "/iwf",
        diff_reply("1", "2", old, old[:-1], checksum_value="f" * 64),
        Reply(status=500),
        Reply(status=500),
    )
    kept = env.manager.current("iwf")
    with pytest.raises(FeedError, match="HTTP 500"):
        env.manager.refresh("iwf")
    assert env.manager.current("iwf") is kept and env.status().consecutive_failures == 1


def test_diff_emptying_the_list_is_rejected(env):
    old = prime(env, entries(3))
    env.server.script(
        "/iwf",
        diff_reply(
            "1",
            "2",
            old,
            [],
            checksum_value="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    )
    with pytest.raises(FeedError, match="empty"):
        env.manager.refresh("iwf", force=True)
    assert env.status().entries == 3


def test_unconditional_304_is_an_error(env):
    env.server.script("/iwf", Reply(status=304))
    with pytest.raises(FeedError):
        env.manager.refresh("iwf")
    assert env.manager.current("iwf") is None and env.status().stale


# --- signatures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key():
    return Ed25519PrivateKey.generate()


def test_signed_feed(server, tmp_path, signing_key):
    public = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "feed.pub"
    key_file.write_bytes(public)
    env = Env(
        server, tmp_path, public_key=str(key_file), options={"signature_header": "X-Urlwarden-Signature"}
    )
    good = body(entries(100))
    sign = lambda data: base64.b64encode(signing_key.sign(data)).decode()  # noqa: E731
    server.script("/iwf", Reply(body=good, headers={"X-Urlwarden-Signature": sign(good)}))
    assert env.manager.refresh("iwf") is True
    kept = env.manager.current("iwf")
    newer = body(entries(120))
    forged = Ed25519PrivateKey.generate().sign(newer)
    server.script(
        "/iwf",
        Reply(body=newer, headers={"X-Urlwarden-Signature": base64.b64encode(forged).decode()}),
        Reply(body=newer, headers={"X-Urlwarden-Signature": sign(good)}),
        Reply(body=newer),
    )
    for reason in ("bad signature", "bad signature", "signature required"):
        with pytest.raises(FeedError, match=reason):
            env.manager.refresh("iwf")
        assert env.manager.current("iwf") is kept
    assert env.status().consecutive_failures == 3
    server.script("/iwf", Reply(body=newer, headers={"X-Urlwarden-Signature": sign(newer)}))
    assert env.manager.refresh("iwf") is True and env.status().entries == 120
    env.manager.close()


def test_bad_public_key_is_a_configuration_error(server, tmp_path):
    with pytest.raises(FeedError, match="public_key"):
        Env(server, tmp_path, public_key="/nonexistent/feed.pub")


# --- last-known-good -----------------------------------------------------------------------------


def test_restart_with_server_down_uses_last_known_good(server, tmp_path):
    env = Env(server, tmp_path)
    items = prime(env, entries(100) + ["deep.test/a/b/"], serial="5")
    before = env.manager.current("iwf")
    env.manager.close()
    server.stop()

    env.clock.now += 1800
    again = env.make()
    assert again.current("iwf") is None
    restored = again.load_last_known_good()
    assert len(restored) == 1 and again.current("iwf") is restored[0]
    status = again.status("iwf")
    assert status.source == "last-known-good" and status.last_update == "last-known-good"
    assert status.entries == len(items) and status.checksum == sum_of(items)
    assert status.version.serial == "5" and status.last_success == START and status.age == 1800
    assert restored[0].digests == before.digests and restored[0].host_keys == before.host_keys
    assert not again.due("iwf") and again.next_refresh_at("iwf") > env.clock.now
    url = "http://www.deep.test/a/b/c.html"
    assert matcher.build([restored[0]]).match(url) == matcher.build([before]).match(url)

    env.clock.now = again.next_refresh_at("iwf")
    assert again.due("iwf")
    with pytest.raises(FeedError, match="connection refused"):
        again.refresh("iwf")
    assert again.current("iwf") is restored[0] and again.status("iwf").consecutive_failures == 1
    env.clock.now = START + 7201
    assert again.status("iwf").stale  # max_age 7200 since the last success before the restart
    again.close()


def test_state_files_hold_no_url_in_clear(env):
    prime(env, ["secret-path.test/hidden/page.html"] + entries(5))
    for path in env.state.iterdir():
        assert b"secret-path" not in path.read_bytes()
    assert sorted(p.name for p in env.state.iterdir()) == ["iwf.compiled", "iwf.json", "iwf.sha256"]
    assert oct((env.state / "iwf.sha256").stat().st_mode & 0o777) == "0o600"
    assert oct((env.state / "iwf.compiled").stat().st_mode & 0o777) == "0o600"


def test_unwritable_state_dir_applies_in_memory_and_retries_the_write(server, tmp_path):
    env = Env(server, tmp_path)
    env.state.write_text("not a directory")  # even root cannot create files below a file
    env.server.script("/iwf", full_reply(entries(100), "1", etag='"v1"'))
    assert env.manager.refresh("iwf") is True
    status = env.status()
    assert status.entries == 100 and not status.lkg_saved and status.consecutive_failures == 0
    assert "last-known-good not saved" in status.last_error
    env.state.unlink()
    env.server.script("/iwf", Reply(etag='"v1"'))
    assert env.manager.refresh("iwf") is False  # a 304, and the pending write happens now
    status = env.status()
    assert status.lkg_saved and status.last_error is None
    restored = env.make().load_last_known_good()
    assert restored[0].digests == env.manager.current("iwf").digests
    env.manager.close()


def test_damaged_last_known_good_is_reported_not_raised(env):
    env.state.mkdir()
    (env.state / "iwf.sha256").write_bytes(b"\x00garbage")
    assert env.manager.load_last_known_good() == []
    assert "last-known-good unusable" in env.status().last_error


def test_metadata_missing_means_full_fetch(server, tmp_path):
    env = Env(server, tmp_path)
    prime(env)
    (env.state / "iwf.json").unlink()
    again = env.make()
    again.load_last_known_good()
    assert again.status("iwf").version is None and again.due("iwf")
    server.script("/iwf", full_reply(entries(100), "1"))
    again.refresh("iwf")
    assert "if-none-match" not in server.requests_for("/iwf")[-1].headers
    again.close()
    env.manager.close()


def test_changed_configuration_drops_the_stored_version(server, tmp_path):
    env = Env(server, tmp_path)
    prime(env)
    env.manager.close()
    moved = FeedSpec("iwf", "http", {**env.spec.options, "url": server.url("/iwf-v2")}, format="plain")
    again = env.make(moved)
    again.load_last_known_good()
    assert again.status("iwf").entries == 100 and again.status("iwf").version is None and again.due("iwf")
    server.script("/iwf-v2", full_reply(entries(100), "9"))
    again.refresh("iwf")
    seen = server.requests_for("/iwf-v2")[0].headers
    assert "if-none-match" not in seen and SINCE_HEADER.lower() not in seen
    again.close()


# --- schedule, staleness, health -----------------------------------------------------------------


def test_schedule_interval_jitter_and_backoff(server, tmp_path):
    env = Env(server, tmp_path, interval=1000.0, jitter=0.2)
    manager = env.manager
    assert manager.due("iwf")  # nothing loaded: due at once
    prime(env)
    assert manager.next_refresh_at("iwf") == START + 1000 * (1 - 0.2 * 0.5)
    assert not manager.due("iwf")
    server.set_default("/iwf", Reply(status=500))
    delays = []
    for n in range(1, 11):
        env.clock.now = manager.next_refresh_at("iwf")
        assert manager.due("iwf")
        with pytest.raises(FeedError):
            manager.refresh("iwf")
        delays.append(manager.next_refresh_at("iwf") - env.clock.now)
        assert manager.status("iwf").consecutive_failures == n
    expected = [min(4 * 3600.0, 60.0 * 2 ** (n - 1)) * 1.5 for n in range(1, 11)]
    assert delays == expected
    assert max(delays) <= 4 * 3600 * 2
    server.set_default("/iwf", Reply(etag='"v1"'))
    env.clock.now = manager.next_refresh_at("iwf")
    manager.refresh("iwf")
    assert manager.status("iwf").consecutive_failures == 0
    manager.close()


def test_refresh_due_and_staleness(env):
    env.server.script("/iwf", full_reply(entries(100), "1", etag='"v1"'))
    results = env.manager.refresh_due()
    assert results == {"iwf": True}
    assert env.manager.refresh_due() == {}  # not due yet
    env.clock.now += 7201
    status = env.status()
    assert status.stale and status.age == 7201
    env.server.script("/iwf", Reply(status=503), Reply(status=503))
    results = env.manager.refresh_due()
    assert isinstance(results["iwf"], FeedError)
    env.clock.now = env.manager.next_refresh_at("iwf")
    env.server.script("/iwf", Reply(etag='"v1"'))
    assert env.manager.refresh_due() == {"iwf": False}
    assert not env.status().stale


def test_required_feeds(server, tmp_path):
    env = Env(server, tmp_path, required=True)
    assert env.manager.unavailable_required() == ["iwf"]
    assert env.status().required and env.status().stale and env.status().source is None
    prime(env)
    assert env.manager.unavailable_required() == []
    env.manager.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "../etc"),
        ("name", ""),
        ("format", "xml"),
        ("interval", 0),
        ("jitter", 1.0),
        ("max_age", -1),
        ("max_shrink", 1.5),
        ("force", "yes"),
        ("required", 1),
        ("options", ["url"]),
    ],
)
def test_feed_spec_validation_names_the_field(field, value):
    arguments = {"name": "iwf", "adapter": "http", "options": {}, field: value}
    with pytest.raises(FeedError) as info:
        FeedSpec(**arguments)
    assert field in str(info.value) or "feed name" in str(info.value)


def test_manager_configuration_errors(tmp_path):
    spec = FeedSpec("iwf", "file", {"path": str(tmp_path / "l.txt")})
    with pytest.raises(FeedError, match="configured twice"):
        FeedManager([spec, spec], str(tmp_path))
    with pytest.raises(FeedError, match="unknown option 'url'"):
        FeedManager([FeedSpec("iwf", "file", {"url": "x"})], str(tmp_path))
    with pytest.raises(FeedError, match="unknown feed adapter 'gopher'"):
        FeedManager([FeedSpec("iwf", "gopher")], str(tmp_path))


def test_feed_spec_options_are_read_only():
    spec = FeedSpec("iwf", "http", {"url": "http://127.0.0.1/"})
    with pytest.raises(TypeError):
        spec.options["url"] = "x"


# --- misbehaving adapters, formats, threads ------------------------------------------------------


class _Scripted(FeedAdapter):
    """An in-process adapter whose answers a test hands in (a plugin stand-in)."""

    answers: ClassVar[list] = []

    def __init__(self, *, feed_name: str = "feed"):
        super().__init__(feed_name=feed_name)

    def fetch(self, since):
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


@pytest.fixture
def scripted():
    register_adapter("scripted-test", _Scripted, replace=True)
    _Scripted.answers = []
    yield _Scripted
    registered_adapters.pop("scripted-test", None)


def test_adapter_bug_is_contained(scripted, tmp_path):
    manager = FeedManager([FeedSpec("p", "scripted-test")], str(tmp_path))
    scripted.answers += [
        FeedPayload(body=b"a.test/\n", version=FeedVersion(serial="1")),
        RuntimeError("boom"),
        "not a payload",
    ]
    manager.refresh("p")
    with pytest.raises(FeedError, match=r"failed unexpectedly \(RuntimeError\)"):
        manager.refresh("p")
    with pytest.raises(FeedError, match="not a FeedPayload"):
        manager.refresh("p")
    assert manager.status("p").entries == 1 and manager.status("p").consecutive_failures == 2


def test_csv_feed_never_asks_for_a_diff(server, tmp_path):
    env = Env(server, tmp_path, format="csv")
    csv_body = b"url,id,category\nlisted.test/,A1,c1\npaths.test/folder/,A2,c2\n"
    server.script("/iwf", Reply(body=csv_body, etag='"c1"', headers={SERIAL_HEADER: "1"}), Reply(etag='"c1"'))
    env.manager.refresh("iwf")
    env.manager.refresh("iwf")
    seen = server.requests_for("/iwf")[1].headers
    assert seen["if-none-match"] == '"c1"' and SINCE_HEADER.lower() not in seen
    assert env.status().last_update == "not-modified" and env.status().version.serial == "1"
    assert sorted(p.name for p in env.state.iterdir()) == ["iwf.compiled", "iwf.csv", "iwf.json"]
    restored = env.make().load_last_known_good()[0]
    assert sorted(restored.ids) == ["A1", "A2"]
    verdict = matcher.build([restored]).match("http://listed.test/x")
    assert verdict.entry_id == "A1" and verdict.category == "c1"
    env.manager.close()


def test_sha256_feed_with_diff(server, tmp_path):
    import hashlib

    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    env = Env(server, tmp_path, format="sha256")
    old = [h(e) for e in entries(10)] + [f"host:{h(f'e{i}.test')}" for i in range(10)]
    server.script("/iwf", Reply(body=body(old, serial="1")))
    env.manager.refresh("iwf")
    assert env.status().version.serial == "1"  # from the list header line
    new_checksum = sum_of([h(e) for e in entries(9)], "sha256")
    server.script("/iwf", Reply(body=encode_diff("1", "2", new_checksum, removed=[h("e9.test/")])))
    assert env.manager.refresh("iwf") is True
    assert env.status().last_update == "diff" and env.status().entries == 9
    env.manager.close()


def test_readers_never_see_a_partial_list(server, tmp_path):
    env = Env(server, tmp_path, force=True)
    small, large = entries(10), entries(2000)
    server.set_default("/iwf", Reply(body=body(large)))
    prime(env, small)
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        for _ in range(200_000):  # bounded
            if stop.is_set():
                return
            for parsed in env.manager.lists():
                seen.add(parsed.count)
            env.manager.status("iwf")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(6):
            server.script("/iwf", full_reply(small if i % 2 else large, str(i + 2)))
            env.manager.refresh("iwf")
    finally:
        stop.set()
        reader.join(30)
    assert not reader.is_alive()
    assert seen <= {10, 2000}
    env.manager.close()


def test_plain_diff_applies_to_a_restored_list(server, tmp_path):
    env = Env(server, tmp_path)
    old = prime(env, entries(20), serial="1", etag='"v1"')
    env.manager.close()
    again = env.make()
    restored = again.load_last_known_good()[0]
    assert restored.hashed  # stored in hashed form
    new = [*old[:-1], "fresh.test/dir/"]
    server.script("/iwf", diff_reply("1", "2", old, new, etag='"v2"'))
    assert again.refresh("iwf") is True
    status = again.status("iwf")
    assert (status.last_update, status.version.serial, status.checksum) == ("diff", "2", sum_of(new))
    assert server.requests_for("/iwf")[-1].headers[SINCE_HEADER.lower()] == "1"
    snapshot = matcher.build(again.lists())
    assert snapshot.match("http://fresh.test/dir/x") is not None
    assert snapshot.match(f"http://{old[-1]}") is None
    again.close()


def test_start_removes_temporaries_a_killed_save_left_and_nothing_else(server, tmp_path):
    env = Env(server, tmp_path)
    items = prime(env)
    env.manager.close()
    full = (env.state / "iwf.sha256").read_bytes()
    long_ago = time.time() - 3600
    left = {name: env.state / name for name in (".urlwarden-k9x_0a1b.sha256", ".urlwarden-abcdefgh.tmp")}
    kept = {name: env.state / name for name in (
        ".urlwarden-notes.txt",  # our prefix, not a name mkstemp gives us
        "iwf.urlwarden-abcdefgh.tmp",  # not our prefix
        ".urlwarden-zzzzzzzz.sha256",  # ours, but touched just now: another process may be writing it
    )}
    for name, path in {**left, **kept}.items():
        path.write_bytes(full)
        if name != ".urlwarden-zzzzzzzz.sha256":
            os.utime(path, (long_ago, long_ago))
    restarted = env.make()
    assert len(restarted.load_last_known_good()) == 1  # the feed itself is restored as before
    assert restarted.status("iwf").entries == len(items)
    assert not any(path.exists() for path in left.values())
    assert all(path.read_bytes() == full for path in kept.values())
    restarted.close()
