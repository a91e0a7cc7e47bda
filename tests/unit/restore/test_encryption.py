"""Encrypted repositories (the engine over a local directory): what is stored reveals nothing,
nothing stored without the key is restored, and the password is what opens it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from restore.backends.local import LocalStore
from restore.errors import ConfigError, IntegrityError, PasswordError
from restore.model import BackupOptions
from restore.retention import RetentionPolicy
from restore.snapshots.codec import Codec, PlainCodec, SealedCodec
from restore.snapshots.encryption import Encryption
from restore.snapshots.engine import Engine
from restore.snapshots.format import CONFIG_KEY, snapshot_key
from restore.snapshots.repokey import RepositoryConfig
from tests.conftest import FakeClock
from tests.support.forge import forge_blob, forge_snapshot, line
from tests.support.keys import UNENCRYPTED, sealed
from tests.support.trees import age_tree, describe, restored, write_file

MARKERS = (b"MARKER-IN-THE-DATA", b"name-of-a-secret-file", b"target-of-a-link", b"tag-of-a-snapshot")


def engine_at(root: Path, encryption, clock: FakeClock | None = None) -> Engine:
    return Engine(LocalStore(root), encryption=encryption, clock=clock or FakeClock(), owner="web-0")


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def encrypted(repo_root: Path, clock: FakeClock) -> Engine:
    return engine_at(repo_root, sealed(), clock)


def tree(source: Path, marker: str = "v1") -> Path:
    write_file(source / "name-of-a-secret-file.txt", MARKERS[0] * 3000 + marker.encode())
    write_file(source / "big.bin", os.urandom(3 << 20))
    os.symlink("target-of-a-link", source / "link")
    age_tree(source)
    return source


def stored_objects(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_round_trip_and_incremental(
    encrypted: Engine, source: Path, repo_root: Path, tmp_path: Path, clock: FakeClock
) -> None:
    first = encrypted.backup(tree(source), BackupOptions())
    assert encrypted.encryption() == "aes-256-gcm"
    clock.advance(hours=1)
    again = engine_at(repo_root, sealed(), clock).backup(source, BackupOptions())
    assert (again.changed, again.stats.bytes_read, again.stats.bytes_stored) == (False, 0, 0)
    reopened = engine_at(repo_root, sealed())
    assert [s.id for s in reopened.snapshots()] == [again.snapshot.id, first.snapshot.id]
    assert restored(reopened, first.snapshot.id, tmp_path / "out") == describe(source)
    assert reopened.verify(read_data=1.0)[0].ok


def test_nothing_stored_reveals_data_names_or_manifest(
    encrypted: Engine, source: Path, repo_root: Path
) -> None:
    encrypted.backup(tree(source), BackupOptions(tags=(MARKERS[3].decode(),), host="host-of-a-pod"))
    objects = stored_objects(repo_root)
    assert {key.split("/")[0] for key in objects} == {"config", "keys", "data", "index", "snapshots"}
    for key, data in objects.items():
        for marker in (*MARKERS, b"host-of-a-pod", b"big.bin"):
            assert marker not in data, (marker, key)
    # Content ids are keyed: the SHA-256 of a stored chunk names nothing in the repository.
    import hashlib

    chunk = (source / "big.bin").read_bytes()[: 1 << 20]
    assert not any(hashlib.sha256(chunk).hexdigest().encode() in d for d in objects.values())


def test_a_new_repository_needs_a_password_or_the_explicit_opt_out(repo_root: Path, source: Path) -> None:
    write_file(source / "a", b"1")
    with pytest.raises(ConfigError, match=r"--password-file.*--insecure-no-encryption"):
        engine_at(repo_root, Encryption()).backup(source, BackupOptions())
    assert not (repo_root / CONFIG_KEY).exists()
    with capture_logs() as logs:
        plain = engine_at(repo_root, UNENCRYPTED)
        plain.backup(source, BackupOptions())
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["repository.created_unencrypted"]
    assert not RepositoryConfig.decode((repo_root / CONFIG_KEY).read_bytes(), "here").encrypted
    assert plain.encryption() is None


def test_wrong_or_missing_password_is_a_password_error_even_without_snapshots(repo_root: Path) -> None:
    empty = repo_root.parent / "empty"
    empty.mkdir()
    engine_at(repo_root, sealed()).backup(empty, BackupOptions())
    for snapshot in (repo_root / "snapshots").iterdir():
        snapshot.unlink()  # an encrypted repository with no snapshot left
    with pytest.raises(PasswordError, match="opens no key slot"):
        engine_at(repo_root, sealed("not the password")).snapshots()
    with pytest.raises(PasswordError, match="is encrypted: give its password"):
        engine_at(repo_root, UNENCRYPTED).snapshots()
    assert engine_at(repo_root, sealed()).snapshots() == []


def test_a_password_for_an_unencrypted_repository_is_refused(repo_root: Path, source: Path) -> None:
    """Its config may have replaced an encrypted repository's: nothing authenticates it."""
    write_file(source / "a", b"1")
    engine_at(repo_root, UNENCRYPTED).backup(source, BackupOptions())
    with pytest.raises(PasswordError, match="not encrypted, but a password was given"):
        engine_at(repo_root, sealed()).snapshots()


def plant(store: LocalStore, codec: Codec, snapshot_id: str = "0" * 16) -> str:
    """A newer snapshot holding `app.conf`, sealed by `codec` instead of the repository's key."""
    body = b"echo pwned\n"
    chunk = forge_blob(store, body, codec=codec)
    return forge_snapshot(store, [line("app.conf", size=len(body), chunks=[chunk])], snapshot_id, codec=codec)


@pytest.mark.parametrize("codec", [PlainCodec(), SealedCodec(os.urandom(64))], ids=["no key", "another key"])
def test_planted_snapshots_are_never_listed_or_restored(
    repo_root: Path, source: Path, tmp_path: Path, codec: Codec
) -> None:
    real = engine_at(repo_root, sealed()).backup(tree(source), BackupOptions()).snapshot
    planted = plant(LocalStore(repo_root), codec)
    reopened = engine_at(repo_root, sealed())
    with capture_logs() as logs:
        assert [s.id for s in reopened.snapshots()] == [real.id]
    (warning,) = [e for e in logs if e["event"] == "snapshot.unreadable"]
    assert warning["key"] == snapshot_key(planted)
    with pytest.raises(IntegrityError, match=f"snapshot '{planted}' cannot be used: .*authentication"):
        reopened.restore(planted, tmp_path / "x")
    damage = {d.object: d.problem for r in reopened.verify() for d in r.damage}
    assert "authentication" in damage.pop(snapshot_key(planted))
    assert damage
    assert all(key.startswith("index/") and "authentication" in problem for key, problem in damage.items())


def test_objects_copied_from_another_repository_with_the_same_password(
    repo_root: Path, tmp_path: Path, source: Path
) -> None:
    """Two repositories, one password (one Secret for many pods): still two master keys."""
    real = engine_at(repo_root, sealed()).backup(tree(source), BackupOptions()).snapshot
    other_root = tmp_path / "other"
    evil = tmp_path / "evil"
    write_file(evil / "app.conf", b"echo pwned\n")
    engine_at(other_root, sealed(), FakeClock(real.time.replace(year=2031))).backup(evil, BackupOptions())
    for folder in ("data", "index", "snapshots"):
        shutil.copytree(other_root / folder, repo_root / folder, dirs_exist_ok=True)
    assert [s.id for s in engine_at(repo_root, sealed()).snapshots()] == [real.id]
    # Their key slot in place of ours: the password opens it, but it names their repository.
    shutil.rmtree(repo_root / "keys")
    shutil.copytree(other_root / "keys", repo_root / "keys")
    with capture_logs() as logs, pytest.raises(PasswordError, match="opens no key slot"):
        engine_at(repo_root, sealed()).snapshots()
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["key.foreign_slot"]


def test_a_record_stored_under_another_name_does_not_authenticate(
    encrypted: Engine, source: Path, tmp_path: Path
) -> None:
    clock = FakeClock()
    first = encrypted.backup(tree(source), BackupOptions()).snapshot
    clock.advance(hours=1)
    write_file(source / "later.txt", b"2")
    second = engine_at(encrypted.store.root, sealed(), clock).backup(source, BackupOptions()).snapshot  # type: ignore[attr-defined]
    root: Path = encrypted.store.root  # type: ignore[attr-defined]
    # The older record put in place of the newer one (a rollback dressed as the newest).
    (root / snapshot_key(second.id)).write_bytes((root / snapshot_key(first.id)).read_bytes())
    reopened = engine_at(root, sealed())
    assert [s.id for s in reopened.snapshots()] == [first.id]
    assert restored(reopened, first.id, tmp_path / "out")["name-of-a-secret-file.txt"]


def test_every_record_planted_is_an_integrity_error_never_an_empty_repository(
    encrypted: Engine, source: Path
) -> None:
    real = encrypted.backup(tree(source), BackupOptions()).snapshot
    root: Path = encrypted.store.root  # type: ignore[attr-defined]
    (root / snapshot_key(real.id)).unlink()
    plant(LocalStore(root), PlainCodec())
    with pytest.raises(IntegrityError, match=r"none of the 1 snapshot records .* can be read"):
        engine_at(root, sealed()).snapshots()


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["pack", "index", "record", "key slot"])
def test_a_flipped_bit_anywhere_is_an_authentication_failure(
    encrypted: Engine, source: Path, tmp_path: Path, where: str
) -> None:
    snapshot = encrypted.backup(tree(source), BackupOptions()).snapshot
    root: Path = encrypted.store.root  # type: ignore[attr-defined]
    folder = {"pack": "data", "index": "index", "record": "snapshots", "key slot": "keys"}[where]
    victims = sorted((p for p in (root / folder).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    flip(victims[-1], 200 if where != "key slot" else -20)
    reopened = engine_at(root, sealed())
    if where == "key slot":
        with pytest.raises(PasswordError, match="opens no key slot"):
            reopened.snapshots()
        return
    if where == "record":
        with pytest.raises(IntegrityError, match="fails authentication"):
            reopened.snapshots()
        return
    with pytest.raises(IntegrityError, match=r"authentication|missing") as caught:
        restored(reopened, snapshot.id, tmp_path / "out")
    assert snapshot.id in str(caught.value)
    problems = [d.problem for r in reopened.verify(read_data=1.0) for d in r.damage]
    assert any("authentication" in p for p in problems), problems


def test_prune_refuses_an_index_it_cannot_authenticate_and_merges_with_keyed_names(
    encrypted: Engine, source: Path, repo_root: Path
) -> None:
    clock = FakeClock()
    for round_ in range(3):
        write_file(source / f"f{round_}", os.urandom(1000))
        age_tree(source)
        engine_at(repo_root, sealed(), clock).backup(source, BackupOptions())
        clock.advance(days=1)
    result = engine_at(repo_root, sealed(), clock).prune(RetentionPolicy(last=1), now=clock())
    assert len(result.removed) == 2
    assert engine_at(repo_root, sealed()).verify(read_data=1.0)[0].ok
    plant(LocalStore(repo_root), PlainCodec())
    with pytest.raises(IntegrityError, match="refusing to prune: index objects that do not authenticate"):
        engine_at(repo_root, sealed(), clock).prune(RetentionPolicy(last=1), now=clock())


def test_the_unlocked_key_is_remembered_per_encryption(
    encrypted: Engine, source: Path, repo_root: Path
) -> None:
    """A sidecar opens the repository for every job: the password's derivation runs once."""
    write_file(source / "a", b"1")
    settings = sealed()
    engine_at(repo_root, settings).backup(source, BackupOptions())
    shutil.rmtree(repo_root / "keys")
    assert len(engine_at(repo_root, settings).snapshots()) == 1
    with pytest.raises(PasswordError):
        engine_at(repo_root, sealed()).snapshots()
