"""urlwarden.frontends.sdnotify against real AF_UNIX datagram sockets (a path and an abstract name), and the
systemd units in contrib/systemd that rely on it (Type=notify)."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from urlwarden.frontends import sdnotify

RECV_TIMEOUT = 5.0


@pytest.fixture(params=["path", "abstract"])
def listener(request, tmp_path, monkeypatch):
    """(socket, NOTIFY_SOCKET value): a bound datagram socket like systemd's, set in the env."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(RECV_TIMEOUT)
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        name = path
    else:
        abstract = f"urlwarden-test-{os.getpid()}-{uuid.uuid4().hex}"
        sock.bind(b"\0" + abstract.encode())
        name = "@" + abstract
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    with sock:
        yield sock, name


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready(listener):
    sock, _ = listener
    assert sdnotify.ready() is True
    assert receive(sock) == "READY=1"


def test_stopping_and_status(listener):
    sock, _ = listener
    assert sdnotify.stopping()
    assert receive(sock) == "STOPPING=1"
    assert sdnotify.status("3 lists loaded\nsecond line")
    assert receive(sock) == "STATUS=3 lists loaded second line"
    assert sdnotify.status("x" * 5000)
    assert receive(sock) == "STATUS=" + "x" * sdnotify.MAX_STATUS_CHARS


def test_reloading_sends_the_monotonic_time(listener):
    sock, _ = listener
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = dict(line.split("=", 1) for line in receive(sock).split("\n"))
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_notify_sends_the_state_as_given(listener):
    sock, _ = listener
    assert sdnotify.notify("READY=1\nSTATUS=up")
    assert receive(sock) == "READY=1\nSTATUS=up"


def test_explicit_env_mapping(listener, monkeypatch):
    sock, name = listener
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert sdnotify.ready() is False
    assert sdnotify.ready(env={"NOTIFY_SOCKET": name}) is True
    assert receive(sock) == "READY=1"


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_without_a_usable_socket_nothing_is_sent(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert sdnotify.ready() is False
    assert sdnotify.reloading() is False
    assert sdnotify.stopping() is False
    assert sdnotify.status("x") is False


def test_a_socket_nobody_listens_on_is_false_not_an_exception(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "missing.sock"))
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", f"@urlwarden-missing-{uuid.uuid4().hex}")
    assert sdnotify.ready() is False


# --- the systemd units in contrib/ ---------------------------------------------------------------

UNIT_DIR = Path(__file__).resolve().parents[1] / "contrib" / "systemd"
VERIFY_TIMEOUT = 60


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, comment_prefixes=("#", ";"),
                                       delimiters=("=",), empty_lines_in_values=False)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((UNIT_DIR / name).read_text(encoding="utf-8"), source=name)
    return parser


SYSTEM_SERVICE = {
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecStart": "/usr/local/bin/urlwarden run --config /etc/urlwarden/urlwarden.yaml",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "User": "urlwarden",  # the system user `make install` creates
    "StateDirectory": "urlwarden",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",  # AF_UNIX: sd_notify
    "SystemCallFilter": "@system-service",
    "UMask": "0077",
}


@pytest.mark.parametrize(("key", "expected"), SYSTEM_SERVICE.items())
def test_system_unit(key, expected):
    unit = read_unit("urlwarden.service")
    assert unit["Service"][key] == expected


def test_system_unit_sections():
    unit = read_unit("urlwarden.service")
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in unit["Unit"]["After"]
    assert "%S/urlwarden" in unit["Service"]["Environment"]  # the mitmproxy CA persists in the state dir


USER_SERVICE = {
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecStart": "/usr/local/bin/urlwarden run --config %E/urlwarden/urlwarden.yaml",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "NoNewPrivileges": "yes",
    "StateDirectory": "urlwarden",
}


@pytest.mark.parametrize(("key", "expected"), USER_SERVICE.items())
def test_user_unit(key, expected):
    unit = read_unit("urlwarden-user.service")
    assert unit["Service"][key] == expected


def test_user_unit_starts_at_login_and_needs_no_privileges():
    unit = read_unit("urlwarden-user.service")
    assert unit["Install"]["WantedBy"] == "default.target"
    for key in ("User", "Group", "DynamicUser", "AmbientCapabilities", "CapabilityBoundingSet"):
        assert key not in unit["Service"]


@pytest.mark.parametrize(("name", "user"), [("urlwarden.service", False), ("urlwarden-user.service", True)])
def test_systemd_accepts_the_units(tmp_path, name, user):
    """systemd-analyze verify, when present, with ExecStart pointed at a program that exists."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (UNIT_DIR / name).read_text(encoding="utf-8")
    copy = tmp_path / "urlwarden.service"
    copy.write_text("\n".join("ExecStart=/bin/true" if line.startswith("ExecStart=") else line
                              for line in text.splitlines()) + "\n")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    argv = [analyze, "verify", "--man=no", *(["--user"] if user else []), str(copy)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=VERIFY_TIMEOUT, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"systemd-analyze verify took more than {VERIFY_TIMEOUT}s")
    if done.returncode != 0 and "Failed to initialize manager" in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys are only warned about
