from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from restore.backends.registry import OpenOptions, open_repository
from restore.deadline import Deadline
from restore.model import BackupOptions
from restore.repository import Repository
from restore.snapshots.encryption import Encryption
from sidecar import readiness as module
from sidecar.metrics import JobLabels, Metrics
from sidecar.readiness import CHECK_TIMEOUT_SECONDS, Readiness
from sidecar.settings.model import BackupAction, JobConfig, Listen, SidecarConfig
from sidecar.standing import StandingRepository
from sidecar.status import StatusBoard
from tests.conftest import FakeClock
from tests.support.keys import UNENCRYPTED, sealed

BACKUP = JobConfig(name="backup", kind="backup", action=BackupAction(), schedule=None)


def make(
    tmp_path: Path,
    clock: FakeClock,
    rpo: timedelta | None = None,
    encryption: Encryption | None = None,
    *,
    unready_on_standby: bool = False,
):
    url = f"file://{tmp_path / 'repo'}"
    config = SidecarConfig(repository=url, path=tmp_path, listen=Listen("", 0), jobs=(BACKUP,), rpo=rpo)
    registry = CollectorRegistry()
    board = StatusBoard(config, Metrics.create(registry, [JobLabels("backup", "backup")], version="t"), clock)
    chosen = encryption or sealed()

    def opener(deadline: Deadline | None = None) -> Repository:
        options = OpenOptions(environ={}, clock=clock, deadline=deadline or Deadline(), encryption=chosen)
        return open_repository(url, options)

    ready = Readiness(
        board=board,
        repository=StandingRepository(opener, seconds=CHECK_TIMEOUT_SECONDS),
        clock=clock,
        rpo=rpo,
        unready_on_standby=unready_on_standby,
    )
    return ready, board, opener, registry


def backup(opener, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "f").write_text("x")
    repo = opener()
    repo.backup(data, BackupOptions())
    repo.close()


def test_ready_with_a_fresh_repository_and_counts_snapshots(tmp_path, clock):
    ready, board, opener, registry = make(tmp_path, clock)
    assert ready.check() == []
    backup(opener, tmp_path)
    ready._last = None  # skip the cache
    assert ready.check() == []
    assert registry.get_sample_value("caretaker_repository_snapshots") == 1
    assert registry.get_sample_value("caretaker_repository_encrypted") == 1
    assert board.to_json()["encrypted"] is True


def test_an_unencrypted_repository_shows_in_status_and_metrics(tmp_path, clock):
    ready, board, _, registry = make(tmp_path, clock, encryption=UNENCRYPTED)
    assert board.to_json()["encrypted"] is None
    assert ready.check() == []
    assert registry.get_sample_value("caretaker_repository_encrypted") == 0
    assert board.to_json()["encrypted"] is False


def test_a_wrong_password_is_not_ready(tmp_path, clock):
    _, _, opener, _ = make(tmp_path, clock)
    backup(opener, tmp_path)
    ready, _, _, registry = make(tmp_path, clock, encryption=sealed("wrong"))
    (problem,) = ready.check()
    assert problem.startswith("repository unusable (password): the password")
    assert registry.get_sample_value("caretaker_repository_encrypted") == -1


def test_a_repository_that_lost_its_snapshots_is_not_ready(tmp_path, clock, monkeypatch):
    monkeypatch.setattr(module, "OK_TTL_SECONDS", 0.0)
    ready, _, opener, _ = make(tmp_path, clock)
    backup(opener, tmp_path)
    assert ready.check() == []
    shutil.rmtree(tmp_path / "repo")
    assert ready.check() == ["repository lists no snapshots any more (it had 1)"]


def test_an_unreachable_repository_is_not_ready(tmp_path, clock):
    ready, *_ = make(tmp_path, clock)
    (tmp_path / "repo").symlink_to(tmp_path / "repo")  # every access fails: ELOOP
    problems = ready.check()
    assert len(problems) == 1
    assert problems[0].startswith("repository unreachable")


def test_rpo_counts_from_start_then_from_the_newest_snapshot(tmp_path, clock):
    ready, board, *_ = make(tmp_path, clock, rpo=timedelta(hours=1))
    ready._repository_problem = lambda: None  # this test is about time only
    assert ready.check() == []
    clock.advance(minutes=61)
    assert ready.check() == ["last backup 3660s ago, older than the rpo of 3600s"]
    board.finished("backup", "success", error=None, attempts=1, seconds=1)
    assert ready.check() == []
    clock.advance(minutes=30)
    board.finished("backup", "failure", error="boom", attempts=1, seconds=1)
    assert ready.check() == []
    clock.advance(minutes=31)
    assert ready.check()[0].startswith("last backup 3660s ago")


def test_standing_by_is_ready_unless_configured_otherwise(tmp_path, clock):
    for unready, expected in ((False, []), (True, ["standing by: the repository is claimed by pod-a"])):
        ready, board, *_ = make(tmp_path, clock, unready_on_standby=unready)
        board.claim_state("standby", "pod-a")
        assert ready.check() == expected
        board.claim_state("holding", None)
        assert ready.check() == []


def test_shutting_down_is_not_ready(tmp_path, clock):
    ready, board, *_ = make(tmp_path, clock)
    board.stopping = True
    assert ready.check() == ["shutting down"]
