"""A file that changes while it is read is retried, then stored marked unstable and reported."""

from __future__ import annotations

import os
import threading
from pathlib import Path

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
