"""The restore's handover wait, on fake time: a real claim in a local store, held by another
pod that renews it while we wait (or does not), over the in-memory repository of
test_action. The same with real processes and signals: tests/integration/test_claims.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from restore.backends.local import LocalStore
from restore.identity import Identity
from restore.initcontainer.action import prepare_volume
from restore.initcontainer.decision import RestoreSettings
from restore.snapshots.lease import StoreSlot
from tests.support.claims import claimant, holding
from tests.support.cli import FakeTime
from tests.unit.restore.test_action import GOOD, FakeRepository, effects, files

FINAL = {"app.db": "the old pod's last word"}


@pytest.fixture
def timer() -> FakeTime:
    return FakeTime()


@pytest.fixture
def repo(tmp_path: Path) -> FakeRepository:
    repository = FakeRepository(GOOD)
    repository.claims = StoreSlot(LocalStore(tmp_path / "repo"))
    return repository


def restore(tmp_path: Path, repo: FakeRepository, timer: FakeTime, **settings: object):
    target = tmp_path / "data"
    target.mkdir()
    me = Identity("new-pod", "u2")
    return prepare_volume(
        RestoreSettings(path=target, **settings),  # type: ignore[arg-type]
        effects(repo, timer, identity=me),
    )


def test_waits_for_the_old_pod_to_release_then_restores_its_final_backup(tmp_path, repo, timer) -> None:
    old = holding(repo.claims, claimant("old-pod", uid="u1", timer=timer))
    stops_at = timer.now + 4

    def old_pod() -> None:
        if timer.now < stops_at:
            old.renew()
        elif old.held:  # SIGTERM: final backup, then release
            repo.trees["s2"] = FINAL
            old.release()

    timer.during_sleep.append(old_pod)
    with capture_logs() as logs:
        outcome = restore(tmp_path, repo, timer)
    assert (outcome.outcome, outcome.snapshot) == ("restored", "s2")
    assert files(tmp_path / "data") == FINAL
    [done] = [e for e in logs if e["event"] == "restore.handover_done"]
    assert (done["how"], done["previous"]) == ("released", "old-pod (uid u1), sidecar old-pod/1")
    assert done["waited_seconds"] == pytest.approx(4, abs=0.3)


def test_a_dead_pods_claim_is_waited_for_only_until_it_expires(tmp_path, repo, timer) -> None:
    dead = holding(repo.claims, claimant("old-pod", timer=timer))
    outcome = restore(tmp_path, repo, timer)
    assert (outcome.outcome, outcome.snapshot) == ("restored", "s1")
    assert timer.slept == pytest.approx(dead.claimant.timing.expiry_seconds, abs=0.06)


def test_our_own_pods_claim_is_not_waited_for(tmp_path, repo, timer) -> None:
    holding(repo.claims, claimant("new-pod", uid="u2", timer=timer))
    outcome = restore(tmp_path, repo, timer)
    assert outcome.outcome == "restored"
    assert timer.slept == 0


@pytest.mark.parametrize(
    ("settings", "waited"),
    [
        ({"handover_timeout_seconds": 5.0}, 5.0),
        ({"timeout_seconds": 3.0, "handover_timeout_seconds": 60.0}, 3.0),
    ],
)
def test_a_live_claim_that_never_ends_fails_with_exit_6_at_the_deadline(
    tmp_path, repo, timer, settings, waited
) -> None:
    alive = holding(repo.claims, claimant("old-pod", timer=timer))
    timer.during_sleep.append(alive.renew)
    outcome = restore(tmp_path, repo, timer, **settings)
    assert (outcome.outcome, outcome.exit_code, outcome.reason) == ("failed", 6, "locked")
    assert "still claimed by old-pod, sidecar old-pod/1" in outcome.error
    assert timer.slept == pytest.approx(waited, abs=0.06)
    assert files(tmp_path / "data") == {}
