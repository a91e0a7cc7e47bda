"""`Engine`: the Repository protocol over any ObjectStore (local directory, S3)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import structlog
import zstandard

from restore.claims.holder import Claimant, WriterGuard, hold
from restore.claims.record import ClaimSlot
from restore.clock import Clock, utc_now
from restore.errors import (
    CaretakerError,
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
from restore.nodes import Change, Node
from restore.retention import RetentionPolicy
from restore.selection import Selection
from restore.snapshots import browse
from restore.snapshots import prune as gc
from restore.snapshots.backup import BackupRun, refuse_empty, tolerant
from restore.snapshots.chunks import ChunkPipeline
from restore.snapshots.codec import SNAPSHOT_RECORD, Codec
from restore.snapshots.encryption import Encryption
from restore.snapshots.extract import extract_tree
from restore.snapshots.format import CONFIG_KEY, KIND_DATA, KIND_MANIFEST, SnapshotRecord, snapshot_key
from restore.snapshots.index import BlobIndex, IndexListing, load_index, read_ahead
from restore.snapshots.keyring import KeyRing
from restore.snapshots.lease import StoreSlot
from restore.snapshots.manifest import Entry, ManifestWriter, read_manifest
from restore.snapshots.packer import Packer, Uploader
from restore.snapshots.reader import BlobLoader
from restore.snapshots.records import Records, new_record
from restore.snapshots.repokey import RepositoryCodec
from restore.snapshots.store import ObjectStore
from restore.snapshots.verify import verify_records


class Engine:
    """Snapshots stored as content-addressed packs in an ObjectStore."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        encryption: Encryption,
        clock: Clock = utc_now,
        owner: str = "",
        claimant: Claimant | None = None,
        workers: int = 4,
        restoring: bool = False,
    ) -> None:
        """`claimant` says who writes (see restore.claims); without one, `owner` names a
        writer of its own, for tests and tools. `restoring`: the process opens the
        repository to restore from it, so its first listing also reads the index ahead."""
        self.store = store
        self._encryption = encryption
        self._clock = clock
        self._claimant = claimant or Claimant.named(owner, clock=clock)
        self._slot = StoreSlot(store)
        self._workers = workers
        self._cpu = max(1, min(os.cpu_count() or 1, 8))
        self._records = Records(store, workers)
        # How objects are named and sealed.
        self._codecs = RepositoryCodec(store, encryption)
        self._restoring = restoring
        # Index objects read while the key was derived, for the next restore or backup.
        self._ahead: IndexListing | None = None

    def describe(self) -> str:
        return self.store.describe()

    def close(self) -> None:
        self.store.close()

    def claim_slot(self) -> ClaimSlot:
        return self._slot

    # -- reading -------------------------------------------------------------------------

    def snapshots(self) -> list[SnapshotInfo]:
        """Raise IntegrityError if records exist but none can be read (never "no snapshot")."""
        meanwhile = self._read_ahead if self._restoring else None
        return [r.info for r in self._records.readable(self._codecs, meanwhile)]

    def _read_ahead(self) -> None:
        self._ahead = read_ahead(self.store, self._workers)

    def _taken_ahead(self) -> IndexListing | None:
        """What was read ahead, now the caller's alone: if it fails, nothing keeps it."""
        ahead, self._ahead = self._ahead, None
        return ahead

    def encryption(self) -> str | None:
        """The cipher sealing the repository's objects (or, before it exists, the one its
        first backup will use), or None for an unencrypted repository."""
        return self._codecs.cipher()

    def key_ring(self, *, host: str) -> KeyRing:
        """The repository's key slots, opened with the password (see KeyRing); new slots
        record `host`."""
        return KeyRing(self.store, self._encryption, clock=self._clock, host=host)

    def initialization(self) -> str | None:
        # The first backup writes the config object before any snapshot; nothing deletes it.
        # (Snapshot records that exist but cannot be read fail the listing before this.)
        return None if self.store.stat(CONFIG_KEY) is None else "its config object exists"

    def stored_bytes(self) -> int:
        return sum(item.size for item in self.store.list(""))

    def record(self, snapshot_id: str) -> SnapshotRecord:
        """The record of a snapshot named by id or unique prefix. Raise NoSnapshotError."""
        return self._records.find(self._codecs, snapshot_id)

    def codec(self) -> Codec:
        """The repository's codec, once a record of it was found (so it exists)."""
        return self._codecs.known()

    def restore(
        self,
        snapshot_id: str,
        dest: Path,
        progress: Progress | None = None,
        selection: Selection | None = None,
        *,
        keep_setid: bool = False,
    ) -> RestoreStats:
        record = self.record(snapshot_id)
        ahead = self._taken_ahead()
        index = load_index(self.store, self._codecs.known(), self._workers, first=ahead)
        return extract_tree(
            store=self.store,
            index=index,
            record=record,
            dest=dest,
            progress=progress or NoProgress(),
            workers=self._workers,
            selection=selection,
            keep_setid=keep_setid,
        )

    # -- browsing (restore.snapshots.browse) ---------------------------------------------

    def _manifests(self) -> BlobLoader:
        index = load_index(self.store, self._codecs.known(), self._workers, browse.manifest_pieces)
        return BlobLoader(self.store, index)

    def nodes(self, snapshot_id: str, selection: Selection | None = None) -> Iterator[Node]:
        return browse.nodes(self.record(snapshot_id), self._manifests(), selection)

    def diff(self, old_id: str, new_id: str) -> Iterator[Change]:
        old, new = self.record(old_id), self.record(new_id)
        return browse.diff_records(old, new, self._manifests())

    def find(
        self, snapshot_ids: Sequence[str], match: Callable[[Node], bool]
    ) -> Iterator[tuple[SnapshotInfo, Node]]:
        listed = {r.info.id: r for r in self._records.listing(self._codecs)}
        records = [listed.get(s) or self.record(s) for s in snapshot_ids]
        return browse.find(records, self._manifests(), match)

    def contents(
        self, snapshot_id: str, selection: Selection | None = None
    ) -> Iterator[tuple[Node, Iterator[bytes]]]:
        record = self.record(snapshot_id)
        index = load_index(self.store, self._codecs.known(), self._workers)
        return browse.contents(self.store, index, record, selection, self._workers)

    def verify(
        self, snapshot_ids: Sequence[str] | None = None, *, read_data: float = 0.0
    ) -> list[VerifyResult]:
        self._records.unreadable.clear()
        if snapshot_ids:
            records = [self.record(s) for s in snapshot_ids]
        else:
            records = self._records.listing(self._codecs)
        codec = self._codecs.opened()
        if codec is None:
            return []
        index = load_index(self.store, codec, self._workers)
        results = verify_records(self.store, index, records, read_data, self._workers)
        unreadable = [
            VerifyResult(snapshot_id=key.rpartition("/")[2], damage=(Damage(object=key, problem=problem),))
            for key, problem in sorted({**self._records.unreadable, **index.unreadable}.items())
        ]
        return results + unreadable

    # -- writing -------------------------------------------------------------------------

    def writer(self, role: str) -> contextlib.AbstractContextManager[WriterGuard]:
        """This repository's writer claim, held for `role` (taken, then released). Raise
        LeaseHeldError naming another writer whose claim is live."""
        return hold(self.claim_slot, self._claimant, role=role)

    def ensure(self) -> Codec:
        """The codec, creating the repository first if it does not exist (by a writer)."""
        self._records.listing(self._codecs)  # records but no config: IntegrityError, never a new one
        return self._codecs.ensure(created=self._clock(), host=self._claimant.identity.name)

    def backup(self, source: Path, options: BackupOptions, progress: Progress | None = None) -> BackupResult:
        start = time.monotonic()
        started = self._clock()
        self._codecs.start()  # the key derivation overlaps taking the claim and reading
        with self.writer("backup") as claim:
            records = self._records.listing(self._codecs, self._read_ahead)
            ahead = self._taken_ahead()
            codec = self._codecs.ensure(created=started, host=self._claimant.identity.name)
            previous = records[0] if records else None
            index = load_index(self.store, codec, self._workers, first=ahead)
            uploader = Uploader(self.store, codec, workers=self._workers, in_flight=2)
            try:
                stats, pieces, count = self._write(
                    source=source,
                    options=options,
                    progress=progress or NoProgress(),
                    index=index,
                    uploader=uploader,
                    previous=previous,
                )
                refuse_empty(stats, previous.info if previous else None, options.allow_empty)
                uploader.wait()
                claim.check()
                info, recorded = self._record_snapshot(
                    source=source,
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
                self._merge_index(claim)
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
        source: Path,
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
        if options.skip_unchanged and previous is not None and previous.manifest == pieces[0]:
            stats.objects_written = uploaded
            return previous.info, False
        # Counted before the record is written, so that the record holds it too.
        stats.objects_written = uploaded + 1
        record = new_record(
            source=source,
            started=started,
            now=self._clock(),
            stats=stats,
            pieces=pieces,
            previous=previous,
            options=options,
        )
        # Written last: from this moment on the snapshot exists, and everything it needs is durable.
        key = snapshot_key(record.info.id)
        self.store.create(key, self._codecs.known().seal(record.encode(), SNAPSHOT_RECORD, key))
        return record.info, True

    def _merge_index(self, claim: WriterGuard) -> None:
        """Keep a never-pruned repository's index few objects, merging what the store holds
        now (the backup's index was read when it began). The snapshot is complete already:
        a failure here is only worth a warning."""
        try:
            claim.check()
            merged = gc.merge_small(self.store, load_index(self.store, self._codecs.known(), self._workers))
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
        codec = index.codec
        data = Packer(index, uploader, kind=KIND_DATA)
        manifests = Packer(index, uploader, kind=KIND_MANIFEST)
        compressor = zstandard.ZstdCompressor(level=options.compression_level)

        def store_piece(raw: bytes) -> bytes:
            piece = codec.blob_id(raw)
            frame = codec.seal_blob(compressor.compress(raw), piece, KIND_MANIFEST)
            if manifests.add(piece, frame, len(raw)):
                stats.bytes_stored += len(frame)
            return piece

        writer = ManifestWriter(store_piece)
        old: Iterator[tuple[Entry, bytes]] = iter(())
        if previous is not None:
            old = tolerant(read_manifest(previous.manifest, BlobLoader(self.store, index)))
        with ThreadPoolExecutor(max_workers=self._cpu, thread_name_prefix="chunk") as pool:
            pipeline = ChunkPipeline(data, pool, options.compression_level, stats, codec)
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

    def prune(self, policy: RetentionPolicy, *, now: datetime, dry_run: bool = False) -> PruneResult:
        with self.writer("prune") as claim:
            records = self._records.listing(self._codecs)
            codec = self._codecs.opened()
            if codec is None:  # nothing was ever stored
                return PruneResult(kept=(), removed=(), reasons={}, dry_run=dry_run)
            return gc.prune(
                self.store,
                records,
                codec,
                policy,
                now=now,
                dry_run=dry_run,
                workers=self._workers,
                check=claim.check,
            )
