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

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta

from restore.backends import ObjectStore
from restore.snapshots.format import (
    DATA,
    BlobEntry,
    SnapshotRecord,
    blob_id,
    encode_index,
    index_key,
    pack_key,
    snapshot_key,
)
from restore.snapshots.index import BlobIndex
from restore.snapshots.reader import BlobLoader
from restore.snapshots.restorer import entries_of

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
    """(index objects to delete, live packs of theirs that no kept object describes).

    An object naming a dead pack always goes: kept, it would offer that pack's blobs to
    deduplication after the pack is deleted.
    """
    objects = index.objects
    replaced = {key for key, described in objects.items() if not live.issuperset(described.packs)}
    small = [k for k, d in objects.items() if k not in replaced and d.blobs < BLOBS_PER_INDEX // 2]
    if len(small) > merge_above:
        replaced.update(small)
    still_described = {p for key, d in objects.items() if key not in replaced for p in d.packs}
    orphaned = {p for key in replaced for p in objects[key].packs if p in live}
    return sorted(replaced), sorted(orphaned - still_described)


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


def write_index(store: ObjectStore, index: BlobIndex, packs: list[int]) -> None:
    """Index `packs` in new objects, each named after its content."""
    for batch in _batches(index, packs):
        data = encode_index(batch)
        store.put(index_key(blob_id(data)), data)


def merge_small(store: ObjectStore, index: BlobIndex) -> int:
    """After a backup: merge small index objects if there are very many. Return how many went."""
    keys, packs = index_plan(index, set(range(len(index.packs))), MERGE_ABOVE_IN_BACKUP)
    write_index(store, index, packs)
    store.delete(keys)
    return len(keys)


def delete_in_order(store: ObjectStore, forgotten: list[str], index: BlobIndex, cleanup: Cleanup) -> None:
    store.delete([snapshot_key(s) for s in forgotten])
    write_index(store, index, cleanup.reindexed)
    store.delete(cleanup.index_keys)
    store.delete(cleanup.packs)
