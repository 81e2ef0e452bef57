"""Network namespaces for end-to-end tests: a small routed topology built, used and torn down by one test module.

Usage::

    reason = netns_unavailable_reason()           # None, or why namespaces cannot be used here
    with Lab() as lab:                            # every name carries this run's tag: uwc<pid>x<n>
        client, gateway = lab.namespace("cl"), lab.namespace("gw")
        lab.link(client, "gw0", "10.77.0.2/24", gateway, "cl0", "10.77.0.1/24")  # or lists of v4 and v6 CIDRs
        client.ip("route", "add", "default", "via", "10.77.0.1")
        gateway.sysctl("net.ipv4.ip_forward", 1)
        gateway.nft(RULESET)                      # nft -f - inside the gateway only
        client.etc_hosts({"listed.test": "198.51.100.10"})  # /etc/netns/<ns>/hosts (+ a resolv.conf
                                                  # that resolves nothing), seen by `ip netns exec`
        result = ns_curl(client, "http://listed.test/")       # curl inside the namespace -> CurlResult
        proc = gateway.popen([...])               # a long-running process inside; stopped at teardown
        sock = client.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a socket that lives in the namespace
    # leaving the block: processes stopped (by their own process group), namespaces deleted (with
    # the veths inside them), /etc/netns/<ns> removed; also when the body raised

What lives where. Namespaces are named ``uwc<pid>x<n>-<role>`` so parallel runs never collide.
Veth pairs are created with both ends directly inside their namespaces (``ip link add NAME netns
A type veth peer name PEER netns B``): they never appear among the host's interfaces, so short
fixed names (``cl0``, ``gw0``) are fine and deleting a namespace deletes its ends. Nothing here
touches the host's own interfaces, routes or firewall; sysctls and nftables rules are applied
with ``ip netns exec`` inside one namespace.

Sockets in a namespace. `Namespace.socket` creates the socket in a short-lived thread that has
joined the namespace (``setns``); a socket keeps the namespace it was created in, so the test
can then bind, connect, send and receive from any thread. `NetnsOrigin` uses this to run the
harness's recording `Origin` inside the origin namespace, in the test process, on ports 80/443.

Every wait is bounded; only processes this module started (and, at teardown, whatever is left
inside the namespaces it created) are signalled, by PID or by the process group it created.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import ipaddress
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .certs import TestPKI
# ns_curl is clients.curl with an `ip netns exec` prefix: it shares curl's parsing and bounded runner.
from .clients import CurlResult, _no_proxy_env, _parse_header_dump, _run_bounded
from .origin import Origin
from .proxyproc import CONNECT_POLL, ProxyProcess, ProxyStartError

__all__ = [
    "Lab",
    "Namespace",
    "NetnsError",
    "NetnsOrigin",
    "NetnsProxyProcess",
    "netns_unavailable_reason",
    "ns_curl",
]

NETNS_RUN_DIR = Path("/run/netns")  # where `ip netns add` mounts the namespace handles
NETNS_ETC_DIR = Path("/etc/netns")  # `ip netns exec NS` bind-mounts /etc/netns/NS/* over /etc/*
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT = 10.0  # seconds for one ip / nft / sysctl command
SETNS_TIMEOUT = 5.0  # seconds for creating one socket inside a namespace
STOP_TIMEOUT = 5.0  # seconds a process gets between SIGTERM and SIGKILL
CURL_GRACE = 5.0  # seconds the subprocess timeout exceeds curl's own --max-time
PROBE_TIMEOUT = 10.0
# A resolver that answers nothing: a name missing from the namespace's hosts file fails at once.
NO_DNS_RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"

_PROBE_RULESET = """
table inet probe {
    chain c {
        type nat hook prerouting priority dstnat; policy accept;
    }
}
"""
_T = TypeVar("_T")
_counter = itertools.count(1)
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """A namespace command failed; the message carries the command and its output."""


def _command(argv: Sequence[str], *, input: str | None = None, timeout: float = COMMAND_TIMEOUT,
             check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(argv)}: no answer within {timeout}s") from None
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return done


@functools.lru_cache(maxsize=1)
def netns_unavailable_reason() -> str | None:
    """None when network namespaces, veth pairs and nftables work here; else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root; not running as root"
    for program, package in (("ip", "iproute2"), ("nft", "nftables"), ("curl", "curl")):
        if shutil.which(program) is None:
            return f"`{program}` not found (install {package}; scripts/system-deps does)"
    probe = f"uwc{os.getpid()}probe"
    try:
        _command(["ip", "netns", "add", probe], timeout=PROBE_TIMEOUT)
    except (NetnsError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _command(["ip", "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"], timeout=PROBE_TIMEOUT)
        _command(["ip", "netns", "exec", probe, "nft", "-f", "-"], timeout=PROBE_TIMEOUT, input=_PROBE_RULESET)
        _in_netns(NETNS_RUN_DIR / probe, lambda: socket.socket().close())
    except (NetnsError, OSError) as exc:
        return f"namespaces work, but not veth pairs, nftables NAT or setns inside them: {exc}"
    finally:
        _command(["ip", "netns", "del", probe], check=False, timeout=PROBE_TIMEOUT)
    return None


def _in_netns(handle: Path, fn: Callable[[], _T]) -> _T:
    """Run fn() in a fresh thread that has joined the network namespace `handle`; return its result."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(handle, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({handle}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    # The thread ends right after: its namespace switch never leaks into the test's own threads.
    thread = threading.Thread(target=target, name=f"setns-{handle.name}", daemon=True)
    thread.start()
    thread.join(SETNS_TIMEOUT)
    if thread.is_alive():
        raise NetnsError(f"setns into {handle} did not finish within {SETNS_TIMEOUT}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


class Namespace:
    """One network namespace of a `Lab`; see the module docstring."""

    def __init__(self, lab: Lab, name: str):
        self.lab = lab
        self.name = name
        self.handle = NETNS_RUN_DIR / name

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` prefixed to run inside this namespace (with its /etc/netns files mounted)."""
        return ["ip", "netns", "exec", self.name, *[str(a) for a in argv]]

    def ip(self, *args: str) -> subprocess.CompletedProcess:
        return _command(["ip", "-n", self.name, *args])

    def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float = COMMAND_TIMEOUT,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run a short command inside; NetnsError when it fails (with `check`) or outlives `timeout`."""
        return _command(self.exec_argv(argv), input=input, timeout=timeout, check=check)

    def sysctl(self, key: str, value: object) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def nft(self, ruleset: str) -> None:
        """Load an nftables ruleset (text for ``nft -f -``) in this namespace, as one transaction."""
        self.run(["nft", "-f", "-"], input=ruleset)

    def nft_list(self, *what: str) -> str:
        return self.run(["nft", *(what or ("list", "ruleset"))]).stdout

    def etc_hosts(self, hosts: Mapping[str, str | Sequence[str]], *, isolate_dns: bool = True) -> None:
        """Name resolution for programs run with `exec_argv`: /etc/netns/<ns>/hosts (name ->
        address or addresses), and (with `isolate_dns`) a resolv.conf that resolves nothing, so
        a missing name fails fast."""
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        for name, addresses in hosts.items():
            lines += [f"{address} {name}" for address in ([addresses] if isinstance(addresses, str) else addresses)]
        self.lab._write_etc(self.name, "hosts", "\n".join(lines) + "\n")
        if isolate_dns:
            self.lab._write_etc(self.name, "resolv.conf", NO_DNS_RESOLV_CONF)

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """Start a process inside, in its own process group; the Lab stops it at teardown."""
        proc = subprocess.Popen(self.exec_argv(argv), start_new_session=True, stdin=subprocess.DEVNULL, **kwargs)
        self.lab._processes.append(proc)
        return proc

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
        """A socket created inside this namespace (it stays there whichever thread uses it)."""
        return _in_netns(self.handle, lambda: socket.socket(family, type, proto))

    def connect(self, address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
        """A TCP connection from inside this namespace."""
        sock = self.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock


class Lab:
    """A set of namespaces and links with one teardown; see the module docstring."""

    def __init__(self, prefix: str = "uwc"):
        self.tag = f"{prefix}{os.getpid()}x{next(_counter)}"
        self.namespaces: list[Namespace] = []
        self._processes: list[subprocess.Popen] = []
        self._etc_dirs: list[Path] = []
        self._created_etc_root = False

    def namespace(self, role: str) -> Namespace:
        ns = Namespace(self, f"{self.tag}-{role}")
        _command(["ip", "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def link(self, a: Namespace, a_if: str, a_addrs: str | Sequence[str],
             b: Namespace, b_if: str, b_addrs: str | Sequence[str]) -> None:
        """A veth pair between two namespaces, created inside them, addressed (CIDR, IPv4 and/or
        IPv6; IPv6 without duplicate address detection, so it is usable at once) and up."""
        _command(["ip", "link", "add", "name", a_if, "netns", a.name, "type", "veth",
                  "peer", "name", b_if, "netns", b.name])
        for ns, ifname, addrs in ((a, a_if, a_addrs), (b, b_if, b_addrs)):
            for addr in [addrs] if isinstance(addrs, str) else addrs:
                ns.ip("addr", "add", addr, "dev", ifname, *(["nodad"] if ":" in addr else []))
            ns.ip("link", "set", ifname, "up")

    def _write_etc(self, ns_name: str, filename: str, text: str) -> None:
        directory = NETNS_ETC_DIR / ns_name
        if not NETNS_ETC_DIR.exists():
            self._created_etc_root = True
        for _ in range(3):  # another run may remove an empty /etc/netns between the two mkdirs
            try:
                directory.mkdir(parents=True, exist_ok=True)
                break
            except FileNotFoundError:
                continue
        if directory not in self._etc_dirs:
            self._etc_dirs.append(directory)
        (directory / filename).write_text(text)

    # ----------------------------------------------------------------- teardown
    def close(self) -> None:
        """Stop every process, delete every namespace and /etc/netns entry; never raises."""
        for proc in reversed(self._processes):
            _stop_group(proc)
        for ns in reversed(self.namespaces):
            self._kill_leftovers(ns)
            _command(["ip", "netns", "del", ns.name], check=False)
        for directory in self._etc_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        if self._created_etc_root:
            try:
                NETNS_ETC_DIR.rmdir()  # only when empty: another run's entries stay
            except OSError:
                pass
        self.namespaces.clear()
        self._processes.clear()
        self._etc_dirs.clear()

    @staticmethod
    def _kill_leftovers(ns: Namespace) -> None:
        """Whatever still runs inside one of our namespaces was started by this Lab: kill it by PID."""
        done = _command(["ip", "netns", "pids", ns.name], check=False)
        for pid in (int(p) for p in done.stdout.split() if p.isdigit() and int(p) != os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.returncode is not None:
        return  # already stopped and reaped (e.g. by ProxyProcess.stop): its group id is no longer ours
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the leader may be gone while the group is still ours
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass


# ----------------------------------------------------------------------------- programs inside
def ns_curl(ns: Namespace, *args: str, timeout: float = 10) -> CurlResult:
    """`clients.curl`, run inside `ns` with ``ip netns exec`` (so its /etc/netns hosts file
    applies): ``-q -sS -g``, ``--max-time``, no ``*_proxy`` variables, the last response head as
    status and headers."""
    exe = shutil.which("curl")
    if exe is None:
        raise NetnsError("curl is not installed (scripts/system-deps installs it)")
    with tempfile.TemporaryDirectory(prefix="urlwarden-curl-") as tmp:
        head_file, body_file = Path(tmp, "headers"), Path(tmp, "body")
        argv = ns.exec_argv([exe, "-q", "-sS", "-g", "--max-time", str(timeout),
                             "-D", str(head_file), "-o", str(body_file), *args])
        try:
            done = _run_bounded(argv, timeout + CURL_GRACE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_no_proxy_env())
        except subprocess.TimeoutExpired:
            raise AssertionError(f"curl did not finish within {timeout + CURL_GRACE}s: {argv}") from None
        blocks = _parse_header_dump(head_file.read_bytes() if head_file.exists() else b"")
        body = body_file.read_bytes() if body_file.exists() else b""
    status, headers = blocks[-1] if blocks else (None, [])
    return CurlResult(status=status, headers=headers, body=body, exit_code=done.returncode,
                      stderr=done.stderr.decode("utf-8", "replace"), blocks=blocks)


def ns_curl_sha256(ns: Namespace, url: str, *args: str, timeout: float = 60) -> tuple[int, str]:
    """(bytes, SHA-256) of the body curl receives inside `ns`, hashed as it arrives (nothing of a
    large body is held); raises AssertionError with curl's message if curl fails."""
    argv = ns.exec_argv(["curl", "-q", "-sS", "--connect-timeout", "5", "--max-time", str(timeout),
                         *args, "-o", "-", url])
    digest, got = hashlib.sha256(), 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_no_proxy_env()) as curl:
        while chunk := curl.stdout.read(1 << 20):
            digest.update(chunk)
            got += len(chunk)
        err = curl.stderr.read().decode("utf-8", "replace")
    if curl.returncode != 0:
        raise AssertionError(f"curl exit {curl.returncode}: {err}")
    return got, digest.hexdigest()


class NetnsProxyProcess(ProxyProcess):
    """`ProxyProcess` run inside `ns` with ``ip netns exec``; ready once `listen_host`:`listen_port`
    accepts a connection made from inside that namespace. The Lab's teardown stops it too."""

    def __init__(self, ns: Namespace, argv: Sequence[str], listen_port: int, *, listen_host: str = "127.0.0.1",
                 **kwargs):
        super().__init__(ns.exec_argv(argv), listen_port, hosts=None, listen_host=listen_host, **kwargs)
        self.ns = ns

    def start(self) -> NetnsProxyProcess:
        super().start()
        self.ns.lab._processes.append(self._proc)
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ProxyStartError(f"proxy exited with {code} before listening in {self.ns.name}\n"
                                      f"argv: {self.argv}\n{self.output()}")
            try:
                self.ns.connect((self.listen_host, self.listen_port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise ProxyStartError(f"proxy not listening on {self.listen_host}:{self.listen_port} in "
                                      f"{self.ns.name} after {self.start_timeout}s\nargv: {self.argv}\n{self.output()}")
            time.sleep(CONNECT_POLL)


class NetnsOrigin(Origin):
    """The recording `Origin`, listening inside `ns` with fixed ports (default 80 and 443), served
    by the test process's own threads. The default `address` ``::`` takes IPv4 and IPv6 (one
    dual-stack socket per port). Besides the `Origin` records it keeps the peer address of every
    accepted connection (IPv4 peers as plain dotted quads): `peer_of(record)` tells whether a
    connection came from the gateway (the proxy) or straight from a client."""

    def __init__(self, pki: TestPKI, ns: Namespace, *, address: str = "::", http_port: int = 80,
                 https_port: int = 443, **kwargs):
        super().__init__(pki, **kwargs)
        self.ns = ns
        self.address = address
        self._ports = {"http": http_port, "https": https_port}
        self._peers: dict[tuple[str, int], str] = {}

    def start(self) -> NetnsOrigin:
        if self._listeners:
            return self
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        for kind, port in self._ports.items():
            lsock = self.ns.socket(family, socket.SOCK_STREAM)
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and self.address == "::":
                lsock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            lsock.bind((self.address, port))
            lsock.listen(128)
            lsock.setblocking(False)
            self._listeners[kind] = lsock
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"origin-accept-{self.ns.name}", daemon=True)
        self._acceptor.start()
        return self

    def _admit(self, kind: str, sock: socket.socket, peer) -> None:
        address = ipaddress.ip_address(peer[0])
        mapped = getattr(address, "ipv4_mapped", None)
        with self._lock:
            self._peers[(kind, peer[1])] = str(mapped or address)
        super()._admit(kind, sock, peer)

    def peer_of(self, record) -> str | None:
        """The client address of a `ConnectionRecord` (the gateway's address when proxied)."""
        with self._lock:
            return self._peers.get((record.kind, record.peer_port))

    def url(self, host: str = "127.0.0.1", path: str = "/", *, tls: bool = False) -> str:
        scheme, port, default = ("https", self._ports["https"], 443) if tls else ("http", self._ports["http"], 80)
        return f"{scheme}://{host}{'' if port == default else f':{port}'}{path}"
