"""Telling a live claim from a dead one without comparing two machines' clocks.

A holder rewrites its claim every heartbeat (a new renewal count, so a new version). A
watcher notes, on its own monotonic clock, when it first saw each version; a claim whose
version has not changed for the expiry the holder promised (`expiry_seconds` in the
document) is expired. Its holder's clock, and how far it is from ours, never enter the
decision: a pod whose clock is minutes off is neither taken over early nor waited for
late. The cost is that a watcher that just started waits one full expiry before declaring
a claim dead, even one that died long ago — it has not seen it stop yet.

A claim is "live" once the watcher saw it renewed; before that it is "unproven".
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Literal

from restore.claims.record import ClaimSlot, Observed

State = Literal["absent", "unproven", "live", "expired"]
MIN_POLL_SECONDS = 0.1
MAX_POLL_SECONDS = 2.5


@dataclasses.dataclass(frozen=True)
class Sighting:
    state: State
    observed: Observed | None = None
    silent_seconds: float = 0.0  # since the claim last changed, by our clock

    @property
    def holder(self) -> str:
        return self.observed.record.describe() if self.observed else "nobody"

    def poll_seconds(self) -> float:
        """How often to look again: a few times per heartbeat of the holder."""
        heartbeat = self.observed.record.heartbeat_seconds if self.observed else MAX_POLL_SECONDS
        return max(MIN_POLL_SECONDS, min(heartbeat / 4, MAX_POLL_SECONDS))


class ClaimWatch:
    """Looks at one slot again and again and says what the claim in it is now."""

    def __init__(self, slot: ClaimSlot, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.slot = slot
        self._monotonic = monotonic
        self._marker: tuple[str, int, str] | None = None
        self._since = 0.0
        self._renewed = False

    @property
    def seen_claim(self) -> bool:
        """Whether the last look found a claim."""
        return self._marker is not None

    def look(self) -> Sighting:
        """Read the slot once. Raise BackendError subclasses if it cannot be read."""
        observed = self.slot.read()
        now = self._monotonic()
        if observed is None:
            self._marker, self._renewed = None, False
            return Sighting("absent")
        record = observed.record
        marker = (record.token, record.renewals, observed.version)
        if marker != self._marker:
            same_holding = self._marker is not None and self._marker[0] == record.token
            self._renewed = same_holding
            self._marker, self._since = marker, now
        silent = now - self._since
        if silent >= record.expiry_seconds:
            return Sighting("expired", observed, silent)
        return Sighting("live" if self._renewed else "unproven", observed, silent)
