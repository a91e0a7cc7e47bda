"""`caretaker backup|snapshots|restore` on a git remote (a bare repository over file://).

Real git, real processes. What is asserted is what a user sees: the files restored (content,
symlinks, modes, mtimes, empty folders), the commits on the branch, exit codes, and that
the data folder never gets a `.git` of caretaker's.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from caretaker import cli
from restore.backends.git.stage import BackupWriter
from restore.backends.registry import OpenOptions, open_repository
from restore.model import STATE_DIR, BackupOptions
from tests.support.claims import ignoring_claims
from tests.support.cli import run_caretaker
from tests.support.git_remotes import file_remote, git_env
from tests.support.trees import PAST_NS, age_tree, describe, write_file

pytestmark = pytest.mark.integration


class Remote:
    """A bare repository and the environment of one pod (its own git state dir)."""

    def __init__(self, url: str, environ: dict[str, str]) -> None:
        self.url = url
        self.environ = environ
        self.bare = Path(url.removeprefix("git+file://").partition("#")[0])
        self.branch = url.partition("#branch=")[2].partition("&")[0] or "main"

    def pod(self, state: Path, url: str | None = None) -> Remote:
        """The same remote as another pod sees it (another state dir)."""
        return Remote(url or self.url, {**self.environ, **git_env(state)})

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "--git-dir", str(self.bare), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def commits(self) -> list[str]:
        return self.git("rev-list", "--first-parent", self.branch).split()

    def files_at(self, rev: str) -> list[str]:
        return self.git("ls-tree", "-r", "--name-only", rev).split("\n")[:-1]


def caretaker(
    *args: str, remote: Remote, extra: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    environ = {"CARETAKER_REPOSITORY": remote.url, **remote.environ, **(extra or {})}
    return run_caretaker(*args, environ=environ, timeout=timeout)


def events(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (done.stdout + done.stderr).splitlines() if line.startswith('{"')]


def backup_json(remote: Remote, source: Path, *args: str) -> dict[str, Any]:
    done = caretaker(
        "backup", "--path", str(source), "--json", "--log-level", "warning", *args, remote=remote
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(file_remote(tmp_path), git_env(tmp_path / "state"))


def sample(root: Path, marker: str = "v1") -> Path:
    write_file(root / "app.db", f"database {marker}".encode())
    write_file(root / "conf" / "secret.yaml", b"password: x\n", mode=0o600)
    write_file(root / "bin" / "run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    write_file(root / "cache" / "junk.tmp", b"skip me")
    write_file(root / "clone" / ".git" / "HEAD", b"ref: refs/heads/main\n")
    write_file(root / "clone" / "README", b"a nested checkout\n")
    write_file(root / ".gitignore", b"*.db\n")  # the user's, and it changes nothing
    (root / "empty" / "deeper").mkdir(parents=True)
    (root / "empty").chmod(0o750)
    os.symlink("conf/secret.yaml", root / "settings")
    os.symlink("/nonexistent/target", root / "dangling")
    age_tree(root)
    return root


def expected(source: Path) -> dict[str, Any]:
    found = describe(source)
    return {k: v for k, v in found.items() if not k.startswith(("clone/.git", "cache/junk.tmp"))}


class TestRoundTrip:
    def test_files_links_modes_times_and_empty_folders_come_back(self, remote, tmp_path):
        source = sample(tmp_path / "source")
        done = caretaker("backup", "--path", str(source), "--exclude", "*.tmp", remote=remote)
        assert done.returncode == 0, done.stdout + done.stderr
        assert sorted(p.name for p in source.rglob(".git")) == [".git"]  # only the user's own
        assert (source / "clone" / ".git").is_dir()
        committed = remote.files_at(remote.branch)
        assert ".caretaker-meta" in committed
        assert not [p for p in committed if ".git/" in p or p.endswith(".tmp")]
        target = tmp_path / "target"
        target.mkdir()
        restored = caretaker("restore", "--path", str(target), remote=remote)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert {k: v for k, v in describe(target).items() if not k.startswith(STATE_DIR)} == expected(source)
        assert not list(target.rglob(".git"))
        assert not (target / ".caretaker-meta").exists()
        assert sorted(os.listdir(target / STATE_DIR)) == ["restore-result.json"]

    def test_commit_message_author_and_trailers(self, remote, tmp_path):
        source = sample(tmp_path / "source")
        extra = {
            "CARETAKER_GIT_AUTHOR": "Backup Bot <bot@example.com>",
            "CARETAKER_GIT_MESSAGE": "{host}: {files} files ({new} new) at {time}",
        }
        done = caretaker(
            "backup", "--path", str(source), "--host", "web-0", "--tag", "nightly", remote=remote, extra=extra
        )
        assert done.returncode == 0, done.stdout + done.stderr
        log = remote.git("log", "-1", "--format=%an <%ae>%n%B", remote.branch).splitlines()
        assert log[0] == "Backup Bot <bot@example.com>"
        assert log[1].startswith("web-0: 6 files (6 new) at 20")
        assert {
            "Caretaker-Files: 6",
            "Caretaker-Host: web-0",
            "Caretaker-Tag: nightly",
            "Caretaker-Path: /",
        } <= set(log)
        listed = caretaker("snapshots", "--json", "--log-level", "warning", remote=remote)
        (snapshot,) = json.loads(listed.stdout)
        assert (snapshot["files"], snapshot["host"], snapshot["tags"]) == (6, "web-0", ["nightly"])


class TestIncremental:
    def test_only_changes_make_commits(self, remote, tmp_path):
        source = sample(tmp_path / "source")
        first = backup_json(remote, source)
        assert first["changed"] is True
        again = backup_json(remote, source)
        assert (again["changed"], again["snapshot"]["id"]) == (False, first["snapshot"]["id"])
        assert again["stats"]["files_unchanged"] == again["stats"]["files"]
        assert len(remote.commits()) == 1
        # A new mtime: git compares stat data to the second, so a same-size rewrite that
        # keeps the old mtime within the same second would be invisible (docs/git.md).
        write_file(source / "app.db", b"database v2", mtime_ns=PAST_NS + 10**9)
        (source / "bin" / "run.sh").unlink()
        third = backup_json(remote, source)
        stats = third["stats"]
        assert third["changed"] is True
        assert (stats["files_new"], stats["files_changed"], stats["files"]) == (0, 1, 5)
        assert len(remote.commits()) == 2
        changed = remote.git("diff", "--name-status", f"{remote.branch}~1", remote.branch)
        assert changed.split("\n")[:-1] == ["M\t.caretaker-meta", "M\tapp.db", "D\tbin/run.sh"]

    def test_restore_an_older_commit(self, remote, tmp_path):
        old = backup_json(remote, sample(tmp_path / "v1", "v1"))["snapshot"]
        backup_json(remote, sample(tmp_path / "v2", "v2"))
        target = tmp_path / "target"
        target.mkdir()
        done = caretaker("restore", "--path", str(target), "--snapshot", old["id"], remote=remote)
        assert done.returncode == 0, done.stdout + done.stderr
        assert (target / "app.db").read_bytes() == b"database v1"

    def test_empty_volume_over_history_is_refused_unless_allowed(self, remote, tmp_path):
        backup_json(remote, sample(tmp_path / "source"))
        empty = tmp_path / "lost"
        empty.mkdir()
        refused = caretaker("backup", "--path", str(empty), remote=remote)
        assert refused.returncode == 9, refused.stdout + refused.stderr
        assert len(remote.commits()) == 1
        allowed = backup_json(remote, empty, "--allow-empty")
        assert allowed["snapshot"]["files"] == 0
        assert remote.files_at(remote.branch) == [".caretaker-meta"]


class TestWriters:
    def test_remote_moved_during_backup_is_exit_6_and_nothing_is_overwritten(
        self, remote, tmp_path, monkeypatch, capsys
    ):
        backup_json(remote, sample(tmp_path / "source"))
        other = remote.pod(tmp_path / "other-pod-state")
        other_data = sample(tmp_path / "other-data", "other")
        push = BackupWriter.push

        def another_writer_first(writer: BackupWriter, sha: str, **kwargs: bool) -> None:
            monkeypatch.setattr(BackupWriter, "push", push)  # the other pod pushes normally,
            # ignoring our claim (an older caretaker): git's push without force still holds.
            options = OpenOptions(environ=other.environ, claimant=ignoring_claims("other-pod"))
            repo = open_repository(other.url, options)
            repo.backup(other_data, BackupOptions(host="other"))
            push(writer, sha, **kwargs)

        monkeypatch.setattr(BackupWriter, "push", another_writer_first)
        write_file(tmp_path / "source" / "app.db", b"database v2, longer")
        code = cli.main(
            ["backup", "--path", str(tmp_path / "source"), "--log-format", "json"],
            {"CARETAKER_REPOSITORY": remote.url, **remote.environ},
        )
        assert code == 6
        (failed,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"backup.failed"' in x]
        assert "another writer" in failed["error"]
        assert "Caretaker-Host: other" in remote.git("log", "-1", "--format=%B", remote.branch)
        assert len(remote.commits()) == 2
        done = caretaker("backup", "--path", str(tmp_path / "source"), remote=remote)  # next run
        assert done.returncode == 0, done.stdout + done.stderr
        assert len(remote.commits()) == 3

    def test_a_second_backup_in_the_same_pod_is_exit_6(self, remote, tmp_path):
        source = sample(tmp_path / "source")
        backup_json(remote, source)
        (lock,) = (tmp_path / "state").glob("*/backup.lock")
        with lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            done = caretaker("backup", "--path", str(source), remote=remote)
        assert done.returncode == 6
        assert "another caretaker process" in done.stdout + done.stderr

    def test_folders_of_one_branch_are_separate_snapshots(self, remote, tmp_path):
        web = remote.pod(tmp_path / "web-state", remote.url + "&path=pods/web")
        db = remote.pod(tmp_path / "db-state", remote.url + "&path=pods/db")
        backup_json(web, sample(tmp_path / "web", "web"))
        backup_json(db, sample(tmp_path / "db", "db"))
        backup_json(web, tmp_path / "web")  # unchanged: still one snapshot
        assert len(remote.commits()) == 2
        files = remote.files_at(remote.branch)
        assert "pods/web/app.db" in files
        assert "pods/db/app.db" in files
        for pod, marker in [(web, b"web"), (db, b"db")]:
            listed = json.loads(caretaker("snapshots", "--json", "--log-level", "warning", remote=pod).stdout)
            assert len(listed) == 1
            target = tmp_path / f"target-{marker.decode()}"
            target.mkdir()
            assert caretaker("restore", "--path", str(target), remote=pod).returncode == 0
            assert (target / "app.db").read_bytes() == b"database " + marker

    def test_a_changed_folder_replaces_its_old_files_in_the_branch(self, remote, tmp_path):
        web = remote.pod(tmp_path / "web-state", remote.url + "&path=pods/web")
        db = remote.pod(tmp_path / "db-state", remote.url + "&path=pods/db")
        backup_json(web, sample(tmp_path / "web", "web"))
        backup_json(db, sample(tmp_path / "db", "db"))
        (tmp_path / "web" / "app.db").unlink()
        write_file(tmp_path / "web" / "new.txt", b"new")
        backup_json(web, tmp_path / "web")
        files = remote.files_at(remote.branch)
        assert "pods/web/new.txt" in files
        assert "pods/web/app.db" not in files
        assert "pods/db/app.db" in files


def test_large_files_are_named_in_a_warning(remote, tmp_path):
    source = tmp_path / "source"
    write_file(source / "small", b"x" * 100)
    write_file(source / "huge.bin", os.urandom(4096))
    done = caretaker("backup", "--path", str(source), remote=remote, extra={"CARETAKER_GIT_LARGE_FILE": "2k"})
    assert done.returncode == 0
    (warning,) = [e for e in events(done) if e["event"] == "backup.large_file"]
    assert (warning["path"], warning["bytes"], warning["level"]) == ("huge.bin", 4096, "warning")
    again = caretaker(
        "backup", "--path", str(source), remote=remote, extra={"CARETAKER_GIT_LARGE_FILE": "2k"}
    )
    assert not [e for e in events(again) if e["event"] == "backup.large_file"]  # unchanged: no new copy
