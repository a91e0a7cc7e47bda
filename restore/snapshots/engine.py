"""`Engine`: the Repository protocol over any ObjectStore (local directory, S3)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import structlog
import zstandard

from restore.clock import Clock, utc_now
from restore.errors import (
    CaretakerError,
    IntegrityError,
    NoSnapshotError,
    ObjectNotFoundError,
    RefusedError,
)
from restore.model import (
    BackupOptions,
    BackupResult,
    BackupStats,
    Damage,
    NoProgress,
    Progress,
    PruneResult,
    RestoreStats,
    SnapshotInfo,
    VerifyResult,
)
from restore.retention import RetentionPolicy, select
from restore.snapshots import prune as gc
from restore.snapshots.backup import BackupRun, tolerant
from restore.snapshots.chunks import ChunkPipeline
from restore.snapshots.extract import extract_tree
from restore.snapshots.format import (
    CONFIG_KEY,
    KIND_DATA,
    KIND_MANIFEST,
    SNAPSHOTS,
    SnapshotRecord,
    blob_id,
    check_config,
    config_document,
    snapshot_key,
)
from restore.snapshots.index import BlobIndex, load_index
from restore.snapshots.lease import Lease
from restore.snapshots.manifest import Entry, ManifestWriter, read_manifest
from restore.snapshots.packer import Packer, Uploader
from restore.snapshots.reader import BlobLoader
from restore.snapshots.store import ObjectStore
from restore.snapshots.verify import verify_records


class Engine:
    """Snapshots stored as content-addressed packs in an ObjectStore."""

    def __init__(
        self, store: ObjectStore, *, clock: Clock = utc_now, owner: str = "", workers: int = 4
    ) -> None:
        self.store = store
        self._clock = clock
        self._owner = owner or f"pid-{os.getpid()}"
        self._workers = workers
        self._cpu = max(1, min(os.cpu_count() or 1, 8))
        # Snapshot records never change once written: decode each one once (readiness
        # probes list snapshots every few seconds; on S3 each record is a request).
        self._record_cache: dict[str, SnapshotRecord] = {}
        # Records that exist but do not decode: hidden from listings, reported by verify.
        self._unreadable: dict[str, str] = {}
        # The config object is never rewritten: checking it once per engine is enough.
        self._config_checked = False

    def describe(self) -> str:
        return self.store.describe()

    def close(self) -> None:
        self.store.close()

    # -- reading -------------------------------------------------------------------------

    def _records(self) -> list[SnapshotRecord]:
        keys = [item.key for item in self.store.list(SNAPSHOTS)]
        if keys:
            self._check_config()
        new = [key for key in keys if key not in self._record_cache]
        if new:
            with ThreadPoolExecutor(max_workers=self._workers) as pool:
                list(pool.map(self._load_record, new))
        records = [r for key in keys if (r := self._record_cache.get(key)) is not None]
        listed = set(keys)
        for gone in self._record_cache.keys() - listed:
            del self._record_cache[gone]
        return sorted(records, key=lambda r: r.info.time, reverse=True)

    def _load_record(self, key: str) -> SnapshotRecord | None:
        cached = self._record_cache.get(key)
        if cached is not None:
            return cached
        try:
            record = SnapshotRecord.decode(self.store.get(key), key)
        except ObjectNotFoundError:
            return None  # forgotten by a prune while we listed
        except IntegrityError as error:
            # One damaged record must not hide every other snapshot from restore.
            structlog.get_logger().warning("snapshot.unreadable", key=key, error=str(error))
            self._unreadable[key] = str(error)
            return None
        self._record_cache[key] = record
        return record

    def _check_config(self) -> None:
        if not self._config_checked:
            check_config(self.store.get(CONFIG_KEY), self.describe())
            self._config_checked = True

    def _record(self, snapshot_id: str) -> SnapshotRecord:
        records = self._records()
        matches = [r for r in records if r.info.id.startswith(snapshot_id)] if snapshot_id else []
        if len(matches) != 1:
            problem = "is ambiguous" if matches else "does not exist"
            raise NoSnapshotError(f"snapshot {snapshot_id!r} {problem} in {self.describe()}")
        return matches[0]

    def snapshots(self) -> list[SnapshotInfo]:
        return [r.info for r in self._records()]

    def initialization(self) -> str | None:
        # The first backup writes the config object before any snapshot; nothing deletes it.
        if self.store.stat(CONFIG_KEY) is None:
            return None
        unreadable = len(self._unreadable)
        records = f"{unreadable} snapshot record{'' if unreadable == 1 else 's'}"
        return "its config object exists" + (f", and {records} that cannot be read" if unreadable else "")

    def stored_bytes(self) -> int:
        return sum(item.size for item in self.store.list(""))

    def restore(self, snapshot_id: str, dest: Path, progress: Progress | None = None) -> RestoreStats:
        record = self._record(snapshot_id)
        index = load_index(self.store, self._workers)
        return extract_tree(
            store=self.store,
            index=index,
            record=record,
            dest=dest,
            progress=progress or NoProgress(),
            workers=self._workers,
        )

    def verify(
        self, snapshot_ids: Sequence[str] | None = None, *, read_data: float = 0.0
    ) -> list[VerifyResult]:
        self._unreadable.clear()
        records = [self._record(s) for s in snapshot_ids] if snapshot_ids else self._records()
        index = load_index(self.store, self._workers)
        results = verify_records(self.store, index, records, read_data, self._workers)
        unreadable = [
            VerifyResult(snapshot_id=key.rpartition("/")[2], damage=(Damage(object=key, problem=problem),))
            for key, problem in sorted(self._unreadable.items())
        ]
        return results + unreadable

    # -- writing -------------------------------------------------------------------------

    def _ensure_config(self) -> None:
        # Looked for first: a conditional create that fails costs a write (on S3 a PUT).
        if self.store.stat(CONFIG_KEY) is not None or not self.store.create(
            CONFIG_KEY, config_document(secrets.token_hex(16))
        ):
            self._check_config()

    def backup(self, source: Path, options: BackupOptions, progress: Progress | None = None) -> BackupResult:
        start = time.monotonic()
        started = self._clock()
        with Lease(self.store, owner=self._owner, clock=self._clock) as lease:
            self._ensure_config()
            records = self._records()
            previous = records[0] if records else None
            index = load_index(self.store, self._workers)
            uploader = Uploader(self.store, workers=self._workers, in_flight=2)
            try:
                stats, pieces, count = self._write(
                    source=source,
                    options=options,
                    progress=progress or NoProgress(),
                    index=index,
                    uploader=uploader,
                    previous=previous,
                )
                self._refuse_empty(stats, previous, options)
                uploader.wait()
                lease.check()
                info, recorded = self._record_snapshot(
                    started=started,
                    stats=stats,
                    pieces=(pieces, count),
                    previous=previous,
                    options=options,
                    uploaded=uploader.objects_written,
                )
            finally:
                uploader.close()
            merge_due = gc.merge_due(index)
            del index  # the merge reads the index again: never hold two
            if merge_due:
                self._merge_index(lease)
        return BackupResult(
            snapshot=info,
            stats=stats,
            changed=previous is None or previous.manifest != pieces,
            duration_seconds=time.monotonic() - start,
            recorded=recorded,
        )

    def _record_snapshot(
        self,
        *,
        started: datetime,
        stats: BackupStats,
        pieces: tuple[tuple[bytes, ...], int],
        previous: SnapshotRecord | None,
        options: BackupOptions,
        uploaded: int,
    ) -> tuple[SnapshotInfo, bool]:
        """Write the snapshot record; return the snapshot and whether it is new. With
        `skip_unchanged`, an unchanged folder (the same manifest: the same tree, so nothing
        was uploaded either) writes nothing and the previous snapshot stands for it."""
        manifest, count = pieces
        if options.skip_unchanged and previous is not None and previous.manifest == manifest:
            stats.objects_written = uploaded
            return previous.info, False
        # Counted before the record is written, so that the record holds it too.
        stats.objects_written = uploaded + 1
        info = self._commit(
            started=started, stats=stats, pieces=manifest, count=count, previous=previous, options=options
        )
        return info, True

    def _merge_index(self, lease: Lease) -> None:
        """Keep a never-pruned repository's index few objects, merging what the store holds
        now (the backup's index was read when it began). The snapshot is complete already:
        a failure here is only worth a warning."""
        try:
            lease.check()
            merged = gc.merge_small(self.store, load_index(self.store, self._workers))
        except CaretakerError as error:
            structlog.get_logger().warning("backup.index_merge_failed", error=str(error))
            return
        if merged:
            structlog.get_logger().info("backup.index_merged", objects=merged)

    def _write(
        self,
        *,
        source: Path,
        options: BackupOptions,
        progress: Progress,
        index: BlobIndex,
        uploader: Uploader,
        previous: SnapshotRecord | None,
    ) -> tuple[BackupStats, tuple[bytes, ...], int]:
        stats = BackupStats()
        # The previous snapshot's size is the best guess of this one's: it gives an ETA.
        totals = previous.info if previous else None
        progress.start(files=totals.files if totals else 0, bytes=totals.bytes if totals else 0)
        data = Packer(index, uploader, kind=KIND_DATA)
        manifests = Packer(index, uploader, kind=KIND_MANIFEST)
        compressor = zstandard.ZstdCompressor(level=options.compression_level)

        def store_piece(raw: bytes) -> bytes:
            piece = blob_id(raw)
            frame = compressor.compress(raw)
            if manifests.add(piece, frame, len(raw)):
                stats.bytes_stored += len(frame)
            return piece

        writer = ManifestWriter(store_piece)
        old = self._previous_entries(previous, index)
        with ThreadPoolExecutor(max_workers=self._cpu, thread_name_prefix="chunk") as pool:
            pipeline = ChunkPipeline(data, pool, options.compression_level, stats)
            BackupRun(
                pipeline=pipeline,
                stats=stats,
                writer=writer,
                options=options,
                progress=progress,
                previous=old,
                previous_started=previous.started if previous else None,
            ).run(source)
        pieces = writer.finish()
        data.flush()
        manifests.flush()
        return stats, pieces, writer.count

    def _previous_entries(
        self, previous: SnapshotRecord | None, index: BlobIndex
    ) -> Iterator[tuple[Entry, bytes]]:
        if previous is None:
            return iter(())
        return tolerant(read_manifest(previous.manifest, BlobLoader(self.store, index)))

    def _refuse_empty(
        self, stats: BackupStats, previous: SnapshotRecord | None, options: BackupOptions
    ) -> None:
        if (
            stats.files == 0
            and stats.dirs == 0
            and previous is not None
            and not previous.info.empty
            and not options.allow_empty
        ):
            raise RefusedError(
                f"refusing to record an empty data folder over snapshot {previous.info.id} "
                f"({previous.info.files} files): the volume looks lost, not emptied; "
                "pass --allow-empty if it is intended"
            )

    def _commit(
        self,
        *,
        started: datetime,
        stats: BackupStats,
        pieces: tuple[bytes, ...],
        count: int,
        previous: SnapshotRecord | None,
        options: BackupOptions,
    ) -> SnapshotInfo:
        info = SnapshotInfo(
            id=secrets.token_hex(8),
            time=self._clock(),
            files=stats.files,
            dirs=stats.dirs,
            bytes=stats.bytes_total,
            host=options.host,
            tags=options.tags,
        )
        record = SnapshotRecord(
            info=info,
            manifest=pieces,
            entries=count,
            started=started,
            parent=previous.info.id if previous else None,
            excludes=options.excludes,
            stats=stats.to_json(),
        )
        # Written last: from this moment on the snapshot exists, and everything it needs is durable.
        self.store.create(snapshot_key(info.id), record.encode())
        return info

    def prune(self, policy: RetentionPolicy, *, now: datetime, dry_run: bool = False) -> PruneResult:
        with Lease(self.store, owner=self._owner, clock=self._clock):
            records = self._records()
            chosen = select([r.info for r in records], policy, now)
            removed_ids = {s.id for s in chosen.remove}
            kept = [r for r in records if r.info.id not in removed_ids]
            index = load_index(self.store, self._workers)
            used = gc.referenced_blobs(kept, BlobLoader(self.store, index))
            cleanup = gc.unused_objects(self.store, index, used, now)
            if not dry_run:
                gc.delete_in_order(self.store, sorted(removed_ids), index, cleanup)
            structlog.get_logger().debug(
                "prune.plan",
                index_objects=len(cleanup.index_keys),
                reindexed_packs=len(cleanup.reindexed),
                packs=len(cleanup.packs),
            )
        return PruneResult(
            kept=tuple(chosen.keep),
            removed=tuple(chosen.remove),
            reasons=chosen.reasons,
            objects_deleted=len(cleanup.index_keys) + len(cleanup.packs) + len(removed_ids),
            bytes_freed=cleanup.freed,
            dry_run=dry_run,
        )
