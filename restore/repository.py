"""The `Repository` protocol: snapshots of one data folder, as every command and the sidecar use them.

Two kinds of implementation: the snapshot engine (`restore.snapshots.engine.Engine`) over any
object store (local directory, S3), and the git backend (`restore.backends.git`), which maps
snapshots onto commits. `restore.backends.registry` picks one by URL scheme.

Snapshots are named by their ids as `snapshots()` lists them (or a unique prefix). Browsing
methods return iterators that stream: what they hold in memory does not grow with the
snapshot on object stores; errors may surface while iterating.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from restore.claims.record import ClaimSlot
from restore.model import (
    BackupOptions,
    BackupResult,
    Progress,
    PruneResult,
    RestoreStats,
    SnapshotInfo,
    VerifyResult,
)
from restore.nodes import Change, Node
from restore.retention import RetentionPolicy
from restore.selection import Selection


class Repository(Protocol):
    """Snapshots of one data folder. Every method may raise BackendError subclasses."""

    def describe(self) -> str:
        """The repository URL with credentials removed, for logs and errors."""

    def claim_slot(self) -> ClaimSlot:
        """Where the writer claim lives (restore.claims); backup and prune hold it."""

    def snapshots(self) -> list[SnapshotInfo]:
        """Every complete snapshot, newest first. A fresh repository has none.

        Raise PasswordError if the repository is encrypted and the password is missing or
        wrong (never an empty list), IntegrityError if records exist but none can be read.
        """

    def encryption(self) -> str | None:
        """The cipher protecting the stored objects (`aes-256-gcm`), or None when they are
        stored in plain (an object store created with --insecure-no-encryption, or git)."""

    def initialization(self) -> str | None:
        """What shows that a backup has used this repository (its config object, its
        branch), for a repository without snapshots; None while it has never held one."""

    def stored_bytes(self) -> int | None:
        """Bytes the repository occupies in its storage, or None where that is not known
        cheaply (git: the remote's pack sizes are not visible to a client)."""

    def backup(self, source: Path, options: BackupOptions, progress: Progress | None = None) -> BackupResult:
        """Record `source` as a new snapshot, holding the writer claim for the duration.

        Raise LeaseHeldError if another writer's claim is live, RefusedError if the
        source is empty while the newest snapshot is not (unless options.allow_empty).
        """

    def restore(
        self,
        snapshot_id: str,
        dest: Path,
        progress: Progress | None = None,
        selection: Selection | None = None,
        *,
        keep_setid: bool = False,
    ) -> RestoreStats:
        """Write the snapshot's tree (what `selection` chooses, with the folders above it)
        into `dest` (an existing, empty directory).

        Every byte is checked against its hash; nothing is written outside `dest`.
        Files lose their setuid/setgid bits unless `keep_setid`.
        Raise NoSnapshotError if the id is unknown, IntegrityError (naming the object and
        the files affected) if data is missing, corrupt or hostile.
        """

    def nodes(self, snapshot_id: str, selection: Selection | None = None) -> Iterator[Node]:
        """The snapshot's folders, files and symlinks that `selection` chooses (with the
        folders above them), in manifest order. Hostile entries raise IntegrityError."""

    def diff(self, old_id: str, new_id: str) -> Iterator[Change]:
        """What changed from one snapshot to another, in manifest order."""

    def find(
        self, snapshot_ids: Sequence[str], match: Callable[[Node], bool]
    ) -> Iterator[tuple[SnapshotInfo, Node]]:
        """The nodes `match` accepts in each of the snapshots, snapshot by snapshot."""

    def contents(
        self, snapshot_id: str, selection: Selection | None = None
    ) -> Iterator[tuple[Node, Iterator[bytes]]]:
        """`nodes`, each file with an iterator over its bytes, checked like a restore checks
        them (an empty iterator for folders and links). Consume each before the next node."""

    def verify(
        self, snapshot_ids: Sequence[str] | None = None, *, read_data: float = 0.0
    ) -> list[VerifyResult]:
        """Check snapshots (all when None): structure always, and a `read_data` fraction
        (0.0 to 1.0) of the stored data byte by byte."""

    def prune(self, policy: RetentionPolicy, *, now: datetime, dry_run: bool = False) -> PruneResult:
        """Forget snapshots the policy does not keep, then delete data nothing references.

        Never forgets the newest snapshot or the newest non-empty one.
        """

    def close(self) -> None:
        """Release connections."""
