"""A backup killed with SIGKILL at any point leaves no visible snapshot; the next one works
(in an encrypted repository, as every new one is)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.model import BackupOptions
from restore.snapshots.engine import Engine
from tests.support.keys import password_env, sealed
from tests.support.trees import describe, write_file

pytestmark = pytest.mark.integration


def _backup_process(repo: Path, source: Path, *claim: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CARETAKER_REPOSITORY": f"file://{repo}",
        "CARETAKER_PATH": str(source),
        **password_env(repo.parent),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "caretaker", "backup", *claim],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.002)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("kill") / "data"
    for i in range(60):
        write_file(source / f"dir{i % 6}" / f"file{i}.bin", os.urandom(1 << 20))
    return source


def _packs(repo: Path) -> int:
    data = repo / "data"
    return sum(1 for _ in data.rglob("*")) if data.exists() else 0


# Kill points: as soon as the lease exists; after the first pack; after several packs;
# and "late" (most data written, snapshot record still pending or just written).
KILL_POINTS = {
    "lease taken": lambda repo: (repo / "lease").exists(),
    "first pack": lambda repo: _packs(repo) >= 2,
    "some packs": lambda repo: _packs(repo) >= 4,
    "index written": lambda repo: (repo / "index").exists() and any((repo / "index").iterdir()),
}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_sigkill_leaves_no_snapshot_and_next_backup_works(point: str, volume: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    process = _backup_process(repo, volume)
    try:
        _wait_for(lambda: KILL_POINTS[point](repo) or process.poll() is not None)
        killed_mid_way = process.poll() is None
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert killed_mid_way, "the backup finished before the kill point: make the volume bigger"
    store = LocalStore(repo)
    engine = Engine(store, encryption=sealed(), owner="next")
    assert engine.snapshots() == []
    # The killed writer's claim would block for its expiry (the next test shows that);
    # here it is removed as `caretaker unlock` would.
    if store.stat("lease") is not None:
        store.delete(["lease"])
    result = engine.backup(volume, BackupOptions())
    assert [r.ok for r in engine.verify(read_data=1.0)] == [True] * len(engine.snapshots())
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(result.snapshot.id, dest)
    assert describe(dest) == describe(volume)


def test_a_killed_writers_claim_blocks_the_next_one_only_for_its_expiry(volume: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    process = _backup_process(repo, volume, "--claim-heartbeat", "1s", "--claim-expiry", "2s")
    _wait_for((repo / "lease").exists)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = time.monotonic()
    later = Engine(LocalStore(repo), encryption=sealed(), owner="next")
    later.backup(volume, BackupOptions())
    took = time.monotonic() - killed
    assert len(later.snapshots()) == 1
    assert 2 <= took < 4  # the expiry the dead writer promised, judged by our own clock
