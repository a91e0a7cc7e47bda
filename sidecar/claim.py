"""The sidecar's writer claim: held for its whole life, or watched while another pod holds it.

A sidecar with a backup or prune job claims its repository at start-up and renews the
claim every heartbeat on a thread of its own; its jobs write under that claim (they take
none of their own), and shutdown releases it after the final backup. When another live
writer holds the claim, the sidecar stands by: its backups and prunes are skipped (result
`standby`), and it says so in its log, `/status`, `caretaker_standby{holder}` and, when
configured, `/readyz`. It takes the claim over when the holder releases it, or when it has
not been renewed for the holder's expiry as measured on our own monotonic clock
(restore.claims.watch): clock skew between nodes neither shortens nor stretches the wait.
"""

from __future__ import annotations

import threading

import structlog

from restore.claims.holder import Claim, Claimant
from restore.claims.record import SIDECAR
from restore.claims.watch import ClaimWatch
from restore.errors import CaretakerError, LeaseHeldError, TransientBackendError
from sidecar.standing import StandingRepository
from sidecar.status import StatusBoard


class ClaimKeeper:
    """Holds (or waits for) the claim; is the WriterGuard the sidecar's jobs write under."""

    def __init__(self, *, repository: StandingRepository, claimant: Claimant, board: StatusBoard) -> None:
        self._standing = repository
        self._claimant = claimant
        self._board = board
        self._claim: Claim | None = None
        self._watch: ClaimWatch | None = None
        self._holder: str | None = None  # another writer we stand by for
        self._problem: CaretakerError | None = None  # why the last step failed
        self._stop = threading.Event()
        self._next = 0.0
        self._thread = threading.Thread(target=self._run, name="claim", daemon=True)
        self._log = structlog.get_logger()

    def start(self) -> None:
        """Try once right away (so jobs that run at start find the answer), then keep at it."""
        self._board.claim_state("starting", None)
        self._next = self._step()
        self._thread.start()

    def standby_holder(self) -> str | None:
        """The other writer we stand by for, or None (holding, or not known yet)."""
        return self._holder

    def check(self) -> None:
        claim = self._claim
        if self._holder is not None:
            raise LeaseHeldError(f"standing by: the repository is claimed by {self._holder}")
        if claim is None or (claim.record is None and claim.lost is None):
            problem = self._problem
            if isinstance(problem, TransientBackendError):
                raise TransientBackendError(f"the writer claim could not be taken: {problem}")
            raise LeaseHeldError(f"the writer claim could not be taken: {problem or 'not tried yet'}")
        claim.check()

    def release(self) -> None:
        """Stop renewing and give the claim back (after the final backup)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._claim is not None:
            self._claim.release()
        self._board.claim_state("released", None)

    def _run(self) -> None:
        while not self._stop.wait(self._next):
            self._next = self._step()

    def _step(self) -> float:
        """One renewal or one attempt; return how long to wait before the next."""
        heartbeat = self._claimant.timing.heartbeat_seconds
        try:
            claim, watch = self._opened()
            if claim.held:
                if claim.renew():
                    return heartbeat
                self._board.claim_state("lost", None)
            sighting = claim.try_acquire(watch)
        except CaretakerError as error:
            self._problem = error
            self._log.warning("claim.unavailable", error=str(error))
            return heartbeat
        self._problem = None
        if sighting is None:
            self._holding()
            return heartbeat
        self._standby(sighting.holder)
        return sighting.poll_seconds()

    def _opened(self) -> tuple[Claim, ClaimWatch]:
        # The shared repository may have been reopened since (after a readiness error).
        slot = self._standing.get().claim_slot()
        if self._claim is None or self._watch is None:
            self._claim = Claim(slot, self._claimant, role=SIDECAR)
            self._watch = ClaimWatch(slot, monotonic=self._claimant.monotonic)
        self._claim.slot = self._watch.slot = slot
        return self._claim, self._watch

    def _holding(self) -> None:
        self._holder = None
        self._log.info("claim.acquired", identity=str(self._claimant.identity))
        self._board.claim_state("holding", None)

    def _standby(self, holder: str) -> None:
        if holder != self._holder:
            self._log.warning(
                "claim.standby",
                holder=holder,
                note="another writer holds the repository; backups and prunes wait until it "
                "releases the claim or the claim expires",
            )
            self._board.claim_state("standby", holder)
        self._holder = holder
