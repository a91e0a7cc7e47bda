"""A file that changes while it is read is retried, then stored marked unstable and reported."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from tests.support.trees import write_file


def test_file_changing_during_read_is_reported(engine: Engine, source: Path) -> None:
    path = write_file(source / "busy.db", os.urandom(32 << 20))
    stop = threading.Event()

    def writer() -> None:
        with path.open("r+b") as handle:
            while not stop.is_set():
                handle.seek(0)
                handle.write(os.urandom(4096))
                handle.flush()
                os.utime(path)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with capture_logs() as logs:
            result = engine.backup(source, BackupOptions())
    finally:
        stop.set()
        thread.join()
    assert result.stats.changed_during_read == 1
    events = [e for e in logs if e["event"] == "backup.file_changed_during_read"]
    assert [e["path"] for e in events] == ["busy.db"]
    assert sum(1 for e in logs if e["event"] == "backup.file_changing") == 3


def test_stable_file_is_not_flagged(engine: Engine, source: Path) -> None:
    write_file(source / "quiet", os.urandom(1 << 20))
    assert engine.backup(source, BackupOptions()).stats.changed_during_read == 0


def test_file_growing_between_reads_still_gives_a_restorable_snapshot(
    engine: Engine, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An appender that writes just after each read hit the end of the file: reading on past
    # that end used to add a short chunk in the middle of the chunk list, and a file that
    # did so twice had more chunks than its size allows, so restore refused the snapshot.
    from restore.snapshots import backup

    path = write_file(source / "log", b"x" * 1000)
    real_read = backup._read_full

    def read_then_append(fd: int, size: int) -> bytes:
        data = real_read(fd, size)
        if data:
            with path.open("ab") as handle:
                handle.write(b"y" * 100)
        return data

    monkeypatch.setattr(backup, "_read_full", read_then_append)
    result = engine.backup(source, BackupOptions())
    assert result.stats.changed_during_read == 1
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(result.snapshot.id, dest)
    assert (dest / "log").read_bytes().startswith(b"x" * 1000)
