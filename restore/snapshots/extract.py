"""Write a snapshot into an empty folder, checking every byte, never outside that folder.

Two passes over the manifest: the first validates every entry (hostile paths, order,
sizes), checks that every blob is indexed, sums what is needed and plans the pack reads —
before a single byte is written. The second writes.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from restore.diskflush import WRITEBACK_STEP, Writeback
from restore.errors import IntegrityError, LocalIOError
from restore.model import SHOWN_FILES, Damage, Progress, RestoreStats
from restore.selection import Selection
from restore.snapshots.format import BlobDamageError, SnapshotRecord, pack_key
from restore.snapshots.index import BlobIndex
from restore.snapshots.manifest import DIR, FILE, Entry, entries_of
from restore.snapshots.reader import BlobLoader, ChunkFeed, PackPlan, PackReader
from restore.snapshots.store import ObjectStore


def damage_error(snapshot: str, damage: list[Damage]) -> IntegrityError:
    lines = [f"{d.object}: {d.problem} (files: {', '.join(d.files[:SHOWN_FILES]) or 'none'})" for d in damage]
    return IntegrityError(f"snapshot {snapshot} cannot be restored: " + "; ".join(lines))


def chosen_entries(
    record: SnapshotRecord, loader: BlobLoader, selection: Selection | None
) -> Iterator[Entry]:
    """The validated entries of a snapshot that `selection` chooses (all without one)."""
    entries = entries_of(record, loader)
    if selection is None or selection.everything:
        return entries
    return selection.filter(entries, lambda e: e.path, lambda e: e.kind == DIR)


def plan_restore(
    record: SnapshotRecord, index: BlobIndex, loader: BlobLoader, selection: Selection | None = None
) -> tuple[PackPlan, RestoreStats]:
    """Validate the whole manifest and plan the reads of the chosen entries. Raise
    IntegrityError before any write."""
    plan = PackPlan()
    totals = RestoreStats()
    missing: dict[bytes, list[str]] = {}
    for entry in chosen_entries(record, loader, selection):
        _count(totals, entry)
        size = 0
        complete = True
        for chunk in entry.chunks:
            where = index.locate(chunk)
            if where is None:
                missing.setdefault(chunk, []).append(entry.path)
                complete = False
                continue
            size += where.raw_length
            plan.add(index.pack_of(chunk), where.length)
        if entry.kind == FILE and complete and size != entry.size:
            raise IntegrityError(
                f"manifest entry {entry.path!r} says {entry.size} bytes, its chunks hold {size}"
            )
    if missing:
        damage = [
            Damage(object=f"blob {b.hex()}", problem="missing", files=tuple(f[:SHOWN_FILES]))
            for b, f in missing.items()
        ]
        raise damage_error(record.info.id, damage)
    return plan, totals


def _count(stats: RestoreStats, entry: Entry) -> None:
    if entry.kind == FILE:
        stats.files += 1
        stats.bytes += entry.size
    elif entry.kind == DIR:
        stats.dirs += 1
    else:
        stats.symlinks += 1


def check_space(dest: Path, needed: int) -> None:
    free = shutil.disk_usage(dest).free
    if needed > free:
        raise LocalIOError(f"not enough space in {dest}: the snapshot needs {needed} bytes, {free} are free")


class TreeWriter:
    """Creates entries under `dest`. Folders get their final mode and mtime when left."""

    def __init__(self, dest: Path, feed: ChunkFeed, progress: Progress) -> None:
        self._dest = str(dest)
        self._feed = feed
        self._progress = progress
        self._writeback = Writeback()
        self._open: list[Entry] = []
        self._as_root = os.geteuid() == 0
        self.stats = RestoreStats()

    def write(self, entry: Entry) -> None:
        parent = entry.path.rpartition("/")[0]
        while self._open and self._open[-1].path != parent:
            self._finish_dir(self._open.pop())
        full = os.path.join(self._dest, entry.path)
        _count(self.stats, entry)
        if entry.kind == DIR:
            os.mkdir(full, 0o700)
            self._open.append(entry)
        elif entry.kind == FILE:
            self._write_file(full, entry)
        else:
            os.symlink(entry.target, full)
            self._owner(full, entry)
            os.utime(full, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
            self._progress.advance(files=1)

    def _owner(self, full: str, entry: Entry) -> None:
        if self._as_root:
            os.lchown(full, entry.uid, entry.gid)

    def _write_file(self, full: str, entry: Entry) -> None:
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            written = handed = 0
            for _ in entry.chunks:
                data = self._feed.next()
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                written += len(data)
                self._progress.advance(bytes=len(data))
                if written - handed >= WRITEBACK_STEP:
                    self._writeback.start(fd, handed, written)
                    handed = written
            if written > handed:
                self._writeback.start(fd, handed, written)
            if written != entry.size:
                raise IntegrityError(
                    f"{entry.path}: content is {written} bytes, the manifest says {entry.size}"
                )
            if self._as_root:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, entry.mode)
        finally:
            os.close(fd)
        os.utime(full, ns=(entry.mtime_ns, entry.mtime_ns))
        self._progress.advance(files=1)

    def _finish_dir(self, entry: Entry) -> None:
        full = os.path.join(self._dest, entry.path)
        self._owner(full, entry)
        os.chmod(full, entry.mode)
        os.utime(full, ns=(entry.mtime_ns, entry.mtime_ns))

    def finish(self) -> None:
        while self._open:
            self._finish_dir(self._open.pop())


def extract_tree(
    *,
    store: ObjectStore,
    index: BlobIndex,
    record: SnapshotRecord,
    dest: Path,
    progress: Progress,
    workers: int,
    selection: Selection | None = None,
) -> RestoreStats:
    loader = BlobLoader(store, index)
    plan, totals = plan_restore(record, index, loader, selection)
    check_space(dest, totals.bytes)
    progress.start(files=totals.files + totals.symlinks, bytes=totals.bytes)
    reader = PackReader(store, index, plan, workers=workers)
    # One pass over the manifest, read at two points: the feed decodes a few chunks ahead
    # of the writer, so what tee() buffers between them stays small.
    to_write, ahead = itertools.tee(chosen_entries(record, loader, selection))
    chunk_ids = (chunk for entry in ahead for chunk in entry.chunks)
    feed = ChunkFeed(reader, chunk_ids, workers=max(2, os.cpu_count() or 1))
    writer = TreeWriter(dest, feed, progress)
    try:
        for entry in to_write:
            writer.write(entry)
        writer.finish()
    except BlobDamageError as error:
        raise _with_files(error, record, index, loader) from error
    except OSError as error:
        raise LocalIOError(f"cannot write into {dest}: {error.strerror} ({error.filename})") from error
    finally:
        feed.close()
        reader.close()
    return writer.stats


def _with_files(
    error: BlobDamageError, record: SnapshotRecord, index: BlobIndex, loader: BlobLoader
) -> IntegrityError:
    """Name the files a bad blob or pack breaks (one more manifest pass, only on failure)."""
    hits: list[str] = []
    for entry in entries_of(record, loader):
        if any(_affected(chunk, error, index) for chunk in entry.chunks):
            hits.append(entry.path)
            if len(hits) >= SHOWN_FILES:
                break
    name = f"blob {error.blob.hex()}" if error.blob else ""
    target = " in ".join(filter(None, [name, error.pack or ""]))
    return damage_error(record.info.id, [Damage(object=target, problem=error.problem, files=tuple(hits))])


def _affected(chunk: bytes, error: BlobDamageError, index: BlobIndex) -> bool:
    if chunk == error.blob:
        return True
    where = index.locate(chunk)
    return error.pack is not None and where is not None and pack_key(where.pack) == error.pack
