"""`caretaker restore` as the init container runs it: a real subprocess against a real
repository of every kind (local, S3 on SeaweedFS, git), one test per outcome and exit code.

Each test asserts the files left in the target, the result file, the termination log and
the exit code. The helpers here are shared by the other test_restore_*.py files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from restore.model import STATE_DIR
from tests.support.restore_runs import assert_reported, command, restore, sample_tree
from tests.support.trees import describe, write_file

pytestmark = pytest.mark.integration


class TestRestore:
    def test_empty_volume_is_restored_then_skipped(self, repo, target, tmp_path):
        source = sample_tree(tmp_path / "source")
        snapshot = repo.backup(source)
        (target / "lost+found").mkdir()
        first = restore(target, repo)
        assert_reported(first, "restored", 0)
        assert first.outcome.snapshot == snapshot.id
        assert (first.outcome.files, first.outcome.bytes) == (snapshot.files, snapshot.bytes)
        assert first.termination["snapshot"] == snapshot.id
        assert describe(target) == {**describe(source), "lost+found": describe(target)["lost+found"]}
        assert sorted(os.listdir(target / STATE_DIR)) == ["restore-result.json"]
        second = restore(target, repo)
        assert_reported(second, "skipped", 0)
        assert second.outcome.reason == "target is not empty"
        assert (target / "app.db").read_bytes() == b"database v1"

    def test_populated_volume_is_left_alone(self, repo, target, tmp_path):
        repo.backup(sample_tree(tmp_path / "source"))
        write_file(target / "app.db", b"newer than any backup")
        run = restore(target, repo)
        assert_reported(run, "skipped", 0)
        assert (target / "app.db").read_bytes() == b"newer than any backup"
        assert sorted(os.listdir(target)) == [STATE_DIR, "app.db"]

    def test_force_moves_existing_data_to_quarantine(self, repo, target, tmp_path):
        source = sample_tree(tmp_path / "source")
        repo.backup(source)
        write_file(target / "app.db", b"mine")
        write_file(target / "only-mine", b"keep me")
        run = restore(target, repo, "--force")
        assert_reported(run, "restored", 0)
        quarantine = Path(run.outcome.quarantined)
        assert quarantine.parent == target / STATE_DIR / "quarantine"
        assert run.termination["quarantined"] == str(quarantine)
        assert (quarantine / "app.db").read_bytes() == b"mine"
        assert (quarantine / "only-mine").read_bytes() == b"keep me"
        assert describe(target) == describe(source)

    def test_explicit_snapshot_and_before_pick_older_data(self, repo, target, tmp_path):
        old = repo.backup(sample_tree(tmp_path / "v1", "v1"))
        new = repo.backup(sample_tree(tmp_path / "v2", "v2"))
        assert new.time > old.time
        run = restore(target, repo, "--snapshot", old.id)
        assert_reported(run, "restored", 0)
        assert (target / "app.db").read_bytes() == b"database v1"
        other = target.parent / "other"
        other.mkdir()
        before = old.time.isoformat().replace("+00:00", "Z")
        run = restore(other, repo, "--before", before)
        assert_reported(run, "restored", 0)
        assert run.outcome.snapshot == old.id

    def test_unknown_snapshot_is_exit_3(self, repo, target, tmp_path):
        repo.backup(sample_tree(tmp_path / "source"))
        run = restore(target, repo, "--snapshot", "feedfacefeedface")
        assert_reported(run, "failed", 3)
        assert os.listdir(target) == [STATE_DIR]


class TestFirstBoot:
    def test_no_snapshot_fails_closed_with_exit_3(self, repo, target):
        run = restore(target, repo)
        assert_reported(run, "failed", 3)
        assert "has no snapshot" in run.termination["error"]
        assert os.listdir(target) == [STATE_DIR]

    def test_allow_empty_is_an_explicit_first_boot(self, repo, target):
        run = restore(target, repo, "--allow-empty")
        assert_reported(run, "first-boot", 0)
        assert os.listdir(target) == [STATE_DIR]


class TestCheck:
    CHECK = "grep -q healthy app.db"

    def test_healthy_data_is_kept(self, repo, target, tmp_path):
        repo.backup(sample_tree(tmp_path / "source"))
        write_file(target / "app.db", b"healthy, and newer")
        run = restore(target, repo, "--check-cmd", self.CHECK)
        assert_reported(run, "skipped", 0)
        assert run.outcome.reason == "check passed on existing data"
        assert (target / "app.db").read_bytes() == b"healthy, and newer"

    def test_unhealthy_data_is_quarantined_and_the_newest_healthy_snapshot_restored(
        self, repo, target, tmp_path
    ):
        good = repo.backup(sample_tree(tmp_path / "good", "healthy"))
        bad = repo.backup(sample_tree(tmp_path / "bad", "broken"))
        write_file(target / "app.db", b"corrupted")
        run = restore(target, repo, "--check-cmd", self.CHECK)
        assert_reported(run, "restored", 0)
        assert (run.outcome.snapshot, run.outcome.skipped_snapshots) == (good.id, (bad.id,))
        assert (target / "app.db").read_bytes() == b"database healthy"
        assert (Path(run.outcome.quarantined) / "app.db").read_bytes() == b"corrupted"
        assert [e["healthy"] for e in run.event("restore.check")] == [False, False, True]

    def test_check_failing_on_restored_data_too_is_exit_8_and_changes_nothing(self, repo, target, tmp_path):
        repo.backup(sample_tree(tmp_path / "bad", "broken"))
        write_file(target / "app.db", b"corrupted")
        run = restore(target, repo, "--check-cmd", self.CHECK)
        assert_reported(run, "failed", 8)
        assert sorted(os.listdir(target)) == [STATE_DIR, "app.db"]
        assert (target / "app.db").read_bytes() == b"corrupted"
        assert sorted(os.listdir(target / STATE_DIR)) == ["quarantine", "restore-result.json"]
        assert os.listdir(target / STATE_DIR / "quarantine") == []

    def test_a_check_that_cannot_run_is_a_usage_error_not_bad_data(self, repo, target, tmp_path):
        repo.backup(sample_tree(tmp_path / "source"))
        write_file(target / "app.db", b"fine")
        run = restore(target, repo, "--check-cmd", "sqlite3-not-installed app.db")
        assert_reported(run, "failed", 2)
        assert (target / "app.db").read_bytes() == b"fine"


class TestDryRun:
    def test_prints_the_plan_and_writes_nothing(self, repo, target, tmp_path):
        snapshot = repo.backup(sample_tree(tmp_path / "source"))
        argv, env = command(target, repo, "--dry-run", "--json", "--log-level", "warning")
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        document = json.loads(done.stdout)
        assert (document["outcome"], document["action"], document["snapshot"]) == (
            "planned",
            "restore",
            snapshot.id,
        )
        assert (document["files"], document["bytes"]) == (snapshot.files, snapshot.bytes)
        assert os.listdir(target) == []
        assert not (target.parent / "termination-log").exists()

    def test_dry_run_fails_like_the_run_would(self, repo, target):
        run = restore(target, repo, "--dry-run")
        assert run.code == 3
        assert os.listdir(target) == []
        assert run.termination is None


class TestUsage:
    def test_conflicting_flags_are_exit_2_with_a_termination_message(self, repo, target):
        run = restore(target, repo, "--snapshot", "abc", "--before", "2026-01-01T00:00:00Z")
        assert_reported(run, "failed", 2)
        assert "give --snapshot or --before, not both" in run.termination["error"]

    def test_env_twins_work(self, repo, target, tmp_path):
        repo.backup(sample_tree(tmp_path / "source"))
        write_file(target / "app.db", b"mine")
        run = restore(target, dataclasses.replace(repo, environ={**repo.environ, "CARETAKER_FORCE": "true"}))
        assert_reported(run, "restored", 0)


class TestLocalDisk:
    def test_write_failure_is_exit_10_and_leaves_the_volume_as_it_was(self, repo, target, tmp_path):
        """A file size limit stands in for a full disk: the 300 kB file cannot be written."""
        repo.backup(sample_tree(tmp_path / "source"))

        def limit() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

        run = restore(target, repo, preexec_fn=limit)
        assert_reported(run, "failed", 10)
        assert os.listdir(target) == [STATE_DIR]
        assert sorted(os.listdir(target / STATE_DIR)) == ["restore-result.json"]
