"""How a restore reads the packs a history of incremental backups leaves: the blobs of packs
it needs little of go out together, not one round trip after another, and a small pack it
needs whole is read once, however its blobs interleave with other packs'."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from restore.backends.local import LocalStore
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from restore.snapshots.format import DATA
from tests.conftest import FakeClock
from tests.support.keys import sealed
from tests.support.trees import age_tree, describe, restored, write_file

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


def test_the_blobs_of_packs_read_in_part_are_fetched_together(source: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    clock = FakeClock()
    for i in range(SMALL_FILES):
        write_file(source / f"f{i:02}", os.urandom(10_000))
    age_tree(source)
    Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="web-0").backup(source, BackupOptions())
    for i in range(KEPT, SMALL_FILES):
        (source / f"f{i:02}").unlink()  # what is left needs a fifth of the first pack
    clock.advance(hours=1)
    latest = Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="web-0").backup(
        source, BackupOptions()
    )

    store = Gathering(root)
    engine = Engine(store, encryption=sealed(), clock=clock, owner="web-0")
    assert restored(engine, latest.snapshot.id, tmp_path / "out") == describe(source)
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
        latest = Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="web-0").backup(
            source, BackupOptions()
        )
        clock.advance(hours=1)
    packs = sorted((p for p in (root / DATA).rglob("*") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    assert len(packs) == 12  # per backup, one of content and one of manifest
    needed = sum(p.stat().st_size for p in packs[2:])  # the first backup's are not needed
    store = Counting(root)
    engine = Engine(store, encryption=sealed(), clock=clock, owner="web-0")
    assert restored(engine, latest.snapshot.id, tmp_path / "out") == describe(source)
    assert store.read <= needed + (64 << 10), (store.read, needed)  # and the manifest, read on its own
