"""What the sidecar knows about its jobs right now: the source of /status, the RPO check and
(through `Metrics`) /metrics. Written by job threads and the scheduler, read by HTTP threads.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from restore.clock import Clock, format_time
from restore.model import BackupStats, SnapshotInfo
from restore.redaction import redact_text, redact_url
from sidecar.metrics import JobLabels, Metrics
from sidecar.settings.model import JobConfig, SidecarConfig


def _time(moment: datetime | None) -> str | None:
    return format_time(moment) if moment else None


@dataclasses.dataclass
class JobState:
    job: JobConfig
    running: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: str | None = None
    error: str | None = None
    attempts: int = 0
    duration_seconds: float | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    next_run_at: datetime | None = None
    skipped_overlap: int = 0
    skipped_standby: int = 0

    @property
    def labels(self) -> JobLabels:
        return JobLabels(self.job.name, self.job.kind)

    def to_json(self) -> dict[str, Any]:
        schedule = self.job.schedule
        return {
            "name": self.job.name,
            "kind": self.job.kind,
            "schedule": schedule.describe() if schedule else None,
            "then": list(self.job.then),
            "running": self.running,
            "next_run": _time(self.next_run_at),
            "last_run": {
                "started": _time(self.started_at),
                "finished": _time(self.finished_at),
                "result": self.result,
                "error": self.error,
                "attempts": self.attempts,
                "duration_seconds": self.duration_seconds,
            },
            "last_success": _time(self.last_success_at),
            "last_failure": _time(self.last_failure_at),
            "skipped_overlap": self.skipped_overlap,
            "skipped_standby": self.skipped_standby,
        }


class StatusBoard:
    def __init__(self, config: SidecarConfig, metrics: Metrics, clock: Clock) -> None:
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.started_at = clock()
        self.stopping = False
        self.newest_snapshot_at: datetime | None = None
        # Whether the repository is encrypted; None until it was reached.
        self.encrypted: bool | None = None
        self._claim: dict[str, Any] | None = None  # None: this sidecar writes nothing
        self._lock = threading.Lock()
        self._jobs = {job.name: JobState(job) for job in config.jobs}

    def started(self, name: str) -> None:
        with self._lock:
            state = self._jobs[name]
            state.running, state.started_at = True, self.clock()
        self.metrics.set_running(state.labels, running=True)

    def finished(self, name: str, result: str, *, error: str | None, attempts: int, seconds: float) -> None:
        now = self.clock()
        with self._lock:
            state = self._jobs[name]
            state.running, state.finished_at, state.result = False, now, result
            state.error = redact_text(error) if error else None
            state.attempts, state.duration_seconds = attempts, round(seconds, 3)
            if result == "success":
                state.last_success_at = now
            else:
                state.last_failure_at = now
        self.metrics.set_running(state.labels, running=False)
        self.metrics.run_finished(state.labels, result, seconds=seconds, at=now)
        self._publish_last_backup()

    def skipped(self, name: str) -> None:
        with self._lock:
            state = self._jobs[name]
            state.skipped_overlap += 1
        self.metrics.run_skipped(state.labels)

    def skipped_standby(self, name: str) -> None:
        with self._lock:
            state = self._jobs[name]
            state.skipped_standby += 1
        self.metrics.run_skipped(state.labels, "standby")

    def claim_state(self, state: str, holder: str | None) -> None:
        """The writer claim: starting, holding, standby (for `holder`), lost or released."""
        with self._lock:
            self._claim = {"state": state, "holder": holder, "since": _time(self.clock())}
        self.metrics.set_standby(holder if state == "standby" else None)

    def standby_holder(self) -> str | None:
        with self._lock:
            claim = self._claim
        return claim["holder"] if claim and claim["state"] == "standby" else None

    def next_run(self, name: str, at: datetime | None) -> None:
        with self._lock:
            state = self._jobs[name]
            state.next_run_at = at
        self.metrics.set_next_run(state.labels, at)

    def backup_stats(self, name: str, stats: BackupStats, *, recorded: bool) -> None:
        """A backup's figures; `recorded` is False when it wrote no snapshot (unchanged)."""
        self.metrics.backup.record(self._jobs[name].labels, stats, recorded=recorded)

    def snapshots(self, snapshots: Sequence[SnapshotInfo]) -> None:
        """Record a fresh listing of the repository."""
        self.metrics.repository.listed(snapshots, self.clock())
        newest = max((s.time for s in snapshots), default=None)
        with self._lock:
            self.newest_snapshot_at = newest
        self._publish_last_backup()

    def stored_bytes(self, size: int | None) -> None:
        """Record what the repository stores (None: the backend cannot tell)."""
        if size is not None:
            self.metrics.repository.stored_bytes.set(size)

    def _publish_last_backup(self) -> None:
        last = self.last_backup_at()
        self.metrics.repository.last_backup.set(last.timestamp() if last else 0)

    def repository_encryption(self, cipher: str | None) -> None:
        """Record whether the repository is encrypted (None: it is not)."""
        self.encrypted = cipher is not None
        self.metrics.repository.encrypted.set(1 if self.encrypted else 0)

    def last_backup_at(self) -> datetime | None:
        """The newest evidence of a good backup: the repository's newest snapshot, or a
        backup job's last success if that is newer."""
        with self._lock:
            times = [s.last_success_at for s in self._jobs.values() if s.job.kind == "backup"]
            times.append(self.newest_snapshot_at)
        return max((t for t in times if t is not None), default=None)

    def busy(self) -> list[str]:
        with self._lock:
            return [name for name, state in self._jobs.items() if state.running]

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            jobs = [state.to_json() for state in self._jobs.values()]
            newest = self.newest_snapshot_at
            claim = dict(self._claim) if self._claim else None
        return {
            "repository": redact_url(self.config.repository),
            "path": str(self.config.path),
            "config": self.config.source,
            "started_at": _time(self.started_at),
            "stopping": self.stopping,
            "rpo_seconds": self.config.rpo.total_seconds() if self.config.rpo else None,
            "newest_snapshot": _time(newest),
            # null until the repository was reached; false: created with --insecure-no-encryption
            "encrypted": self.encrypted,
            "claim": claim,
            "jobs": jobs,
        }
