"""Prometheus metrics, registered on an injected registry (tests use a fresh one each).

Every job's series exist from start-up with value 0, so an alert like "no successful
backup for 2h" can fire before the first run, and `rate()` has a starting point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import get_args

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from restore.initcontainer.outcome import Outcome, OutcomeKind, read_result, result_path
from restore.model import BackupStats

RESULTS = ("success", "failure", "skipped_overlap", "refused")
FILE_STATES = ("new", "changed", "unchanged")
BYTE_KINDS = ("total", "read", "stored")
OUTCOMES: tuple[str, ...] = get_args(OutcomeKind)
# From a quick verify to a first full backup of a large volume over a slow link.
DURATION_BUCKETS = (0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)


@dataclasses.dataclass(frozen=True)
class JobLabels:
    name: str
    kind: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Metrics:
    registry: CollectorRegistry
    job_runs: Counter
    job_duration: Histogram
    last_success: Gauge
    last_failure: Gauge
    next_run: Gauge
    running: Gauge
    backup_files: Gauge
    backup_bytes: Gauge
    snapshots: Gauge
    restore_outcome: Gauge
    restore_duration: Gauge
    restore_files: Gauge
    restore_bytes: Gauge
    restore_timestamp: Gauge
    restore_exit_code: Gauge
    build_info: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, jobs: Sequence[JobLabels], *, version: str) -> Metrics:
        """Register every caretaker metric on `registry` and create each job's series."""
        metrics = _register(registry)
        metrics.build_info.labels(version=version).set(1)
        for job in jobs:
            _create_job_series(metrics, job)
        metrics.set_restore(None)
        return metrics

    def run_finished(self, job: JobLabels, result: str, *, seconds: float, at: datetime) -> None:
        """Count a finished run (success, failure or refused) and its duration."""
        self.job_runs.labels(job=job.name, kind=job.kind, result=result).inc()
        self.job_duration.labels(job=job.name, kind=job.kind).observe(seconds)
        stamp = self.last_success if result == "success" else self.last_failure
        stamp.labels(job=job.name).set(at.timestamp())

    def run_skipped(self, job: JobLabels) -> None:
        self.job_runs.labels(job=job.name, kind=job.kind, result="skipped_overlap").inc()

    def set_running(self, job: str, *, running: bool) -> None:
        self.running.labels(job=job).set(1 if running else 0)

    def set_next_run(self, job: str, at: datetime | None) -> None:
        self.next_run.labels(job=job).set(at.timestamp() if at else 0)

    def backup_stats(self, job: str, stats: BackupStats) -> None:
        files = {"new": stats.files_new, "changed": stats.files_changed, "unchanged": stats.files_unchanged}
        for state, count in files.items():
            self.backup_files.labels(job=job, state=state).set(count)
        sizes = {"total": stats.bytes_total, "read": stats.bytes_read, "stored": stats.bytes_stored}
        for kind, size in sizes.items():
            self.backup_bytes.labels(job=job, kind=kind).set(size)

    def set_restore(self, outcome: Outcome | None) -> None:
        """Export the init container's last restore outcome (all zero when there is none)."""
        for kind in OUTCOMES:
            recorded = outcome is not None and outcome.outcome == kind
            self.restore_outcome.labels(outcome=kind).set(1 if recorded else 0)
        self.restore_duration.set(outcome.duration_seconds if outcome else 0)
        self.restore_files.set(outcome.files if outcome else 0)
        self.restore_bytes.set(outcome.bytes if outcome else 0)
        self.restore_timestamp.set(outcome.finished_at.timestamp() if outcome else 0)
        self.restore_exit_code.set(outcome.exit_code if outcome else 0)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _create_job_series(metrics: Metrics, job: JobLabels) -> None:
    for result in RESULTS:
        metrics.job_runs.labels(job=job.name, kind=job.kind, result=result)
    metrics.job_duration.labels(job=job.name, kind=job.kind)
    for gauge in (metrics.last_success, metrics.last_failure, metrics.next_run, metrics.running):
        gauge.labels(job=job.name)
    if job.kind == "backup":
        for state in FILE_STATES:
            metrics.backup_files.labels(job=job.name, state=state)
        for kind in BYTE_KINDS:
            metrics.backup_bytes.labels(job=job.name, kind=kind)


class RestoreResultExport:
    """Keeps the caretaker_restore_* gauges in step with the result file on the volume.

    The init container writes it before the sidecar starts, but a native sidecar may start
    first, so the file is re-read (only when it changed) on every scrape.
    """

    def __init__(self, metrics: Metrics, data_path: Path) -> None:
        self._metrics = metrics
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
        self._metrics.set_restore(self.outcome)


def _register(registry: CollectorRegistry) -> Metrics:
    job, job_kind = ("job",), ("job", "kind")
    return Metrics(
        registry=registry,
        job_runs=Counter(
            "caretaker_job_runs_total", "Job runs by result.", (*job_kind, "result"), registry=registry
        ),
        job_duration=Histogram(
            "caretaker_job_duration_seconds",
            "Duration of job runs.",
            job_kind,
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        last_success=Gauge(
            "caretaker_job_last_success_timestamp_seconds",
            "End of the last successful run (Unix time).",
            job,
            registry=registry,
        ),
        last_failure=Gauge(
            "caretaker_job_last_failure_timestamp_seconds",
            "End of the last failed or refused run (Unix time).",
            job,
            registry=registry,
        ),
        next_run=Gauge(
            "caretaker_job_next_run_timestamp_seconds",
            "Next scheduled run (Unix time; 0 if none).",
            job,
            registry=registry,
        ),
        running=Gauge("caretaker_job_running", "1 while the job runs.", job, registry=registry),
        backup_files=Gauge(
            "caretaker_backup_files",
            "Files in the last backup by state.",
            ("job", "state"),
            registry=registry,
        ),
        backup_bytes=Gauge(
            "caretaker_backup_bytes",
            "Bytes of the last backup: total, read from disk, stored new.",
            job_kind,
            registry=registry,
        ),
        snapshots=Gauge("caretaker_repository_snapshots", "Snapshots in the repository.", registry=registry),
        restore_outcome=Gauge(
            "caretaker_restore_outcome",
            "1 for the init container's recorded restore outcome.",
            ("outcome",),
            registry=registry,
        ),
        restore_duration=Gauge(
            "caretaker_restore_duration_seconds", "Duration of the recorded restore.", registry=registry
        ),
        restore_files=Gauge("caretaker_restore_files", "Files restored.", registry=registry),
        restore_bytes=Gauge("caretaker_restore_bytes", "Bytes restored.", registry=registry),
        restore_timestamp=Gauge(
            "caretaker_restore_timestamp_seconds",
            "When the recorded restore finished (Unix time).",
            registry=registry,
        ),
        restore_exit_code=Gauge(
            "caretaker_restore_exit_code", "Exit code of the recorded restore.", registry=registry
        ),
        build_info=Gauge(
            "caretaker_build_info", "caretaker version (always 1).", ("version",), registry=registry
        ),
    )
