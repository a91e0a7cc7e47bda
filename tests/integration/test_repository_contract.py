"""The Repository contract (restore/backends/__init__.py) on every backend: local, S3, git.

Written once against `open_repository(url, ...)`; `repository_url` (tests/support/repos.py)
gives a fresh repository of each kind. Whatever a backend stores underneath, a user must
see the same behaviour: snapshots newest first, byte-exact restores, incremental backups,
verification, retention, and one writer at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from restore.backends.registry import open_repository
from restore.claims.holder import Timing
from restore.errors import LeaseHeldError, NoSnapshotError
from restore.model import BackupOptions
from restore.repository import Repository
from restore.retention import RetentionPolicy
from restore.snapshots.prune import MERGE_ABOVE
from tests.conftest import FakeClock
from tests.support.claims import claimant
from tests.support.keys import open_options
from tests.support.trees import PAST_NS, age_tree, describe, write_file

pytestmark = pytest.mark.integration


class Opener:
    """Opens the repository under test as any number of writers, closing them all at the end."""

    def __init__(self, url: str, environ: dict[str, str], clock: FakeClock) -> None:
        self.url, self.environ, self.clock = url, environ, clock
        self.opened: list[Repository] = []

    def __call__(self, owner: str = "test", **extra_env: str) -> Repository:
        # Short enough that a second writer is told at once, long enough for a loaded git push.
        writer = claimant(owner, clock=self.clock, timing=Timing(heartbeat_seconds=1, expiry_seconds=5))
        options = open_options({**self.environ, **extra_env}, clock=self.clock, claimant=writer)
        repository = open_repository(self.url, options)
        self.opened.append(repository)
        return repository


@pytest.fixture
def opener(repository_url: tuple[str, dict[str, str]], clock: FakeClock) -> Iterator[Opener]:
    url, environ = repository_url
    opened = Opener(url, environ, clock)
    yield opened
    for repository in opened.opened:
        repository.close()


@pytest.fixture
def repo(opener: Opener) -> Repository:
    return opener()


def sample_tree(root: Path) -> Path:
    write_file(root / "app.db", os.urandom(300_000))
    write_file(root / "conf" / "settings.yaml", b"answer: 42\n")
    write_file(root / "conf" / "empty", b"")
    write_file(root / "bin" / "run.sh", b"#!/bin/sh\necho hi\n", mode=0o755)
    write_file(root / "logs" / "big.log", b"line of text\n" * 50_000)
    (root / "current").symlink_to("conf/settings.yaml")
    (root / "empty-dir").mkdir()
    age_tree(root)
    return root


def contents(root: Path) -> dict[str, bytes | str]:
    """Path → file bytes or link target: what every backend must reproduce exactly."""
    found: dict[str, bytes | str] = {}
    for rel, info in describe(root).items():
        if info[0] == "file":
            found[rel] = (root / rel).read_bytes()
        elif info[0] == "link":
            found[rel] = info[1]
        else:
            found[rel] = "dir"
    return found


def restored(repo: Repository, snapshot_id: str, dest: Path) -> dict[str, bytes | str]:
    dest.mkdir()
    repo.restore(snapshot_id, dest)
    return contents(dest)


def test_a_fresh_repository_has_no_snapshot(repo: Repository) -> None:
    assert repo.snapshots() == []


def test_round_trip_is_byte_exact(repo: Repository, tmp_path: Path) -> None:
    source = sample_tree(tmp_path / "src")
    result = repo.backup(source, BackupOptions(host="pod-0", tags=("nightly",)))
    assert result.changed
    assert result.snapshot.files == 5
    [listed] = repo.snapshots()
    assert listed.id == result.snapshot.id
    assert (listed.host, listed.tags) == ("pod-0", ("nightly",))
    assert restored(repo, listed.id, tmp_path / "out") == contents(source)
    assert os.stat(tmp_path / "out" / "bin" / "run.sh").st_mode & 0o777 == 0o755


def test_snapshots_are_listed_newest_first(repo: Repository, tmp_path: Path, clock: FakeClock) -> None:
    source = sample_tree(tmp_path / "src")
    made = []
    for number in range(3):
        write_file(source / "counter", str(number).encode(), mtime_ns=PAST_NS + number * 10**9)
        made.append(repo.backup(source, BackupOptions()).snapshot.id)
        clock.advance(hours=1)
    listed = repo.snapshots()
    assert [s.id for s in listed] == made[::-1]
    assert listed[0].time > listed[1].time > listed[2].time


def test_incremental_backup_records_only_the_change(
    repo: Repository, tmp_path: Path, clock: FakeClock
) -> None:
    source = sample_tree(tmp_path / "src")
    first = repo.backup(source, BackupOptions())
    clock.advance(minutes=10)
    same = repo.backup(source, BackupOptions())
    assert not same.changed
    # Same size, new mtime: what an editor's save looks like to the metadata check.
    write_file(source / "conf" / "settings.yaml", b"answer: 43\n", mtime_ns=PAST_NS + 10**9)
    clock.advance(minutes=10)
    second = repo.backup(source, BackupOptions())
    assert second.changed
    assert second.stats.bytes_read < 1000  # only the changed file was read again
    old = restored(repo, first.snapshot.id, tmp_path / "old")
    new = restored(repo, second.snapshot.id, tmp_path / "new")
    assert old["conf/settings.yaml"] == b"answer: 42\n"
    assert new == contents(source)


def test_restore_of_an_unknown_snapshot_raises(repo: Repository, tmp_path: Path) -> None:
    repo.backup(sample_tree(tmp_path / "src"), BackupOptions())
    (tmp_path / "out").mkdir()
    with pytest.raises(NoSnapshotError):
        repo.restore("0123456789abcdef", tmp_path / "out")


def test_verify_reads_every_byte_of_a_healthy_repository(
    repo: Repository, tmp_path: Path, clock: FakeClock
) -> None:
    source = sample_tree(tmp_path / "src")
    ids = []
    for number, text in enumerate((b"a", b"b")):
        write_file(source / "note", text, mtime_ns=PAST_NS + number * 10**9)
        ids.append(repo.backup(source, BackupOptions()).snapshot.id)
        clock.advance(hours=1)
    results = repo.verify(read_data=1.0)
    assert sorted(r.snapshot_id for r in results) == sorted(ids)
    assert all(r.ok for r in results), [r.to_json() for r in results]
    assert [r.snapshot_id for r in repo.verify([ids[0]])] == [ids[0]]


def test_prune_forgets_what_the_policy_does_not_keep(
    opener: Opener, tmp_path: Path, clock: FakeClock
) -> None:
    # git rewrites history to forget commits, which it does only when told to.
    repo = opener(CARETAKER_GIT_PRUNE="squash")
    source = sample_tree(tmp_path / "src")
    made = []
    for number in range(4):
        write_file(source / "generation", os.urandom(50_000), mtime_ns=PAST_NS + number * 10**9)
        made.append(repo.backup(source, BackupOptions()).snapshot)
        clock.advance(hours=1)
    result = repo.prune(RetentionPolicy(last=2), now=clock())
    assert {s.id for s in result.removed} == {s.id for s in made[:2]}
    # Compared by time: git squashes history, so the kept snapshots get new commit ids.
    kept = repo.snapshots()
    assert [s.time for s in kept] == [s.time for s in made[:1:-1]]
    assert restored(repo, kept[0].id, tmp_path / "out") == contents(source)
    assert all(r.ok for r in repo.verify(read_data=1.0))


def test_content_deleted_by_prune_is_stored_again_when_it_returns(
    opener: Opener, tmp_path: Path, clock: FakeClock
) -> None:
    # Enough backups that the first prune merges an object store's index objects; the
    # second deletes packs that the merged index names, beside one it keeps ("static").
    repo = opener(CARETAKER_GIT_PRUNE="squash")
    source = tmp_path / "src"
    write_file(source / "static", os.urandom(30_000))
    returning = os.urandom(40_000)
    for number in range(MERGE_ABOVE + 2):
        if number == 1:
            write_file(source / "returning", returning)
        write_file(source / f"n{number}", os.urandom(20_000), mtime_ns=PAST_NS + number * 10**9)
        repo.backup(source, BackupOptions())
        clock.advance(hours=1)
    assert not repo.prune(RetentionPolicy(last=1000), now=clock()).removed
    for path in source.iterdir():
        if path.name != "static":
            path.unlink()
    repo.backup(source, BackupOptions())
    repo.prune(RetentionPolicy(last=1), now=clock())
    write_file(source / "back", returning)
    snapshot = repo.backup(source, BackupOptions()).snapshot
    assert restored(repo, snapshot.id, tmp_path / "out") == contents(source)
    assert all(r.ok for r in repo.verify(read_data=1.0))


def test_prune_dry_run_changes_nothing(repo: Repository, tmp_path: Path, clock: FakeClock) -> None:
    source = sample_tree(tmp_path / "src")
    for number in range(3):
        write_file(source / "n", bytes([number]), mtime_ns=PAST_NS + number * 10**9)
        repo.backup(source, BackupOptions())
        clock.advance(hours=1)
    result = repo.prune(RetentionPolicy(last=1), now=clock(), dry_run=True)
    assert len(result.removed) == 2
    assert len(repo.snapshots()) == 3


class _Intruder:
    """A Progress that, while the first backup is under way, starts a second writer once."""

    def __init__(self, second: Repository, source: Path) -> None:
        self.second, self.source = second, source
        self.outcome: str | None = None

    def start(self, *, files: int, bytes: int) -> None:
        pass

    def advance(self, *, files: int = 0, bytes: int = 0) -> None:
        if self.outcome is None:
            self.outcome = "running"
            try:
                self.second.backup(self.source, BackupOptions())
                self.outcome = "succeeded"
            except LeaseHeldError:
                self.outcome = "lease-held"


def test_two_writers_never_both_commit(opener: Opener, tmp_path: Path) -> None:
    source = sample_tree(tmp_path / "src")
    first, second = opener("pod-a"), opener("pod-b")
    intruder = _Intruder(second, source)
    try:
        first.backup(source, BackupOptions(), intruder)
        first_outcome = "succeeded"
    except LeaseHeldError:
        first_outcome = "lease-held"  # git: the other writer pushed first
    assert sorted([first_outcome, intruder.outcome or "never ran"]) == ["lease-held", "succeeded"]
    assert len(first.snapshots()) == 1
