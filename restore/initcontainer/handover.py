"""Waiting for the previous pod to hand the repository over before restoring from it.

When a new pod starts while the old one still runs (a rolling update, a pod stuck
Terminating), the old pod's final backup lands after the new pod's restore — and would be
lost with the old pod's volume. So when the repository is claimed by a live writer of
another pod, the restore waits until that claim ends: released (the old pod's final backup
is in), expired (it died; nothing more will come) or passed to another holder (the old one
is gone). The newest snapshot is then the old pod's last word. A claim of our own pod (a
native sidecar started before us, the init container re-run) is not waited for.

The wait ends at the run's deadline (`--timeout`) or after `--handover-timeout`, whichever
comes first, with LeaseHeldError (exit 6) naming the holder. A signal ends it at once: the
sleep is where SIGTERM's CancelledError arrives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from restore.claims.record import ClaimSlot
from restore.claims.watch import ClaimWatch, Sighting
from restore.errors import LeaseHeldError
from restore.identity import Identity


@dataclasses.dataclass(frozen=True, kw_only=True)
class Handover:
    identity: Identity | None
    deadline: float  # monotonic
    progress_seconds: float
    log: Any
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    # Reads the slot, retrying transient storage errors within the run's deadline.
    retry: Callable[[Callable[[], Sighting]], Sighting]


def await_handover(slot: ClaimSlot, handover: Handover) -> bool:
    """Return once no other pod's live claim stands in the way of a restore: True if we
    waited for one (list the snapshots again), False if there was none.

    Raise LeaseHeldError if the deadline comes first, BackendError subclasses if the
    claim cannot be read.
    """
    watch = ClaimWatch(slot, monotonic=handover.monotonic)
    sighting = handover.retry(watch.look)
    if sighting.observed is None:
        return False
    first = sighting.observed.record
    if handover.identity is not None and first.pod.same_pod(handover.identity):
        handover.log.info("restore.handover_own_claim", holder=first.describe())
        return False
    started = handover.monotonic()
    handover.log.info(
        "restore.handover_waiting", holder=first.describe(), expiry_seconds=first.expiry_seconds
    )
    how = _wait(watch, sighting, handover)
    handover.log.info(
        "restore.handover_done",
        previous=first.describe(),
        how=how,
        waited_seconds=round(handover.monotonic() - started, 1),
    )
    return True


def _wait(watch: ClaimWatch, sighting: Sighting, handover: Handover) -> str:
    """Look again until the claim first sighted ends; return how it ended."""
    assert sighting.observed is not None  # noqa: S101 - the caller saw a claim
    first = sighting.observed.record
    started = shown = handover.monotonic()
    while (how := _ended(sighting, first.token)) is None:
        now = handover.monotonic()
        if now - shown >= handover.progress_seconds:
            handover.log.info(
                "restore.handover_waiting", holder=first.describe(), waited_seconds=round(now - started, 1)
            )
            shown = now
        pause = sighting.poll_seconds()
        if now + pause >= handover.deadline:
            # No look at the deadline itself: with --timeout as the bound, that look's storage
            # call would end as "unreachable" (exit 4) instead of naming the holder.
            handover.sleep(max(handover.deadline - now, 0.0))
            raise LeaseHeldError(
                f"{watch.slot.describe()} is still claimed by {first.describe()} after waiting "
                f"{handover.monotonic() - started:.0f}s for it to hand over (--handover-timeout, "
                "--timeout); restoring now would miss its final backup"
            )
        handover.sleep(pause)
        sighting = handover.retry(watch.look)
    return how


def _ended(sighting: Sighting, token: str) -> str | None:
    if sighting.observed is None:
        return "released"
    if sighting.observed.record.token != token:
        return "passed on"
    return "expired" if sighting.state == "expired" else None
