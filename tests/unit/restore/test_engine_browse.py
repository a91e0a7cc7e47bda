"""Browsing object-store snapshots: what ls, diff, find and dump read, and what they refuse.

A counting wrapper around the real local store shows what each operation reads: a diff of
two snapshots that share most of their manifest reads only the pieces that differ, a search
across snapshots reads each distinct piece once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.errors import IntegrityError
from restore.model import BackupOptions, SnapshotInfo
from restore.nodes import DIR, FILE, SYMLINK
from restore.selection import Selection
from restore.snapshots.engine import Engine
from restore.snapshots.format import (
    CONFIG_KEY,
    DATA,
    KIND_MANIFEST,
    SnapshotRecord,
    snapshot_key,
)
from restore.snapshots.manifest import ManifestWriter
from restore.snapshots.repokey import RepositoryConfig
from tests.conftest import FakeClock
from tests.support.forge import forge_blob, forge_snapshot, line
from tests.support.keys import UNENCRYPTED
from tests.support.trees import write_file


class CountingStore(LocalStore):
    """The local store, counting the range reads of packs (how manifest pieces are read)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.range_reads = 0

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if key.startswith(DATA):
            self.range_reads += 1
        return super().get_range(key, start, length)


@pytest.fixture
def counting(tmp_path: Path) -> CountingStore:
    return CountingStore(tmp_path / "repo")


@pytest.fixture
def browsed(counting: CountingStore, clock: FakeClock) -> Engine:
    return Engine(counting, encryption=UNENCRYPTED, clock=clock, owner="test")


def big_listing(extra: Sequence[str] = (), removed: Sequence[str] = ()) -> list[bytes]:
    """Manifest lines of 30 folders of 600 empty files (many pieces), plus and minus some."""
    paths = {f"d{d:02d}/file-{f:04d}.txt" for d in range(30) for f in range(600)} | set(extra)
    paths -= set(removed)
    folders = [(f"d{d:02d}", "d") for d in range(30)]
    entries = sorted([*folders, *((p, "f") for p in paths)], key=lambda e: e[0].replace("/", "\0"))
    return [line(path, kind) for path, kind in entries]


def forged(store: LocalStore, lines: list[bytes], hour: int) -> str:
    """A snapshot of these lines, cut into pieces as a backup cuts them."""
    writer = ManifestWriter(lambda raw: forge_blob(store, raw, KIND_MANIFEST))
    for raw in lines:
        writer.add_line(raw.split(b'"')[1].decode(), raw)
    moment = datetime(2026, 1, 15, hour, tzinfo=UTC)
    snapshot = f"{hour:016x}"
    info = SnapshotInfo(id=snapshot, time=moment, files=len(lines), dirs=0, bytes=0)
    record = SnapshotRecord(info=info, manifest=writer.finish(), entries=writer.count, started=moment)
    store.create(CONFIG_KEY, RepositoryConfig("f0" * 16, encrypted=False).encode())
    store.put(snapshot_key(snapshot), record.encode())
    return snapshot


def backup(engine: Engine, source: Path, clock: FakeClock) -> str:
    clock.advance(minutes=1)
    return engine.backup(source, BackupOptions(host="web-0")).snapshot.id


def test_ls_lists_every_entry_in_manifest_order_with_metadata(
    engine: Engine, source: Path, clock: FakeClock
) -> None:
    write_file(source / "conf" / "app.yaml", b"answer: 42\n", mode=0o600)
    write_file(source / "conf.bak", b"old")
    (source / "current").symlink_to("conf/app.yaml")
    snapshot = backup(engine, source, clock)
    listed = list(engine.nodes(snapshot))
    assert [(n.path, n.kind) for n in listed] == [
        ("conf", DIR),
        ("conf/app.yaml", FILE),
        ("conf.bak", FILE),
        ("current", SYMLINK),
    ]
    app = listed[1]
    assert (app.mode, app.size, app.permissions()) == (0o600, 11, "-rw-------")
    assert listed[3].target == "conf/app.yaml"
    assert [n.path for n in engine.nodes(snapshot, Selection.subtree("conf"))] == ["conf", "conf/app.yaml"]


def test_diff_reads_only_the_pieces_that_differ(browsed: Engine, counting: CountingStore) -> None:
    first = forged(counting, big_listing(), 1)
    second = forged(counting, big_listing(extra=["d13/new.txt"], removed=["d07/file-0007.txt"]), 2)
    pieces = len(browsed.record(second).manifest)
    assert pieces >= 10, "the listing is too small to span several manifest pieces"
    counting.range_reads = 0
    changes = [(c.kind, c.path) for c in browsed.diff(first, second)]
    assert changes == [("removed", "d07/file-0007.txt"), ("added", "d13/new.txt")]
    assert counting.range_reads <= 8 < pieces
    counting.range_reads = 0
    assert list(browsed.diff(second, second)) == []
    assert counting.range_reads == 0


def test_find_reads_each_distinct_piece_once(browsed: Engine, counting: CountingStore) -> None:
    snapshots = [forged(counting, big_listing(), 1)]
    for round_ in range(3):
        extra = [f"d03/extra-{n}.txt" for n in range(round_ + 1)]
        snapshots.append(forged(counting, big_listing(extra=extra), round_ + 2))
    distinct = {p for s in snapshots for p in browsed.record(s).manifest}
    counting.range_reads = 0
    found = list(browsed.find(snapshots, lambda n: n.path.startswith("d03/extra-")))
    assert [(info.id, node.path) for info, node in found] == [
        (snapshots[1], "d03/extra-0.txt"),
        (snapshots[2], "d03/extra-0.txt"),
        (snapshots[2], "d03/extra-1.txt"),
        (snapshots[3], "d03/extra-0.txt"),
        (snapshots[3], "d03/extra-1.txt"),
        (snapshots[3], "d03/extra-2.txt"),
    ]
    assert counting.range_reads == len(distinct) < sum(len(browsed.record(s).manifest) for s in snapshots)


def test_contents_are_the_files_bytes(engine: Engine, source: Path, clock: FakeClock) -> None:
    payload = os.urandom(3 << 20)
    write_file(source / "big.bin", payload)
    write_file(source / "small" / "a.txt", b"a")
    (source / "small" / "link").symlink_to("a.txt")
    snapshot = backup(engine, source, clock)
    got = {node.path: b"".join(data) for node, data in engine.contents(snapshot)}
    assert got == {"big.bin": payload, "small": b"", "small/a.txt": b"a", "small/link": b""}
    chosen = [n.path for n, _ in engine.contents(snapshot, Selection(["a.txt"]))]
    assert chosen == ["small", "small/a.txt"]


def test_hostile_manifests_are_refused_by_every_browsing_operation(engine: Engine, store: LocalStore) -> None:
    chunk = forge_blob(store, b"hello")
    hostile: Sequence[bytes] = [line("../escape", size=5, chunks=[chunk])]
    snapshot = forge_snapshot(store, list(hostile))
    with pytest.raises(IntegrityError, match="unsafe path"):
        list(engine.nodes(snapshot))
    with pytest.raises(IntegrityError, match="unsafe path"):
        list(engine.diff(forge_snapshot(store, [], "0" * 16), snapshot))
    with pytest.raises(IntegrityError, match="unsafe path"):
        list(engine.find([snapshot], lambda n: True))
    with pytest.raises(IntegrityError, match="unsafe path"):
        list(engine.contents(snapshot))


def test_contents_refuse_a_file_whose_bytes_do_not_add_up(engine: Engine, store: LocalStore) -> None:
    chunk = forge_blob(store, b"hello")
    snapshot = forge_snapshot(store, [line("short.txt", size=7, chunks=[chunk])])
    with pytest.raises(IntegrityError, match="says 7 bytes"):
        list(engine.contents(snapshot))
