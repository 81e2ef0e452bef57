"""End to end: the proxy listens where the configuration says, also under plain mitmdump.

A real ``mitmdump -s addons/urlwarden.py`` (and ``urlwarden run``) process: the sockets it
listens on are read with ``ss -ltnp`` for its PID, and other local addresses on the same port
must refuse connections. Listen options wider than the configuration's ``listen`` stop start-up
with one line, before anything is bound (docs/configuration.md, urlwarden.frontends.proxy.listenscope).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clients import curl
from tests.support.proxyproc import MITMDUMP, ProxyProcess, free_port

pytestmark = pytest.mark.e2e

URLWARDEN = str(Path(sys.executable).with_name("urlwarden"))
ADDON_SCRIPT = str(Path(__file__).resolve().parents[1] / "addons" / "urlwarden.py")
REFUSAL_TIMEOUT = 60.0


def write_config(directory: Path, listen: str) -> Path:
    (directory / "block.txt").write_text("listed.test/\n")
    config = directory / "urlwarden.yaml"
    config.write_text(f"listen: {listen}\nlists:\n  - name: hotline\n    path: block.txt\n")
    return config


def mitmdump_argv(config: Path, confdir: Path, *extra: str) -> list[str]:
    return [MITMDUMP, "-s", ADDON_SCRIPT, "--set", f"urlwarden_config={config}", "--set", f"confdir={confdir}", *extra]


def listening(pid: int) -> set[str]:
    """The TCP addresses `pid` listens on, as ss prints them (``127.0.0.1:8080``, ``[::]:8080``)."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed; scripts/system-deps installs it")
    done = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, timeout=30, check=True)
    return {line.split()[3] for line in done.stdout.splitlines() if f"pid={pid}," in line}


def refuses(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect((host, port))
        except ConnectionRefusedError:
            return True
        except OSError as exc:  # e.g. no IPv6 on this machine: nothing listens there either
            return exc.errno is not None
    return False


def test_plain_mitmdump_listens_only_on_the_configured_address(tmp_path, fresh_origin):
    port = free_port()
    config = write_config(tmp_path, f"127.0.0.1:{port}")
    argv = mitmdump_argv(config, tmp_path / "conf")  # no listen option: mitmproxy's default is every address
    with ProxyProcess(argv, port, hosts={"listed.test": "127.0.0.1"}, workdir=tmp_path) as proxy:
        assert listening(proxy.pid) == {f"127.0.0.1:{port}"}
        assert refuses("127.0.0.2", port)
        assert refuses("::1", port)
        assert curl(f"http://listed.test:{fresh_origin.http_port}/", proxy=port).status == 451
        fresh_origin.wait_idle()
        assert fresh_origin.connections == []


def test_explicit_options_no_wider_than_the_configuration_are_kept(tmp_path):
    port, config_port = free_port(), free_port()
    config = write_config(tmp_path, f"127.0.0.1:{config_port}")
    argv = mitmdump_argv(config, tmp_path / "conf", "--listen-host", "127.0.0.2", "--listen-port", str(port))
    with ProxyProcess(argv, port, listen_host="127.0.0.2", workdir=tmp_path) as proxy:
        assert listening(proxy.pid) == {f"127.0.0.2:{port}"}  # loopback is never wider
        assert refuses("127.0.0.1", port)


@pytest.mark.parametrize(("program", "extra", "message"), [
    ("mitmdump", ["--listen-host", "0.0.0.0"], "urlwarden: listen_host 0.0.0.0 is wider than listen 127.0.0.1:{port}"),
    ("mitmdump", ["--set", "listen_host=::"], "urlwarden: listen_host :: is wider than listen 127.0.0.1:{port}"),
    ("mitmdump", ["--mode", "regular@0.0.0.0:{port}"], "urlwarden: mode regular@0.0.0.0:{port} listens on 0.0.0.0"),
    ("urlwarden", ["--listen-host", "0.0.0.0"], "urlwarden: listen_host 0.0.0.0 is wider than listen 127.0.0.1:{port}"),
])
def test_wider_listen_options_stop_start_up_before_binding(tmp_path, program, extra, message):
    port = free_port()
    config = write_config(tmp_path, f"127.0.0.1:{port}")
    extra = [arg.format(port=port) for arg in extra]
    if program == "mitmdump":
        argv = mitmdump_argv(config, tmp_path / "conf", *extra)
    else:
        argv = [URLWARDEN, "run", "--config", str(config), "--", "--set", f"confdir={tmp_path / 'conf'}", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=REFUSAL_TIMEOUT, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    lines = [line for line in output.splitlines() if "urlwarden: " in line]
    assert len(lines) == 1 and message.format(port=port) in lines[0], output
    assert "listening on" not in output


def test_a_bad_configuration_under_plain_mitmdump_stops_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lists:\n  - path: nope.txt\n    status: 200\n")
    argv = mitmdump_argv(bad, tmp_path / "conf", "--listen-host", "127.0.0.1", "--listen-port", str(free_port()))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=REFUSAL_TIMEOUT, stdin=subprocess.DEVNULL)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    lines = [line for line in output.splitlines() if "urlwarden: " in line]
    assert len(lines) == 1 and "lists[0].status: must be an integer from 400 to 599" in lines[0], output
    assert "Traceback" not in output
