"""Key slots: passwords added, changed and removed; what a slot read from storage may ask for."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.errors import ConfigError, IntegrityError, PasswordError, RefusedError
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from restore.snapshots.keyring import KeyRing
from restore.snapshots.keys import KeySlot
from tests.conftest import FakeClock
from tests.support.keys import UNENCRYPTED, sealed
from tests.support.trees import write_file


def opened(root: Path, password: str) -> Engine:
    return Engine(LocalStore(root), encryption=sealed(password), clock=FakeClock(), owner="web-0")


def ring(root: Path, password: str) -> KeyRing:
    return opened(root, password).key_ring(host="admin")


@pytest.fixture
def repo_root(tmp_path: Path, source: Path) -> Path:
    write_file(source / "a", b"1")
    opened(tmp_path / "repo", "first").backup(source, BackupOptions())
    return tmp_path / "repo"


def test_add_list_change_and_remove(repo_root: Path) -> None:
    (created,) = ring(repo_root, "first").slots()
    assert (created.current, created.slot.host) == (True, "web-0")
    added = ring(repo_root, "first").add("second")
    listed = {info.slot.id: info for info in ring(repo_root, "second").slots()}
    assert set(listed) == {created.slot.id, added.id}
    assert listed[added.id].current
    assert listed[added.id].to_json()["host"] == "admin"
    assert len(opened(repo_root, "second").snapshots()) == 1

    changing = ring(repo_root, "first")
    new = changing.change("third")
    assert changing.replaced == created.slot.id
    with pytest.raises(PasswordError, match="opens no key slot"):
        opened(repo_root, "first").snapshots()
    assert len(opened(repo_root, "third").snapshots()) == 1

    assert ring(repo_root, "third").remove(added.id[:6]).id == added.id
    with pytest.raises(PasswordError):
        opened(repo_root, "second").snapshots()
    assert [info.slot.id for info in ring(repo_root, "third").slots()] == [new.id]


def test_the_slot_of_the_password_given_is_not_removed(repo_root: Path) -> None:
    (only,) = ring(repo_root, "first").slots()
    with pytest.raises(RefusedError, match="is the one this password opens"):
        ring(repo_root, "first").remove(only.slot.id)
    with pytest.raises(ConfigError, match="matches no key slot"):
        ring(repo_root, "first").remove("ffff")
    assert len(opened(repo_root, "first").snapshots()) == 1


def test_key_slots_need_an_encrypted_repository(tmp_path: Path, source: Path) -> None:
    write_file(source / "a", b"1")
    with pytest.raises(ConfigError, match="does not exist yet"):
        ring(tmp_path / "nothing", "first")
    Engine(LocalStore(tmp_path / "plain"), encryption=UNENCRYPTED).backup(source, BackupOptions())
    with pytest.raises(ConfigError, match="is not encrypted"):
        Engine(LocalStore(tmp_path / "plain"), encryption=UNENCRYPTED).key_ring(host="h")


@pytest.mark.parametrize(
    ("field", "value"),
    [("memory_kib", 4 << 20), ("iterations", 1000), ("lanes", 0), ("salt", "00"), ("sealed", "00" * 20)],
)
def test_a_slot_asking_for_implausible_costs_is_refused_before_any_derivation(
    repo_root: Path, field: str, value: object
) -> None:
    """Slots come from storage anyone with the bucket's keys may write."""
    (path,) = (repo_root / "keys").iterdir()
    document = json.loads(path.read_bytes())
    document[field] = value
    with pytest.raises(IntegrityError, match="implausible"):
        KeySlot.decode(json.dumps(document).encode(), f"keys/{path.name}")


def test_a_slot_moved_under_another_name_does_not_open(repo_root: Path) -> None:
    (path,) = (repo_root / "keys").iterdir()
    path.rename(path.with_name("0123456789abcdef"))
    with pytest.raises(PasswordError, match=r"opens no key slot .* \(1 tried\)"):
        opened(repo_root, "first").snapshots()


def test_the_costs_of_a_slot_are_its_own(repo_root: Path) -> None:
    (path,) = (repo_root / "keys").iterdir()
    slot = KeySlot.decode(path.read_bytes(), f"keys/{path.name}")
    assert dataclasses.asdict(slot.kdf) == {"memory_kib": 1024, "iterations": 1, "lanes": 1}
