"""Encrypted repositories on a local directory and on a real S3 server (SeaweedFS), through the
init container's `caretaker restore`: nothing readable in storage, nothing planted restored,
and a password that does not open the repository is exit 13, never a first boot."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from restore.model import STATE_DIR, SnapshotInfo
from restore.snapshots.codec import Codec, PlainCodec, SealedCodec
from restore.snapshots.engine import Engine
from restore.snapshots.format import DATA, INDEX, SNAPSHOTS, snapshot_key
from restore.snapshots.store import ObjectStore
from tests.support.forge import forge_blob, forge_snapshot, line
from tests.support.keys import password_env
from tests.support.restore_runs import Repo, Run, assert_reported, restore
from tests.support.trees import describe, write_file

# Local and S3 only: git repositories are not encrypted (docs/security.md).
pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("repository_url", ["local", "s3"], indirect=True),
]

MARKERS = (b"MARKER-OF-THE-CONTENT", b"marker-of-a-file-name", b"marker-of-a-link-target")


def marked_tree(root: Path, version: str) -> Path:
    write_file(root / "marker-of-a-file-name.txt", MARKERS[0] * 500 + version.encode())
    write_file(root / "blobs" / "big.bin", os.urandom(2_500_000))
    os.symlink("marker-of-a-link-target", root / "link")
    return root


def restored(target: Path, repo: Repo, snapshot: SnapshotInfo, source: Path) -> Run:
    """Run the init container's restore; check it restored `snapshot`, equal to `source`."""
    run = restore(target, repo)
    assert_reported(run, "restored", 0)
    assert run.outcome is not None
    assert run.outcome.snapshot == snapshot.id
    assert describe(target) == describe(source)
    return run


def store_of(repo: Repo) -> tuple[Engine, ObjectStore]:
    opened = repo.open()
    assert isinstance(opened, Engine)
    return opened, opened.store


def test_round_trip_with_nothing_readable_in_storage(repo: Repo, target: Path, tmp_path: Path) -> None:
    source = marked_tree(tmp_path / "source", "v1")
    snapshot = repo.backup(source)
    restored(target, repo, snapshot, source)
    engine, store = store_of(repo)
    try:
        keys = [item.key for item in store.list("")]
        assert {key.split("/")[0] for key in keys} == {"config", "keys", "data", "index", "snapshots"}
        for key in keys:
            stored = store.get(key)
            assert not any(marker in stored for marker in MARKERS), key
    finally:
        engine.close()


def plant_plain(store: ObjectStore, _: Repo, later: SnapshotInfo, __: Path) -> str:
    return _plant(store, PlainCodec(), later)


def plant_with_another_key(store: ObjectStore, _: Repo, later: SnapshotInfo, __: Path) -> str:
    return _plant(store, SealedCodec(os.urandom(64)), later)


def _plant(store: ObjectStore, codec: Codec, later: SnapshotInfo) -> str:
    """A snapshot newer than `later` holding `app.conf`, as someone without the key writes it."""
    body = b"echo pwned\n"
    chunk = forge_blob(store, body, codec=codec)
    lines = [line("app.conf", size=len(body), chunks=[chunk])]
    return forge_snapshot(store, lines, "0" * 16, later.time + timedelta(hours=1), codec=codec)


def copy_from_another_repository(store: ObjectStore, repo: Repo, later: SnapshotInfo, folder: Path) -> str:
    """A newer snapshot of another repository that the same password opens, copied in."""
    other = Repo(repo.url.rstrip("/") + "-other", repo.environ)
    evil = other.backup(write_file(folder / "evil" / "app.conf", b"echo pwned\n").parent)
    engine, theirs = store_of(other)
    try:
        for prefix in (DATA, INDEX, SNAPSHOTS):
            for item in theirs.list(prefix):
                store.put(item.key, theirs.get(item.key))
    finally:
        engine.close()
    assert evil.time > later.time
    return evil.id


PLANTERS: dict[str, Callable[[ObjectStore, Repo, SnapshotInfo, Path], str]] = {
    "no key": plant_plain,
    "another repository's key": plant_with_another_key,
    "copied from another repository": copy_from_another_repository,
}


@pytest.mark.parametrize("how", sorted(PLANTERS))
def test_a_planted_snapshot_is_never_restored(repo: Repo, target: Path, tmp_path: Path, how: str) -> None:
    source = marked_tree(tmp_path / "source", "v1")
    real = repo.backup(source)
    engine, store = store_of(repo)
    try:
        planted = PLANTERS[how](store, repo, real, tmp_path)
    finally:
        engine.close()
    run = restored(target, repo, real, source)
    unreadable = {event["key"] for event in run.event("snapshot.unreadable")}
    assert snapshot_key(planted) in unreadable


def test_a_record_stored_under_a_newer_name_is_skipped_for_the_older_one(
    repo: Repo, target: Path, tmp_path: Path
) -> None:
    """A rollback dressed as the newest snapshot: the older record under the newer one's name."""
    old_source = marked_tree(tmp_path / "old", "v1")
    old = repo.backup(old_source)
    new = repo.backup(marked_tree(tmp_path / "new", "v2"))
    engine, store = store_of(repo)
    try:
        store.put(snapshot_key(new.id), store.get(snapshot_key(old.id)))
    finally:
        engine.close()
    run = restored(target, repo, old, old_source)
    assert run.outcome is not None
    assert run.outcome.snapshot_age_seconds is not None
    assert run.outcome.snapshot_age_seconds > 0
    assert [e["key"] for e in run.event("snapshot.unreadable")] == [snapshot_key(new.id)]


def test_nothing_authentic_left_is_exit_7_not_a_first_boot(repo: Repo, target: Path, tmp_path: Path) -> None:
    real = repo.backup(marked_tree(tmp_path / "source", "v1"))
    engine, store = store_of(repo)
    try:
        store.delete([snapshot_key(real.id)])
        plant_plain(store, repo, real, tmp_path)
    finally:
        engine.close()
    run = restore(target, repo, "--allow-empty")
    assert_reported(run, "failed", 7)
    assert os.listdir(target) == [STATE_DIR]


@pytest.mark.parametrize("password", ["a wrong one", None], ids=["wrong", "missing"])
def test_without_the_right_password_restore_is_exit_13_even_with_allow_empty(
    repo: Repo, target: Path, tmp_path: Path, password: str | None
) -> None:
    repo.backup(marked_tree(tmp_path / "source", "v1"))
    environ = {k: v for k, v in repo.environ.items() if k != "CARETAKER_PASSWORD_FILE"}
    if password is not None:
        (tmp_path / "elsewhere").mkdir()
        environ |= password_env(tmp_path / "elsewhere", password)
    run = restore(target, Repo(repo.url, environ), "--allow-empty")
    assert_reported(run, "failed", 13)
    assert run.outcome is not None
    assert run.outcome.reason == "password"
    assert os.listdir(target) == [STATE_DIR]
