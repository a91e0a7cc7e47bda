"""Forget snapshots by policy, then delete what no remaining snapshot references.

Deletion order matters: snapshot records first (they stop being restorable at once), then
the replacement index objects are written, then old index objects are deleted, then packs.
A crash in between leaves unindexed packs (removed later) or an index entry twice (harmless),
never an index entry pointing at a deleted pack that a later backup could reuse.

Index objects: a backup writes one per pack, and every backup and restore reads them all.
Prune replaces every object that names a pack it deletes, and merges the small ones once
there are many, so that cost stays bounded however long the history.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import structlog

from restore.errors import IntegrityError
from restore.model import PruneResult
from restore.retention import RetentionPolicy, select
from restore.snapshots.codec import INDEX_OBJECT, Codec
from restore.snapshots.format import (
    DATA,
    BlobEntry,
    SnapshotRecord,
    encode_index,
    index_key,
    pack_key,
    snapshot_key,
)
from restore.snapshots.index import BlobIndex, load_index
from restore.snapshots.manifest import entries_of
from restore.snapshots.reader import BlobLoader
from restore.snapshots.store import ObjectStore

# Unindexed packs are what a running (or killed) backup leaves before it writes its
# index: keep them this long, so a writer that lost its lease is never robbed mid-way.
ORPHAN_GRACE = timedelta(hours=1)
# Blobs per merged index object (about 45 bytes each, decoded), and how many smaller
# objects may accumulate before a prune merges them; a backup merges them too, rarely,
# for repositories that are never pruned.
BLOBS_PER_INDEX = 100_000
MERGE_ABOVE = 16
MERGE_ABOVE_IN_BACKUP = 256


@dataclasses.dataclass(frozen=True)
class Cleanup:
    """What a prune deletes, and the packs whose index entries it writes anew first."""

    index_keys: list[str]
    reindexed: list[int]
    packs: list[str]
    freed: int


def referenced_blobs(records: list[SnapshotRecord], loader: BlobLoader) -> set[bytes]:
    used: set[bytes] = set()
    for record in records:
        used.update(record.manifest)
        for entry in entries_of(record, loader):
            used.update(entry.chunks)
    return used


def index_plan(
    index: BlobIndex, live: set[int], merge_above: int = MERGE_ABOVE
) -> tuple[list[str], list[int]]:
    """(index objects to delete, live packs of theirs to index anew first).

    An object naming a dead pack always goes: kept, it would offer that pack's blobs to
    deduplication after the pack is deleted. So do all objects describing a pack that
    another object describes too (what a crash between writing and deleting leaves): the
    pack is indexed anew once, complete, and no kept object shares a pack with one that goes.
    """
    objects = index.objects
    described = collections.Counter(p for d in objects.values() for p in d.packs)
    replaced = {
        key
        for key, d in objects.items()
        if not live.issuperset(d.packs) or any(described[p] > 1 for p in d.packs)
    }
    small = [k for k, d in objects.items() if k not in replaced and d.blobs < BLOBS_PER_INDEX // 2]
    if len(small) > merge_above:
        replaced.update(small)
    return sorted(replaced), sorted({p for key in replaced for p in objects[key].packs if p in live})


def unused_objects(store: ObjectStore, index: BlobIndex, used: set[bytes], now: datetime) -> Cleanup:
    """What nothing references any more, and the index objects to replace."""
    live = {index.pack_of(b) for b in used if b in index}
    dead_packs = {pack_key(p) for n, p in enumerate(index.packs) if n not in live}
    index_keys, reindexed = index_plan(index, live)
    indexed = {pack_key(p) for p in index.packs}
    freed = 0
    packs: list[str] = []
    for item in store.list(DATA):
        orphan = item.key not in indexed and now - item.modified > ORPHAN_GRACE
        if item.key in dead_packs or orphan:
            packs.append(item.key)
            freed += item.size
    return Cleanup(index_keys=index_keys, reindexed=reindexed, packs=packs, freed=freed)


def _batches(index: BlobIndex, packs: list[int]) -> Iterator[list[tuple[bytes, list[BlobEntry]]]]:
    batch: list[tuple[bytes, list[BlobEntry]]] = []
    blobs = 0
    for pack, entries in index.pack_entries(packs):
        batch.append((pack, entries))
        blobs += len(entries)
        if blobs >= BLOBS_PER_INDEX:
            yield batch
            batch, blobs = [], 0
    if batch:
        yield batch


def write_index(store: ObjectStore, index: BlobIndex, packs: list[int]) -> set[str]:
    """Index `packs` in new objects, each named after its content (its id, as a blob's);
    return their keys.

    A prune repeated after a crash writes the same content again, under the same key as the
    object it left: that key must then not be deleted with the objects it replaces.
    """
    written = set()
    for batch in _batches(index, packs):
        data = encode_index(batch)
        key = index_key(index.codec.blob_id(data))
        store.put(key, index.codec.seal(data, INDEX_OBJECT, key))
        written.add(key)
    return written


def replace_index(store: ObjectStore, index: BlobIndex, keys: list[str], packs: list[int]) -> None:
    """Index `packs` anew, then delete the objects `keys` (never one just written)."""
    written = write_index(store, index, packs)
    store.delete([key for key in keys if key not in written])


def _backup_plan(index: BlobIndex) -> tuple[list[str], list[int]]:
    return index_plan(index, set(range(len(index.packs))), MERGE_ABOVE_IN_BACKUP)


def merge_due(index: BlobIndex) -> bool:
    """After a backup: are there so many small index objects that it should merge them?"""
    return bool(_backup_plan(index)[0])


def merge_small(store: ObjectStore, index: BlobIndex) -> int:
    """Merge small index objects if there are very many. Return how many went."""
    keys, packs = _backup_plan(index)
    replace_index(store, index, keys, packs)
    return len(keys)


def delete_in_order(store: ObjectStore, forgotten: list[str], index: BlobIndex, cleanup: Cleanup) -> None:
    store.delete([snapshot_key(s) for s in forgotten])
    replace_index(store, index, cleanup.index_keys, cleanup.reindexed)
    store.delete(cleanup.packs)


def prune(
    store: ObjectStore,
    records: list[SnapshotRecord],
    codec: Codec,
    policy: RetentionPolicy,
    *,
    now: datetime,
    dry_run: bool,
    workers: int,
    check: Callable[[], None],
) -> PruneResult:
    """Forget the records `policy` removes and delete what the rest do not use (the caller
    holds the writer claim; `check` raises if it was lost); with `dry_run`, only say what
    that would be. Raise IntegrityError if index objects do not authenticate."""
    chosen = select([r.info for r in records], policy, now)
    removed_ids = {s.id for s in chosen.remove}
    kept = [r for r in records if r.info.id not in removed_ids]
    index = load_index(store, codec, workers)
    if index.unreadable:
        raise IntegrityError(
            "refusing to prune: index objects that do not authenticate (planted, or damaged) "
            f"would leave packs unaccounted for: {', '.join(sorted(index.unreadable))}; "
            "delete them if they were planted, then prune again"
        )
    used = referenced_blobs(kept, BlobLoader(store, index))
    cleanup = unused_objects(store, index, used, now)
    if not dry_run:
        check()  # the plan took a while: still the writer before deleting anything
        delete_in_order(store, sorted(removed_ids), index, cleanup)
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
