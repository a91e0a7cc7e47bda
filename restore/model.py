"""Plain values that cross the boundary between a repository and its users."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from restore.clock import format_time, parse_time

# caretaker's own state folder inside the data volume: never backed up, never restored,
# ignored when deciding whether the volume is empty. Staging, quarantine and the restore
# result file live here, so every move stays on one filesystem.
STATE_DIR = ".caretaker"


def human_size(size: int) -> str:
    """`512 B`, `1.5 KiB` … `3.0 TiB`: sizes in messages and commit subjects."""
    exponent = min(max(size.bit_length() - 1, 0) // 10, 4)
    if exponent == 0:
        return f"{size} B"
    return f"{size / 1024**exponent:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exponent - 1]}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SnapshotInfo:
    """One complete snapshot as listed by a repository."""

    id: str
    time: datetime
    files: int
    dirs: int
    bytes: int
    host: str = ""
    tags: tuple[str, ...] = ()
    path: str = ""  # the data folder the backup read, as it was named there

    @classmethod
    def of_backup(
        cls, *, snapshot_id: str, time: datetime, stats: BackupStats, options: BackupOptions, source: Path
    ) -> SnapshotInfo:
        """The snapshot a backup of `source` made, as its stats count it."""
        return cls(
            id=snapshot_id,
            time=time,
            files=stats.files,
            dirs=stats.dirs,
            bytes=stats.bytes_total,
            host=options.host,
            tags=options.tags,
            path=str(source.absolute()),
        )

    @property
    def empty(self) -> bool:
        return self.files == 0 and self.dirs == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": format_time(self.time),
            "files": self.files,
            "dirs": self.dirs,
            "bytes": self.bytes,
            "host": self.host,
            "tags": list(self.tags),
            "path": self.path,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SnapshotInfo:
        """The inverse of `to_json`. Raise KeyError, TypeError or ValueError if malformed."""
        return cls(
            id=str(doc["id"]),
            time=parse_time(doc["time"]),
            files=int(doc["files"]),
            dirs=int(doc["dirs"]),
            bytes=int(doc["bytes"]),
            host=str(doc.get("host", "")),
            tags=tuple(str(t) for t in doc.get("tags", ())),
            path=str(doc.get("path", "")),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackupOptions:
    """What a backup reads and how it records it."""

    excludes: tuple[str, ...] = ()
    host: str = ""
    tags: tuple[str, ...] = ()
    # An empty volume after a non-empty snapshot is almost always a lost volume, not
    # deleted data: refuse (RefusedError) unless the user says it is intended.
    allow_empty: bool = False
    # Record no new snapshot when the folder equals the newest one (git never records one).
    skip_unchanged: bool = False
    compression_level: int = 3


@dataclasses.dataclass(kw_only=True)
class BackupStats:
    """Counters of one backup run; also the source of the sidecar's backup metrics."""

    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    symlinks: int = 0
    skipped_special: int = 0
    changed_during_read: int = 0
    bytes_total: int = 0
    bytes_read: int = 0
    bytes_stored: int = 0
    objects_written: int = 0

    @property
    def files(self) -> int:
        return self.files_new + self.files_changed + self.files_unchanged

    def to_json(self) -> dict[str, int]:
        data = dataclasses.asdict(self)
        data["files"] = self.files
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackupResult:
    """A finished backup: the snapshot that now represents the volume, and what it cost.

    `changed` is False when the volume was identical to the previous snapshot; a backend
    may then return the previous snapshot instead of writing a new one (`recorded` False:
    git always does, the engine with `skip_unchanged`).
    """

    snapshot: SnapshotInfo
    stats: BackupStats
    changed: bool
    duration_seconds: float
    recorded: bool = True


@dataclasses.dataclass(kw_only=True)
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


# How many affected files a damage report names: enough to act on, bounded for huge volumes.
SHOWN_FILES = 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class Damage:
    """One problem a verification found, with the files it makes unrestorable."""

    object: str
    problem: str
    files: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"object": self.object, "problem": self.problem, "files": list(self.files)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class VerifyResult:
    """The verdict on one snapshot."""

    snapshot_id: str
    damage: tuple[Damage, ...] = ()
    bytes_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.damage

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot_id,
            "ok": self.ok,
            "bytes_checked": self.bytes_checked,
            "damage": [d.to_json() for d in self.damage],
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruneResult:
    """What a prune removed (or, on a dry run, would remove)."""

    kept: tuple[SnapshotInfo, ...]
    removed: tuple[SnapshotInfo, ...]
    reasons: dict[str, tuple[str, ...]]
    objects_deleted: int = 0
    bytes_freed: int = 0
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "kept": [{**s.to_json(), "reasons": list(self.reasons.get(s.id, ()))} for s in self.kept],
            "removed": [s.to_json() for s in self.removed],
            "objects_deleted": self.objects_deleted,
            "bytes_freed": self.bytes_freed,
        }


@dataclasses.dataclass(frozen=True)
class Copied:
    """One snapshot of a copy: written now (with how many blobs or files and bytes it took),
    or found in the destination already."""

    snapshot: SnapshotInfo
    copied: bool
    blobs: int = 0
    bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot.id, "copied": self.copied, "blobs": self.blobs, "bytes": self.bytes}


class Progress(Protocol):
    """Receives progress while data moves; called often, must be cheap."""

    def start(self, *, files: int, bytes: int) -> None: ...

    def advance(self, *, files: int = 0, bytes: int = 0) -> None: ...


class NoProgress:
    def start(self, *, files: int, bytes: int) -> None:
        pass

    def advance(self, *, files: int = 0, bytes: int = 0) -> None:
        pass
