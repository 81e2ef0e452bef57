"""`make install` / `make uninstall` into a throwaway DESTDIR, and the installed program run from there.

The virtualenv is built with the system's own python3 (/usr/bin/python3, as on Debian 12 and
Raspberry Pi OS; URLWARDEN_TEST_INSTALL_PYTHON overrides it). A virtualenv is not relocatable,
so the one staged in DESTDIR is built at DESTDIR/opt/urlwarden and run from there. The units are
checked with systemd-analyze verify, their program paths pointed into DESTDIR.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
PYTHON = os.environ.get("URLWARDEN_TEST_INSTALL_PYTHON", "/usr/bin/python3")
INSTALL_TIMEOUT = 600
UNITS = ("urlwarden.service", "urlwarden@.service", "urlwarden-workers.target")
LISTED = "http://listed.test/anything"  # whole-host entry of the sample list
UNLISTED = "http://unlisted.example/"


def make(target: str, destdir: Path, **variables: str) -> subprocess.CompletedProcess:
    argv = ["make", "--no-print-directory", "-C", str(ROOT), target, f"DESTDIR={destdir}",
            f"INSTALL_PYTHON={PYTHON}", *(f"{k}={v}" for k, v in variables.items())]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    if not os.access(PYTHON, os.X_OK):
        pytest.skip(f"no system python at {PYTHON}")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    destdir = tmp_path_factory.mktemp("destdir")
    done = make("install", destdir)
    return destdir, done.stderr


def run_installed(destdir: Path, *args: str) -> subprocess.CompletedProcess:
    # through the command on PATH: the relative symlink PREFIX/bin/urlwarden -> /opt/urlwarden/bin/urlwarden
    env = {"PATH": f"{destdir}/usr/local/bin:/usr/bin:/bin", "HOME": str(destdir / "var/lib/urlwarden"),
           "LANG": "C.UTF-8"}
    return subprocess.run([str(destdir / "usr/local/bin/urlwarden"), *args], capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL)


def test_the_layout(staged):
    destdir, log = staged
    link = destdir / "usr/local/bin/urlwarden"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == destdir / "opt/urlwarden/bin/urlwarden"
    venv_python = subprocess.run([str(destdir / "opt/urlwarden/bin/python"), "-c",
                                  "import sys; print(sys.base_prefix)"], capture_output=True, text=True, check=True)
    assert venv_python.stdout.strip() == subprocess.run(
        [PYTHON, "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True, check=True).stdout.strip()
    config = destdir / "etc/urlwarden/urlwarden.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert "state_dir: /var/lib/urlwarden" in config.read_text()
    assert (destdir / "var/lib/urlwarden").is_dir()
    for unit in UNITS:
        assert (destdir / "usr/local/lib/systemd/system" / unit).is_file()
    assert (destdir / "usr/local/lib/systemd/user/urlwarden.service").is_file()
    assert (destdir / "usr/local/share/doc/urlwarden/LICENSE").read_text().lstrip().startswith("Apache License")
    bash = (destdir / "usr/local/share/bash-completion/completions/urlwarden").read_text()
    zsh = (destdir / "usr/local/share/zsh/site-functions/_urlwarden").read_text()
    assert "complete" in bash and "config" in bash and "selftest" in bash
    assert zsh.startswith("#compdef urlwarden") and "selftest" in zsh
    # DESTDIR: nothing outside it was touched, what would have been is said
    assert "would run (DESTDIR set): useradd --system" in log
    assert "would run (DESTDIR set): systemctl daemon-reload && systemctl enable --now urlwarden.service" in log


def test_the_installed_program_runs_and_blocks_the_sample_list(staged):
    destdir, _ = staged
    version = run_installed(destdir, "--version")
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"urlwarden \S+ \(mitmproxy 1\d\.\S+, Python 3\.\d+\.\d+\)\n", version.stdout), version.stdout
    config = str(destdir / "etc/urlwarden/urlwarden.yaml")
    checked = run_installed(destdir, "config", "check", "--config", config)
    assert checked.returncode == 0, checked.stderr
    decided = run_installed(destdir, "check", "--config", config, LISTED, UNLISTED)
    assert decided.returncode == 1, decided.stdout + decided.stderr
    lines = decided.stdout.splitlines()
    assert lines[0].startswith(f"BLOCK {LISTED} list=sample-block "), decided.stdout
    assert lines[1] == f"ALLOW {UNLISTED}"


def test_systemd_accepts_the_installed_units(staged, tmp_path):
    """systemd-analyze verify on the installed units, their program paths pointed into DESTDIR
    (it checks that ExecStart names an executable), and every Documentation= target installed."""
    destdir, _ = staged
    unit_dir = destdir / "usr/local/lib/systemd/system"
    for path in [*unit_dir.iterdir(), destdir / "usr/local/lib/systemd/user/urlwarden.service"]:
        for doc in re.findall(r"^Documentation=file:(\S+)", path.read_text(), re.MULTILINE):
            assert (destdir / doc.lstrip("/")).is_file(), f"{path.name}: {doc} is not installed"
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt package systemd)")
    program = re.compile(r"(?<=[= ])(/usr/local/bin/urlwarden|/opt/urlwarden/bin/mitmdump)\b")
    for path in unit_dir.iterdir():
        (tmp_path / path.name).write_text(program.sub(lambda m: f"{destdir}{m[1]}", path.read_text()))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    argv = [analyze, "verify", "--man=no", str(tmp_path / "urlwarden.service"),
            str(tmp_path / "urlwarden@01.service"), str(tmp_path / "urlwarden-workers.target")]
    (tmp_path / "urlwarden@01.service").symlink_to(tmp_path / "urlwarden@.service")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    if done.returncode != 0 and "Failed to initialize manager" in done.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_upgrade_keeps_the_configuration_then_uninstall_and_purge(staged):
    destdir, _ = staged
    config = destdir / "etc/urlwarden/urlwarden.yaml"
    config.write_text(config.read_text().replace("listen: 127.0.0.1:8080", "listen: 127.0.0.1:8181"))
    upgraded = make("install", destdir)
    assert "kept /etc/urlwarden/urlwarden.yaml" in upgraded.stderr
    assert "listen: 127.0.0.1:8181" in config.read_text()
    assert run_installed(destdir, "--version").returncode == 0

    (destdir / "var/lib/urlwarden/.mitmproxy").mkdir()  # the CA devices trust: kept without PURGE
    removed = make("uninstall", destdir)
    assert "kept /etc/urlwarden" in removed.stderr
    for gone in ("opt/urlwarden", "usr/local/bin/urlwarden", "usr/local/lib/systemd/system/urlwarden.service",
                 "usr/local/share/doc/urlwarden", "usr/local/share/zsh/site-functions/_urlwarden"):
        assert not (destdir / gone).exists() and not (destdir / gone).is_symlink(), gone
    assert config.is_file() and (destdir / "var/lib/urlwarden/.mitmproxy").is_dir()

    purged = make("uninstall", destdir, PURGE="1")
    assert "would run (DESTDIR set): userdel urlwarden" in purged.stderr
    assert not (destdir / "etc/urlwarden").exists() and not (destdir / "var/lib/urlwarden").exists()
