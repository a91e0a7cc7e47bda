"""Prune replaces index objects: merged when many, rewritten when they name a deleted pack.

The invariant checked throughout: every pack an index object names exists. An entry for a
deleted pack would let a later backup deduplicate against data that is gone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zstandard
from structlog.testing import capture_logs

from restore.backends.local import LocalStore
from restore.errors import PermanentBackendError, TransientBackendError
from restore.model import BackupOptions
from restore.retention import RetentionPolicy
from restore.snapshots.codec import PlainCodec
from restore.snapshots.engine import Engine
from restore.snapshots.format import (
    DATA,
    INDEX,
    KIND_DATA,
    BlobEntry,
    decode_index,
    encode_index,
    pack_key,
)
from restore.snapshots.index import load_index
from restore.snapshots.prune import MERGE_ABOVE, MERGE_ABOVE_IN_BACKUP
from restore.snapshots.store import StoredObject
from tests.conftest import FakeClock
from tests.support.forge import forge_snapshot, line
from tests.support.keys import UNENCRYPTED
from tests.support.trees import describe, restored, write_file

KEEP_ALL = RetentionPolicy(last=1000)


def index_objects(store: LocalStore) -> list[str]:
    return [o.key for o in store.list(INDEX)]


def named_packs(store: LocalStore) -> list[str]:
    """Every pack named by any index object (with repeats)."""
    return [pack_key(pack) for key in index_objects(store) for pack, _ in decode_index(store.get(key), key)]


def assert_indexed_packs_exist(store: LocalStore) -> None:
    stored = {o.key for o in store.list(DATA)}
    assert set(named_packs(store)) <= stored


def daily_backups(engine: Engine, clock: FakeClock, source: Path, days: int) -> dict[str, bytes]:
    """A new file a day; return every file's content by name."""
    contents = {}
    for day in range(days):
        contents[f"day{day}.bin"] = os.urandom(50_000 + day)
        write_file(source / f"day{day}.bin", contents[f"day{day}.bin"])
        engine.backup(source, BackupOptions())
        clock.advance(days=1)
    return contents


@pytest.fixture
def merged(engine: Engine, store: LocalStore, clock: FakeClock, source: Path) -> dict[str, bytes]:
    """A repository whose many small index objects one prune has merged into one."""
    contents = daily_backups(engine, clock, source, MERGE_ABOVE + 2)
    assert len(index_objects(store)) > MERGE_ABOVE + 2  # one per pack: data and manifest
    engine.prune(KEEP_ALL, now=clock())
    return contents


class TestMerge:
    def test_many_small_objects_become_one_and_every_snapshot_still_restores(
        self, engine, store, merged, source, tmp_path
    ):
        assert len(index_objects(store)) == 1
        assert len(named_packs(store)) == len(list(store.list(DATA)))
        assert_indexed_packs_exist(store)
        assert all(r.ok for r in engine.verify(read_data=1.0))
        newest = engine.snapshots()[0].id
        assert restored(engine, newest, tmp_path / "dest") == describe(source)

    def test_the_merged_index_still_deduplicates(self, engine, store, merged, source):
        stored = sum(o.size for o in store.list(DATA))
        write_file(source / "copy.bin", merged["day3.bin"])
        result = engine.backup(source, BackupOptions())
        assert result.stats.bytes_read == len(merged["day3.bin"])
        assert result.stats.bytes_stored < 2_000  # the manifest only
        assert sum(o.size for o in store.list(DATA)) - stored == result.stats.bytes_stored

    def test_few_objects_are_left_alone(self, engine, store, clock, source):
        daily_backups(engine, clock, source, 3)
        before = index_objects(store)
        engine.prune(KEEP_ALL, now=clock())
        assert index_objects(store) == before

    def test_dry_run_writes_and_deletes_nothing(self, engine, store, clock, source):
        daily_backups(engine, clock, source, MERGE_ABOVE + 2)
        objects = sorted(o.key for o in store.list(""))
        engine.prune(KEEP_ALL, now=clock(), dry_run=True)
        assert sorted(o.key for o in store.list("")) == objects


def test_a_never_pruned_repository_is_merged_by_a_backup_now_and_then(engine, store, clock, source, tmp_path):
    # Each backup writes two packs (data and manifest), each with its own index object.
    backups = MERGE_ABOVE_IN_BACKUP // 2
    daily_backups(engine, clock, source, backups)
    assert len(index_objects(store)) == 2 * backups
    write_file(source / "one more", b"tips it over")
    newest = engine.backup(source, BackupOptions()).snapshot.id
    assert len(index_objects(store)) == 1
    assert_indexed_packs_exist(store)
    assert len(named_packs(store)) == len(list(store.list(DATA)))
    assert restored(engine, newest, tmp_path / "dest") == describe(source)
    assert all(r.ok for r in engine.verify(read_data=1.0))


class RefusesIndexDeletes(LocalStore):
    def delete(self, keys: list[str]) -> None:
        if any(k.startswith(INDEX) for k in keys):
            raise PermanentBackendError("deletes are not allowed here")
        super().delete(keys)


def test_a_failed_merge_after_a_backup_does_not_fail_the_backup(engine, store, clock, source):
    daily_backups(engine, clock, source, MERGE_ABOVE_IN_BACKUP // 2)
    write_file(source / "one more", b"tips it over")
    refusing = Engine(RefusesIndexDeletes(store.root), encryption=UNENCRYPTED, clock=clock, owner="test")
    with capture_logs() as logs:
        result = refusing.backup(source, BackupOptions())
    assert result.snapshot.id in {s.id for s in engine.snapshots()}
    assert [e["error"] for e in logs if e["event"] == "backup.index_merge_failed"] == [
        "deletes are not allowed here"
    ]
    assert_indexed_packs_exist(store)
    engine.prune(KEEP_ALL, now=clock())
    assert len(index_objects(store)) == 1


class TestDeletedPacks:
    def test_a_merged_object_naming_a_deleted_pack_is_rewritten(
        self, engine, store, clock, merged, source, tmp_path
    ):
        for name in list(merged)[:-1]:
            (source / name).unlink()
        keep = engine.backup(source, BackupOptions()).snapshot.id
        packs_before = len(list(store.list(DATA)))
        engine.prune(RetentionPolicy(last=1), now=clock())
        assert len(list(store.list(DATA))) < packs_before  # packs named by the merged object went
        assert_indexed_packs_exist(store)
        # The content of a deleted file comes back: it must be stored again, not
        # "deduplicated" against the pack that was deleted.
        write_file(source / "back.bin", merged["day0.bin"])
        again = engine.backup(source, BackupOptions())
        assert again.stats.bytes_read == len(merged["day0.bin"])
        assert again.stats.bytes_stored > 40_000
        assert restored(engine, again.snapshot.id, tmp_path / "dest") == describe(source)
        assert all(r.ok for r in engine.verify(read_data=1.0))
        assert keep in {s.id for s in engine.snapshots()}


class _Crash(BaseException):
    """Stands for SIGKILL: nothing after it runs, no cleanup catches it."""


class CrashingStore(LocalStore):
    """A local store that stops dead at its n-th put or delete."""

    def __init__(self, root: Path, at: int) -> None:
        super().__init__(root)
        self.left = at

    def _step(self) -> None:
        self.left -= 1
        if self.left == 0:
            raise _Crash

    def put(self, key: str, data: bytes | bytearray) -> None:
        if key.startswith(INDEX):
            self._step()
        super().put(key, data)

    def delete(self, keys: list[str]) -> None:
        self._step()
        super().delete(keys)


# Prune's writes in order: delete snapshot records, put the merged index, delete the old
# index objects, delete packs. Crash before each of the last three.
CRASH_POINTS = {"before the new index": 2, "before old index objects go": 3, "before packs go": 4}


@pytest.mark.parametrize("point", sorted(CRASH_POINTS))
def test_a_prune_killed_at_any_step_leaves_a_usable_repository(
    point, engine, store, clock, merged, source, tmp_path
):
    for name in list(merged)[:-3]:
        (source / name).unlink()
    engine.backup(source, BackupOptions())
    crashing = Engine(
        CrashingStore(store.root, CRASH_POINTS[point]), encryption=UNENCRYPTED, clock=clock, owner="test"
    )
    with pytest.raises(_Crash):
        crashing.prune(RetentionPolicy(last=1), now=clock())
    assert_indexed_packs_exist(store)
    store.delete(["lease"])  # the killed prune's lease, as expiry would
    for number, info in enumerate(engine.snapshots()):
        assert restored(engine, info.id, tmp_path / f"dest{number}")
    engine.prune(RetentionPolicy(last=1), now=clock())
    assert_indexed_packs_exist(store)
    assert len(named_packs(store)) == len(set(named_packs(store)))  # no entry left twice
    write_file(source / "back.bin", merged["day0.bin"])
    again = engine.backup(source, BackupOptions())
    assert restored(engine, again.snapshot.id, tmp_path / "final") == describe(source)
    assert all(r.ok for r in engine.verify(read_data=1.0))


def assert_every_pack_indexed(store: LocalStore) -> None:
    assert set(named_packs(store)) == {o.key for o in store.list(DATA)}


@pytest.mark.parametrize("first", ["killed before old objects go", "its deletes failed"])
def test_a_merge_repeated_after_it_was_cut_short_keeps_the_index_it_writes(
    first, engine, store, clock, source, tmp_path
):
    # The repeated merge writes the same bytes under the same content-named key as the
    # object the first one left: that object must not go with the ones it replaces.
    daily_backups(engine, clock, source, MERGE_ABOVE + 2)
    cut_short = (
        CrashingStore(store.root, CRASH_POINTS["before old index objects go"])
        if first.startswith("killed")
        else RefusesIndexDeletes(store.root)
    )
    with pytest.raises((_Crash, PermanentBackendError)):
        Engine(cut_short, encryption=UNENCRYPTED, clock=clock, owner="test").prune(KEEP_ALL, now=clock())
    store.delete(["lease"])
    engine.prune(KEEP_ALL, now=clock())
    assert len(index_objects(store)) == 1
    assert_every_pack_indexed(store)
    assert all(r.ok for r in engine.verify(read_data=1.0))
    assert restored(engine, engine.snapshots()[0].id, tmp_path / "dest") == describe(source)


def test_a_backup_merge_repeated_after_failed_deletes_keeps_the_index_it_writes(engine, store, clock, source):
    daily_backups(engine, clock, source, MERGE_ABOVE_IN_BACKUP // 2)
    write_file(source / "one more", b"tips it over")
    refusing = Engine(RefusesIndexDeletes(store.root), encryption=UNENCRYPTED, clock=clock, owner="test")
    refusing.backup(source, BackupOptions())  # merged object written, old ones kept
    refusing.backup(source, BackupOptions())  # nothing changed: the same merged object again
    engine.backup(source, BackupOptions())
    assert len(index_objects(store)) == 1
    assert_every_pack_indexed(store)
    assert all(r.ok for r in engine.verify(read_data=1.0))


def _pack(store: LocalStore, blobs: list[bytes]) -> tuple[bytes, list[BlobEntry]]:
    pack, body, entries = os.urandom(32), b"", []
    for data in blobs:
        frame = zstandard.ZstdCompressor().compress(data)
        entries.append(BlobEntry(PlainCodec().blob_id(data), KIND_DATA, len(body), len(frame), len(data)))
        body += frame
    store.put(pack_key(pack), body)
    return pack, entries


def test_a_blob_stored_twice_keeps_an_index_entry_when_descriptions_overlap(store, tmp_path):
    """What an interrupted merge can leave when blob X is stored in packs P1 and P2: an old
    object naming P1 complete (and a dead P3), P2's object, and P1 rewritten without X
    (X was found in P2 then). The prune must index P1 anew, complete, not trust the partial
    description and drop the only entries for X."""
    x, a, b, c = (os.urandom(1000) for _ in range(4))
    p1, (x_in_p1, a_in_p1) = _pack(store, [x, a])
    p2, (x_in_p2, b_in_p2) = _pack(store, [x, b])
    p3, (c_in_p3,) = _pack(store, [c])
    store.put(f"{INDEX}{'00' * 32}", encode_index([(p1, [x_in_p1, a_in_p1]), (p3, [c_in_p3])]))
    store.put(f"{INDEX}{'80' * 32}", encode_index([(p2, [x_in_p2, b_in_p2])]))
    store.put(f"{INDEX}{'ff' * 32}", encode_index([(p1, [a_in_p1])]))
    day = datetime(2030, 1, 1, tzinfo=UTC)
    forge_snapshot(
        store,
        [
            line("b", size=1000, chunks=[PlainCodec().blob_id(b)]),
            line("c", size=1000, chunks=[PlainCodec().blob_id(c)]),
        ],
        "0000000000000001",
        day,
    )
    keep = forge_snapshot(
        store,
        [
            line("a", size=1000, chunks=[PlainCodec().blob_id(a)]),
            line("x", size=1000, chunks=[PlainCodec().blob_id(x)]),
        ],
        "0000000000000002",
        day + timedelta(days=1),
    )
    engine = Engine(store, encryption=UNENCRYPTED, clock=FakeClock(day + timedelta(days=2)), owner="test")
    engine.prune(RetentionPolicy(last=1), now=day + timedelta(days=2))
    assert [s.id for s in engine.snapshots()] == [keep]
    assert PlainCodec().blob_id(x) in load_index(store, PlainCodec(), workers=2)
    assert_indexed_packs_exist(store)
    assert all(r.ok for r in engine.verify(read_data=1.0))
    assert set(restored(engine, keep, tmp_path / "dest")) == {"a", "x"}


class ListsThenPrunes(LocalStore):
    """Lets a prune run between a reader's listing of the index and its reads: the race
    of a restore in one pod with a prune in another."""

    def __init__(self, root: Path, prune: Callable[[list[str]], object], times: int) -> None:
        super().__init__(root)
        self.prune = prune
        self.times = times

    def list(self, prefix: str) -> Iterator[StoredObject]:
        listed = list(super().list(prefix))
        if prefix == INDEX and self.times:
            self.times -= 1
            self.prune([o.key for o in listed])
        return iter(listed)


def test_a_reader_that_listed_replaced_index_objects_lists_again(engine, store, clock, source):
    daily_backups(engine, clock, source, MERGE_ABOVE + 2)
    racing = ListsThenPrunes(store.root, lambda _: engine.prune(KEEP_ALL, now=clock()), times=1)
    index = load_index(racing, PlainCodec(), workers=2)
    assert len(index_objects(store)) == 1  # the prune did run in between
    assert len(index.objects) == 1
    assert sum(d.blobs for d in index.objects.values()) == len(index)


class PrunesBeforeTheSecondListing(LocalStore):
    def __init__(self, root: Path, prune: Callable[[], object]) -> None:
        super().__init__(root)
        self.prune = prune
        self.listings = 0

    def list(self, prefix: str) -> Iterator[StoredObject]:
        if prefix == INDEX:
            self.listings += 1
            if self.listings == 2:
                self.prune()
        return super().list(prefix)


def test_a_reader_whose_objects_were_replaced_after_it_read_them_starts_over(engine, store, clock, source):
    # Kept, the objects read first could name packs the prune deletes next.
    daily_backups(engine, clock, source, MERGE_ABOVE + 2)
    racing = PrunesBeforeTheSecondListing(store.root, lambda: engine.prune(KEEP_ALL, now=clock()))
    index = load_index(racing, PlainCodec(), workers=2)
    assert racing.listings == 3
    assert set(index.objects) == set(index_objects(store))
    assert set(index.blobs()) == set(load_index(store, PlainCodec(), workers=2).blobs())


class PagedListing(LocalStore):
    """Lists one key per page, as S3 lists a thousand, and lets `between` run after the
    first page: a replacement can then land in a page already listed while the object it
    replaces vanishes from one not listed yet."""

    def __init__(self, root: Path, between: Callable[[], object]) -> None:
        super().__init__(root)
        self.between: Callable[[], object] | None = between

    def list(self, prefix: str) -> Iterator[StoredObject]:
        keys = list(super().list(prefix))
        if not keys:
            return
        yield keys[0]
        if prefix == INDEX and self.between is not None:
            between, self.between = self.between, None
            between()
        yield from (o for o in super().list(prefix) if o.key > keys[0].key)


def test_a_reader_whose_paged_listing_missed_a_replacement_lists_again(engine, store, clock, source):
    daily_backups(engine, clock, source, 4)
    complete = load_index(store, PlainCodec(), workers=2)
    first, *others = index_objects(store)

    def replace_the_others() -> None:
        # As a prune does, the replacement first, here under a key before `first`.
        replacement = f"{INDEX}{'00' * 32}"
        assert replacement < first
        packs = [number for key in others for number in complete.objects[key].packs]
        store.put(replacement, encode_index(complete.pack_entries(packs)))
        store.delete(others)

    index = load_index(PagedListing(store.root, replace_the_others), PlainCodec(), workers=2)
    assert set(index.blobs()) == set(complete.blobs())


class ListsAGhost(LocalStore):
    """Lists, the first `times` times, one more index object that is gone when read."""

    def __init__(self, root: Path, times: int) -> None:
        super().__init__(root)
        self.times = times
        self.listings = 0

    def list(self, prefix: str) -> Iterator[StoredObject]:
        yield from super().list(prefix)
        if prefix == INDEX:
            self.listings += 1
            if self.listings <= self.times:
                yield StoredObject(f"{INDEX}{self.listings:064x}", 1, datetime.now(UTC))


def test_a_listed_object_gone_without_replacement_is_skipped(engine, store, clock, source):
    # What a prune does to an object whose packs are all dead: deletes it, replaces nothing.
    daily_backups(engine, clock, source, 2)
    index = load_index(ListsAGhost(store.root, times=1), PlainCodec(), workers=2)
    assert set(index.blobs()) == set(load_index(store, PlainCodec(), workers=2).blobs())


def test_a_reader_gives_up_when_index_objects_keep_vanishing(engine, store, clock, source):
    daily_backups(engine, clock, source, 2)
    ghosts = ListsAGhost(store.root, times=100)
    with pytest.raises(TransientBackendError, match="the index kept changing while it was read"):
        load_index(ghosts, PlainCodec(), workers=2)
    assert ghosts.listings == 4
