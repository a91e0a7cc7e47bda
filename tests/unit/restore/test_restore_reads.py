"""How a restore reads the packs a history of incremental backups leaves: the blobs of packs
it needs little of go out together, not one round trip after another, and a small pack it
needs whole is read once, however its blobs interleave with other packs'."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from restore.backends.local import LocalStore
from restore.errors import IntegrityError
from restore.model import BackupOptions
from restore.selection import Selection
from restore.snapshots import extract, manifest, reader
from restore.snapshots.engine import Engine
from restore.snapshots.format import DATA
from restore.snapshots.index import load_index
from restore.snapshots.manifest import entries_of
from restore.snapshots.packer import Packer
from tests.conftest import FakeClock
from tests.support.keys import sealed
from tests.support.trees import age_tree, describe, restored, write_file

if TYPE_CHECKING:
    from restore.snapshots.codec import Decompressor

SMALL_FILES = 40
KEPT = 8


class Gathering(LocalStore):
    """Counts the range reads of packs in flight at once. Each waits (up to 0.3 s) for a
    third to join it, so reads that go out together are seen together."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._joined = threading.Condition()
        self._in_flight = 0
        self.most = 0

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if not key.startswith(DATA):
            return super().get_range(key, start, length)
        with self._joined:
            self._in_flight += 1
            self.most = max(self.most, self._in_flight)
            self._joined.notify_all()
            self._joined.wait_for(lambda: self._in_flight >= 3 or self.most >= 3, timeout=0.3)
        try:
            return super().get_range(key, start, length)
        finally:
            with self._joined:
                self._in_flight -= 1


class Counting(LocalStore):
    """Counts the bytes read from packs."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read = 0

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = super().get_range(key, start, length)
        if key.startswith(DATA):
            self.read += len(data)
        return data


def partly_needed(source: Path, root: Path, clock: FakeClock) -> str:
    """Two snapshots of SMALL_FILES small files, then of KEPT of them: the second needs a
    fifth of the first one's pack, so its blobs are read one by one. Return the second's id."""
    for i in range(SMALL_FILES):
        write_file(source / f"f{i:02}", os.urandom(10_000))
    age_tree(source)
    Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="web-0").backup(source, BackupOptions())
    for i in range(KEPT, SMALL_FILES):
        (source / f"f{i:02}").unlink()
    clock.advance(hours=1)
    engine = Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="web-0")
    return engine.backup(source, BackupOptions()).snapshot.id


def test_the_blobs_of_packs_read_in_part_are_fetched_together(source: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    clock = FakeClock()
    latest = partly_needed(source, root, clock)

    store = Gathering(root)
    engine = Engine(store, encryption=sealed(), clock=clock, owner="web-0")
    assert restored(engine, latest, tmp_path / "out") == describe(source)
    assert store.most >= 3


def test_small_packs_taken_in_turn_are_each_read_once(source: Path, tmp_path: Path) -> None:
    """Six backups, each rewriting every sixth file: the files of the last snapshot come from
    five small packs in turn (a00 from the first, a01 from the second, ...)."""
    root = tmp_path / "repo"
    clock = FakeClock()
    names = [f"a{i:02}" for i in range(30)]
    for rewritten in [names, *(names[r::5] for r in range(5))]:
        for name in rewritten:
            write_file(source / name, os.urandom(20_000))
        age_tree(source)
        engine = Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="web-0")
        latest = engine.backup(source, BackupOptions()).snapshot.id
        clock.advance(hours=1)
    packs = sorted((p for p in (root / DATA).rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    assert len(packs) == 12  # per backup, one of content and one of manifest
    needed = sum(p.stat().st_size for p in packs[2:])  # the first backup's are not needed
    store = Counting(root)
    engine = Engine(store, encryption=sealed(), clock=clock, owner="web-0")
    assert restored(engine, latest, tmp_path / "out") == describe(source)
    assert store.read <= needed + (64 << 10), (store.read, needed)  # and the manifest, read on its own


class Checked(reader.PackReader):
    """A PackReader whose byte counts are checked against what it holds after every blob."""

    def blob(self, blob: bytes, decompressor: Decompressor = None) -> bytes:
        plain = super().blob(blob, decompressor)
        with self._lock:
            assert self._cached == sum(map(len, self._cache.values())) >= 0
            assert self._cached <= self._cache_bytes or len(self._cache) == 1
            assert self._ahead == sum(map(self._length, self._futures)) >= 0
        return plain


def test_many_small_packs_cost_the_read_ahead_work_per_pack_not_per_pack_in_flight(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Packs of a few KiB read whole (a long history of small backups): the bytes read ahead
    are counted as segments go out and come in, not summed over every segment in flight
    for every pack (6,000 packs spent 7 s there)."""
    monkeypatch.setattr(Packer.__init__, "__kwdefaults__", {"target": 4096})
    for i in range(600):
        write_file(source / f"f{i:03}", os.urandom(3000))
    age_tree(source)
    root = tmp_path / "repo"
    latest = (
        Engine(LocalStore(root), encryption=sealed(), owner="web-0")
        .backup(source, BackupOptions())
        .snapshot.id
    )
    lengths = 0
    length = reader.PackReader._length

    def counted(self: reader.PackReader, segment: reader.Segment) -> int:
        nonlocal lengths
        lengths += 1
        return length(self, segment)

    monkeypatch.setattr(reader.PackReader, "_length", counted)
    engine = Engine(LocalStore(root), encryption=sealed(), owner="web-0")
    assert restored(engine, latest, tmp_path / "out") == describe(source)
    packs = sum(1 for p in (root / DATA).rglob("*") if p.is_file())
    assert packs >= 300
    assert lengths <= 3 * packs, (lengths, packs)


def test_kept_and_read_ahead_bytes_add_up_through_a_mixed_history(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small segments, so blobs span them and kept segments are dropped for room; packs
    read whole and in part, the same chunk in many files, empty files, a selection."""
    monkeypatch.setattr(reader, "SEGMENT", 64 << 10)
    monkeypatch.setattr(extract, "PackReader", Checked)
    root = tmp_path / "repo"
    clock = FakeClock()
    zeros = bytes(300_000)
    for i in range(20):
        write_file(source / "big" / f"b{i:02}", os.urandom(150_000 + i * 7_001))
        write_file(source / "zero" / f"z{i:02}", zeros)
        write_file(source / "empty" / f"e{i:02}", b"")
    for step in range(4):
        for i in range(step, 20, 4):
            write_file(source / "big" / f"b{i:02}", os.urandom(90_000 + step))
            write_file(source / "small" / f"s{step}-{i:02}", os.urandom(500 + i))
        age_tree(source)
        engine = Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="web-0")
        latest = engine.backup(source, BackupOptions()).snapshot.id
        clock.advance(hours=1)
    engine = Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="web-0")
    assert restored(engine, latest, tmp_path / "out") == describe(source)
    (tmp_path / "some").mkdir()
    engine.restore(latest, tmp_path / "some", selection=Selection(include=["big", "zero/z0*"]))
    assert sorted(p.name for p in (tmp_path / "some" / "zero").iterdir()) == [f"z{i:02}" for i in range(10)]
    assert (tmp_path / "some" / "big" / "b07").read_bytes() == (source / "big" / "b07").read_bytes()


def test_a_truncated_pack_read_in_part_names_the_blob_the_pack_and_the_files(
    source: Path, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    clock = FakeClock()
    latest = partly_needed(source, root, clock)
    biggest = max((p for p in (root / DATA).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[: 3 * 10_000])  # the first few files are still there
    engine = Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="web-0")
    with pytest.raises(IntegrityError) as caught:
        restored(engine, latest, tmp_path / "out")
    message = str(caught.value)
    assert re.search(
        rf"blob [0-9a-f]{{64}} in \S*{biggest.name}: pack is truncated \(files: f0\d", message
    ), message


def test_a_blob_counts_against_the_read_ahead_at_its_stored_size_when_that_is_larger(
    source: Path, tmp_path: Path
) -> None:
    """Random bytes store larger than they are (frame and tag): the stored size is what a
    blob read on its own holds while queued, and what a hostile plain index could inflate."""
    write_file(source / "random", os.urandom(10_000))
    age_tree(source)
    store = LocalStore(tmp_path / "repo")
    engine = Engine(store, encryption=sealed(), clock=FakeClock(), owner="web-0")
    engine.backup(source, BackupOptions())
    index = load_index(store, engine.codec(), workers=2)
    pack_reader = reader.PackReader(store, index, reader.PackPlan(), workers=2)
    try:
        blob = next(b for b in index.blobs() if (e := index.extent(b)) and e.raw_length == 10_000)
        extent = index.extent(blob)
        assert extent is not None
        assert extent.length > extent.raw_length
        assert pack_reader.queued_length(blob) == extent.length
    finally:
        pack_reader.close()


def test_the_pieces_of_a_manifest_are_read_a_few_together_and_used_in_order(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On S3 each piece is a round trip: one after another, they were a backup's longest wait
    after its key derivation, and a restore's before its first file."""
    monkeypatch.setattr(manifest, "_MIN_PIECE", 2048)  # pieces of a few files each
    monkeypatch.setattr(manifest, "_CUT_MASK", 0x3)
    for i in range(300):
        write_file(source / f"folder-{i // 100}" / f"file-{i:03}", b"")
    age_tree(source)
    root = tmp_path / "repo"
    engine = Engine(LocalStore(root), encryption=sealed(), owner="web-0")
    record = engine.record(engine.backup(source, BackupOptions()).snapshot.id)
    assert len(record.manifest) >= 5
    index = load_index(LocalStore(root), engine.codec(), workers=4)
    one_by_one = [reader.BlobLoader(LocalStore(root), index)(piece) for piece in record.manifest]
    store = Gathering(root)
    loader = reader.BlobLoader(store, index)
    assert list(loader.in_order(record.manifest)) == one_by_one
    assert 3 <= store.most <= 4
    assert len([e.path for e in entries_of(record, loader)]) == 300 + 3
