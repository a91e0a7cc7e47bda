"""`caretaker copy` between object stores: ids kept, only missing data moved, damage refused;
between encrypted repositories every blob re-sealed under the destination's key."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.backends.transfer import copy_snapshots, destination_environ
from restore.claims.holder import Claimant, Timing
from restore.errors import ConfigError, IntegrityError, LeaseHeldError, PasswordError
from restore.model import BackupOptions
from restore.snapshots.encryption import DESTINATION, Encryption
from restore.snapshots.engine import Engine
from restore.snapshots.format import CONFIG_KEY, DATA, SNAPSHOTS
from tests.conftest import FakeClock
from tests.support.keys import UNENCRYPTED, sealed
from tests.support.trees import age_tree, describe, restored, write_file


@pytest.fixture
def second(tmp_path: Path, clock: FakeClock) -> Engine:
    return Engine(LocalStore(tmp_path / "second"), encryption=UNENCRYPTED, clock=clock, owner="copier")


def backup(engine: Engine, source: Path, clock: FakeClock, **options: object) -> str:
    age_tree(source)
    clock.advance(minutes=5)
    return engine.backup(source, BackupOptions(**options)).snapshot.id  # type: ignore[arg-type]


def test_copies_keep_their_ids_and_restore_identically(
    engine: Engine, second: Engine, source: Path, clock: FakeClock, tmp_path: Path
) -> None:
    write_file(source / "big.bin", os.urandom(3 << 20))
    write_file(source / "conf" / "a.yaml", b"a: 1\n", mode=0o600)
    (source / "link").symlink_to("conf")
    first = backup(engine, source, clock, host="web-0", tags=("nightly",))
    done = copy_snapshots(engine, second, engine.snapshots(), plain_allowed=False)
    assert [(c.snapshot.id, c.copied) for c in done] == [(first, True)]
    assert second.snapshots() == engine.snapshots()
    assert restored(second, first, tmp_path / "out") == describe(source)
    assert second.verify(read_data=1.0)[0].ok


def test_only_what_the_destination_lacks_is_copied(
    engine: Engine, second: Engine, source: Path, clock: FakeClock
) -> None:
    for i in range(20):
        write_file(source / f"f{i}.bin", os.urandom(300_000))
    first = backup(engine, source, clock)
    copy_snapshots(engine, second, engine.snapshots(), plain_allowed=False)
    write_file(source / "f3.bin", b"changed")
    backup(engine, source, clock)
    done = copy_snapshots(engine, second, engine.snapshots(), plain_allowed=False)
    assert [c.copied for c in done] == [False, True]
    assert done[0].snapshot.id == first
    assert done[1].blobs == 2  # the changed file's chunk and one manifest piece
    assert done[1].bytes < 10_000
    assert copy_snapshots(engine, second, engine.snapshots(), plain_allowed=False) == [
        type(done[0])(s, copied=False) for s in sorted(engine.snapshots(), key=lambda s: s.time)
    ]


def test_a_damaged_snapshot_is_not_copied(
    engine: Engine, second: Engine, store: LocalStore, source: Path, clock: FakeClock
) -> None:
    write_file(source / "a.bin", os.urandom(100_000))
    backup(engine, source, clock)
    for pack in (store.root / DATA).rglob("*"):
        if pack.is_file() and pack.stat().st_size > 50_000:
            pack.write_bytes(pack.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IntegrityError):
        copy_snapshots(engine, second, engine.snapshots(), plain_allowed=False)
    assert not list(second.store.list(SNAPSHOTS))


def test_a_repository_is_not_copied_into_itself(engine: Engine, source: Path, clock: FakeClock) -> None:
    write_file(source / "a", b"a")
    backup(engine, source, clock)
    with pytest.raises(ConfigError, match="is the repository copied from"):
        copy_snapshots(
            engine, Engine(engine.store, encryption=UNENCRYPTED), engine.snapshots(), plain_allowed=False
        )


def test_the_destination_takes_its_own_settings_from_caretaker_to_variables() -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": "source",
        "CARETAKER_TO_AWS_ACCESS_KEY_ID": "second",
        "CARETAKER_S3_ENDPOINT": "http://source",
        "CARETAKER_TO_S3_ENDPOINT": "http://second",
        "CARETAKER_TO": "s3://second/copy",
        "CARETAKER_PATH": "/data",
    }
    seen = destination_environ(environ)
    assert seen["AWS_ACCESS_KEY_ID"] == "second"
    assert seen["CARETAKER_S3_ENDPOINT"] == "http://second"
    assert seen["CARETAKER_PATH"] == "/data"


MARKER = b"plaintext-marker-" * 64


def sealed_engine(root: Path, clock: FakeClock, encryption: Encryption, owner: str = "copier") -> Engine:
    return Engine(LocalStore(root), encryption=encryption, clock=clock, owner=owner)


def stored_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def encrypted(tmp_path: Path, clock: FakeClock, source: Path) -> tuple[Engine, list[str]]:
    """An encrypted repository with two snapshots of a folder holding MARKER."""
    engine = sealed_engine(tmp_path / "first", clock, sealed("first password"), owner="backup")
    write_file(source / "secret.txt", MARKER)
    write_file(source / "big.bin", os.urandom(2 << 20))
    (source / "link").symlink_to("secret.txt")
    ids = [backup(engine, source, clock, host="web-0", tags=("nightly",))]
    write_file(source / "more.txt", MARKER + b"2")
    ids.append(backup(engine, source, clock))
    return engine, ids


def test_encrypted_to_encrypted_reseals_under_the_destinations_key(
    encrypted: tuple[Engine, list[str]], source: Path, clock: FakeClock, tmp_path: Path
) -> None:
    engine, ids = encrypted
    dest = sealed_engine(tmp_path / "dest", clock, sealed("another password"))
    done = copy_snapshots(engine, dest, engine.snapshots(), plain_allowed=False)
    assert [(c.snapshot.id, c.copied) for c in done] == [(ids[0], True), (ids[1], True)]
    assert dest.snapshots() == engine.snapshots()  # ids, times, hosts, tags, folders kept
    assert dest.encryption() == "aes-256-gcm"
    assert all(r.ok for r in dest.verify(read_data=1.0))
    assert restored(dest, ids[1], tmp_path / "out") == describe(source)
    assert MARKER[:32] not in stored_bytes(tmp_path / "dest")
    # Its own key: the source's password opens nothing there, and ids differ per key.
    with pytest.raises(PasswordError, match="opens no key slot"):
        sealed_engine(tmp_path / "dest", clock, sealed("first password")).snapshots()
    assert dest.record(ids[1]).manifest != engine.record(ids[1]).manifest
    # A second copy finds everything present and writes nothing.
    again = copy_snapshots(engine, dest, engine.snapshots(), plain_allowed=False)
    assert [c.copied for c in again] == [False, False]


def test_a_killed_encrypted_copy_goes_on_writing_only_what_is_missing(
    encrypted: tuple[Engine, list[str]], clock: FakeClock, tmp_path: Path
) -> None:
    engine, ids = encrypted
    dest = sealed_engine(tmp_path / "dest", clock, sealed("another password"))
    copy_snapshots(engine, dest, [engine.record(ids[0]).info], plain_allowed=False)
    (tmp_path / "dest" / "snapshots" / ids[0]).unlink()  # as if killed before its record
    done = copy_snapshots(engine, dest, engine.snapshots(), plain_allowed=False)
    assert [c.copied for c in done] == [True, True]
    assert done[0].blobs == 0  # every blob was indexed by the killed run
    assert all(r.ok for r in dest.verify(read_data=1.0))


def test_encrypted_data_goes_into_an_unencrypted_repository_only_when_asked(
    encrypted: tuple[Engine, list[str]], clock: FakeClock, tmp_path: Path
) -> None:
    engine, _ = encrypted
    plain = sealed_engine(tmp_path / "plain", clock, UNENCRYPTED)
    with pytest.raises(ConfigError, match="--to-insecure-no-encryption") as refused:
        copy_snapshots(engine, plain, engine.snapshots(), plain_allowed=False)
    assert "the source is encrypted" in str(refused.value)
    assert not list(plain.store.list(SNAPSHOTS))
    copy_snapshots(engine, plain, engine.snapshots(), plain_allowed=True)
    assert plain.encryption() is None
    assert all(r.ok for r in plain.verify(read_data=1.0))


def test_an_unencrypted_source_is_sealed_into_an_encrypted_destination(
    engine: Engine, source: Path, clock: FakeClock, tmp_path: Path
) -> None:
    write_file(source / "secret.txt", MARKER)
    first = backup(engine, source, clock)
    dest = sealed_engine(tmp_path / "dest", clock, sealed())
    copy_snapshots(engine, dest, engine.snapshots(), plain_allowed=False)
    assert restored(dest, first, tmp_path / "out") == describe(source)
    assert MARKER[:32] not in stored_bytes(tmp_path / "dest")


def test_a_destination_without_its_password_is_a_password_error_naming_the_to_options(
    encrypted: tuple[Engine, list[str]], clock: FakeClock, tmp_path: Path
) -> None:
    engine, _ = encrypted
    sealed_engine(tmp_path / "dest", clock, sealed("another password")).ensure()
    nothing = sealed_engine(tmp_path / "dest", clock, Encryption(options=DESTINATION))
    with pytest.raises(
        PasswordError, match=r"--to-password-file .CARETAKER_TO_PASSWORD_FILE. or CARETAKER_TO_PASSWORD"
    ):
        copy_snapshots(engine, nothing, engine.snapshots(), plain_allowed=False)


def test_a_destination_another_writer_claims_is_refused(
    encrypted: tuple[Engine, list[str]], clock: FakeClock, tmp_path: Path
) -> None:
    engine, _ = encrypted
    quick = Timing(heartbeat_seconds=0.2, expiry_seconds=1.0)
    holder = Engine(
        LocalStore(tmp_path / "dest"),
        encryption=sealed("another password"),
        clock=clock,
        claimant=dataclasses.replace(Claimant.named("sidecar-b", clock=clock), timing=quick),
    )
    dest = sealed_engine(tmp_path / "dest", clock, sealed("another password"))
    with holder.writer("backup"), pytest.raises(LeaseHeldError, match="sidecar-b"):
        copy_snapshots(engine, dest, engine.snapshots(), plain_allowed=False)
    assert not list(dest.store.list(SNAPSHOTS))


def test_a_destination_whose_config_is_gone_while_records_remain_is_refused(
    engine: Engine, source: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """As for a backup: damage (or a plant), never a reason to give it a new config and key."""
    write_file(source / "a", b"a")
    backup(engine, source, clock)
    root = tmp_path / "second"
    sealed_dest = Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="copier")
    copy_snapshots(engine, sealed_dest, engine.snapshots(), plain_allowed=False)
    write_file(source / "a", b"b")
    backup(engine, source, clock)
    (root / CONFIG_KEY).unlink()
    dest = Engine(LocalStore(root), encryption=sealed(), clock=clock, owner="copier")
    with pytest.raises(IntegrityError, match="holds snapshot records but no repository config"):
        copy_snapshots(engine, dest, engine.snapshots(), plain_allowed=False)
    assert not (root / CONFIG_KEY).exists()
    assert len(list((root / SNAPSHOTS).iterdir())) == 1
