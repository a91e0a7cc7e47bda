"""A pack that whoever can write to the storage made huge (its real bytes, then garbage) is read
only as far as the index says it reaches: restore and verify never pull the rest into memory."""

from __future__ import annotations

import os
from pathlib import Path

from restore.backends.local import LocalStore
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from restore.snapshots.format import DATA
from tests.support.keys import sealed
from tests.support.trees import describe, write_file

GARBAGE = 32 << 20


class CountingStore(LocalStore):
    """A real local store that counts the bytes its reads return."""

    read = 0

    def get(self, key: str) -> bytes:
        data = super().get(key)
        self.read += len(data)
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = super().get_range(key, start, length)
        self.read += len(data)
        return data


def test_restore_and_verify_read_no_more_of_a_pack_than_the_index_covers(tmp_path: Path) -> None:
    source = write_file(tmp_path / "source" / "data.bin", os.urandom(3 << 20)).parent
    store = CountingStore(tmp_path / "repo")
    engine = Engine(store, encryption=sealed(), owner="test")
    snapshot = engine.backup(source, BackupOptions()).snapshot
    for item in store.list(DATA):
        with (store.root / item.key).open("ab") as pack:
            pack.write(b"\0" * GARBAGE)
    (tmp_path / "restored").mkdir()
    store.read = 0
    engine.restore(snapshot.id, tmp_path / "restored")
    assert describe(tmp_path / "restored") == describe(source)
    assert store.read < GARBAGE
    store.read = 0
    engine.verify(read_data=1.0)
    assert store.read < GARBAGE
