"""Which snapshots a retention policy keeps: pure, with `now` passed in.

Semantics follow restic's `forget`: `last` keeps the N newest; each calendar rule keeps
the newest snapshot of each of the N most recent periods that have one; `within` keeps
everything younger than a duration. A snapshot kept by any rule is kept. The newest
snapshot and the newest non-empty snapshot are always kept, so no policy can replace
good history with nothing. With a filter (`--host`, `--tag`), the policy applies to the
matching snapshots alone, as restic's `forget --host` does, and the others are kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from restore.filters import SnapshotFilter
from restore.model import SnapshotInfo

# The counted rules, as named in flags (`--keep-daily`) and in the config file (`keep: {daily: 7}`).
# A count of 0 turns its rule off, exactly like leaving it out.
KEEP_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
# Why a policy whose every rule is off is refused wherever it is given (flags, env, file).
NO_RULE = "this prune would forget nothing; set a count of 1 or more, or keep-within"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetentionPolicy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: timedelta | None = None
    # Set by `limited_to` (the prune command's filters); config files have no such key.
    only: SnapshotFilter = dataclasses.field(default_factory=SnapshotFilter, init=False)

    def limited_to(self, only: SnapshotFilter) -> RetentionPolicy:
        """This policy, applied to the snapshots `only` matches (the others are kept)."""
        policy = dataclasses.replace(self)
        object.__setattr__(policy, "only", only)  # frozen: set once, on a fresh copy
        return policy

    @property
    def keeps_everything(self) -> bool:
        return not any(getattr(self, rule) for rule in KEEP_RULES) and self.within is None


@dataclasses.dataclass(frozen=True)
class Selection:
    keep: list[SnapshotInfo]
    remove: list[SnapshotInfo]
    reasons: dict[str, tuple[str, ...]]


def _buckets() -> dict[str, Callable[[datetime], tuple[int, ...]]]:
    return {
        "hourly": lambda t: (t.year, t.month, t.day, t.hour),
        "daily": lambda t: (t.year, t.month, t.day),
        "weekly": lambda t: t.isocalendar()[:2],
        "monthly": lambda t: (t.year, t.month),
        "yearly": lambda t: (t.year,),
    }


def _keep_by_rules(
    ordered: list[SnapshotInfo], policy: RetentionPolicy, now: datetime
) -> dict[str, list[str]]:
    reasons: dict[str, list[str]] = {s.id: [] for s in ordered}
    for snap in ordered[: policy.last]:
        reasons[snap.id].append("last")
    for rule, bucket_of in _buckets().items():
        count: int = getattr(policy, rule)
        seen: set[tuple[int, ...]] = set()
        for snap in ordered:
            if len(seen) >= count:
                break
            bucket = bucket_of(snap.time)
            if bucket not in seen:
                seen.add(bucket)
                reasons[snap.id].append(rule)
    if policy.within is not None:
        for snap in ordered:
            if snap.time >= now - policy.within:
                reasons[snap.id].append("within")
    return reasons


def select(snapshots: Sequence[SnapshotInfo], policy: RetentionPolicy, now: datetime) -> Selection:
    """Split snapshots into kept and removed, with the rules that kept each one."""
    everything = sorted(snapshots, key=lambda s: s.time, reverse=True)
    ordered = policy.only.apply(everything)
    if policy.keeps_everything:
        reasons = {s.id: ["no policy"] for s in ordered}
    else:
        reasons = _keep_by_rules(ordered, policy, now)
    if ordered:
        reasons[ordered[0].id].append("newest")
        newest_data = next((s for s in ordered if not s.empty), None)
        if newest_data is not None:
            reasons[newest_data.id].append("newest non-empty")
    for other in everything:
        reasons.setdefault(other.id, [f"not {policy.only.describe()}"])
    keep = [s for s in everything if reasons[s.id]]
    remove = [s for s in everything if not reasons[s.id]]
    return Selection(keep, remove, {k: tuple(v) for k, v in reasons.items() if v})
