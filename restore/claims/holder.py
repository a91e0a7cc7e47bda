"""Holding the writer claim: take it, renew it every heartbeat, give it back.

Two kinds of holder use this: the sidecar, for its whole life (`sidecar.claim`), and a
one-shot `backup` or `prune` (the CLI, a CronJob, a test), for one run (`hold`). A one-shot
writer that finds a live claim refuses (exit 6) — unless the claim is the sidecar's of its
own pod, which it then writes under — and takes over a claim only once it has expired
(`restore.claims.watch`: judged on our monotonic clock, never by comparing clocks).

A holder stops writing on its own before others may take its claim over: `check()` fails
once the last successful renewal is older than the expiry less one heartbeat, so a holder
cut off from storage does not commit after a watcher has declared it dead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, Self

import structlog

from restore.claims.record import SIDECAR, ClaimRecord, ClaimSlot, Observed
from restore.claims.watch import ClaimWatch, Sighting
from restore.clock import Clock, utc_now
from restore.errors import CaretakerError, LeaseHeldError
from restore.identity import Identity, host_name

DEFAULT_HEARTBEAT_SECONDS = 10.0
DEFAULT_EXPIRY_SECONDS = 30.0


class WriterGuard(Protocol):
    def check(self) -> None:
        """Raise LeaseHeldError if this process may no longer write the repository."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timing:
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    expiry_seconds: float = DEFAULT_EXPIRY_SECONDS


DEFAULT_TIMING = Timing()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Claimant:
    """Who claims (pod and process), how (timing), with which clocks, and — inside the
    sidecar — the lifetime claim its jobs write under (`held`)."""

    identity: Identity
    process: str
    timing: Timing = DEFAULT_TIMING
    clock: Clock = utc_now
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    held: WriterGuard | None = None

    @classmethod
    def of_process(
        cls, environ: Mapping[str, str], *, clock: Clock, timing: Timing = DEFAULT_TIMING
    ) -> Claimant:
        """This process: its pod (see restore.identity) and `host/pid`."""
        return cls(
            identity=Identity.from_environ(environ),
            process=f"{host_name(environ)}/{os.getpid()}",
            timing=timing,
            clock=clock,
        )

    @classmethod
    def named(cls, name: str, *, clock: Clock) -> Claimant:
        """A writer named `name` (this process's id if empty): for tools and tests."""
        name = name or f"pid-{os.getpid()}"
        return cls(identity=Identity(name), process=name, clock=clock)


class Claim:
    """One holding of a slot by this process, in a role (sidecar, backup, prune)."""

    def __init__(self, slot: ClaimSlot, claimant: Claimant, *, role: str) -> None:
        self.slot = slot
        self.claimant = claimant
        self.role = role
        self.record: ClaimRecord | None = None
        self.version = ""
        self.lost: str | None = None
        self._renewed_at = 0.0
        self._log = structlog.get_logger()

    @property
    def held(self) -> bool:
        return self.record is not None and self.lost is None

    def _new_record(self) -> ClaimRecord:
        now, timing = self.claimant.clock(), self.claimant.timing
        return ClaimRecord(
            pod=self.claimant.identity,
            process=self.claimant.process,
            role=self.role,
            token=secrets.token_hex(8),
            renewals=0,
            heartbeat_seconds=timing.heartbeat_seconds,
            expiry_seconds=timing.expiry_seconds,
            acquired=now,
            renewed=now,
        )

    def _written(self, record: ClaimRecord, version: str | None, started: float) -> bool:
        if version is None:
            return False
        self.record, self.version, self._renewed_at, self.lost = record, version, started, None
        return True

    def try_acquire(self, watch: ClaimWatch) -> Sighting | None:
        """Look once and take the claim if we may; return None if we hold it now, else
        what holds it. Raise BackendError subclasses if the slot cannot be used.

        While no claim has been seen, the first step is the conditional create itself: a
        free repository (the common case) costs one write, not a read and a write.
        """
        if not watch.seen_claim:
            record, started = self._new_record(), self.claimant.monotonic()
            if self._written(record, self.slot.create(record.encode()), started):
                return None
        sighting = watch.look()
        record, started = self._new_record(), self.claimant.monotonic()
        if sighting.observed is None:
            created = self.slot.create(record.encode())
            return None if self._written(record, created, started) else Sighting("unproven")
        if not self._may_take(sighting):
            return sighting
        replaced = self.slot.replace(record.encode(), version=sighting.observed.version)
        if not self._written(record, replaced, started):
            return sighting
        self._log.warning(
            "claim.taken_over",
            previous=sighting.holder,
            state=sighting.state,
            silent_seconds=round(sighting.silent_seconds, 1),
        )
        return None

    def _may_take(self, sighting: Sighting) -> bool:
        assert sighting.observed is not None  # noqa: S101 - checked by the caller
        previous = sighting.observed.record
        if sighting.state == "expired":
            return True
        ours = previous.pod.same_pod(self.claimant.identity)
        # This very process failed to give it back (storage died mid-run); or a sidecar
        # container restarted in its pod takes over from its predecessor, which is gone.
        return ours and (previous.process == self.claimant.process or SIDECAR == self.role == previous.role)

    def renew(self) -> bool:
        """Rewrite the claim; return False if someone else holds it now (we lost it).

        Raise BackendError subclasses if storage cannot be reached (try again later).
        """
        if self.record is None or self.lost is not None:
            return False
        started = self.claimant.monotonic()
        record = self.record.renewed_at(self.claimant.clock())
        if self._written(record, self.slot.replace(record.encode(), version=self.version), started):
            return True
        self.lost = "another writer took it over, or `caretaker unlock` broke it"
        self._log.error("claim.lost", slot=self.slot.describe(), reason=self.lost)
        return False

    def check(self) -> None:
        if self.record is None or self.lost is not None:
            why = self.lost or "it was released"
            raise LeaseHeldError(f"not holding the writer claim on {self.slot.describe()}: {why}")
        timing = self.claimant.timing
        silent = self.claimant.monotonic() - self._renewed_at
        if silent > timing.expiry_seconds - timing.heartbeat_seconds:
            raise LeaseHeldError(
                f"the writer claim on {self.slot.describe()} was last renewed {silent:.0f}s ago; "
                f"others may take it over after {timing.expiry_seconds:g}s, so nothing is written"
            )

    def release(self) -> None:
        """Give the claim back (a claim we lost is not ours to delete). Never raises for
        storage trouble: an unreleased claim expires by itself."""
        if self.record is None:
            return
        held, self.record = self.lost is None, None
        if not held:
            return
        try:
            self.slot.remove(version=self.version)
        except CaretakerError as error:
            self._log.warning("claim.release_failed", error=str(error))
            return
        self._log.info("claim.released", slot=self.slot.describe())


class Borrowed:
    """Writing under the lifetime claim of our own pod's sidecar (`kubectl exec … caretaker
    backup` in its container): valid while that claim stands."""

    def __init__(self, slot: ClaimSlot, observed: Observed) -> None:
        self._slot = slot
        self._token = observed.record.token
        self.holder = observed.record.describe()

    def check(self) -> None:
        current = self._slot.read()
        if current is None or current.record.token != self._token:
            raise LeaseHeldError(f"the claim of {self.holder} this run wrote under has ended")


class Heartbeat:
    """Renews a one-shot claim in the background until stopped or lost."""

    def __init__(self, claim: Claim) -> None:
        self._claim = claim
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claim-heartbeat", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._claim.claimant.timing.heartbeat_seconds):
            try:
                if not self._claim.renew():
                    return
            except CaretakerError as error:
                structlog.get_logger().warning("claim.renew_failed", error=str(error))


def acquire(claim: Claim) -> Borrowed | None:
    """Take the claim for a one-shot run, waiting only as long as it takes to tell a live
    claim from a dead one. Return None when held, Borrowed under our own pod's sidecar.

    Raise LeaseHeldError naming the holder if another writer's claim is live.
    """
    watch = ClaimWatch(claim.slot, monotonic=claim.claimant.monotonic)
    announced = False
    while (sighting := claim.try_acquire(watch)) is not None:
        observed = sighting.observed
        if observed is not None and _our_sidecar(observed, claim.claimant.identity):
            return Borrowed(claim.slot, observed)
        if sighting.state == "live" and observed is not None:
            raise held_error(claim.slot, observed)
        if not announced and observed is not None:
            structlog.get_logger().info(
                "claim.checking", holder=sighting.holder, expiry_seconds=observed.record.expiry_seconds
            )
            announced = True
        claim.claimant.sleep(sighting.poll_seconds())
    return None


def _our_sidecar(observed: Observed, identity: Identity) -> bool:
    return observed.record.role == SIDECAR and observed.record.pod.same_pod(identity)


def held_error(slot: ClaimSlot, observed: Observed) -> LeaseHeldError:
    record = observed.record
    return LeaseHeldError(
        f"{slot.describe()} is claimed by {record.describe()}, a live writer (renewing every "
        f"{record.heartbeat_seconds:g}s); it is released when that writer stops, or expires "
        f"{record.expiry_seconds:g}s after it dies (`caretaker unlock` shows and breaks it)"
    )


@contextlib.contextmanager
def hold(slot_of: Callable[[], ClaimSlot], claimant: Claimant, *, role: str) -> Iterator[WriterGuard]:
    """Hold the claim for one run: the sidecar's when inside it, else our own with a
    heartbeat, released at the end. Raise LeaseHeldError if another writer holds it."""
    if claimant.held is not None:
        claimant.held.check()  # standing by, or cut off: fail before any work
        yield claimant.held
        return
    claim = Claim(slot_of(), claimant, role=role)
    borrowed = acquire(claim)
    if borrowed is not None:
        structlog.get_logger().info("claim.borrowed", holder=borrowed.holder)
        yield borrowed
        return
    try:
        with Heartbeat(claim):
            yield claim
    finally:
        claim.release()
