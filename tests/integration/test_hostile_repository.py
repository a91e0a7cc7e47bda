"""What someone who can write to a repository's storage (the bucket, the repository's folder)
can plant that authentication does not cover — the files themselves, key slots before any key
is known, oversized objects, the writer claim — and what `caretaker restore` makes of it:
never a hang past --timeout, never a read that fills memory, and a precise failure or a
fallback."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from restore.model import STATE_DIR
from restore.snapshots.encryption import KdfParams
from restore.snapshots.engine import Engine
from restore.snapshots.format import CONFIG_KEY, LEASE_KEY
from restore.snapshots.keys import MAX_ITERATIONS, MAX_MEMORY_KIB, SALT_BYTES, SEALED_BYTES, KeySlot
from tests.support.restore_runs import Repo, assert_reported, restore
from tests.support.trees import write_file

pytestmark = [pytest.mark.integration]


def backed_up(repo: Repo, tmp_path: Path) -> None:
    repo.backup(write_file(tmp_path / "source" / "app.conf", b"the real one\n").parent)


def plant_fifo(path: Path) -> None:
    os.mkfifo(path)


def plant_link_to_zero(path: Path) -> None:
    os.symlink("/dev/zero", path)


@pytest.mark.parametrize("repository_url", ["local"], indirect=True)
@pytest.mark.parametrize("plant", [plant_fifo, plant_link_to_zero], ids=["fifo", "link to /dev/zero"])
def test_a_fifo_or_device_link_as_the_config_fails_closed_at_once(
    repo: Repo, target: Path, tmp_path: Path, plant: Callable[[Path], None]
) -> None:
    """Before: a FIFO blocked the restore past --timeout for ever; /dev/zero filled memory."""
    backed_up(repo, tmp_path)
    config = Path(repo.url.removeprefix("file://")) / CONFIG_KEY
    config.unlink()
    plant(config)
    run = restore(target, repo, "--timeout", "20s", timeout=40)
    assert_reported(run, "failed", 7)
    assert run.outcome is not None
    assert "config" in run.outcome.error
    assert os.listdir(target) == [STATE_DIR]


FOREVER_CLAIM = {
    "claim": 1,
    "pod": "someone-else",
    "process": "someone-else/1",
    "role": "sidecar",
    "token": "planted",
    "renewals": 10**30,
    "heartbeat_seconds": float("nan"),
    "expiry_seconds": 1e12,
    "acquired": "2020-01-01T00:00:00Z",
    "renewed": "2020-01-01T00:00:00Z",
}


@pytest.mark.parametrize("repository_url", ["local", "s3"], indirect=True)
def test_a_planted_claim_that_never_expires_ends_the_wait_at_timeout_with_exit_6(
    repo: Repo, target: Path, tmp_path: Path
) -> None:
    """Before: on S3 the wait's last look ran into the deadline and reported the store
    unreachable (exit 4), where a local repository said exit 6 naming the holder."""
    backed_up(repo, tmp_path)
    opened = repo.open()
    assert isinstance(opened, Engine)
    try:
        opened.store.put(LEASE_KEY, json.dumps(FOREVER_CLAIM).encode())
    finally:
        opened.close()
    started = time.monotonic()
    run = restore(target, repo, "--timeout", "5s", timeout=60)
    assert time.monotonic() - started < 20
    assert_reported(run, "failed", 6)
    assert run.outcome is not None
    assert "someone-else" in run.outcome.error
    assert os.listdir(target) == [STATE_DIR]


def plant_slot(repo: Repo, name: str, kdf: KdfParams) -> None:
    """A key slot with these costs, sorting before the real one, as someone without the key
    writes it (it opens with no password)."""
    slot = KeySlot(
        id=name,
        kdf=kdf,
        salt=os.urandom(SALT_BYTES),
        created=datetime.now(UTC),
        host="attacker",
        sealed=os.urandom(SEALED_BYTES),
    )
    opened = repo.open()
    assert isinstance(opened, Engine)
    try:
        opened.store.put(slot.key, slot.encode())
    finally:
        opened.close()


@pytest.mark.parametrize("repository_url", ["local", "s3"], indirect=True)
def test_a_key_slot_asking_for_a_gibibyte_is_refused_before_deriving(
    repo: Repo, target: Path, tmp_path: Path
) -> None:
    """Before: 1 GiB and 16 passes were allowed, twice the chart's memory limit (OOM-killed)
    and about 30 s of Argon2id per planted slot."""
    backed_up(repo, tmp_path)
    plant_slot(repo, "0" * 16, KdfParams(memory_kib=1024 * 1024, iterations=16, lanes=16))
    run = restore(target, repo, timeout=60)
    assert_reported(run, "restored", 0)
    assert [e["key"] for e in run.event("key.slot_unreadable")] == [f"keys/{'0' * 16}"]


@pytest.mark.parametrize("repository_url", ["local"], indirect=True)
def test_key_slots_planted_with_the_highest_costs_allowed_are_tried_after_cheaper_ones(
    repo: Repo, target: Path, tmp_path: Path
) -> None:
    """Before: tried in key order, each of these cost seconds before the real slot was reached."""
    backed_up(repo, tmp_path)
    for number in range(4):
        plant_slot(repo, f"{number:016x}", KdfParams(memory_kib=MAX_MEMORY_KIB, iterations=MAX_ITERATIONS, lanes=4))
    run = restore(target, repo, timeout=120)
    assert_reported(run, "restored", 0)
    assert run.outcome is not None
    assert run.outcome.duration_seconds < 6
