"""Writers of a repository for tests: claimants with short heartbeats, on real or fake time.

On `tests.support.cli.FakeTime`, what another writer does while we wait (renew its claim,
or not: alive or dead) is a `during_sleep` callback: no threads, no waiting.
"""

from __future__ import annotations

import dataclasses

from restore.claims.holder import Claim, Claimant, Timing
from restore.claims.record import ClaimSlot, Observed
from restore.claims.watch import ClaimWatch
from restore.clock import Clock, utc_now
from restore.identity import Identity
from tests.support.cli import FakeTime

# Fast enough for tests that wait on real time (a renewal is seen within 0.2 s).
FAST = Timing(heartbeat_seconds=0.2, expiry_seconds=1.0)


def claimant(
    name: str,
    *,
    uid: str = "",
    timing: Timing = FAST,
    clock: Clock = utc_now,
    timer: FakeTime | None = None,
    process: str | None = None,
) -> Claimant:
    """A writer in pod `name`; on `timer`'s fake time when one is given."""
    base = Claimant(identity=Identity(name, uid), process=process or f"{name}/1", timing=timing, clock=clock)
    if timer is None:
        return base
    return dataclasses.replace(base, monotonic=timer.monotonic, sleep=timer.sleep)


def holding(slot: ClaimSlot, writer: Claimant, *, role: str = "sidecar") -> Claim:
    """`writer` takes the (free) claim and holds it; renew it with `.renew()`."""
    claim = Claim(slot, writer, role=role)
    assert claim.try_acquire(ClaimWatch(slot, monotonic=writer.monotonic)) is None
    return claim


class IgnoresClaims:
    """The WriterGuard of a writer that knows nothing of claims (an older caretaker, a person
    with `git push`): what the other safeguards must still hold against."""

    def check(self) -> None:
        pass


def ignoring_claims(name: str) -> Claimant:
    return dataclasses.replace(claimant(name), held=IgnoresClaims())


class Unclaimed:
    """The ClaimSlot of a fake repository nobody writes: always free, never written."""

    def describe(self) -> str:
        return "fake://repo"

    def read(self) -> Observed | None:
        return None

    def create(self, data: bytes) -> str | None:
        raise AssertionError("a restore never claims")

    def replace(self, data: bytes, *, version: str) -> str | None:
        raise AssertionError("a restore never claims")

    def remove(self, *, version: str) -> bool:
        raise AssertionError("a restore never claims")
