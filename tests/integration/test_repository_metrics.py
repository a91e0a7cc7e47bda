"""Repository figures that survive restarts: a sidecar that has run nothing yet already
exports what the repository holds (read at start-up), and after each job reads it again;
with skip_unchanged, an unchanged folder adds no snapshot but counts as a good backup."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from restore.clock import parse_time
from tests.support.cli import run_caretaker
from tests.support.keys import password_env
from tests.support.sidecar import Sidecar, wait_until
from tests.support.trees import write_file

pytestmark = pytest.mark.integration

BACKUP = {"task": "backup", "kind": "backup"}


def test_a_fresh_sidecar_exports_the_repository_and_skips_unchanged_backups(tmp_path: Path):
    write_file(tmp_path / "data" / "a.txt", b"hello" * 1000)
    repo = f"file://{tmp_path}/repo"
    done = run_caretaker(
        "backup",
        "--repository",
        repo,
        "--path",
        str(tmp_path / "data"),
        "--json",
        environ={"HOSTNAME": "pod-a", **password_env(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    taken = json.loads(done.stdout)["snapshot"]
    config = f"""
repository: {repo}
path: {tmp_path}/data
jobs: [{{name: backup, kind: backup, schedule: "0 0 1 1 *", skip_unchanged: true}}]
"""
    with Sidecar(tmp_path, [], env={"HOSTNAME": "pod-b"}, config=config) as sidecar:
        wait_until(
            lambda: sidecar.value("caretaker_repository_read_timestamp_seconds") > 0, 10, "the first read"
        )
        before = sidecar.metrics()
        sidecar.signal(signal.SIGUSR1)  # back up now: nothing changed since pod-a's snapshot
        wait_until(
            lambda: sidecar.value("caretaker_backup_unchanged_total", **BACKUP) == 1, 15, "a skipped backup"
        )
        skipped = sidecar.metrics()
        write_file(tmp_path / "data" / "b.txt", b"new")
        sidecar.signal(signal.SIGUSR1)
        wait_until(lambda: sidecar.value("caretaker_repository_snapshots") == 2, 15, "a new snapshot")
        after = sidecar.metrics()
    stored = sum(f.stat().st_size for f in (tmp_path / "repo").rglob("*") if f.is_file())
    newest = "caretaker_repository_newest_snapshot_timestamp_seconds"

    snapshot_time = parse_time(taken["time"]).timestamp()
    assert before[(newest, (("host", "pod-a"),))] == snapshot_time
    assert before[("caretaker_repository_snapshots", ())] == 1
    assert 0 < before[("caretaker_repository_stored_bytes", ())] <= stored
    assert before[("caretaker_last_backup_timestamp_seconds", ())] == snapshot_time
    assert skipped[("caretaker_repository_snapshots", ())] == 1
    assert skipped[("caretaker_last_backup_timestamp_seconds", ())] > snapshot_time  # the run confirmed it
    assert after[(newest, (("host", "pod-a"),))] == snapshot_time
    assert after[(newest, (("host", "pod-b"),))] > snapshot_time
    assert after[("caretaker_backup_unchanged_total", (("kind", "backup"), ("task", "backup")))] == 1
    assert sidecar.events("backup.done", recorded=False)
