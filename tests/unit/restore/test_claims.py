"""The writer claim on a real local store, on fake monotonic time: who may write, who waits,
when a silent claim counts as dead — and that the holders' wall clocks change none of it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.claims.holder import Borrowed, Claim, hold
from restore.claims.record import ClaimRecord
from restore.claims.watch import ClaimWatch
from restore.clock import utc_now
from restore.commands.options import claim_timing
from restore.errors import ConfigError, LeaseHeldError
from restore.identity import Identity
from restore.snapshots.lease import StoreSlot
from tests.support.claims import claimant, holding
from tests.support.cli import FakeTime


@pytest.fixture
def slot(tmp_path: Path) -> StoreSlot:
    return StoreSlot(LocalStore(tmp_path / "repo"))


def watch_until_expired(watch: ClaimWatch, timer: FakeTime, limit: float) -> float:
    """Look every 0.05 s of fake time; return how long it took to see the claim expired."""
    started = timer.now
    while watch.look().state != "expired":
        assert timer.now - started < limit, "never expired"
        timer.sleep(0.05)
    return timer.now - started


@pytest.mark.parametrize("skew", [timedelta(minutes=-7), timedelta(0), timedelta(minutes=7)])
def test_a_silent_claim_expires_after_its_expiry_on_the_watchers_clock_whatever_the_holders_says(
    slot: StoreSlot, skew: timedelta
) -> None:
    timer = FakeTime()
    dead = holding(slot, claimant("pod-a", clock=lambda: utc_now() + skew, timer=timer))
    waited = watch_until_expired(ClaimWatch(slot, monotonic=timer.monotonic), timer, limit=10)
    assert waited == pytest.approx(dead.claimant.timing.expiry_seconds, abs=0.06)


def test_a_renewed_claim_is_live_and_never_expires(slot: StoreSlot) -> None:
    timer = FakeTime()
    alive = holding(slot, claimant("pod-a", clock=lambda: utc_now() - timedelta(hours=3), timer=timer))
    watch = ClaimWatch(slot, monotonic=timer.monotonic)
    assert watch.look().state == "unproven"
    timer.during_sleep.append(alive.renew)
    states = set()
    for _ in range(50):  # ten expiry periods
        timer.sleep(alive.claimant.timing.heartbeat_seconds)
        states.add(watch.look().state)
    assert states == {"live"}


def test_a_holder_stops_writing_before_others_may_take_over(slot: StoreSlot) -> None:
    timer = FakeTime()
    claim = holding(slot, claimant("pod-a", timer=timer))
    timing = claim.claimant.timing
    claim.check()
    timer.sleep(timing.expiry_seconds - timing.heartbeat_seconds - 0.01)
    claim.check()
    timer.sleep(0.02)  # renewals failed meanwhile (storage unreachable)
    with pytest.raises(LeaseHeldError, match="last renewed 1s ago"):
        claim.check()
    assert claim.renew()
    claim.check()


def test_a_claim_broken_by_unlock_is_lost_at_the_next_renewal(slot: StoreSlot) -> None:
    claim = holding(slot, claimant("pod-a"))
    observed = slot.read()
    assert observed is not None
    assert slot.remove(version=observed.version)
    assert not claim.renew()
    with pytest.raises(LeaseHeldError, match="unlock"):
        claim.check()
    claim.release()  # not ours any more: nothing to delete, no error
    assert slot.read() is None


def test_release_deletes_only_our_own_claim(slot: StoreSlot) -> None:
    timer = FakeTime()
    first = holding(slot, claimant("pod-a", timer=timer))
    timer.sleep(first.claimant.timing.expiry_seconds)
    second = Claim(slot, claimant("pod-b", timer=timer), role="sidecar")
    watch = ClaimWatch(slot, monotonic=timer.monotonic)
    watch_until_expired(watch, timer, limit=5)
    assert second.try_acquire(watch) is None  # took the dead claim over
    first.release()  # came back to life, too late: its claim is gone
    observed = slot.read()
    assert observed is not None
    assert observed.record.pod.name == "pod-b"


def test_a_sidecar_restarted_in_its_pod_takes_over_at_once_another_pods_waits(slot: StoreSlot) -> None:
    timer = FakeTime()
    holding(slot, claimant("pod-a", uid="u1", timer=timer, process="pod-a/7"))
    other_pod = Claim(slot, claimant("pod-a", uid="u2", timer=timer, process="pod-a/7"), role="sidecar")
    sighting = other_pod.try_acquire(ClaimWatch(slot, monotonic=timer.monotonic))
    assert sighting is not None
    assert sighting.state == "unproven"
    restarted = Claim(slot, claimant("pod-a", uid="u1", timer=timer, process="pod-a/8"), role="sidecar")
    assert restarted.try_acquire(ClaimWatch(slot, monotonic=timer.monotonic)) is None
    assert timer.slept == 0


def test_a_one_shot_inside_the_claiming_sidecars_pod_writes_under_its_claim(slot: StoreSlot) -> None:
    sidecar = holding(slot, claimant("pod-a", uid="u1", process="pod-a/1"))
    exec_backup = claimant("pod-a", uid="u1", process="pod-a/99")
    with hold(lambda: slot, exec_backup, role="backup") as guard:
        assert isinstance(guard, Borrowed)
        guard.check()
        sidecar.release()
        with pytest.raises(LeaseHeldError, match="has ended"):
            guard.check()


def test_a_one_shot_of_the_same_pod_respects_another_one_shot(slot: StoreSlot) -> None:
    timer = FakeTime()
    running = holding(slot, claimant("pod-a", timer=timer, process="pod-a/1"), role="backup")
    timer.during_sleep.append(running.renew)
    second = claimant("pod-a", timer=timer, process="pod-a/2")
    with (
        pytest.raises(LeaseHeldError, match="pod-a, backup pod-a/1, a live writer"),
        hold(lambda: slot, second, role="backup"),
    ):
        pass


def test_the_document_keeps_older_caretaker_versions_out(slot: StoreSlot) -> None:
    # Before the claim, caretaker wrote a `lease` {owner, acquired, expires} and honoured
    # `expires`: a claim must carry both, expiring a heartbeat-period after its renewal.
    claim = holding(slot, claimant("pod-a"))
    document = json.loads(LocalStore(Path(slot.describe().removeprefix("file://"))).get("lease"))
    assert document["owner"] == "pod-a, sidecar pod-a/1"
    assert document["expires"] > document["renewed"]
    claim.release()


def test_a_lease_of_an_older_version_is_watched_by_its_own_period() -> None:
    old = {"owner": "web-0/12", "acquired": "2026-01-01T00:00:00Z", "expires": "2026-01-01T00:05:00Z"}
    record = ClaimRecord.decode(json.dumps(old).encode())
    assert (record.pod, record.expiry_seconds, record.heartbeat_seconds) == (Identity("web-0"), 300, 100)


def test_an_unreadable_claim_names_no_one_and_expires_by_itself(slot: StoreSlot, tmp_path: Path) -> None:
    LocalStore(tmp_path / "repo").put("lease", b"\x00garbage")
    timer = FakeTime()
    watch = ClaimWatch(slot, monotonic=timer.monotonic)
    assert watch.look().holder.startswith("unknown (unreadable claim)")
    assert watch_until_expired(watch, timer, limit=60) == pytest.approx(30, abs=0.06)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"CARETAKER_POD_NAME": "web-0", "CARETAKER_POD_UID": "3f2a", "HOSTNAME": "h"},
            Identity("web-0", "3f2a"),
        ),
        ({"HOSTNAME": "web-1"}, Identity("web-1")),
    ],
)
def test_identity_comes_from_the_downward_api_then_hostname(
    environ: dict[str, str], expected: Identity
) -> None:
    assert Identity.from_environ(environ) == expected


def test_identity_falls_back_to_the_host_name() -> None:
    import socket

    assert Identity.from_environ({}) == Identity(socket.gethostname())


def test_same_pod_needs_equal_uids_only_when_both_are_known() -> None:
    assert Identity("web-0", "a").same_pod(Identity("web-0", ""))
    assert not Identity("web-0", "a").same_pod(Identity("web-0", "b"))
    assert not Identity("web-0").same_pod(Identity("web-1"))
    assert str(Identity("web-0", "3f2a1b2c9d")) == "web-0 (uid 3f2a1b2c)"


FORGED = {
    "claim": 1,
    "pod": "someone-else",
    "process": "someone-else/1",
    "role": "sidecar",
    "token": "forged",
    "renewals": 10**30,
    "heartbeat_seconds": 10,
    "expiry_seconds": 30,
    "acquired": "2026-01-01T00:00:00Z",
    "renewed": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    "forged",
    [
        {"expiry_seconds": 1e12},
        {"expiry_seconds": float("inf")},
        {"expiry_seconds": float("nan")},
        {"heartbeat_seconds": float("nan")},
        {"heartbeat_seconds": 0},
        {"heartbeat_seconds": -5, "expiry_seconds": 0},
        {"renewed": "9999-12-31T23:59:59Z"},
    ],
    ids=lambda forged: ",".join(f"{k}={v}" for k, v in forged.items()),
)
def test_a_claim_no_caretaker_could_have_written_is_unreadable_and_expires_after_30s(
    slot: StoreSlot, tmp_path: Path, forged: dict[str, object]
) -> None:
    """Before: a promised expiry of 1e12 s (or NaN) kept a one-shot writer waiting for ever, and
    a far one made `caretaker unlock` crash formatting its `expires`."""
    LocalStore(tmp_path / "repo").put("lease", json.dumps(FORGED | forged).encode())
    record = ClaimRecord.decode(LocalStore(tmp_path / "repo").get("lease"))
    assert record.pod.name == "unknown (unreadable claim)"
    assert json.loads(record.encode())["expires"] == "1970-01-01T00:00:30Z"
    timer = FakeTime()
    with hold(lambda: slot, claimant("pod-a", timer=timer), role="backup"):
        assert timer.slept == pytest.approx(30, abs=3)


def test_a_claim_expiry_longer_than_an_hour_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="3600s"):
        claim_timing(timedelta(seconds=10), timedelta(hours=2))
    assert claim_timing(timedelta(seconds=10), timedelta(hours=1)).expiry_seconds == 3600
