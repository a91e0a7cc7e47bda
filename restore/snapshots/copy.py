"""Copying snapshots from one object-store repository to another (`caretaker copy`).

Each repository names its blobs with its own codec (restore.snapshots.codec): unencrypted
ones by SHA-256 of the plain bytes, so two of them share names; encrypted ones by a keyed
HMAC, so a blob has another name in every encrypted repository.

Between two unencrypted repositories, only the blobs the destination's index lacks are read:
the source's manifest says which blobs a snapshot needs, the destination's index which it
has (from earlier copies, or from backups of the same data). Their stored frames are checked
like a restore checks them and appended as they are to the destination's packs, and the
snapshot record is the source's, unchanged.

Otherwise (either side encrypted) every blob a snapshot needs is read and opened with the
source's key, named and sealed with the destination's (compressed anew), and stored unless
the destination has it by that name; the manifest, whose lines name blobs, is written anew
with the destination's names (same entries, same cut rule), and the record names the new
manifest pieces. Everything else in it is the source's: the id, time, host, tags and folder,
so `--snapshot ID` names the copy as it names the original. The source's name of each blob
and the destination's are held in memory for one snapshot at a time (about 150 bytes per
distinct blob). Nothing plain is ever written into an encrypted destination: the record,
index objects and every blob go through the destination's codec.

Packs are written, then indexed, as by a backup, under the destination's writer claim. The
record comes last. A copy killed at any point leaves no record, and the packs it indexed
count as present for the next copy, which writes only what is still missing (between
encrypted repositories it reads the source's blobs again to learn their names); packs
written but not yet indexed are deleted by a later prune, as after a killed backup.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import structlog
import zstandard

from restore.claims.holder import WriterGuard
from restore.errors import IntegrityError
from restore.model import Copied
from restore.snapshots import prune as gc
from restore.snapshots.codec import SNAPSHOT_RECORD, Codec, PlainCodec
from restore.snapshots.format import KIND_DATA, KIND_MANIFEST, SnapshotRecord, pack_key, snapshot_key
from restore.snapshots.index import BlobIndex, load_index
from restore.snapshots.manifest import ManifestWriter, entries_of
from restore.snapshots.packer import Packer, Uploader
from restore.snapshots.reader import BlobLoader
from restore.snapshots.store import ObjectStore

# Source packs being read at once (16 MiB each at most), ahead of the one being written.
_AHEAD = 4
# How blobs sealed anew are compressed: as a backup does by default.
_LEVEL = 3
_Frames = list[tuple[bytes, bytes, bytes, int, int]]  # source id, destination id, stored, raw length, kind


@dataclasses.dataclass(frozen=True)
class Side:
    """One repository of a copy: its store and its codec."""

    store: ObjectStore
    codec: Codec


def shared_names(source: Codec, dest: Codec) -> bool:
    """Whether a blob has the same name and stored bytes in both repositories (both
    unencrypted): then frames are copied as they are, and only what the destination lacks
    is read."""
    return isinstance(source, PlainCodec) and isinstance(dest, PlainCodec)


class Source:
    """The repository copied from: its store and index, and the destination's codec."""

    def __init__(self, store: ObjectStore, index: BlobIndex, dest: Codec) -> None:
        self.store = store
        self.index = index
        self.dest = dest
        self.same = shared_names(index.codec, dest)

    def wanted(self, record: SnapshotRecord, has: Packer) -> dict[int, list[bytes]]:
        """The blobs of `record` to read, grouped by source pack (a manifest the restore
        would refuse is refused here too): those the destination lacks when names are
        shared, else every data blob. Raise IntegrityError naming a blob the source lacks."""
        wanted: dict[int, list[bytes]] = collections.defaultdict(list)
        seen: set[bytes] = set()
        loader = BlobLoader(self.store, self.index)
        needed = (chunk for entry in entries_of(record, loader) for chunk in entry.chunks)
        for blob in (*record.manifest, *needed) if self.same else needed:
            if blob in seen or (self.same and has.knows(blob)):
                continue
            seen.add(blob)
            if blob not in self.index:
                raise IntegrityError(
                    f"snapshot {record.info.id} cannot be copied: blob {blob.hex()} is missing"
                )
            wanted[self.index.pack_of(blob)].append(blob)
        return wanted

    def frames(self, pack: int, blobs: list[bytes]) -> _Frames:
        """The blobs as the destination stores them, each checked (opened, and its name
        matched) on the way. Raise IntegrityError if one is bad."""
        key = pack_key(self.index.packs[pack])
        places = [(blob, self.index.locate(blob)) for blob in blobs]
        needed = sum(where.length for _, where in places if where is not None)
        whole = self.store.get(key) if needed * 2 >= self.index.pack_sizes[pack] else None
        compressor = None if self.same else zstandard.ZstdCompressor(level=_LEVEL)
        found: _Frames = []
        for blob, where in places:
            assert where is not None  # noqa: S101 - grouped from the index itself
            end = where.offset + where.length
            if whole is None:
                stored = self.store.get_range(key, where.offset, where.length)
            else:
                stored = whole[where.offset : end]
            if len(stored) != where.length:
                raise IntegrityError(f"blob {blob.hex()} in {key} is truncated or mis-indexed")
            plain = self.index.codec.open_blob(stored, blob, where.kind, key)
            if len(plain) != where.raw_length:
                raise IntegrityError(f"blob {blob.hex()} in {key} is mis-indexed")
            if compressor is None:
                found.append((blob, blob, stored, where.raw_length, where.kind))
                continue
            name = self.dest.blob_id(plain)
            sealed = self.dest.seal_blob(compressor.compress(plain), name, where.kind)
            found.append((blob, name, sealed, where.raw_length, where.kind))
        return found


def copy_snapshots(
    source: Side,
    records: Sequence[SnapshotRecord],
    dest: Side,
    claim: WriterGuard,
    workers: int,
) -> list[Copied]:
    """Copy the records' snapshots that the destination lacks, oldest first, under `claim`
    (held by the caller, with the destination created). Return what was done."""
    present = {key.rpartition("/")[2] for key in (o.key for o in dest.store.list(snapshot_key("")))}
    todo = sorted((r for r in records if r.info.id not in present), key=lambda r: r.info.time)
    done = [Copied(r.info, copied=False) for r in records if r.info.id in present]
    if not todo:
        return done
    reader = Source(source.store, load_index(source.store, source.codec, workers), dest.codec)
    index = load_index(dest.store, dest.codec, workers)
    uploader = Uploader(dest.store, dest.codec, workers=workers, in_flight=2)
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copy") as pool:
            copier = _Copier(reader, index, uploader, pool, dest, claim)
            done.extend(copier.copy(record) for record in todo)
    finally:
        uploader.close()
    if gc.merge_due(index):
        del index  # the merge reads the index again: never hold two
        claim.check()
        gc.merge_small(dest.store, load_index(dest.store, dest.codec, workers))
    return done


class _Copier:
    """Copies snapshots into one destination: its index, uploader and claim."""

    def __init__(  # noqa: PLR0917 - the parts of one copy run, each used
        self,
        source: Source,
        index: BlobIndex,
        uploader: Uploader,
        pool: ThreadPoolExecutor,
        dest: Side,
        claim: WriterGuard,
    ) -> None:
        self.source = source
        self.index = index
        self.uploader = uploader
        self.pool = pool
        self.dest = dest
        self.claim = claim

    def copy(self, record: SnapshotRecord) -> Copied:
        packers = {kind: Packer(self.index, self.uploader, kind=kind) for kind in (KIND_DATA, KIND_MANIFEST)}
        wanted = self.source.wanted(record, packers[KIND_DATA])
        names: dict[bytes, bytes] = {}
        blobs = stored = 0
        for frames in _fetched(self.pool, self.source, wanted):
            for blob, name, frame, raw_length, kind in frames:
                names[blob] = name
                if packers[kind].add(name, frame, raw_length):
                    blobs += 1
                    stored += len(frame)
        if not self.source.same:
            record, written = self._renamed(record, names, packers[KIND_MANIFEST])
            blobs += written[0]
            stored += written[1]
        for packer in packers.values():
            packer.flush()
        self.uploader.wait()
        self.claim.check()
        # Written last: from this moment on the copy exists, and everything it needs is durable.
        key = snapshot_key(record.info.id)
        self.dest.store.create(key, self.dest.codec.seal(record.encode(), SNAPSHOT_RECORD, key))
        structlog.get_logger().info("copy.snapshot", snapshot=record.info.id, blobs=blobs, bytes=stored)
        return Copied(record.info, copied=True, blobs=blobs, bytes=stored)

    def _renamed(
        self, record: SnapshotRecord, names: dict[bytes, bytes], manifests: Packer
    ) -> tuple[SnapshotRecord, tuple[int, int]]:
        """The record with its manifest written anew under the destination's blob names;
        and how many manifest pieces and bytes were stored."""
        codec, compressor = self.dest.codec, zstandard.ZstdCompressor(level=_LEVEL)
        written = [0, 0]

        def store_piece(raw: bytes) -> bytes:
            piece = codec.blob_id(raw)
            frame = codec.seal_blob(compressor.compress(raw), piece, KIND_MANIFEST)
            if manifests.add(piece, frame, len(raw)):
                written[0] += 1
                written[1] += len(frame)
            return piece

        writer = ManifestWriter(store_piece)
        loader = BlobLoader(self.source.store, self.source.index)
        for entry in entries_of(record, loader):
            writer.add(entry._replace(chunks=tuple(names[chunk] for chunk in entry.chunks)))
        pieces = writer.finish()
        return dataclasses.replace(record, manifest=pieces, entries=writer.count), (written[0], written[1])


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
