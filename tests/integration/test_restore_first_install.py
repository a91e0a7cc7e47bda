"""`caretaker restore --allow-empty=new-repository`, the chart's and inject's default: an
empty start only while the repository has never held a snapshot, told apart from a
repository whose snapshots are gone (exit 3, reason `emptied`) and from storage that does
not answer (exit 4) or refuses (exit 5). A real subprocess against local, S3 (SeaweedFS)
and git repositories; what counts as "used" is the config object (local, S3) and the
branch (git).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from restore.model import STATE_DIR
from restore.snapshots.format import SNAPSHOTS
from tests.integration.conftest import S3_TEST_TUNING, fresh_bucket
from tests.support.git_remotes import GitDaemon, file_remote, git_env
from tests.support.restore_runs import Repo, assert_reported, restore, sample_tree
from tests.support.seaweed import SeaweedServer

pytestmark = pytest.mark.integration

NEW = ("--allow-empty", "new-repository")


def git(bare: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(bare), *args], input=stdin, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def wipe(repo: Repo) -> None:
    """What an accident does: every snapshot is gone, the repository itself stays. On git,
    someone reset the branch to a commit of their own (a README)."""
    if repo.url.startswith("git+"):
        parts = urlsplit(repo.url)
        bare, branch = Path(parts.path), parse_qs(parts.fragment)["branch"][0]
        tree = git(bare, "mktree")
        commit = git(bare, "commit-tree", tree, "-m", "README", stdin="")
        git(bare, "update-ref", f"refs/heads/{branch}", commit)
        return
    engine = repo.open()
    try:
        store = engine.store  # type: ignore[attr-defined] - the object-store engine
        store.delete([item.key for item in store.list(SNAPSHOTS)])
    finally:
        engine.close()


def fresh_target(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name / "data"
    path.mkdir(parents=True)
    return path


class TestNewRepository:
    def test_starts_empty_once_then_the_repository_is_an_ordinary_one(self, repo, target, tmp_path):
        first = restore(target, repo, *NEW)
        assert_reported(first, "first-boot", 0)
        assert first.outcome.reason == f"new repository: {repo.url} has never held a snapshot"
        assert os.listdir(target) == [STATE_DIR]
        # The sidecar's first backup (of the still empty volume) makes it a used repository.
        snapshot = repo.backup(target)
        second = restore(fresh_target(tmp_path, "second"), repo, *NEW)
        assert_reported(second, "restored", 0)
        assert second.outcome.snapshot == snapshot.id

    def test_an_emptied_repository_fails_closed_with_its_own_reason(self, repo, target, tmp_path):
        repo.backup(sample_tree(tmp_path / "source"))
        wipe(repo)
        run = restore(target, repo, *NEW)
        assert_reported(run, "failed", 3)
        assert run.outcome.reason == "emptied"
        evidence = "branch 'backups' exists" if repo.url.startswith("git+") else "its config object exists"
        assert (
            f"{repo.url} holds no snapshot, but a backup has used it ({evidence}" in run.termination["error"]
        )
        assert os.listdir(target) == [STATE_DIR]
        # The way out the message names: one explicit empty start.
        assert_reported(restore(target, repo, "--allow-empty=always"), "first-boot", 0)

    def test_snapshot_records_that_cannot_be_read_fail_closed_naming_them(self, repo, target, tmp_path):
        if repo.url.startswith("git+"):
            pytest.skip("git has no snapshot records: a commit that is not one is no snapshot")
        repo.backup(sample_tree(tmp_path / "source"))
        engine = repo.open()
        try:
            store = engine.store  # type: ignore[attr-defined] - the object-store engine
            (record,) = [item.key for item in store.list(SNAPSHOTS)]
            store.put(record, b"not a snapshot record")
        finally:
            engine.close()
        run = restore(target, repo, *NEW)
        assert_reported(run, "failed", 7)  # damaged (or planted) records: corrupt, never a first start
        assert "none of the 1 snapshot records" in run.termination["error"]
        assert record in run.termination["error"]

    def test_the_default_still_fails_closed_on_any_repository_without_snapshots(self, repo, target):
        run = restore(target, repo)
        assert_reported(run, "failed", 3)
        assert run.outcome.reason == "no-snapshot"


class TestStorageTrouble:
    """Storage that does not answer or says no is never mistaken for a new repository."""

    def test_s3_down_is_exit_4(self, private_s3_server: SeaweedServer, target):
        repo = Repo(
            f"s3://{fresh_bucket(private_s3_server)}/repo", {**private_s3_server.env(), **S3_TEST_TUNING}
        )
        private_s3_server.kill()
        run = restore(target, repo, *NEW, "--timeout", "3s")
        assert_reported(run, "failed", 4)
        assert run.outcome.reason == "unreachable"
        assert os.listdir(target) == [STATE_DIR]

    def test_a_missing_bucket_is_exit_5(self, s3_server: SeaweedServer, target):
        repo = Repo(f"s3://missing-{uuid.uuid4().hex[:12]}/repo", {**s3_server.env(), **S3_TEST_TUNING})
        run = restore(target, repo, *NEW)
        assert_reported(run, "failed", 5)
        assert run.outcome.reason == "denied"

    def test_git_server_down_is_exit_4(self, target, tmp_path):
        daemon = GitDaemon(tmp_path / "served")
        daemon.start()
        url = daemon.create("new.git")
        daemon.stop()
        run = restore(target, Repo(url, git_env(tmp_path / "state")), *NEW, "--timeout", "3s")
        assert_reported(run, "failed", 4)
        assert run.outcome.reason == "unreachable"


def test_a_new_folder_on_a_shared_git_branch_is_new(target, tmp_path):
    """With `path=`, several folders share a branch: another folder's snapshots do not make
    this one used (and a folder whose snapshots were removed cannot be told from a new one)."""
    branch = file_remote(tmp_path)
    Repo(f"{branch}&path=pods/web", git_env(tmp_path / "state")).backup(sample_tree(tmp_path / "web"))
    run = restore(target, Repo(f"{branch}&path=pods/db", git_env(tmp_path / "state")), *NEW)
    assert_reported(run, "first-boot", 0)
    assert run.outcome.reason.startswith("new repository:")
