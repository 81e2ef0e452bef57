"""A process's resident memory, read from /proc, for tests that bound what a proxy holds.

    with PeakRss(proxy.pid) as rss:
        ...move a large body through the proxy...
    assert rss.growth_kb < 150 * 1024

`PeakRss` samples VmRSS in a thread while the `with` block runs (and once at each end); `idle` is
the figure at entry. Linux only.
"""

from __future__ import annotations

import threading
from pathlib import Path

__all__ = ["PeakRss", "rss_kb"]

SAMPLE_INTERVAL = 0.05  # seconds between samples


def rss_kb(pid: int) -> int:
    """VmRSS of `pid`, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for pid {pid}")


class PeakRss:
    """Samples a process's resident memory while the `with` block runs."""

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL):
        self.pid, self.interval = pid, interval
        self.idle = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except (OSError, LookupError):  # the process ended: the test's own assertions say why
                return

    def __enter__(self) -> PeakRss:
        self.idle = self.peak = rss_kb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            self.peak = max(self.peak, rss_kb(self.pid))
        except (OSError, LookupError):
            pass

    @property
    def growth_kb(self) -> int:
        return self.peak - self.idle

    def describe(self) -> str:
        return f"from {self.idle} kB to {self.peak} kB"
