"""Progress lines while a restore or a backup runs: files, bytes, rate and ETA at a steady
interval.

A restore or a first backup of a large volume can take many minutes; without a line every
few seconds an operator watching `kubectl logs` cannot tell a slow run from a hung one. The
engine calls `advance` often (per chunk), possibly from several threads; a line is logged at
most once per interval, so the cost per call is a lock and a clock read. A backup's totals
are the previous snapshot's (the best guess of this one's); without one they are unknown
(0), and so are the percentage and the ETA.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


class LogProgress:
    """A `restore.model.Progress` that logs `event` lines every `interval_seconds`."""

    def __init__(
        self,
        log: Any,
        *,
        interval_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        event: str = "restore.progress",
    ) -> None:
        self.log = log
        self.event = event
        self.interval = interval_seconds
        self.monotonic = monotonic
        self.files_total = 0
        self.bytes_total = 0
        self.files = 0
        self.bytes = 0
        self.started = monotonic()
        self.last_line = self.started
        self.lock = threading.Lock()

    def start(self, *, files: int, bytes: int) -> None:
        with self.lock:
            self.files_total = files
            self.bytes_total = bytes
            self.files = 0
            self.bytes = 0
            self.started = self.last_line = self.monotonic()

    def advance(self, *, files: int = 0, bytes: int = 0) -> None:
        with self.lock:
            self.files += files
            self.bytes += bytes
            now = self.monotonic()
            if now - self.last_line < self.interval:
                return
            self.last_line = now
            self.log.info(self.event, **self.figures(now))

    def figures(self, now: float) -> dict[str, Any]:
        """Return the counters, rate (bytes/s) and ETA (s, None while unknown) at `now`."""
        elapsed = max(now - self.started, 1e-9)
        rate = self.bytes / elapsed
        left = max(self.bytes_total - self.bytes, 0)
        known = self.bytes_total > 0
        eta = round(left / rate, 1) if rate > 0 and known else None
        percent = round(min(100.0 * self.bytes / self.bytes_total, 100.0), 1) if known else None
        return {
            "files": self.files,
            "files_total": self.files_total,
            "bytes": self.bytes,
            "bytes_total": self.bytes_total,
            "percent": percent,
            "rate_bytes_per_second": round(rate),
            "elapsed_seconds": round(elapsed, 1),
            "eta_seconds": eta,
        }
