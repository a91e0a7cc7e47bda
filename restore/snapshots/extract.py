"""Write a snapshot into an empty folder, checking every byte, never outside that folder.

Two passes over the manifest: the first validates every entry (hostile paths, order,
sizes), checks that every blob is indexed, sums what is needed and plans the pack reads —
before a single byte is written. The second writes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

from restore.errors import IntegrityError, LocalIOError
from restore.model import SHOWN_FILES, Damage, Progress, RestoreStats
from restore.selection import Selection
from restore.snapshots.format import BlobDamageError, SnapshotRecord, pack_key
from restore.snapshots.index import BlobIndex
from restore.snapshots.manifest import DIR, FILE, Entry, entries_of
from restore.snapshots.reader import BlobLoader, ChunkFeed, PackPlan, PackReader
from restore.snapshots.store import ObjectStore
from restore.snapshots.treewriter import TreeWriter, count, open_target, write_error


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
        count(totals, entry)
        size = 0
        complete = True
        for chunk in entry.chunks:
            extent = index.extent(chunk)
            if extent is None:
                missing.setdefault(chunk, []).append(entry.path)
                complete = False
                continue
            size += extent.raw_length
            plan.add(extent.pack, extent.length)
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


def check_space(dest: Path, root_fd: int, needed: int) -> None:
    info = os.fstatvfs(root_fd)
    free = info.f_bavail * info.f_frsize
    if needed > free:
        raise LocalIOError(f"not enough space in {dest}: the snapshot needs {needed} bytes, {free} are free")


def extract_tree(
    *,
    store: ObjectStore,
    index: BlobIndex,
    record: SnapshotRecord,
    dest: Path,
    progress: Progress,
    workers: int,
    selection: Selection | None = None,
    keep_setid: bool = False,
) -> RestoreStats:
    """Write the snapshot into the empty folder `dest` (see the module docstring).

    Raise IntegrityError if the snapshot is hostile or damaged, LocalIOError if `dest`
    cannot be written (or is not a folder, or something changed it meanwhile).
    """
    loader = BlobLoader(store, index)
    plan, totals = plan_restore(record, index, loader, selection)
    with open_target(dest) as root:
        check_space(dest, root.fd, totals.bytes)
        progress.start(files=totals.files + totals.symlinks, bytes=totals.bytes)
        reader = PackReader(store, index, plan, workers=workers)
        # One pass over the manifest, read at two points: the feed decodes a few chunks
        # ahead of the writer, so what tee() buffers between them stays small.
        to_write, ahead = itertools.tee(chosen_entries(record, loader, selection))
        chunk_ids = (chunk for entry in ahead for chunk in entry.chunks)
        feed = ChunkFeed(reader, chunk_ids, workers=max(2, os.cpu_count() or 1))
        writer = TreeWriter(root, feed, progress, keep_setid=keep_setid)
        try:
            writer.write_all(to_write)
        except BlobDamageError as error:
            raise _with_files(error, record, index, loader) from error
        except OSError as error:
            raise write_error(dest, error) from error
        finally:
            writer.close()
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
