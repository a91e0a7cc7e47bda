"""Forget snapshots by policy, then delete what no remaining snapshot references.

Deletion order matters: snapshot records first (they stop being restorable at once), then
index objects, then packs. A crash in between leaves unindexed packs (removed later),
never an index entry pointing at a deleted pack that a later backup could reuse.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from restore.backends import ObjectStore
from restore.snapshots.format import DATA, SnapshotRecord, pack_key, snapshot_key
from restore.snapshots.index import BlobIndex
from restore.snapshots.reader import BlobLoader
from restore.snapshots.restorer import entries_of

# Unindexed packs are what a running (or killed) backup leaves before it writes its
# index: keep them this long, so a writer that lost its lease is never robbed mid-way.
ORPHAN_GRACE = timedelta(hours=1)


def referenced_blobs(records: list[SnapshotRecord], loader: BlobLoader) -> set[bytes]:
    used: set[bytes] = set()
    for record in records:
        used.update(record.manifest)
        for entry in entries_of(record, loader):
            used.update(entry.chunks)
    return used


def unused_objects(
    store: ObjectStore, index: BlobIndex, used: set[bytes], now: datetime
) -> tuple[list[str], list[str], int]:
    """Return (index keys, pack keys, bytes) that nothing references any more."""
    live = {index.pack_of(b) for b in used if b in index}
    dead_numbers = [n for n in range(len(index.packs)) if n not in live]
    dead_packs = {pack_key(index.packs[n]) for n in dead_numbers}
    # An index object may describe several packs: delete it only when all of them go.
    live_keys = {index.index_keys[index.packs[n]] for n in live}
    index_keys = sorted({index.index_keys[index.packs[n]] for n in dead_numbers} - live_keys)
    indexed = {pack_key(p) for p in index.packs}
    freed = 0
    packs: list[str] = []
    for item in store.list(DATA):
        orphan = item.key not in indexed and now - item.modified > ORPHAN_GRACE
        if item.key in dead_packs or orphan:
            packs.append(item.key)
            freed += item.size
    return index_keys, packs, freed


def delete_in_order(
    store: ObjectStore, forgotten: list[str], index_keys: list[str], packs: list[str]
) -> None:
    store.delete([snapshot_key(s) for s in forgotten])
    store.delete(index_keys)
    store.delete(packs)
