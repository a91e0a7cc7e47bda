"""A restore reads each whole pack in segments: a blob across two or more segments is joined,
every segment is read once, and a pack cut short is named as truncated. The segments are made
a few KiB long here, so that the small packs of a test hold many."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.errors import IntegrityError
from restore.model import BackupOptions
from restore.snapshots import reader
from restore.snapshots.engine import Engine
from restore.snapshots.format import DATA
from tests.support.keys import sealed
from tests.support.trees import describe, write_file

SEGMENT = 4096


class RangeLog(LocalStore):
    """A real local store that records the ranges the restore's pack reader reads (on its
    `fetch` threads; manifests are read elsewhere, once per pass)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.ranges: list[tuple[str, int, int]] = []

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if threading.current_thread().name.startswith("fetch"):
            self.ranges.append((key, start, length))
        return super().get_range(key, start, length)


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "SEGMENT", SEGMENT)


def backed_up(tmp_path: Path) -> tuple[Path, RangeLog, Engine, str]:
    rng = random.Random(7)
    source = tmp_path / "source"
    for n in range(40):  # incompressible, 100 B to 40 KiB: blobs within one segment and across up to 11
        write_file(source / f"f{n:02}", rng.randbytes(rng.randint(100, 40_000)))
    store = RangeLog(tmp_path / "repo")
    engine = Engine(store, encryption=sealed(), owner="test")
    snapshot = engine.backup(source, BackupOptions()).snapshot
    return source, store, engine, snapshot.id


def test_blobs_across_segments_are_joined_and_every_segment_is_read_once(tmp_path: Path) -> None:
    source, store, engine, snapshot = backed_up(tmp_path)
    (tmp_path / "restored").mkdir()
    engine.restore(snapshot, tmp_path / "restored")
    assert describe(tmp_path / "restored") == describe(source)
    packs = {item.key: item.size for item in store.list(DATA)}
    read = {key for key, _, _ in store.ranges}
    assert len(store.ranges) == len(set(store.ranges)) > len(read)
    for key in read:  # read whole, in segments, each once
        segments = sorted((start, length) for k, start, length in store.ranges if k == key)
        size = packs[key]
        assert segments == [(start, min(SEGMENT, size - start)) for start in range(0, size, SEGMENT)]


def test_a_pack_cut_short_is_named_truncated(tmp_path: Path) -> None:
    _, store, engine, snapshot = backed_up(tmp_path)
    for item in store.list(DATA):
        os.truncate(store.root / item.key, item.size // 2)
    (tmp_path / "restored").mkdir()
    with pytest.raises(IntegrityError, match="pack is truncated"):
        engine.restore(snapshot, tmp_path / "restored")
