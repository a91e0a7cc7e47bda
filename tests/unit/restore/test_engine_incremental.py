"""Deduplication and change detection, asserted by bytes read and bytes stored."""

from __future__ import annotations

import os
from pathlib import Path

from restore.backends.local import LocalStore
from restore.initcontainer.progress import LogProgress
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from tests.support.trees import age_tree, describe, restored, write_file


def _objects(store: LocalStore, prefix: str) -> int:
    return sum(1 for _ in store.list(prefix))


def test_identical_content_is_stored_once(engine: Engine, source: Path) -> None:
    blob = os.urandom(2 << 20)
    write_file(source / "a", blob)
    write_file(source / "b" / "copy", blob)
    result = engine.backup(source, BackupOptions())
    assert result.stats.bytes_read == 2 * len(blob)
    assert len(blob) <= result.stats.bytes_stored < len(blob) + 4096


def test_unchanged_files_are_not_read_again(engine: Engine, source: Path) -> None:
    for i in range(20):
        write_file(source / f"f{i}", os.urandom(100_000))
    age_tree(source)
    first = engine.backup(source, BackupOptions())
    second = engine.backup(source, BackupOptions())
    assert first.stats.bytes_read == 2_000_000
    assert second.stats.bytes_read == 0
    assert second.stats.files_unchanged == 20
    assert second.stats.bytes_stored == 0
    assert second.changed is False


def test_only_the_changed_file_is_read(engine: Engine, source: Path) -> None:
    for i in range(10):
        write_file(source / f"f{i}", os.urandom(50_000))
    age_tree(source)
    engine.backup(source, BackupOptions())
    write_file(source / "f3", os.urandom(50_000), mtime_ns=1_700_000_000 * 10**9)
    result = engine.backup(source, BackupOptions())
    assert result.stats.bytes_read == 50_000
    assert (result.stats.files_changed, result.stats.files_unchanged) == (1, 9)
    assert 50_000 <= result.stats.bytes_stored < 60_000
    assert result.changed is True


def test_recently_modified_files_are_reread(engine: Engine, source: Path) -> None:
    # mtime equal to "now": the file may change again within the same timestamp tick.
    write_file(source / "hot", b"1", mtime_ns=int(engine._clock().timestamp() * 1e9))
    engine.backup(source, BackupOptions())
    result = engine.backup(source, BackupOptions())
    assert result.stats.bytes_read == 1


def test_many_small_files_become_few_objects(engine: Engine, source: Path, store: LocalStore) -> None:
    for i in range(20_000):
        write_file(source / f"d{i % 50}" / f"file{i}", f"content number {i}\n".encode() * 3)
    result = engine.backup(source, BackupOptions())
    assert result.stats.files == 20_000
    assert _objects(store, "data/") < 10
    assert _objects(store, "snapshots/") == 1


def test_large_file_is_chunked_and_deduplicated_on_append(engine: Engine, source: Path) -> None:
    base = os.urandom(8 << 20)
    write_file(source / "log", base)
    engine.backup(source, BackupOptions())
    write_file(source / "log", base + b"appended", mtime_ns=1_700_000_000 * 10**9)
    result = engine.backup(source, BackupOptions())
    # Fixed 1 MiB chunks: only the last, partial chunk is new.
    assert result.stats.bytes_stored < 64 << 10


def test_deleted_files_disappear_from_the_next_snapshot(engine: Engine, source: Path, tmp_path: Path) -> None:
    write_file(source / "a", b"1")
    write_file(source / "b", b"2")
    engine.backup(source, BackupOptions())
    (source / "a").unlink()
    result = engine.backup(source, BackupOptions())
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(result.snapshot.id, dest)
    assert [p.name for p in dest.iterdir()] == ["b"]


def test_unchanged_files_restore_from_an_incremental_snapshot(
    engine: Engine, source: Path, tmp_path: Path
) -> None:
    write_file(source / "a", os.urandom(3 << 20))
    write_file(source / "b", b"small")
    age_tree(source)
    engine.backup(source, BackupOptions())
    result = engine.backup(source, BackupOptions())
    assert result.stats.files_unchanged == 2
    assert restored(engine, result.snapshot.id, tmp_path / "dest") == describe(source)


def test_rewrite_with_reset_mtime_is_noticed_by_its_ctime(engine: Engine, source: Path) -> None:
    # Tools that preserve timestamps (rsync -t, tar -x, a restore) rewrite content and put
    # the old mtime back; the change time still moves, so the file is read again.
    write_file(source / "db", b"version 1")
    age_tree(source)
    engine.backup(source, BackupOptions())
    info = (source / "db").stat()
    (source / "db").write_bytes(b"version 2")
    os.utime(source / "db", ns=(info.st_atime_ns, info.st_mtime_ns))
    result = engine.backup(source, BackupOptions())
    assert (result.stats.files_changed, result.stats.bytes_read) == (1, 9)


def test_metadata_changes_reach_the_next_snapshot(engine: Engine, source: Path, tmp_path: Path) -> None:
    # Unchanged entries reuse their previous manifest line; a changed folder mode, folder
    # mtime or symlink target must not be hidden by that shortcut.
    write_file(source / "d" / "keep", b"same")
    write_file(source / "e" / "keep", b"same")
    (source / "link").symlink_to("d/keep")
    age_tree(source)
    engine.backup(source, BackupOptions())
    (source / "d").chmod(0o700)
    (source / "link").unlink()
    (source / "link").symlink_to("e/keep")
    os.utime(source / "e", ns=(10**18, 10**18))
    result = engine.backup(source, BackupOptions())
    assert result.stats.files_unchanged == 2
    assert restored(engine, result.snapshot.id, tmp_path / "dest") == describe(source)


def test_skip_unchanged_records_no_snapshot_until_something_changes(
    engine: Engine, source: Path, store: LocalStore
) -> None:
    for i in range(5):
        write_file(source / f"f{i}", os.urandom(10_000))
    age_tree(source)
    options = BackupOptions(skip_unchanged=True)
    first = engine.backup(source, options)
    objects = _objects(store, "")
    second = engine.backup(source, options)
    assert first.recorded is True
    assert (second.recorded, second.changed) == (False, False)
    assert second.snapshot == first.snapshot  # the previous snapshot stands for this run
    assert second.stats.objects_written == 0
    assert _objects(store, "") == objects  # nothing written at all
    assert [s.id for s in engine.snapshots()] == [first.snapshot.id]
    write_file(source / "f1", os.urandom(10_000), mtime_ns=1_700_000_000 * 10**9)
    third = engine.backup(source, options)
    assert third.recorded is True
    assert {s.id for s in engine.snapshots()} == {third.snapshot.id, first.snapshot.id}


def test_without_skip_unchanged_an_unchanged_folder_is_recorded_again(engine: Engine, source: Path) -> None:
    write_file(source / "f", b"x")
    age_tree(source)
    engine.backup(source, BackupOptions())
    again = engine.backup(source, BackupOptions())
    assert (again.recorded, again.changed) == (True, False)
    assert len(engine.snapshots()) == 2


def test_backup_progress_counts_against_the_previous_snapshots_size(engine: Engine, source: Path) -> None:
    for i in range(4):
        write_file(source / f"f{i}", os.urandom(25_000))
    age_tree(source)
    lines: list[dict[str, object]] = []

    class Log:
        def info(self, event: str, **fields: object) -> None:
            lines.append({"event": event, **fields})

    first = LogProgress(Log(), interval_seconds=0, event="backup.progress")
    engine.backup(source, BackupOptions(), first)
    assert lines[-1]["bytes_total"] == 0  # no previous snapshot: no total, no ETA
    assert (lines[-1]["percent"], lines[-1]["eta_seconds"]) == (None, None)
    lines.clear()
    engine.backup(source, BackupOptions(), LogProgress(Log(), interval_seconds=0, event="backup.progress"))
    assert {line["event"] for line in lines} == {"backup.progress"}
    assert (lines[-1]["files_total"], lines[-1]["bytes_total"]) == (4, 100_000)
    assert (lines[-1]["files"], lines[-1]["bytes"], lines[-1]["percent"]) == (4, 100_000, 100.0)
    assert lines[-1]["eta_seconds"] == 0.0
