"""Repositories, chosen by URL scheme.

Two small protocols:

- `Repository` is what commands and the sidecar use: snapshots as a whole (list, back up,
  restore into a folder, verify, prune). The git backend implements it directly.
- `ObjectStore` is what the snapshot engine (`restore.snapshots`) stores its immutable
  objects in; the local-directory and S3 backends implement it, and the engine turns any
  store into a `Repository`. Both backends therefore share one on-storage format.

Heavy libraries (boto3, GitPython) are imported only inside the factory that needs them,
so an init container that finds its volume populated never pays for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import SplitResult, urlsplit

from restore.clock import Clock, utc_now
from restore.errors import ConfigError, Problem
from restore.model import (
    BackupOptions,
    BackupResult,
    Progress,
    PruneResult,
    RestoreStats,
    SnapshotInfo,
    VerifyResult,
)
from restore.retention import RetentionPolicy


class Repository(Protocol):
    """Snapshots of one data folder. Every method may raise BackendError subclasses."""

    def describe(self) -> str:
        """The repository URL with credentials removed, for logs and errors."""

    def snapshots(self) -> list[SnapshotInfo]:
        """Every complete snapshot, newest first. A fresh repository has none."""

    def backup(self, source: Path, options: BackupOptions, progress: Progress | None = None) -> BackupResult:
        """Record `source` as a new snapshot, taking the writer lease for the duration.

        Raise LeaseHeldError if another writer holds the repository, RefusedError if the
        source is empty while the newest snapshot is not (unless options.allow_empty).
        """

    def restore(self, snapshot_id: str, dest: Path, progress: Progress | None = None) -> RestoreStats:
        """Write the snapshot's tree into `dest` (an existing, empty directory).

        Every byte is checked against its hash; nothing is written outside `dest`.
        Raise NoSnapshotError if the id is unknown, IntegrityError (naming the object and
        the files affected) if data is missing, corrupt or hostile.
        """

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
        """Release connections and the lease if held."""


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """One object of an ObjectStore listing. `version` changes whenever content does."""

    key: str
    size: int
    modified: datetime
    version: str = ""


class ObjectStore(Protocol):
    """A flat namespace of objects under the repository URL.

    Keys are `/`-separated relative names (`data/ab/abcd…`). `put` is atomic: readers see
    the whole object or nothing. Errors are translated inside the store to
    TransientBackendError / PermanentBackendError / ObjectNotFoundError.
    """

    def describe(self) -> str:
        """The store's URL with credentials removed."""

    def get(self, key: str) -> bytes:
        """Return the whole object. Raise ObjectNotFoundError if absent."""

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return `length` bytes from offset `start`. Raise ObjectNotFoundError if absent."""

    def put(self, key: str, data: bytes | bytearray) -> None:
        """Store an object durably (overwriting is allowed, but the engine never does it
        for content-addressed keys)."""

    def create(self, key: str, data: bytes) -> bool:
        """Store only if the key does not exist yet (If-None-Match: *). Return False if it
        existed. Stores without conditional writes emulate it (see their docs)."""

    def replace(self, key: str, data: bytes, *, version: str) -> bool:
        """Overwrite only if the current version is `version` (If-Match). Return False if
        the object changed or vanished."""

    def stat(self, key: str) -> StoredObject | None:
        """Return the object's listing entry, or None if absent."""

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with `prefix`, in key order."""

    def delete(self, keys: Sequence[str]) -> None:
        """Delete objects; a missing key is not an error."""

    def close(self) -> None:
        """Release connections."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class OpenOptions:
    """What every backend factory receives besides the URL."""

    environ: Mapping[str, str]
    clock: Clock = utc_now
    # Who takes the writer lease: pod/host name and process id, shown to the other writer.
    owner: str = ""


RepositoryFactory = Callable[[SplitResult, OpenOptions], Repository]


def _local(url: SplitResult, options: OpenOptions) -> Repository:
    from restore.backends.local import LocalStore  # noqa: PLC0415 - keeps start-up light
    from restore.snapshots.engine import Engine  # noqa: PLC0415

    return Engine(LocalStore.from_url(url), clock=options.clock, owner=options.owner)


def _s3(url: SplitResult, options: OpenOptions) -> Repository:
    from restore.backends.s3 import S3Store  # noqa: PLC0415 - imports boto3
    from restore.snapshots.engine import Engine  # noqa: PLC0415

    return Engine(S3Store.from_url(url, options.environ), clock=options.clock, owner=options.owner)


def _git(url: SplitResult, options: OpenOptions) -> Repository:
    from restore.backends.git import GitRepository  # noqa: PLC0415 - imports GitPython

    return GitRepository.from_url(url, options)


_FACTORIES: dict[str, RepositoryFactory] = {
    "file": _local,
    "s3": _s3,
    "git+ssh": _git,
    "git+https": _git,
    "git+http": _git,
    "git+file": _git,
    "git+git": _git,  # git daemon (git://): unauthenticated, for trusted networks and tests
}


def scheme_problem(url: str) -> str | None:
    """What is wrong with the scheme of a repository URL, or None if a backend serves it."""
    scheme = urlsplit(url).scheme
    if scheme in _FACTORIES:
        return None
    known = ", ".join(f"{name}://" for name in _FACTORIES)
    return f"unsupported repository URL scheme {scheme!r}; use one of {known}"


def open_repository(url: str, options: OpenOptions) -> Repository:
    """Open the repository a URL names. Raise ConfigError for an unknown scheme or bad URL."""
    problem = scheme_problem(url)
    if problem is not None:
        raise ConfigError.single("repository", url, problem)
    parts = urlsplit(url)
    factory = _FACTORIES[parts.scheme]
    try:
        return factory(parts, options)
    except ConfigError as error:
        # Name the URL as the user wrote it (urllib normalises `file:x` to `file:///x`).
        raise ConfigError(
            [Problem(p.key, url, p.message) if p.key == "repository" else p for p in error.problems]
        ) from error
