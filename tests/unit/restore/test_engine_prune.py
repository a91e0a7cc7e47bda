"""Prune with an injected clock: the right snapshots go, their data goes, nothing else."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.errors import LeaseHeldError, RefusedError
from restore.model import BackupOptions
from restore.retention import RetentionPolicy
from restore.snapshots.engine import Engine
from restore.snapshots.lease import StoreSlot
from tests.conftest import FakeClock
from tests.support.claims import claimant, holding
from tests.support.cli import FakeTime
from tests.support.keys import UNENCRYPTED
from tests.support.trees import describe, write_file


def _backup_days(engine: Engine, clock: FakeClock, source: Path, days: int) -> list[str]:
    ids = []
    for day in range(days):
        write_file(source / f"day{day}.bin", os.urandom(200_000))
        ids.append(engine.backup(source, BackupOptions()).snapshot.id)
        clock.advance(days=1)
    return ids


def _stored_bytes(store: LocalStore) -> int:
    return sum(o.size for o in store.list("data/"))


def test_prune_forgets_by_policy_and_frees_unreferenced_data(
    engine: Engine, store: LocalStore, clock: FakeClock, source: Path, tmp_path: Path
) -> None:
    ids = _backup_days(engine, clock, source, 5)
    for day in range(4):
        (source / f"day{day}.bin").unlink()
    ids.append(engine.backup(source, BackupOptions()).snapshot.id)
    before = _stored_bytes(store)
    result = engine.prune(RetentionPolicy(last=1), now=clock())
    assert [s.id for s in result.kept] == [ids[-1]]
    assert sorted(s.id for s in result.removed) == sorted(ids[:-1])
    assert [s.id for s in engine.snapshots()] == [ids[-1]]
    assert _stored_bytes(store) < before - 4 * 190_000
    assert result.bytes_freed > 4 * 190_000
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(ids[-1], dest)
    assert describe(dest) == describe(source)
    assert engine.verify(read_data=1.0)[0].ok


def test_dry_run_deletes_nothing(engine: Engine, store: LocalStore, clock: FakeClock, source: Path) -> None:
    _backup_days(engine, clock, source, 3)
    objects = sorted(o.key for o in store.list(""))
    result = engine.prune(RetentionPolicy(last=1), now=clock(), dry_run=True)
    assert result.dry_run
    assert len(result.removed) == 2
    assert sorted(o.key for o in store.list("")) == objects


def test_shared_data_survives_pruning(
    engine: Engine, store: LocalStore, clock: FakeClock, source: Path, tmp_path: Path
) -> None:
    write_file(source / "shared", os.urandom(300_000))
    first = engine.backup(source, BackupOptions()).snapshot.id
    clock.advance(days=1)
    write_file(source / "new", b"x")
    second = engine.backup(source, BackupOptions()).snapshot.id
    engine.prune(RetentionPolicy(last=1), now=clock())
    assert [s.id for s in engine.snapshots()] == [second]
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(second, dest)
    assert (dest / "shared").read_bytes() == (source / "shared").read_bytes()
    assert first not in {s.id for s in engine.snapshots()}


def test_orphan_packs_are_kept_during_the_grace_period(
    engine: Engine, store: LocalStore, clock: FakeClock, source: Path
) -> None:
    write_file(source / "a", b"1")
    engine.backup(source, BackupOptions())
    # What a killed backup leaves: a pack nobody indexed yet.
    store.put("data/ab/" + "ab" * 32, b"in flight")
    written = store.stat("data/ab/" + "ab" * 32)
    assert written is not None
    engine.prune(RetentionPolicy(last=1), now=written.modified + timedelta(minutes=50))
    assert store.stat("data/ab/" + "ab" * 32) is not None
    engine.prune(RetentionPolicy(last=1), now=written.modified + timedelta(hours=2))
    assert store.stat("data/ab/" + "ab" * 32) is None


def test_empty_backup_over_data_is_refused(engine: Engine, source: Path) -> None:
    write_file(source / "a", b"1")
    engine.backup(source, BackupOptions())
    (source / "a").unlink()
    with pytest.raises(RefusedError, match="empty"):
        engine.backup(source, BackupOptions())
    assert len(engine.snapshots()) == 1
    engine.backup(source, BackupOptions(allow_empty=True))
    assert len(engine.snapshots()) == 2


def test_prune_never_removes_the_newest_non_empty_snapshot(
    engine: Engine, clock: FakeClock, source: Path
) -> None:
    write_file(source / "a", b"1")
    data = engine.backup(source, BackupOptions()).snapshot.id
    (source / "a").unlink()
    for _ in range(3):
        clock.advance(hours=1)
        engine.backup(source, BackupOptions(allow_empty=True))
    engine.prune(RetentionPolicy(last=1), now=clock())
    assert data in {s.id for s in engine.snapshots()}


def test_a_live_claim_blocks_a_second_writer(store: LocalStore, clock: FakeClock, source: Path) -> None:
    write_file(source / "a", b"1")
    timer = FakeTime()
    other = holding(StoreSlot(store), claimant("other-pod", timer=timer))
    timer.during_sleep.append(other.renew)  # alive: renews while we look
    engine = Engine(
        store, encryption=UNENCRYPTED, clock=clock, claimant=claimant("test", clock=clock, timer=timer)
    )
    with pytest.raises(LeaseHeldError, match="other-pod"):
        engine.backup(source, BackupOptions())
    assert engine.snapshots() == []
    assert timer.slept <= other.claimant.timing.heartbeat_seconds  # told as soon as it renewed


def test_the_claim_of_a_dead_writer_is_taken_over_after_its_expiry(
    store: LocalStore, clock: FakeClock, source: Path
) -> None:
    write_file(source / "a", b"1")
    timer = FakeTime()
    dead = holding(StoreSlot(store), claimant("dead-pod", timer=timer), role="backup")
    engine = Engine(
        store, encryption=UNENCRYPTED, clock=clock, claimant=claimant("test", clock=clock, timer=timer)
    )
    engine.backup(source, BackupOptions())
    assert len(engine.snapshots()) == 1
    expiry = dead.claimant.timing.expiry_seconds
    assert timer.slept == pytest.approx(expiry, abs=0.06)  # one poll at most past it
    assert store.stat("lease") is None


@pytest.mark.parametrize("document", [b"{not json", b'{"owner": "x", "expires": 5}', b"[]"])
def test_an_unreadable_claim_is_taken_over_once_unchanged_for_30s(
    store: LocalStore, clock: FakeClock, source: Path, document: bytes
) -> None:
    write_file(source / "a", b"1")
    store.put("lease", document)
    timer = FakeTime()
    engine = Engine(
        store, encryption=UNENCRYPTED, clock=clock, claimant=claimant("test", clock=clock, timer=timer)
    )
    engine.backup(source, BackupOptions())
    assert len(engine.snapshots()) == 1
    assert timer.slept == pytest.approx(30, abs=2.6)  # one poll at most past it


def test_the_claim_is_released_after_failure(engine: Engine, store: LocalStore, tmp_path: Path) -> None:
    from restore.errors import LocalIOError

    with pytest.raises(LocalIOError):
        engine.backup(tmp_path / "missing", BackupOptions())
    assert store.stat("lease") is None


def test_own_stale_claim_is_taken_back_at_once(store: LocalStore, clock: FakeClock, source: Path) -> None:
    # What a failed release leaves behind (storage died mid-backup): the same process
    # retrying must not wait for its own claim to expire.
    write_file(source / "a", b"1")
    timer = FakeTime()
    writer = claimant("test", clock=clock, timer=timer)
    holding(StoreSlot(store), writer, role="backup")
    engine = Engine(store, encryption=UNENCRYPTED, clock=clock, claimant=writer)
    engine.backup(source, BackupOptions())
    assert len(engine.snapshots()) == 1
    assert timer.slept == 0
