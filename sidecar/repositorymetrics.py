"""What the repository itself holds, as Prometheus series (`caretaker_repository_*`).

Job counters start from zero with every process; these are read from the repository (at
start-up and after every job that uses it), so they survive restarts: an alert on backup
age does not fire after each rollout, and a silent rollback or a stalled writer in another
pod shows as an old newest snapshot of that host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from restore.model import SnapshotInfo


@dataclasses.dataclass(frozen=True, kw_only=True)
class RepositoryGauges:
    snapshots: Gauge
    newest: Gauge
    stored_bytes: Gauge
    read_at: Gauge
    last_backup: Gauge
    encrypted: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> RepositoryGauges:
        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(f"caretaker_{name}", text, labels, registry=registry)

        gauges = cls(
            snapshots=gauge("repository_snapshots", "Snapshots in the repository."),
            newest=gauge(
                "repository_newest_snapshot_timestamp_seconds",
                "Time of the newest snapshot each host (pod) recorded (Unix time).",
                ("host",),
            ),
            stored_bytes=gauge(
                "repository_stored_bytes", "Bytes the repository stores (compressed, all snapshots)."
            ),
            read_at=gauge(
                "repository_read_timestamp_seconds",
                "When the repository_* series were last read from the repository (0: not yet).",
            ),
            last_backup=gauge(
                "last_backup_timestamp_seconds",
                "The newest good backup: the repository's newest snapshot or this sidecar's last "
                "successful backup run, whichever is newer (0: none).",
            ),
            encrypted=gauge(
                "repository_encrypted",
                "1 if the repository is encrypted, 0 if it is not, -1 until it was reached.",
            ),
        )
        gauges.stored_bytes.set(0)
        gauges.encrypted.set(-1)
        return gauges

    def listed(self, snapshots: Sequence[SnapshotInfo], at: datetime) -> None:
        """Record a fresh listing: count and each host's newest snapshot."""
        newest: dict[str, datetime] = {}
        for snapshot in snapshots:
            if snapshot.host not in newest or snapshot.time > newest[snapshot.host]:
                newest[snapshot.host] = snapshot.time
        # Hosts whose snapshots were all pruned disappear instead of staying frozen.
        self.newest.clear()
        for host, time in newest.items():
            self.newest.labels(host=host).set(time.timestamp())
        self.snapshots.set(len(snapshots))
        self.read_at.set(at.timestamp())
