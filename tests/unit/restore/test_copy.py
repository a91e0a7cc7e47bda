"""`caretaker copy` between object stores: ids kept, only missing data moved, damage refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.backends.transfer import copy_snapshots, destination_environ
from restore.errors import ConfigError, IntegrityError
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from restore.snapshots.format import DATA, SNAPSHOTS
from tests.conftest import FakeClock
from tests.support.trees import age_tree, describe, restored, write_file


@pytest.fixture
def second(tmp_path: Path, clock: FakeClock) -> Engine:
    return Engine(LocalStore(tmp_path / "second"), clock=clock, owner="copier")


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
    done = copy_snapshots(engine, second, engine.snapshots())
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
    copy_snapshots(engine, second, engine.snapshots())
    write_file(source / "f3.bin", b"changed")
    backup(engine, source, clock)
    done = copy_snapshots(engine, second, engine.snapshots())
    assert [c.copied for c in done] == [False, True]
    assert done[0].snapshot.id == first
    assert done[1].blobs == 2  # the changed file's chunk and one manifest piece
    assert done[1].bytes < 10_000
    assert copy_snapshots(engine, second, engine.snapshots()) == [
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
        copy_snapshots(engine, second, engine.snapshots())
    assert not list(second.store.list(SNAPSHOTS))


def test_a_repository_is_not_copied_into_itself(engine: Engine, source: Path, clock: FakeClock) -> None:
    write_file(source / "a", b"a")
    backup(engine, source, clock)
    with pytest.raises(ConfigError, match="is the repository copied from"):
        copy_snapshots(engine, Engine(engine.store), engine.snapshots())


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
