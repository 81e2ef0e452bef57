"""Run a proxy (mitmdump, urlwarden, ...) as a real subprocess on loopback, for end-to-end tests.

Usage::

    port = free_port()
    argv = mitmdump_argv(port, confdir=tmp_path / "conf", "--set", "connection_strategy=lazy")
    with ProxyProcess(argv, port, hosts={"listed.test": "127.0.0.1"}, workdir=tmp_path) as proxy:
        ...curl(url, proxy=port)...
        proxy.output()                 # what it printed so far (stdout + stderr)
        proxy.send_signal(signal.SIGHUP)

Name resolution. Test host names (``.test``, ``.example``, ``.invalid``) do not resolve, and
mitmproxy resolves upstream names with the system resolver. With `hosts` given, the command runs
under ``unshare --mount --propagation private`` with a private ``/etc/hosts`` (written to
``workdir/hosts``: ``127.0.0.1 localhost`` plus one line per name) bind-mounted over the real
one, so only that process sees the mapping. By default (``isolate_dns=True``) a private
``/etc/resolv.conf`` pointing at ``nameserver 127.0.0.1`` is mounted too, so a name missing from
`hosts` fails fast instead of leaving loopback: nothing the proxy is asked for can reach the
real network by name. This needs root (or an equivalent capability): without it the test is
skipped, saying why.

Lifecycle. The process starts in a new session (its own process group). Entering the context
waits (up to `start_timeout`) until `listen_port` on `listen_host` accepts TCP connections; if
the process exits first or the time runs out, the process is stopped and `ProxyStartError`
carries its output. Leaving the context sends SIGTERM to that process group, then SIGKILL after
`stop_timeout`. Only the group this object created is ever signalled. stdout and stderr go to
``workdir/proxy.stdout`` / ``workdir/proxy.stderr`` (PYTHONUNBUFFERED=1 is set, so `output()`
is current while it runs). `env` entries are added to (not substituted for) the environment.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

__all__ = [
    "ProxyProcess",
    "ProxyStartError",
    "free_port",
    "mitmdump_argv",
    "MITMDUMP",
    "namespace_unavailable_reason",
]

DEFAULT_START_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 10.0
PROBE_TIMEOUT = 10.0  # seconds for the one-off check that unshare + bind mounts work
CONNECT_POLL = 0.05
MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))

# Runs inside the new mount namespace: bind the private files, then become the real command.
_NS_SCRIPT = (
    'set -e; mount --bind "$1" /etc/hosts; '
    'if [ -n "$2" ]; then mount --bind "$2" /etc/resolv.conf; fi; '
    'shift 2; exec "$@"'
)


class ProxyStartError(RuntimeError):
    """The proxy exited or never listened; the message carries its output."""


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port that was free a moment ago (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def mitmdump_argv(port: int, confdir: str | os.PathLike[str], *extra: str, listen_host: str = "127.0.0.1") -> list[str]:
    """argv for the venv's mitmdump on listen_host:port with its own confdir (the CA lives there:
    ``<confdir>/mitmproxy-ca-cert.pem``)."""
    return [MITMDUMP, "--listen-host", listen_host, "-p", str(port), "--set", f"confdir={confdir}", *extra]


def _ns_prefix(hosts_file: Path, resolv_file: Path | None) -> list[str]:
    return [
        "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", _NS_SCRIPT, "sh", str(hosts_file), str(resolv_file or ""),
    ]


@functools.lru_cache(maxsize=1)
def namespace_unavailable_reason() -> str | None:
    """None when `unshare --mount` + bind-mounting /etc/hosts works here, else why not."""
    if os.geteuid() != 0:
        return "a private /etc/hosts needs root (unshare --mount + mount --bind); not running as root"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "a private /etc/hosts needs the unshare and mount programs (util-linux); not found"
    probe_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    probe = probe_dir / f"urlwarden-hosts-probe-{os.getpid()}"
    marker = "127.0.0.1 urlwarden-probe.invalid"
    try:
        probe.write_text(f"127.0.0.1 localhost\n{marker}\n")
        result = subprocess.run(
            [*_ns_prefix(probe, None), "cat", "/etc/hosts"],
            capture_output=True, text=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare --mount probe failed: {exc}"
    finally:
        probe.unlink(missing_ok=True)
    if result.returncode != 0 or marker not in result.stdout:
        return f"unshare --mount + bind mount of /etc/hosts does not work here: {result.stderr.strip()}"
    return None


def write_hosts_file(path: Path, hosts: Mapping[str, str]) -> Path:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines += [f"{ip} {name}" for name, ip in hosts.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class ProxyProcess:
    """A proxy subprocess; see the module docstring."""

    def __init__(
        self,
        argv: Sequence[str],
        listen_port: int,
        hosts: Mapping[str, str] | None = None,
        workdir: str | os.PathLike[str] = ".",
        env: Mapping[str, str] | None = None,
        *,
        listen_host: str = "127.0.0.1",
        isolate_dns: bool = True,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ):
        self.argv = [str(a) for a in argv]
        self.listen_port = listen_port
        self.listen_host = listen_host
        self.hosts = dict(hosts) if hosts is not None else None
        self.workdir = Path(workdir)
        self.env = dict(env or {})
        self.isolate_dns = isolate_dns
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.stdout_path = self.workdir / "proxy.stdout"
        self.stderr_path = self.workdir / "proxy.stderr"
        self._proc: subprocess.Popen | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> ProxyProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = list(self.argv)
        if self.hosts is not None:
            reason = namespace_unavailable_reason()
            if reason is not None:
                pytest.skip(f"ProxyProcess(hosts=...): {reason}")
            hosts_file = write_hosts_file(self.workdir / "hosts", self.hosts)
            resolv_file = None
            if self.isolate_dns:
                resolv_file = self.workdir / "resolv.conf"
                resolv_file.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            argv = _ns_prefix(hosts_file, resolv_file) + argv
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                cwd=self.workdir, start_new_session=True,
            )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ProxyStartError(
                    f"proxy exited with {code} before listening on {self.listen_host}:{self.listen_port}\n"
                    f"argv: {self.argv}\n{self.output()}"
                )
            try:
                with socket.create_connection((self.listen_host, self.listen_port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise ProxyStartError(
                    f"proxy not listening on {self.listen_host}:{self.listen_port} after "
                    f"{self.start_timeout}s\nargv: {self.argv}\n{self.output()}"
                )
            time.sleep(CONNECT_POLL)

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL after stop_timeout; returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                proc.wait(self.stop_timeout)
        # Stragglers left in the group we created (the leader is gone, the group id is still ours
        # while any member lives).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return proc.returncode

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- public API
    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """None while running."""
        return None if self._proc is None else self._proc.poll()

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the proxy process itself (not its group), if it still runs."""
        assert self._proc is not None, "not started"
        self._proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit by itself; subprocess.TimeoutExpired after `timeout`."""
        assert self._proc is not None, "not started"
        return self._proc.wait(timeout)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self) -> str:
        """stdout and stderr so far, labelled."""
        return f"--- stdout ---\n{self.stdout()}--- stderr ---\n{self.stderr()}"
