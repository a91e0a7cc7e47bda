"""Backups and prunes that merge and replace index objects, stopped after every single
store operation: each state in between keeps the repository sound.

The writers' operations are recorded once, then replayed one at a time. After each, as if
the process had been killed right there: no index object names a pack that is gone (a
later backup would deduplicate against it), and every blob that a snapshot still listed
needs is indexed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.errors import ObjectNotFoundError
from restore.model import BackupOptions
from restore.retention import RetentionPolicy
from restore.snapshots import prune as gc
from restore.snapshots.codec import PlainCodec
from restore.snapshots.engine import Engine
from restore.snapshots.format import DATA, INDEX, LEASE_KEY, SNAPSHOTS, SnapshotRecord, decode_index, pack_key
from restore.snapshots.index import load_index
from restore.snapshots.reader import BlobLoader
from restore.snapshots.store import StoredObject
from tests.conftest import FakeClock
from tests.support.keys import UNENCRYPTED
from tests.support.trees import write_file

Operation = tuple[str, str, bytes | None]


class Recording(LocalStore):
    """A local store that records every write and delete (the lease's aside)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.trace: list[Operation] = []

    def put(self, key: str, data: bytes | bytearray) -> None:
        super().put(key, data)
        if key != LEASE_KEY:
            self.trace.append(("put", key, bytes(data)))

    def create(self, key: str, data: bytes) -> bool:
        done = super().create(key, data)
        if done and key != LEASE_KEY:
            self.trace.append(("put", key, data))
        return done

    def delete(self, keys: Sequence[str]) -> None:
        super().delete(keys)
        self.trace += [("delete", key, None) for key in keys if key != LEASE_KEY]


class State:
    """The objects a store holds at one moment, readable as a store."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def apply(self, operation: Operation) -> None:
        _, key, data = operation
        if data is None:
            del self.objects[key]
        else:
            self.objects[key] = data

    def list(self, prefix: str) -> Iterator[StoredObject]:
        moment = datetime(2030, 1, 1, tzinfo=UTC)
        return iter(
            [StoredObject(k, len(v), moment) for k, v in sorted(self.objects.items()) if k.startswith(prefix)]
        )

    def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise ObjectNotFoundError(key)
        return self.objects[key]

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.get(key)[start : start + length]


def problems(state: State) -> list[str]:
    """What is unsound about this state, if a writer stopped here."""
    stored = {k for k in state.objects if k.startswith(DATA)}
    named = {
        pack_key(p) for k, v in state.objects.items() if k.startswith(INDEX) for p, _ in decode_index(v, k)
    }
    found = [f"index names missing pack {key}" for key in sorted(named - stored)]
    index = load_index(state, PlainCodec(), workers=1)  # type: ignore[arg-type]
    records = [SnapshotRecord.decode(v, k) for k, v in state.objects.items() if k.startswith(SNAPSHOTS)]
    needed = gc.referenced_blobs(records, BlobLoader(state, index))  # type: ignore[arg-type]
    found += [f"needed blob {blob.hex()} is not indexed" for blob in needed if blob not in index]
    return found


def test_every_state_of_backups_and_prunes_that_replace_index_objects_is_sound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small merged objects: a merge writes several, so a stop can fall between them.
    monkeypatch.setattr(gc, "BLOBS_PER_INDEX", 6)
    store = Recording(tmp_path / "repo")
    clock = FakeClock()
    engine = Engine(store, encryption=UNENCRYPTED, clock=clock, owner="test", workers=1)
    source = tmp_path / "data"
    for day in range(gc.MERGE_ABOVE + 2):
        write_file(source / f"day{day}.bin", os.urandom(3000 + day))
        engine.backup(source, BackupOptions())
        clock.advance(days=1)
    state = State({o.key: store.get(o.key) for o in store.list("") if o.key != LEASE_KEY})
    store.trace.clear()
    for day in range(4):
        (source / f"day{day}.bin").unlink()
    engine.backup(source, BackupOptions())
    engine.prune(RetentionPolicy(last=5), now=clock())  # merges, and deletes packs
    (source / "day5.bin").unlink()
    write_file(source / "new.bin", os.urandom(5000))
    engine.backup(source, BackupOptions())
    engine.prune(RetentionPolicy(last=2), now=clock())  # replaces merged objects
    assert sum(1 for _, key, data in store.trace if key.startswith(INDEX) and data is None) > 20
    for step, operation in enumerate(store.trace):
        state.apply(operation)
        assert not problems(state), f"after {step + 1} of {len(store.trace)} operations ({operation[:2]})"
    assert all(r.ok for r in engine.verify(read_data=1.0))
