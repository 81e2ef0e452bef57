"""The shipped HAProxy configuration (contrib/haproxy/haproxy.cfg), templated for loopback tests.

Usage::

    text = render_haproxy_config(HAPROXY_CONFIG.read_text(), frontend_port, [worker1, worker2])
    cfg = tmp_path / "haproxy.cfg"; cfg.write_text(text)
    with ProxyProcess(haproxy_argv(cfg), frontend_port, workdir=tmp_path / "haproxy"):
        ...curl(url, proxy=frontend_port)...

`render_haproxy_config` changes only what a test must change and leaves every other line of
the shipped file as it is (balance, health checks, timeouts, retries, the client ACL):

* the frontend's ``bind`` line becomes ``bind 127.0.0.1:<frontend_port>`` (never all addresses);
* the backend's ``server`` lines become one line per given port, ``server wNN 127.0.0.1:<port>``
  (the ports of the `urlwarden run` workers);
* ``log /dev/log`` is dropped when there is no /dev/log (a container without syslog), and
  ``chroot``/``user``/``group`` when not running as root (HAProxy could not apply them).

It raises ValueError when the file no longer has exactly one bind line in ``frontend
urlwarden`` and at least one server line in ``backend urlwarden_workers``, so a change to the
shipped file's shape fails the test loudly instead of testing something else.

`haproxy_unavailable_reason()` says why HAProxy cannot run here (None when it can);
`haproxy_argv(cfg)` runs it in the foreground (``-db``), which ProxyProcess then stops by its
own process group.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "HAPROXY_CONFIG",
    "haproxy_argv",
    "haproxy_unavailable_reason",
    "render_haproxy_config",
]

HAPROXY_CONFIG = Path(__file__).resolve().parents[2] / "contrib" / "haproxy" / "haproxy.cfg"
FRONTEND = "frontend urlwarden"
BACKEND = "backend urlwarden_workers"

_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen|resolvers|peers|userlist|program)\b")
_BIND = re.compile(r"^(\s+)bind\s")
_SERVER = re.compile(r"^(\s+)server\s+\S+\s+\S+(.*)$")
_PRIVILEGED = re.compile(r"^\s+(chroot|user|group)\s")
_DEVLOG = re.compile(r"^\s+log\s+/dev/log\s")


def _haproxy() -> str | None:
    found = shutil.which("haproxy")
    if found is None and os.access("/usr/sbin/haproxy", os.X_OK):  # /usr/sbin is not on every PATH
        found = "/usr/sbin/haproxy"
    return found


def haproxy_unavailable_reason() -> str | None:
    if _haproxy() is None:
        return "haproxy is not installed (scripts/system-deps installs it: apt-get install haproxy)"
    return None


def haproxy_argv(config: str | os.PathLike[str]) -> list[str]:
    """HAProxy in the foreground (-db) with this configuration file."""
    return [_haproxy() or "haproxy", "-db", "-f", str(config)]


def render_haproxy_config(text: str, frontend_port: int, backend_ports: Sequence[int],
                          *, host: str = "127.0.0.1") -> str:
    """The shipped configuration with a loopback frontend on `frontend_port` and one server
    per port in `backend_ports` (see the module docstring)."""
    if not backend_ports:
        raise ValueError("at least one backend port")
    out: list[str] = []
    section = ""
    binds = servers = 0
    for line in text.splitlines():
        if _SECTION.match(line):
            section = line.split("#")[0].strip()
        elif section == FRONTEND and _BIND.match(line):
            binds += 1
            line = f"{_BIND.match(line).group(1)}bind {host}:{frontend_port}"
        elif section == BACKEND and _SERVER.match(line):
            indent, options = _SERVER.match(line).groups()
            servers += 1
            if servers > 1:
                continue  # the first server line stands for all of them
            out += [f"{indent}server w{i:02d} {host}:{port}{options}" for i, port in enumerate(backend_ports, 1)]
            continue
        elif section == "global" and _PRIVILEGED.match(line) and os.geteuid() != 0:
            continue
        elif section == "global" and _DEVLOG.match(line) and not os.path.exists("/dev/log"):
            continue
        out.append(line)
    if binds != 1 or servers < 1:
        raise ValueError(f"{HAPROXY_CONFIG.name}: expected one bind line in '{FRONTEND}' and server lines "
                         f"in '{BACKEND}', found {binds} and {servers}")
    return "\n".join(out) + "\n"
