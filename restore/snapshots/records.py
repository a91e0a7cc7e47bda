"""The repository's snapshot records: listed, opened and decoded once each, newest first;
and the record of a new snapshot (`new_record`).

A record that does not decode, or (encrypted repositories) does not authenticate, is never
restored: it is left out of listings, logged, and reported by verify. When records exist but
none can be read, listing them is an IntegrityError, never an empty repository: a restore
must fail closed, not boot the app on an empty volume.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from restore.errors import IntegrityError, NoSnapshotError, ObjectNotFoundError
from restore.model import BackupOptions, BackupStats, SnapshotInfo
from restore.snapshots.codec import SNAPSHOT_RECORD, Codec
from restore.snapshots.format import SNAPSHOTS, SnapshotRecord, snapshot_key
from restore.snapshots.repokey import RepositoryCodec
from restore.snapshots.store import ObjectStore, get_small

# A record names its manifest's blobs (65 bytes each, for up to 8 MiB of manifest): 4 MiB
# covers volumes of hundreds of millions of files; read in parallel, more would not fit
# an init container's memory.
MAX_RECORD_BYTES = 4 << 20


class Records:
    def __init__(self, store: ObjectStore, workers: int) -> None:
        self._store = store
        self._workers = workers
        # Snapshot records never change once written: decode each one once (readiness
        # probes list snapshots every few seconds; on S3 each record is a request).
        self._cache: dict[str, SnapshotRecord] = {}
        # Records that exist but cannot be read, by key: the problem.
        self.unreadable: dict[str, str] = {}

    def listing(
        self, codecs: RepositoryCodec, meanwhile: Callable[[], object] | None = None
    ) -> list[SnapshotRecord]:
        """Every readable record, newest first.

        The repository is opened (`codecs`; for an encrypted one, its key derived) while
        the records are fetched, and asked for its codec only after the listing: records
        never meet an unknown codec. If it is still being opened then, `meanwhile` runs
        first (reads that need no key). Raise IntegrityError if records exist but the
        repository config does not.
        """
        keys = [item.key for item in self._store.list(SNAPSHOTS)]
        # Begun once storage answered: against a store that does not, the opening's reads
        # would be attempts no error reports (the listing's error is the one raised).
        codecs.start()
        listed = set(keys)
        self.unreadable = {key: problem for key, problem in self.unreadable.items() if key in listed}
        new = [key for key in keys if key not in self._cache and key not in self.unreadable]
        fetched: list[bytes | None] = []
        if new:  # readiness probes list every few seconds, mostly finding nothing new
            with ThreadPoolExecutor(max_workers=self._workers) as pool:
                fetched = list(pool.map(self._fetch, new))
        if meanwhile is not None and codecs.opening():
            meanwhile()
        codec = codecs.opened()
        if codec is None:
            if keys:
                raise IntegrityError(
                    f"{self._store.describe()} holds snapshot records but no repository config: "
                    "nothing it holds can be trusted"
                )
            return []
        for key, stored in zip(new, fetched, strict=True):
            if stored is not None:
                self._decode(key, stored, codec)
        for gone in self._cache.keys() - listed:
            del self._cache[gone]
        records = [r for key in keys if (r := self._cache.get(key)) is not None]
        return sorted(records, key=lambda r: r.info.time, reverse=True)

    def _fetch(self, key: str) -> bytes | None:
        """A record as stored; None if a prune forgot it while we listed, or if it cannot
        be read (noted)."""
        try:
            return get_small(self._store, key, MAX_RECORD_BYTES)
        except ObjectNotFoundError:
            return None
        except IntegrityError as error:
            self._note_unreadable(key, error)
            return None

    def _decode(self, key: str, stored: bytes, codec: Codec) -> None:
        try:
            self._cache[key] = SnapshotRecord.decode(codec.open(stored, SNAPSHOT_RECORD, key), key)
        except IntegrityError as error:
            self._note_unreadable(key, error)

    def _note_unreadable(self, key: str, error: IntegrityError) -> None:
        # One damaged or planted record must not hide every other snapshot from restore.
        structlog.get_logger().warning("snapshot.unreadable", key=key, error=str(error))
        self.unreadable[key] = str(error)

    def readable(
        self, codecs: RepositoryCodec, meanwhile: Callable[[], object] | None = None
    ) -> list[SnapshotRecord]:
        """`listing`, raising IntegrityError if records exist but none can be read."""
        records = self.listing(codecs, meanwhile)
        if not records and self.unreadable:
            named = "; ".join(f"{key}: {problem}" for key, problem in sorted(self.unreadable.items())[:3])
            raise IntegrityError(
                f"none of the {len(self.unreadable)} snapshot records in {self._store.describe()} "
                f"can be read: {named}"
            )
        return records

    def find(self, codecs: RepositoryCodec, snapshot_id: str) -> SnapshotRecord:
        """The record whose id starts with `snapshot_id`. Raise NoSnapshotError if none or
        several match, IntegrityError if the one matching cannot be read."""
        records = self.listing(codecs)
        matches = [r for r in records if r.info.id.startswith(snapshot_id)] if snapshot_id else []
        if len(matches) == 1:
            return matches[0]
        bad = [key for key in self.unreadable if snapshot_id and key.startswith(snapshot_key(snapshot_id))]
        if not matches and len(bad) == 1:
            raise IntegrityError(f"snapshot {snapshot_id!r} cannot be used: {self.unreadable[bad[0]]}")
        problem = "is ambiguous" if matches else "does not exist"
        raise NoSnapshotError(f"snapshot {snapshot_id!r} {problem} in {self._store.describe()}")


def new_record(
    *,
    source: Path,
    started: datetime,
    now: datetime,
    stats: BackupStats,
    pieces: tuple[tuple[bytes, ...], int],
    previous: SnapshotRecord | None,
    options: BackupOptions,
) -> SnapshotRecord:
    """The record of a backup of `source` finished `now`: its manifest's pieces and entries."""
    if previous is not None and now <= previous.info.time:
        # A writer whose clock is behind the previous writer's (a takeover between
        # nodes with skewed clocks) must still be the newest: restore picks by time.
        now = previous.info.time + timedelta(milliseconds=1)
    info = SnapshotInfo.of_backup(
        snapshot_id=secrets.token_hex(8), time=now, stats=stats, options=options, source=source
    )
    manifest, count = pieces
    return SnapshotRecord(
        info=info,
        manifest=manifest,
        entries=count,
        started=started,
        parent=previous.info.id if previous else None,
        excludes=options.excludes,
        stats=stats.to_json(),
    )
