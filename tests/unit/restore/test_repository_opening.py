"""Opening an encrypted repository derives its key while the caller goes on talking to the
storage: the derivation's CPU time overlaps the round trips, and nothing else changes."""

from __future__ import annotations

import contextlib
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.errors import IntegrityError, ObjectNotFoundError, PasswordError, TransientBackendError
from restore.model import BackupOptions
from restore.retention import RetentionPolicy
from restore.snapshots.encryption import Encryption, UnlockedKeys
from restore.snapshots.engine import Engine
from restore.snapshots.format import CONFIG_KEY, INDEX, KEYS, LEASE_KEY, SNAPSHOTS
from restore.snapshots.store import StoredObject
from tests.conftest import FakeClock
from tests.support.keys import sealed
from tests.support.trees import age_tree, write_file


class Rendezvous(LocalStore):
    """Holds the first access `held` (a listing, read or creation, and a key prefix) until
    the access `awaited` has begun, or 5 s have passed; says which."""

    def __init__(self, root: Path, *, held: tuple[str, str], awaited: tuple[str, str]) -> None:
        super().__init__(root)
        self._held, self._awaited = held, awaited
        self._reached = threading.Event()
        self.overlapped: bool | None = None

    def list(self, prefix: str) -> Iterator[StoredObject]:
        self._access("list", prefix)
        return super().list(prefix)

    def get(self, key: str) -> bytes:
        self._access("read", key)
        return super().get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self._access("read", key)
        return super().get_range(key, start, length)

    def create(self, key: str, data: bytes) -> bool:
        self._access("create", key)
        return super().create(key, data)

    def _access(self, kind: str, name: str) -> None:
        if kind == self._awaited[0] and name.startswith(self._awaited[1]):
            self._reached.set()
        if kind == self._held[0] and name.startswith(self._held[1]) and self.overlapped is None:
            self.overlapped = self._reached.wait(5)


class LateConfig(LocalStore):
    """A repository whose config is not there at the first look (created just after it)."""

    hidden = True

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if key == CONFIG_KEY and self.hidden:
            self.hidden = False
            raise ObjectNotFoundError(key)
        return super().get_range(key, start, length)


class Outage(LocalStore):
    """Storage that refuses every read while `down`."""

    down = True

    def list(self, prefix: str) -> Iterator[StoredObject]:
        self._check(prefix)
        return super().list(prefix)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self._check(key)
        return super().get_range(key, start, length)

    def _check(self, name: str) -> None:
        if self.down:
            raise TransientBackendError(f"{name}: connection refused")


@pytest.fixture
def repo_root(tmp_path: Path, source: Path, clock: FakeClock) -> Path:
    """An encrypted repository holding two snapshots of `source`."""
    root = tmp_path / "repo"
    for version in (b"1", b"2"):
        write_file(source / "file", version)
        age_tree(source)
        engine_on(LocalStore(root), sealed(), clock).backup(source, BackupOptions())
        clock.advance(hours=1)
    return root


def engine_on(
    store: LocalStore, encryption: Encryption, clock: FakeClock | None = None, *, restoring: bool = False
) -> Engine:
    return Engine(
        store, encryption=encryption, clock=clock or FakeClock(), owner="web-0", restoring=restoring
    )


def test_the_records_are_fetched_while_the_key_is_derived(repo_root: Path) -> None:
    store = Rendezvous(repo_root, held=("list", KEYS), awaited=("read", SNAPSHOTS))
    listed = engine_on(store, sealed()).snapshots()
    assert store.overlapped is True
    assert len(listed) == 2
    assert listed == engine_on(LocalStore(repo_root), sealed()).snapshots()


@pytest.mark.parametrize(
    ("held", "awaited"),
    [
        pytest.param(("create", LEASE_KEY), ("list", KEYS), id="the writer claim taken"),
        pytest.param(("list", KEYS), ("read", INDEX), id="the index read (it needs the key to be opened)"),
    ],
)
def test_a_backup_goes_on_while_the_key_is_derived(
    repo_root: Path, source: Path, held: tuple[str, str], awaited: tuple[str, str]
) -> None:
    store = Rendezvous(repo_root, held=held, awaited=awaited)
    write_file(source / "file", b"3")
    result = engine_on(store, sealed()).backup(source, BackupOptions())
    assert store.overlapped is True
    assert result.recorded
    reopened = engine_on(LocalStore(repo_root), sealed())
    assert reopened.snapshots()[0].id == result.snapshot.id
    assert [r.ok for r in reopened.verify()] == [True] * 3


def test_a_listing_to_restore_from_reads_the_index_while_the_key_is_derived(
    repo_root: Path, tmp_path: Path
) -> None:
    store = Rendezvous(repo_root, held=("list", KEYS), awaited=("read", INDEX))
    engine = engine_on(store, sealed(), restoring=True)
    latest = engine.snapshots()[0]
    assert store.overlapped is True
    (tmp_path / "out").mkdir()
    engine.restore(latest.id, tmp_path / "out")
    assert (tmp_path / "out" / "file").read_bytes() == b"2"


def test_a_restore_after_a_handover_restores_the_final_backup_though_the_index_changed(
    repo_root: Path, source: Path, tmp_path: Path, clock: FakeClock
) -> None:
    """The init container lists (reading the index ahead), waits while the old pod backs up
    a last time and prunes (index objects replaced and deleted), lists again and restores:
    the index read ahead is stale by then, and must not be what the restore trusts."""
    store = Rendezvous(repo_root, held=("list", KEYS), awaited=("read", INDEX))
    restorer = engine_on(store, sealed(), restoring=True)
    restorer.snapshots()
    assert store.overlapped is True
    before = {item.key for item in LocalStore(repo_root).list(INDEX)}
    write_file(source / "file", b"3")
    old_pod = engine_on(LocalStore(repo_root), sealed(), clock)
    final = old_pod.backup(source, BackupOptions()).snapshot
    old_pod.prune(RetentionPolicy(last=1), now=clock())
    assert not before <= {item.key for item in LocalStore(repo_root).list(INDEX)}
    [latest] = restorer.snapshots()
    assert latest.id == final.id
    (tmp_path / "out").mkdir()
    restorer.restore(latest.id, tmp_path / "out")
    assert (tmp_path / "out" / "file").read_bytes() == b"3"


class IndexOutage(Rendezvous):
    """Holds the key derivation until the index is listed, and fails that first listing."""

    failed = False

    def list(self, prefix: str) -> Iterator[StoredObject]:
        listing = super().list(prefix)
        if prefix == INDEX and not self.failed:
            self.failed = True
            raise TransientBackendError(f"{prefix}: connection reset")
        return listing


def test_a_read_ahead_that_fails_fails_the_listing_which_a_retry_repeats(
    repo_root: Path, tmp_path: Path
) -> None:
    """The init container retries a listing that fails (here: reading ahead); the retry
    lists again and the restore still reads the whole index."""
    store = IndexOutage(repo_root, held=("list", KEYS), awaited=("list", INDEX))
    engine = engine_on(store, sealed(), restoring=True)
    with pytest.raises(TransientBackendError, match="index/: connection reset"):
        engine.snapshots()
    latest = engine.snapshots()[0]
    assert store.overlapped is True  # the key was still being derived when it failed
    (tmp_path / "out").mkdir()
    engine.restore(latest.id, tmp_path / "out")
    assert (tmp_path / "out" / "file").read_bytes() == b"2"


def test_a_listing_for_anything_else_reads_no_index(repo_root: Path) -> None:
    """Readiness probes and `caretaker snapshots` list: the index would be read for nothing."""
    store = Rendezvous(repo_root, held=("read", INDEX), awaited=("read", INDEX))
    assert len(engine_on(store, sealed()).snapshots()) == 2
    assert store.overlapped is None


def test_a_wrong_password_is_still_a_password_error_and_a_backup_writes_nothing(
    repo_root: Path, source: Path
) -> None:
    before = sorted(p.relative_to(repo_root) for p in repo_root.rglob("*"))
    with pytest.raises(PasswordError, match="opens no key slot"):
        engine_on(LocalStore(repo_root), sealed("wrong")).snapshots()
    write_file(source / "file", b"3")
    with pytest.raises(PasswordError, match="opens no key slot"):
        engine_on(LocalStore(repo_root), sealed("wrong")).backup(source, BackupOptions())
    assert sorted(p.relative_to(repo_root) for p in repo_root.rglob("*")) == before  # the claim released


def test_a_config_missing_at_the_first_look_is_read_again_after_the_listing(repo_root: Path) -> None:
    """The config may be written between the opening's look and the listing: records listed
    then must not read as a repository without a config."""
    store = LateConfig(repo_root)
    assert len(engine_on(store, sealed()).snapshots()) == 2
    assert not store.hidden


def test_records_without_any_config_are_still_an_integrity_error(repo_root: Path) -> None:
    (repo_root / CONFIG_KEY).unlink()
    with pytest.raises(IntegrityError, match="holds snapshot records but no repository config"):
        engine_on(LocalStore(repo_root), sealed()).snapshots()


def test_a_backup_refuses_records_without_a_config_instead_of_creating_one(
    repo_root: Path, source: Path
) -> None:
    """A config gone while records remain is damage (or a plant): never a new repository."""
    (repo_root / CONFIG_KEY).unlink()
    with pytest.raises(IntegrityError, match="holds snapshot records but no repository config"):
        engine_on(LocalStore(repo_root), sealed()).backup(source, BackupOptions())
    assert not (repo_root / CONFIG_KEY).exists()


def test_a_listing_retried_after_an_outage_does_not_get_the_outages_error(repo_root: Path) -> None:
    """The init container retries a failed listing on the same engine: the opening that
    failed with it (storage down) must not answer the retry, which finds storage back."""
    store = Outage(repo_root)
    engine = engine_on(store, sealed())
    with pytest.raises(TransientBackendError, match="connection refused"):
        engine.snapshots()
    store.down = False
    assert len(engine.snapshots()) == 2


class SlowSlots(LocalStore):
    """Counts the listings of the key slots (one per key derivation tried), and makes each
    last 0.2 s, so that engines opening together overlap in it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.slot_listings = 0
        self._count = threading.Lock()

    def list(self, prefix: str) -> Iterator[StoredObject]:
        if prefix == KEYS:
            with self._count:
                self.slot_listings += 1
            threading.Event().wait(0.2)
        return super().list(prefix)


def open_together(store: LocalStore, encryption: Encryption, engines: int) -> list[object]:
    """What `snapshots()` gave (or raised) in each of `engines` threads, started at once, each
    with its own engine and the one `encryption`, as the sidecar's jobs share theirs."""
    start = threading.Barrier(engines)
    outcomes: list[object] = [None] * engines

    def one(slot: int) -> None:
        engine = engine_on(store, encryption)
        start.wait()
        try:
            outcomes[slot] = len(engine.snapshots())
        except PasswordError as error:
            outcomes[slot] = error

    threads = [threading.Thread(target=one, args=(slot,)) for slot in range(engines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_engines_opening_one_repository_together_derive_its_key_once(repo_root: Path) -> None:
    """At the sidecar's start its backup, readiness and metrics open the repository at once:
    one key derivation (0.2 CPU-seconds, 64 MiB) is enough for all of them."""
    store = SlowSlots(repo_root)
    assert open_together(store, sealed(), 4) == [2] * 4
    assert store.slot_listings == 1


def test_a_wrong_password_fails_every_engine_opening_together(repo_root: Path) -> None:
    store = SlowSlots(repo_root)
    outcomes = open_together(store, sealed("wrong"), 3)
    assert all(isinstance(outcome, PasswordError) for outcome in outcomes), outcomes
    assert store.slot_listings == 3  # each tried for itself: none got another's stale error


@contextlib.contextmanager
def opener_stuck_on_storage() -> Iterator[UnlockedKeys]:
    """Keys that a thread is opening "repository" for, hung (as on storage) until the end."""
    keys = UnlockedKeys()
    stuck, released = threading.Event(), threading.Event()

    def hung() -> bytes:
        stuck.set()
        released.wait(10)
        return b"hung"

    first = threading.Thread(target=keys.master, args=("repository", hung))
    first.start()
    try:
        assert stuck.wait(5)
        yield keys
    finally:
        released.set()
        first.join(5)


def test_an_opener_stuck_on_storage_holds_the_others_back_for_the_wait_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread unlocking may hang on storage until its own deadline: another waits for it
    UNLOCK_WAIT_SECONDS at most, then opens the repository itself."""
    monkeypatch.setattr("restore.snapshots.encryption.UNLOCK_WAIT_SECONDS", 0.3)
    with opener_stuck_on_storage() as keys:
        started = time.monotonic()
        assert keys.master("repository", lambda: b"own") == b"own"
        assert 0.3 <= time.monotonic() - started < 2


def test_once_the_key_is_known_an_opener_stuck_on_storage_delays_no_opening(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread hung on storage (an NFS mount gone, say) may hold its unlocking for long:
    one wait for it, by the opener that then derived the key itself, and none after."""
    monkeypatch.setattr("restore.snapshots.encryption.UNLOCK_WAIT_SECONDS", 1.0)
    with opener_stuck_on_storage() as keys:
        assert keys.master("repository", lambda: b"own") == b"own"
        started = time.monotonic()
        assert keys.master("repository", lambda: b"again") == b"own"
        assert time.monotonic() - started < 0.5


def test_failed_unlockings_of_ids_read_from_storage_leave_nothing_behind() -> None:
    """The id comes from the config, which a bucket writer can change before every job: a
    sidecar running for months must not keep something per id it was ever shown."""
    keys = UnlockedKeys()

    def refused() -> bytes:
        raise PasswordError("the password opens no key slot")

    def opened(ids: range) -> int:
        failed = 0
        for number in ids:
            try:  # not pytest.raises: what it keeps of each failure would be measured too
                keys.master(f"{number:032x}", refused)
            except PasswordError:
                failed += 1
        return failed

    opened(range(10))  # whatever is allocated once
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert opened(range(10, 5010)) == 5000
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 50_000, grown
