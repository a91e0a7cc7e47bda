"""Copying snapshots from one object-store repository to another (`caretaker copy`).

Only the blobs the destination's index lacks are read: the source's manifest says which
blobs a snapshot needs, the destination's index which it has (from earlier copies, or from
backups of the same data). They are read pack by pack (a whole pack when most of it is
needed, else blob by blob), each checked like a restore checks it (its frame decodes to
bytes with its id and its indexed length) and appended, frame as it is, to the
destination's packs; packs are written, then indexed, as by a backup, under the
destination's writer lease. The snapshot record comes last and is the source's, unchanged:
same id, time, host, tags and manifest, so `--snapshot ID` names the copy as it names the
original.

A copy killed at any point leaves no record, and the packs it indexed count as present for
the next copy, which therefore goes on where the killed one stopped (packs written but not
yet indexed are deleted by a later prune, as after a killed backup).

With encryption (repositories with their own keys), blob ids are keyed per repository: a
copy then re-seals each blob for the destination and maps its id, which changes the
manifest's lines, so the manifest is rewritten with the mapped ids (same cut rule) and the
record names the new pieces. Unencrypted repositories share ids, and this module needs none
of that.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

from restore.errors import IntegrityError
from restore.model import Copied
from restore.snapshots import prune as gc
from restore.snapshots.format import (
    KIND_DATA,
    KIND_MANIFEST,
    SnapshotRecord,
    decompress_blob,
    pack_key,
    snapshot_key,
)
from restore.snapshots.index import BlobIndex, load_index
from restore.snapshots.lease import Lease
from restore.snapshots.manifest import entries_of
from restore.snapshots.packer import Packer, Uploader
from restore.snapshots.reader import BlobLoader
from restore.snapshots.store import ObjectStore

# Source packs being read at once (16 MiB each at most), ahead of the one being written.
_AHEAD = 4
_Frames = list[tuple[bytes, bytes, int, int]]  # blob id, frame, raw length, kind


class Source:
    """The repository copied from: its store and index."""

    def __init__(self, store: ObjectStore, index: BlobIndex) -> None:
        self.store = store
        self.index = index

    def wanted(self, record: SnapshotRecord, has: Packer) -> dict[int, list[bytes]]:
        """The blobs of `record` the destination lacks, grouped by source pack (a manifest
        the restore would refuse is refused here too). Raise IntegrityError naming a blob
        the source lacks."""
        wanted: dict[int, list[bytes]] = collections.defaultdict(list)
        seen: set[bytes] = set()
        loader = BlobLoader(self.store, self.index)
        needed = (chunk for entry in entries_of(record, loader) for chunk in entry.chunks)
        for blob in (*record.manifest, *needed):
            if blob in seen or has.knows(blob):
                continue
            seen.add(blob)
            if blob not in self.index:
                raise IntegrityError(
                    f"snapshot {record.info.id} cannot be copied: blob {blob.hex()} is missing"
                )
            wanted[self.index.pack_of(blob)].append(blob)
        return wanted

    def frames(self, pack: int, blobs: list[bytes]) -> _Frames:
        """The blobs' stored frames, each checked. Raise IntegrityError if one is bad."""
        key = pack_key(self.index.packs[pack])
        places = [(blob, self.index.locate(blob)) for blob in blobs]
        needed = sum(where.length for _, where in places if where is not None)
        whole = self.store.get(key) if needed * 2 >= self.index.pack_sizes[pack] else None
        found: _Frames = []
        for blob, where in places:
            assert where is not None  # noqa: S101 - grouped from the index itself
            end = where.offset + where.length
            if whole is None:
                frame = self.store.get_range(key, where.offset, where.length)
            else:
                frame = whole[where.offset : end]
            if len(frame) != where.length or len(decompress_blob(frame, blob, key)) != where.raw_length:
                raise IntegrityError(f"blob {blob.hex()} in {key} is truncated or mis-indexed")
            found.append((blob, frame, where.raw_length, where.kind))
        return found


def copy_snapshots(
    source_store: ObjectStore,
    records: Sequence[SnapshotRecord],
    dest_store: ObjectStore,
    lease: Lease,
    workers: int,
) -> list[Copied]:
    """Copy the records' snapshots that the destination lacks, oldest first, under `lease`
    (held by the caller, with the destination's config in place). Return what was done."""
    present = {key.rpartition("/")[2] for key in (o.key for o in dest_store.list(snapshot_key("")))}
    todo = sorted((r for r in records if r.info.id not in present), key=lambda r: r.info.time)
    done = [Copied(r.info, copied=False) for r in records if r.info.id in present]
    if not todo:
        return done
    source = Source(source_store, load_index(source_store, workers))
    index = load_index(dest_store, workers)
    uploader = Uploader(dest_store, workers=workers, in_flight=2)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copy") as pool:
            copier = _Copier(source, index, uploader, pool, dest_store, lease)
            done.extend(copier.copy(record) for record in todo)
    finally:
        uploader.close()
    if gc.merge_due(index):
        del index  # the merge reads the index again: never hold two
        lease.check()
        gc.merge_small(dest_store, load_index(dest_store, workers))
    return done


class _Copier:
    """Copies snapshots into one destination: its index, uploader and lease."""

    def __init__(  # noqa: PLR0917 - the parts of one copy run, each used
        self,
        source: Source,
        index: BlobIndex,
        uploader: Uploader,
        pool: ThreadPoolExecutor,
        dest_store: ObjectStore,
        lease: Lease,
    ) -> None:
        self.source = source
        self.index = index
        self.uploader = uploader
        self.pool = pool
        self.dest_store = dest_store
        self.lease = lease

    def copy(self, record: SnapshotRecord) -> Copied:
        packers = {kind: Packer(self.index, self.uploader, kind=kind) for kind in (KIND_DATA, KIND_MANIFEST)}
        wanted = self.source.wanted(record, packers[KIND_DATA])
        blobs = stored = 0
        for frames in _fetched(self.pool, self.source, wanted):
            for blob, frame, raw_length, kind in frames:
                if packers[kind].add(blob, frame, raw_length):
                    blobs += 1
                    stored += len(frame)
        for packer in packers.values():
            packer.flush()
        self.uploader.wait()
        self.lease.check()
        # Written last: from this moment on the copy exists, and everything it needs is durable.
        self.dest_store.create(snapshot_key(record.info.id), record.encode())
        structlog.get_logger().info("copy.snapshot", snapshot=record.info.id, blobs=blobs, bytes=stored)
        return Copied(record.info, copied=True, blobs=blobs, bytes=stored)


def _fetched(pool: ThreadPoolExecutor, source: Source, wanted: dict[int, list[bytes]]) -> Iterator[_Frames]:
    """The wanted frames pack by pack, in pack order, read and checked a few packs ahead."""
    queue: collections.deque[Future[_Frames]] = collections.deque()
    packs = iter(sorted(wanted))
    try:
        while True:
            while len(queue) < _AHEAD and (pack := next(packs, None)) is not None:
                queue.append(pool.submit(source.frames, pack, wanted[pack]))
            if not queue:
                return
            yield queue.popleft().result()
    finally:
        for future in queue:
            future.cancel()
