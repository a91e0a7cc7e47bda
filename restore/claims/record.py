"""The writer claim's document, and the slot in a repository that holds it.

One small document per repository says who writes it: the pod, the process, its role
(`sidecar` for a lifetime claim, `backup` or `prune` for one run), a random token for this
holding, a renewal counter, and the heartbeat and expiry the holder promises to keep. The
holder rewrites it every heartbeat; everyone else watches it change (`restore.claims.watch`).

The times in it are the holder's clock and are shown to humans only: no decision compares
them with another clock. The `owner` and `expires` fields keep caretaker versions before
the claim (which wrote a 5-minute `lease` with those two fields) from treating a claim as
expired and writing beside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from restore.clock import format_time, parse_time
from restore.identity import Identity

FORMAT = 1
SIDECAR = "sidecar"
# A document nobody can read is taken over after this long without change.
UNREADABLE_EXPIRY_SECONDS = 30.0
# The longest expiry a holder may promise (--claim-expiry). A document promising more (or a
# heartbeat that is not a positive number) was not written by caretaker: it is unreadable, so
# a forged claim cannot keep one-shot writers waiting for ever or break `caretaker unlock`.
MAX_EXPIRY_SECONDS = 3600.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClaimRecord:
    pod: Identity
    process: str  # host/pid of the holding process
    role: str  # sidecar, backup, prune
    token: str  # one per holding: a restarted holder is a new holding
    renewals: int
    heartbeat_seconds: float
    expiry_seconds: float
    acquired: datetime  # the holder's clock: informational
    renewed: datetime

    def describe(self) -> str:
        """`web-0 (uid 3f2a1b2c), sidecar web-0/7`: the holder as logs and errors name it."""
        return f"{self.pod}, {self.role} {self.process}"

    def renewed_at(self, now: datetime) -> ClaimRecord:
        return dataclasses.replace(self, renewals=self.renewals + 1, renewed=now)

    def to_json(self) -> dict[str, Any]:
        return {
            "claim": FORMAT,
            "pod": self.pod.name,
            "uid": self.pod.uid,
            "process": self.process,
            "role": self.role,
            "token": self.token,
            "renewals": self.renewals,
            "heartbeat_seconds": self.heartbeat_seconds,
            "expiry_seconds": self.expiry_seconds,
            "acquired": format_time(self.acquired),
            "renewed": format_time(self.renewed),
            # For caretaker versions before the claim: they honour `expires` by their clock.
            "owner": self.describe(),
            "expires": format_time(self.renewed + timedelta(seconds=self.expiry_seconds)),
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json()).encode()

    @classmethod
    def decode(cls, data: bytes) -> ClaimRecord:
        """Read a claim, a lease of an older caretaker, or neither (then it names no one and
        expires after UNREADABLE_EXPIRY_SECONDS without change: it must not lock forever)."""
        try:
            document = json.loads(data)
            return _plausible(_claim(document) if "claim" in document else _legacy_lease(document))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            return _unreadable(data)


def _plausible(record: ClaimRecord) -> ClaimRecord:
    """Raise ValueError (OverflowError) unless its timing is one caretaker could have written."""
    if not 0 < 2 * record.heartbeat_seconds <= record.expiry_seconds <= MAX_EXPIRY_SECONDS:
        raise ValueError("implausible heartbeat or expiry")
    record.renewed + timedelta(seconds=record.expiry_seconds)  # its `expires`, as to_json shows it
    return record


def _claim(document: dict[str, Any]) -> ClaimRecord:
    return ClaimRecord(
        pod=Identity(str(document["pod"]), str(document.get("uid", ""))),
        process=str(document["process"]),
        role=str(document["role"]),
        token=str(document["token"]),
        renewals=int(document["renewals"]),
        heartbeat_seconds=float(document["heartbeat_seconds"]),
        expiry_seconds=float(document["expiry_seconds"]),
        acquired=parse_time(document["acquired"]),
        renewed=parse_time(document["renewed"]),
    )


def _legacy_lease(document: dict[str, Any]) -> ClaimRecord:
    # Both times come from the one clock of the old writer: their difference is its TTL,
    # renewed every third of it. Each renewal rewrites the object, which is what we watch.
    acquired, expires = parse_time(document["acquired"]), parse_time(document["expires"])
    ttl = max((expires - acquired).total_seconds(), 1.0)
    owner = str(document["owner"])
    return ClaimRecord(
        pod=Identity(owner.rpartition("/")[0] or owner),
        process=owner,
        role="lease",
        token=f"lease:{owner}",
        renewals=0,
        heartbeat_seconds=ttl / 3,
        expiry_seconds=ttl,
        acquired=acquired,
        renewed=acquired,
    )


def _unreadable(data: bytes) -> ClaimRecord:
    return ClaimRecord(
        pod=Identity("unknown (unreadable claim)"),
        process="unknown",
        role="unknown",
        token="unreadable:" + hashlib.sha256(data).hexdigest()[:16],
        renewals=0,
        heartbeat_seconds=UNREADABLE_EXPIRY_SECONDS,
        expiry_seconds=UNREADABLE_EXPIRY_SECONDS,
        acquired=_EPOCH,
        renewed=_EPOCH,
    )


@dataclasses.dataclass(frozen=True)
class Observed:
    """The claim as read, and the slot's version of it (for a conditional replace)."""

    record: ClaimRecord
    version: str


class ClaimSlot(Protocol):
    """Where a repository keeps its claim: one object (local, S3) or one ref (git).

    Every method may raise BackendError subclasses; conflicts are answers, not errors.
    """

    def describe(self) -> str:
        """Where the claim lives, without credentials."""

    def read(self) -> Observed | None:
        """The current claim and its version, or None if the repository is unclaimed."""

    def create(self, data: bytes) -> str | None:
        """Write a claim where there is none; return its version, or None if one exists."""

    def replace(self, data: bytes, *, version: str) -> str | None:
        """Overwrite the claim only if it still has `version`; return the new version, or
        None if it changed or vanished."""

    def remove(self, *, version: str) -> bool:
        """Delete the claim if it still has `version`; return whether it did."""
