"""The init container's restore outcome as Prometheus series (`caretaker_restore_*`).

The init container writes its outcome to a result file on the volume before the sidecar
starts, but a native sidecar may start first, so the file is re-read (only when it
changed) on every scrape.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import get_args

import structlog
from prometheus_client import CollectorRegistry, Gauge

from restore.initcontainer.outcome import Outcome, OutcomeKind, read_result, result_path

OUTCOMES: tuple[str, ...] = get_args(OutcomeKind)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RestoreGauges:
    outcome: Gauge
    duration: Gauge
    files: Gauge
    bytes: Gauge
    timestamp: Gauge
    exit_code: Gauge
    snapshot_age: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> RestoreGauges:
        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"caretaker_restore_{name}", text, labels, registry=registry)

        gauges = cls(
            outcome=gauge("outcome", "1 for the init container's recorded restore outcome.", ("outcome",)),
            duration=gauge("duration_seconds", "Duration of the recorded restore."),
            files=gauge("files", "Files restored."),
            bytes=gauge("bytes", "Bytes restored."),
            timestamp=gauge("timestamp_seconds", "When the recorded restore finished (Unix time)."),
            exit_code=gauge("exit_code", "Exit code of the recorded restore."),
            snapshot_age=gauge(
                "snapshot_age_seconds",
                "Age of the restored snapshot when the recorded restore finished (0 if none).",
            ),
        )
        gauges.set(None)
        return gauges

    def set(self, outcome: Outcome | None) -> None:
        """Export the recorded outcome (all zero when there is none)."""
        for kind in OUTCOMES:
            recorded = outcome is not None and outcome.outcome == kind
            self.outcome.labels(outcome=kind).set(1 if recorded else 0)
        self.duration.set(outcome.duration_seconds if outcome else 0)
        self.files.set(outcome.files if outcome else 0)
        self.bytes.set(outcome.bytes if outcome else 0)
        self.timestamp.set(outcome.finished_at.timestamp() if outcome else 0)
        self.exit_code.set(outcome.exit_code if outcome else 0)
        age = outcome.snapshot_age_seconds if outcome else None
        self.snapshot_age.set(age or 0)


class RestoreResultExport:
    """Keeps the caretaker_restore_* gauges in step with the result file on the volume."""

    def __init__(self, gauges: RestoreGauges, data_path: Path) -> None:
        self._gauges = gauges
        self._data_path = data_path
        self._seen: tuple[int, int] | None = None
        self.outcome: Outcome | None = None

    def refresh(self) -> None:
        try:
            info = result_path(self._data_path).lstat()  # read_result refuses a link; no need to follow
            stamp: tuple[int, int] | None = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = None
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            self.outcome = read_result(self._data_path) if stamp else None
        except (OSError, ValueError) as error:
            structlog.get_logger().warning("restore_result.unreadable", error=str(error))
            self.outcome = None
        self._gauges.set(self.outcome)
