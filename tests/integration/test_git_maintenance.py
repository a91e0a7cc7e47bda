"""Verify, fall back, prune and hostile commits on a git remote (bare repository, file://).

Damage is done the way it happens: a loose object of the bare repository is changed on
disk, or someone pushes a commit caretaker would never write.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from caretaker import cli
from restore.backends.git import maintenance as git_maintenance
from restore.backends.registry import OpenOptions, open_repository
from restore.model import BackupOptions
from tests.integration.test_git_backup import Remote, backup_json, caretaker, events
from tests.support.claims import ignoring_claims
from tests.support.git_remotes import file_remote, git_env
from tests.support.trees import describe, write_file

pytestmark = pytest.mark.integration

TRAILERS = "hand-made\n\nCaretaker-Files: 1\nCaretaker-Path: /\n"


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(file_remote(tmp_path), git_env(tmp_path / "state"))


def versions(remote: Remote, tmp_path: Path, count: int) -> list[tuple[dict[str, object], Path]]:
    """`count` snapshots of a folder whose app.db changes each time: (snapshot, source copy)."""
    found = []
    for number in range(count):
        source = tmp_path / f"v{number}"
        write_file(source / "app.db", f"database version {number}".encode())
        write_file(source / "static.txt", b"the same in every version")
        found.append((backup_json(remote, source)["snapshot"], source))
    return found


def loose_object(remote: Remote, content: bytes) -> Path:
    sha = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    path = remote.bare / "objects" / sha[:2] / sha[2:]
    assert path.exists()
    return path


def forge(remote: Remote, entries: list[tuple[str, str, bytes]], message: str = TRAILERS) -> str:
    """Commit a tree of (mode, path, content) on top of the branch, as someone else might."""
    index = remote.bare / "forge-index"
    env = {**os.environ, "GIT_DIR": str(remote.bare), "GIT_INDEX_FILE": str(index)}

    def git(*args: str, stdin: bytes = b"") -> str:
        return (
            subprocess.run(["git", *args], input=stdin, env=env, capture_output=True, check=True)
            .stdout.decode()
            .strip()
        )

    index.unlink(missing_ok=True)
    for mode, path, content in entries:
        blob = git("hash-object", "-w", "--stdin", stdin=content)
        git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}")
    tree = git("write-tree")
    commit = git("commit-tree", tree, "-p", remote.branch, "-F", "-", stdin=message.encode())
    git("update-ref", f"refs/heads/{remote.branch}", commit)
    return commit


def restore_into(remote: Remote, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    target.mkdir(exist_ok=True)
    return caretaker("restore", "--path", str(target), *args, remote=remote)


class TestVerifyAndFallBack:
    def test_damaged_newest_snapshot_is_named_and_restore_falls_back(self, remote, tmp_path):
        (old, old_source), (new, _) = versions(remote, tmp_path, 2)
        clean = caretaker("verify", "--json", "--log-level", "warning", remote=remote)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert [r["ok"] for r in json.loads(clean.stdout)] == [True, True]
        damaged = loose_object(remote, b"database version 1")
        damaged.chmod(0o644)
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0xFF
        damaged.write_bytes(bytes(data))
        checked = caretaker("verify", "--json", "--log-level", "warning", remote=remote)
        assert checked.returncode == 7
        report = {r["snapshot"]: r for r in json.loads(checked.stdout[checked.stdout.index("[") :])}
        assert (report[old["id"]]["ok"], report[new["id"]]["ok"]) == (True, False)
        assert "corrupt" in report[new["id"]]["damage"][0]["problem"]
        run = restore_into(remote, tmp_path / "target")
        assert run.returncode == 0, run.stdout + run.stderr
        (outcome,) = [e for e in events(run) if e["event"] == "restore.outcome"]
        assert (outcome["snapshot"], outcome["skipped_snapshots"]) == (old["id"], [new["id"]])
        assert (tmp_path / "target" / "app.db").read_bytes() == b"database version 0"
        assert describe(old_source)["app.db"][3] == describe(tmp_path / "target")["app.db"][3]


class TestHostileCommits:
    def test_state_folder_at_the_top_is_refused(self, remote, tmp_path):
        versions(remote, tmp_path, 1)
        forged = forge(remote, [("100644", ".caretaker/restore-result.json", b"{}"), ("100644", "a", b"a")])
        run = restore_into(remote, tmp_path / "target", "--snapshot", forged[:12])
        assert run.returncode == 7
        assert ".caretaker" in run.stdout
        assert sorted(os.listdir(tmp_path / "target")) == [".caretaker"]

    def test_metadata_leading_through_a_symlink_is_refused(self, remote, tmp_path):
        versions(remote, tmp_path, 1)
        outside = tmp_path / "outside"
        outside.mkdir()
        meta = b'l 0777 1 0 0 "link"\nd 0755 1 0 0 "link/planted"\n'
        forged = forge(
            remote, [("120000", "link", str(outside).encode()), ("100644", ".caretaker-meta", meta)]
        )
        run = restore_into(remote, tmp_path / "target", "--snapshot", forged[:12])
        assert run.returncode == 7
        assert "link/planted" in run.stdout
        assert os.listdir(outside) == []

    @pytest.mark.parametrize(
        ("meta", "named"),
        [
            (b'l 0777 1 0 0 "link"\nd 0755 1 0 0 "link/planted"\n', "link/planted"),
            (b'f 0644 1 0 0 ".caretaker/restore-result.json"\n', ".caretaker"),
            (b'f 0644 not-a-time 0 0 "a"\n', "line 1 is malformed"),
        ],
        ids=["through a symlink", "into the state folder", "malformed"],
    )
    def test_verify_reports_metadata_that_restore_refuses(self, remote, tmp_path, meta, named):
        ((good, _),) = versions(remote, tmp_path, 1)
        forged = forge(
            remote,
            [("120000", "link", b"elsewhere"), ("100644", "a", b"a"), ("100644", ".caretaker-meta", meta)],
        )
        checked = caretaker("verify", "--json", "--log-level", "warning", remote=remote)
        assert checked.returncode == 7, checked.stdout + checked.stderr
        report = {r["snapshot"]: r for r in json.loads(checked.stdout[checked.stdout.index("[") :])}
        assert report[good["id"]]["ok"]
        (bad,) = [r for r in report.values() if not r["ok"]]
        assert forged.startswith(bad["snapshot"])
        (damage,) = bad["damage"]
        assert named in damage["problem"]
        assert damage["files"] == [".caretaker-meta"]
        run = restore_into(remote, tmp_path / "target", "--snapshot", bad["snapshot"])
        assert run.returncode == 7
        assert named in run.stdout

    def test_a_dotdot_tree_entry_is_refused_by_the_fetch(self, remote, tmp_path):
        versions(remote, tmp_path, 1)
        env = {**os.environ, "GIT_DIR": str(remote.bare)}

        def git(*args: str, stdin: bytes = b"") -> str:
            return (
                subprocess.run(["git", *args], input=stdin, env=env, capture_output=True, check=True)
                .stdout.decode()
                .strip()
            )

        blob = git("hash-object", "-w", "--stdin", stdin=b"escaped")
        tree = git(
            "hash-object",
            "-t",
            "tree",
            "--literally",
            "-w",
            "--stdin",
            stdin=b"100644 ..\0" + bytes.fromhex(blob),
        )
        commit = git("commit-tree", tree, "-p", remote.branch, "-F", "-", stdin=TRAILERS.encode())
        git("update-ref", f"refs/heads/{remote.branch}", commit)
        run = restore_into(remote, tmp_path / "target", "--snapshot", commit[:12])
        assert run.returncode == 7
        assert not (tmp_path / "escaped").exists()


class TestPrune:
    def test_off_by_default_refused_with_exit_9_and_a_dry_run_shows_the_plan(self, remote, tmp_path):
        versions(remote, tmp_path, 3)
        before = remote.commits()
        refused = caretaker("prune", "--keep-last", "1", remote=remote)
        assert refused.returncode == 9
        assert "CARETAKER_GIT_PRUNE=squash" in refused.stdout
        plan = caretaker(
            "prune", "--keep-last", "1", "--dry-run", "--json", "--log-level", "warning", remote=remote
        )
        assert plan.returncode == 0
        assert len(json.loads(plan.stdout)["removed"]) == 2
        assert caretaker("prune", remote=remote).returncode == 0  # no rule: nothing to forget
        assert remote.commits() == before

    def test_squash_rewrites_history_and_kept_snapshots_still_restore(self, remote, tmp_path):
        made = versions(remote, tmp_path, 4)
        squash = {"CARETAKER_GIT_PRUNE": "squash"}
        done = caretaker(
            "prune", "--keep-last", "2", "--json", "--log-level", "warning", remote=remote, extra=squash
        )
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert [s["id"] for s in result["removed"]] == [made[1][0]["id"], made[0][0]["id"]]
        assert len(remote.commits()) == 2
        assert remote.git("rev-list", "--max-parents=0", remote.branch).split() == remote.commits()[-1:]
        listed = json.loads(caretaker("snapshots", "--json", "--log-level", "warning", remote=remote).stdout)
        assert [s["id"] for s in listed] == [s["id"] for s in result["kept"]]
        for snapshot, (_, source) in zip(listed, reversed(made[2:]), strict=True):
            target = tmp_path / f"target-{snapshot['id']}"
            assert restore_into(remote, target, "--snapshot", snapshot["id"]).returncode == 0
            assert (target / "app.db").read_bytes() == (source / "app.db").read_bytes()
        again = backup_json(remote, made[3][1])  # the next backup builds on the new history
        assert again["changed"] is False

    def test_a_backup_pushed_during_prune_wins(self, remote, tmp_path, monkeypatch):
        made = versions(remote, tmp_path, 3)
        other = remote.pod(tmp_path / "other-state")
        rewrite = git_maintenance.rewrite

        def backup_meanwhile(*args: object, **kwargs: object) -> dict[str, str]:
            # A writer that ignores the prune's claim: the push with a lease still protects it.
            write_file(made[2][1] / "app.db", b"written during the prune")
            options = OpenOptions(environ=other.environ, claimant=ignoring_claims("older-version"))
            repo = open_repository(other.url, options)
            repo.backup(made[2][1], BackupOptions(host="meanwhile"))
            return rewrite(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(git_maintenance, "rewrite", backup_meanwhile)
        code = cli.main(
            ["prune", "--keep-last", "1"],
            {"CARETAKER_REPOSITORY": remote.url, "CARETAKER_GIT_PRUNE": "squash", **remote.environ},
        )
        assert code == 6
        assert len(remote.commits()) == 4
        assert "Caretaker-Host: meanwhile" in remote.git("log", "-1", "--format=%B", remote.branch)
