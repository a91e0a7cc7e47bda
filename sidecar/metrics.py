"""Prometheus metrics, registered on an injected registry (tests use a fresh one each).

Every job's series exist from start-up with value 0, so an alert like "no successful
backup for 2h" can fire before the first run, and `rate()` has a starting point.

Label names: a job is `task` (Prometheus gives every scraped series its own `job`, the
scrape job, so a label of ours by that name would need `honor_labels`), its kind is `kind`
(backup, prune, verify, command, http); each label name means one thing on every metric.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from restore.model import BackupStats
from sidecar.repositorymetrics import RepositoryGauges
from sidecar.restoremetrics import RestoreGauges

RESULTS = ("success", "failure", "skipped_overlap", "refused", "standby")
FILE_STATES = ("new", "changed", "unchanged")
# From a quick verify to a first full backup of a large volume over a slow link.
DURATION_BUCKETS = (0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)
TASK = ("task", "kind")


@dataclasses.dataclass(frozen=True)
class JobLabels:
    name: str
    kind: str

    def labels(self) -> dict[str, str]:
        return {"task": self.name, "kind": self.kind}


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackupGauges:
    files: Gauge
    source_bytes: Gauge
    read_bytes: Gauge
    stored_bytes: Gauge
    unchanged: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry) -> BackupGauges:
        def gauge(name: str, text: str, labels: tuple[str, ...] = TASK) -> Gauge:
            return Gauge(f"caretaker_backup_{name}", text, labels, registry=registry)

        return cls(
            files=gauge("files", "Files in the last backup by state.", (*TASK, "state")),
            source_bytes=gauge("source_bytes", "Bytes in the data folder at the last backup."),
            read_bytes=gauge("read_bytes", "Bytes the last backup read from disk (new or changed files)."),
            stored_bytes=gauge("stored_bytes", "Bytes the last backup added to the repository (compressed)."),
            unchanged=Counter(
                "caretaker_backup_unchanged_total",
                "Backup runs that recorded no snapshot because nothing changed (skip_unchanged).",
                TASK,
                registry=registry,
            ),
        )

    def create(self, job: JobLabels) -> None:
        for state in FILE_STATES:
            self.files.labels(**job.labels(), state=state)
        for metric in (self.source_bytes, self.read_bytes, self.stored_bytes, self.unchanged):
            metric.labels(**job.labels())

    def record(self, job: JobLabels, stats: BackupStats, *, recorded: bool) -> None:
        files = {"new": stats.files_new, "changed": stats.files_changed, "unchanged": stats.files_unchanged}
        for state, count in files.items():
            self.files.labels(**job.labels(), state=state).set(count)
        self.source_bytes.labels(**job.labels()).set(stats.bytes_total)
        self.read_bytes.labels(**job.labels()).set(stats.bytes_read)
        self.stored_bytes.labels(**job.labels()).set(stats.bytes_stored)
        if not recorded:
            self.unchanged.labels(**job.labels()).inc()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Metrics:
    registry: CollectorRegistry
    job_runs: Counter
    job_duration: Histogram
    last_success: Gauge
    last_failure: Gauge
    next_run: Gauge
    running: Gauge
    backup: BackupGauges
    repository: RepositoryGauges
    restore: RestoreGauges
    rpo: Gauge
    standby: Gauge
    build_info: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, jobs: Sequence[JobLabels], *, version: str) -> Metrics:
        """Register every caretaker metric on `registry` and create each job's series."""
        metrics = _register(registry)
        metrics.build_info.labels(version=version).set(1)
        for job in jobs:
            _create_job_series(metrics, job)
        metrics.set_standby(None)
        return metrics

    def run_finished(self, job: JobLabels, result: str, *, seconds: float, at: datetime) -> None:
        """Count a finished run (success, failure or refused) and its duration."""
        self.job_runs.labels(**job.labels(), result=result).inc()
        self.job_duration.labels(**job.labels()).observe(seconds)
        stamp = self.last_success if result == "success" else self.last_failure
        stamp.labels(**job.labels()).set(at.timestamp())

    def run_skipped(self, job: JobLabels, result: str = "skipped_overlap") -> None:
        """Count a run that did not start: skipped_overlap, or standby."""
        self.job_runs.labels(**job.labels(), result=result).inc()

    def set_standby(self, holder: str | None) -> None:
        """1, labelled with the holder, while another writer holds the claim; else 0."""
        self.standby.clear()
        self.standby.labels(holder=holder or "").set(1 if holder else 0)

    def set_running(self, job: JobLabels, *, running: bool) -> None:
        self.running.labels(**job.labels()).set(1 if running else 0)

    def set_next_run(self, job: JobLabels, at: datetime | None) -> None:
        self.next_run.labels(**job.labels()).set(at.timestamp() if at else 0)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition in the format the client asks for (OpenMetrics or Prometheus text),
        and its content type."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


def _create_job_series(metrics: Metrics, job: JobLabels) -> None:
    for result in RESULTS:
        metrics.job_runs.labels(**job.labels(), result=result)
    for metric in (metrics.job_duration, metrics.last_success, metrics.last_failure, metrics.next_run):
        metric.labels(**job.labels())
    metrics.running.labels(**job.labels())
    if job.kind == "backup":
        metrics.backup.create(job)


def _register(registry: CollectorRegistry) -> Metrics:
    def gauge(name: str, text: str) -> Gauge:
        return Gauge(f"caretaker_job_{name}", text, TASK, registry=registry)

    return Metrics(
        registry=registry,
        job_runs=Counter(
            "caretaker_job_runs_total", "Job runs by result.", (*TASK, "result"), registry=registry
        ),
        job_duration=Histogram(
            "caretaker_job_duration_seconds",
            "Duration of job runs.",
            TASK,
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        last_success=gauge("last_success_timestamp_seconds", "End of the last successful run (Unix time)."),
        last_failure=gauge(
            "last_failure_timestamp_seconds", "End of the last failed or refused run (Unix time)."
        ),
        next_run=gauge("next_run_timestamp_seconds", "Next scheduled run (Unix time; 0 if none)."),
        running=gauge("running", "1 while the job runs."),
        backup=BackupGauges.register(registry),
        repository=RepositoryGauges.register(registry),
        restore=RestoreGauges.register(registry),
        rpo=Gauge(
            "caretaker_rpo_seconds",
            "The sidecar's --rpo (0: none), to compare backup age with.",
            registry=registry,
        ),
        standby=Gauge(
            "caretaker_standby",
            "1 while another writer (the holder label) holds the repository's claim and this "
            "sidecar's backups and prunes wait.",
            ("holder",),
            registry=registry,
        ),
        build_info=Gauge(
            "caretaker_build_info", "caretaker version (always 1).", ("version",), registry=registry
        ),
    )
