"""Loads lists and builds snapshots in a short-lived child process, never in the proxy's own.

Why: parsing and compiling a million-entry list is seconds of CPU, much of it in long C calls
(sorts, passes over arrays) that hold the GIL throughout. Run in a thread of the proxy, every
such call stalled every request for its whole length (up to a second and more). In a child
process it stalls nothing: the child gets the inputs and hands the result back through
`urlwarden.core.snapfile` (buffers mapped, not copied), and the proxy swaps it in with one
assignment. The child runs at a lower priority (`CHILD_NICENESS`) so that the proxy and its
clients keep the CPU they need while it works.

Usage (blocking; the addon calls it through ``asyncio.to_thread``)::

    offloader = Offloader()
    state = offloader.run("load_state", config, feed_lists)   # or another of JOBS
    offloader.stop()                                           # at shutdown: kills a running child

Errors: a job's own `UrlwardenError` (a bad list) is raised here as it was raised in the child.
A child that dies (out of memory, killed) raises `ListError`. When no child process can be
started at all (no Python interpreter at ``sys.executable``, as in a frozen build), the job runs
in the calling thread instead, with a warning logged once: slower to swap, still correct.

The child: ``python -m urlwarden.runtime.offload REQUEST REPLY`` (private files in a 0700 directory
that is removed as soon as the reply is mapped).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import urlwarden
from urlwarden.core import snapfile
from urlwarden.errors import ListError, UrlwardenError

log = logging.getLogger("urlwarden")

__all__ = ["CHILD_NICENESS", "GIL_SWITCH_INTERVAL", "JOBS", "Offloader", "run_job", "shorten_gil_switch_interval"]

CHILD_NICENESS = 10
"""Added to the child's nice value: the proxy keeps serving at full priority while it builds."""



def _nice_prefix() -> tuple[str, ...]:
    nice = shutil.which("nice")
    return (nice, "-n", str(CHILD_NICENESS)) if nice else ()


_NICE = _nice_prefix()
"""The child starts through nice(1) where there is one, so that even its start-up (interpreter and
imports, a few hundred ms of CPU) yields to the proxy; otherwise `main` lowers its priority."""
_CANNOT_EXECUTE = (126, 127)  # nice(1)'s exit status when the interpreter is missing or not executable

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(urlwarden.__file__)))

PARENT_CHECK_SECONDS = 1.0
"""How often a child checks that the proxy that started it still runs (it exits if not)."""


GIL_SWITCH_INTERVAL = 0.0005
"""Seconds a thread may keep the GIL while another waits for it (CPython's default: 0.005)."""


def shorten_gil_switch_interval() -> None:
    """Let a latency-sensitive thread (the proxy's event loop, the Squid helper's answering loop)
    wait at most `GIL_SWITCH_INTERVAL` for the GIL.

    Background threads (a reload reading its configuration and starting the builder, a feed
    download, the admin listener) take the GIL whenever the event loop gives it up for I/O, and
    keep it for up to the switch interval; at CPython's default of 5 ms a request that needs the
    GIL a few times waited 20-30 ms during a reload. It only matters while another thread has
    Python work to do.
    """
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))


def _jobs() -> dict:
    from urlwarden.runtime import engine  # imported here: `engine` pulls in the feeds package, needless for `snapfile`
    from urlwarden.feeds import manager

    return {"load_state": engine.load_state, "rebuild": engine.rebuild, "feed_update": manager.examine}


JOBS = ("load_state", "rebuild", "feed_update")
"""What a child can be asked to run: `engine.load_state`, `engine.rebuild` and
`feeds.manager.examine` (a fetched feed payload's verification, parse, validation and
last-known-good save; the fetch itself stays in the proxy, which has the adapters)."""


def run_job(job: str, *args: Any) -> Any:
    """Run a job here, in this process (what the child does, and the fallback)."""
    if job not in JOBS:
        raise ValueError(f"unknown offload job {job!r}")
    return _jobs()[job](*args)


class Offloader:
    """Runs jobs in child processes, one at a time per call; `stop` kills any still running."""

    def __init__(self) -> None:
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopped = False
        self._fallback_reported = False

    def run(self, job: str, *args: Any) -> Any:
        if job not in JOBS:
            raise ValueError(f"unknown offload job {job!r}")
        workdir = tempfile.mkdtemp(prefix="urlwarden-build-")  # mode 0700
        try:
            request, reply = os.path.join(workdir, "request"), os.path.join(workdir, "reply")
            try:
                snapfile.dump((job, args), request)
            except OSError as exc:
                raise ListError(f"cannot hand the lists to the list builder process: {exc}") from None
            child = self._start(request, reply)
            if child is None:
                return run_job(job, *args)
            try:
                _, stderr = child.communicate()
            finally:
                with self._lock:
                    self._children.discard(child)
            if _NICE and child.returncode in _CANNOT_EXECUTE and not os.path.exists(reply):
                self._report_fallback(_last_line(stderr))
                return run_job(job, *args)
            if child.returncode != 0 or not os.path.exists(reply):
                raise ListError(f"the list builder process failed ({_describe_exit(child.returncode)}): "
                                f"{_last_line(stderr)}")
            outcome, value = snapfile.load(reply)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if outcome == "error":
            raise value
        return value

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            children = list(self._children)
        for child in children:
            if child.poll() is None:
                child.kill()  # only the children this object started, by their own handle

    def _start(self, request: str, reply: str) -> subprocess.Popen | None:
        # This package's own directory first: under `mitmdump -s addons/urlwarden.py` the script's
        # directory is on sys.path, and its urlwarden.py would shadow the package in the child.
        path = [_PACKAGE_PARENT, *(p for p in sys.path if p and p != _PACKAGE_PARENT)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        with self._lock:
            if self._stopped:
                raise ListError("shutting down: the list builder is stopped")
            try:
                child = subprocess.Popen(
                    [*_NICE, sys.executable, "-m", "urlwarden.runtime.offload", request, reply, str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                )
            except OSError as exc:
                self._report_fallback(str(exc))
                return None
            self._children.add(child)
            return child

    def _report_fallback(self, reason: str) -> None:
        if not self._fallback_reported:
            self._fallback_reported = True
            log.warning("cannot start a list builder process (%s); lists are built in the proxy "
                        "process, which stalls requests while a large list is swapped in", reason)


def _describe_exit(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:500] if lines else "no message"


def _exit_with_parent(parent: int) -> None:
    """Exit when the proxy that started this child is gone (its work would be wasted)."""
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(3)


def main(argv: list[str]) -> int:
    request, reply, parent = argv
    threading.Thread(target=_exit_with_parent, args=(int(parent),), daemon=True).start()
    if not _NICE:
        try:
            os.nice(CHILD_NICENESS)
        except OSError:
            pass
    job, args = snapfile.load(request)
    try:
        outcome = ("ok", run_job(job, *args))
    except UrlwardenError as exc:
        outcome = ("error", exc)
    snapfile.dump(outcome, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
