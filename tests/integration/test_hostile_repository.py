"""What someone who can write to a repository's storage (the bucket, the repository's folder)
can plant that authentication does not cover — the files themselves, key slots before any key
is known, oversized objects, the writer claim — and what `caretaker restore` makes of it:
never a hang past --timeout, never a read that fills memory, and a precise failure or a
fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from restore.model import STATE_DIR
from restore.snapshots.encryption import KdfParams
from restore.snapshots.engine import Engine
from restore.snapshots.format import CONFIG_KEY, LEASE_KEY, snapshot_key
from restore.snapshots.keys import MAX_ITERATIONS, MAX_MEMORY_KIB, SALT_BYTES, SEALED_BYTES, KeySlot
from restore.snapshots.lease import MAX_CLAIM_BYTES
from restore.snapshots.records import MAX_RECORD_BYTES
from restore.snapshots.repokey import MAX_SMALL_BYTES
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
    assert "config" in str(run.outcome.error)
    assert os.listdir(target) == [STATE_DIR]


# Never renewed, and expiring only after the longest expiry a holder may promise.
STATIC_CLAIM = {
    "claim": 1,
    "pod": "someone-else",
    "process": "someone-else/1",
    "role": "sidecar",
    "token": "planted",
    "renewals": 10**30,
    "heartbeat_seconds": 10.0,
    "expiry_seconds": 3600.0,
    "acquired": "2020-01-01T00:00:00Z",
    "renewed": "2020-01-01T00:00:00Z",
}


@pytest.mark.parametrize("repository_url", ["local", "s3"], indirect=True)
def test_a_planted_claim_that_outlasts_the_timeout_ends_the_wait_with_exit_6(
    repo: Repo, target: Path, tmp_path: Path
) -> None:
    """Before: on S3 the wait's last look ran into the deadline and reported the store
    unreachable (exit 4), where a local repository said exit 6 naming the holder."""
    backed_up(repo, tmp_path)
    opened = repo.open()
    assert isinstance(opened, Engine)
    try:
        opened.store.put(LEASE_KEY, json.dumps(STATIC_CLAIM).encode())
    finally:
        opened.close()
    started = time.monotonic()
    run = restore(target, repo, "--timeout", "5s", timeout=60)
    assert time.monotonic() - started < 20
    assert_reported(run, "failed", 6)
    assert run.outcome is not None
    assert "someone-else" in str(run.outcome.error)
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
        plant_slot(
            repo, f"{number:016x}", KdfParams(memory_kib=MAX_MEMORY_KIB, iterations=MAX_ITERATIONS, lanes=4)
        )
    run = restore(target, repo, timeout=120)
    assert_reported(run, "restored", 0)
    assert run.outcome is not None
    assert run.outcome.duration_seconds < 6


def put(repo: Repo, key: str, data: bytes) -> None:
    opened = repo.open()
    assert isinstance(opened, Engine)
    try:
        opened.store.put(key, data)
    finally:
        opened.close()


@pytest.mark.parametrize("repository_url", ["local", "s3"], indirect=True)
def test_an_oversized_snapshot_record_is_skipped_unread(repo: Repo, target: Path, tmp_path: Path) -> None:
    """Before: read whole into memory (every record in parallel), however large."""
    backed_up(repo, tmp_path)
    put(repo, snapshot_key("f" * 16), b"x" * (MAX_RECORD_BYTES + 1))
    run = restore(target, repo)
    assert_reported(run, "restored", 0)
    [skipped] = run.event("snapshot.unreadable")
    assert skipped["key"] == snapshot_key("f" * 16)
    assert f"larger than {MAX_RECORD_BYTES} bytes" in skipped["error"]


@pytest.mark.parametrize("repository_url", ["local", "s3"], indirect=True)
def test_an_oversized_config_fails_closed_with_exit_7(repo: Repo, target: Path, tmp_path: Path) -> None:
    """Before: read whole (a config padded to gigabytes filled memory)."""
    backed_up(repo, tmp_path)
    opened = repo.open()
    assert isinstance(opened, Engine)
    try:
        config = opened.store.get(CONFIG_KEY)
        opened.store.put(CONFIG_KEY, config + b" " * MAX_SMALL_BYTES)
    finally:
        opened.close()
    run = restore(target, repo)
    assert_reported(run, "failed", 7)
    assert run.outcome is not None
    assert "config" in str(run.outcome.error)
    assert "larger than" in str(run.outcome.error)


@pytest.mark.parametrize("repository_url", ["local", "s3"], indirect=True)
def test_an_oversized_claim_is_read_as_an_unreadable_one(repo: Repo, tmp_path: Path) -> None:
    """Before: read whole, however large (by every watcher, every poll)."""
    backed_up(repo, tmp_path)
    padded = {"padding": "x" * MAX_CLAIM_BYTES} | STATIC_CLAIM
    put(repo, LEASE_KEY, json.dumps(padded).encode())
    argv = [sys.executable, "-m", "restore", "unlock", "--repository", repo.url, "--dry-run", "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARETAKER_")} | repo.environ
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = json.loads(done.stdout)
    assert shown["claim"]["pod"] == "unknown (unreadable claim)"
