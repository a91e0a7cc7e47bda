"""Choosing snapshots: `--host`, `--tag` and `--snapshot-path` filters, and a snapshot named by
id, unique id prefix or `latest`.

Every command that lists or chooses snapshots applies the same rules, so `snapshots --host
web-0` lists exactly what `restore --host web-0` chooses from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from restore.errors import NoSnapshotError
from restore.model import SnapshotInfo

LATEST = "latest"
# Shorter prefixes would match by accident (git ids too: git asks for four at least).
MIN_PREFIX = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class SnapshotFilter:
    """Snapshots of one host, carrying every given tag, of one data folder (each optional)."""

    host: str = ""
    tags: tuple[str, ...] = ()
    path: str = ""

    def __post_init__(self) -> None:
        # `/data/` and `/data` are one folder.
        object.__setattr__(self, "path", self.path.rstrip("/") or self.path)

    @property
    def active(self) -> bool:
        return bool(self.host or self.tags or self.path)

    def matches(self, snapshot: SnapshotInfo) -> bool:
        return (
            (not self.host or snapshot.host == self.host)
            and set(self.tags) <= set(snapshot.tags)
            and (not self.path or snapshot.path.rstrip("/") == self.path)
        )

    def apply(self, snapshots: Sequence[SnapshotInfo]) -> list[SnapshotInfo]:
        return [s for s in snapshots if self.matches(s)]

    def describe(self) -> str:
        """`host=web-0, tag=nightly` for messages; empty when nothing is filtered."""
        parts = [f"host={self.host}"] if self.host else []
        parts += [f"tag={tag}" for tag in self.tags]
        parts += [f"snapshot-path={self.path}"] if self.path else []
        return ", ".join(parts)


def names(snapshot: SnapshotInfo, ref: str) -> bool:
    """True if `ref` names this snapshot: its id, or a prefix of it (at least MIN_PREFIX long).

    A git snapshot's id is the start of its commit's hash, so the whole hash names it too.
    """
    ref = ref.strip().lower()
    if ref == snapshot.id:
        return True
    if len(ref) < MIN_PREFIX:
        return False
    return snapshot.id.startswith(ref) or (len(snapshot.id) >= 12 and ref.startswith(snapshot.id))


def pick(snapshots: Sequence[SnapshotInfo], ref: str, only: SnapshotFilter, where: str) -> SnapshotInfo:
    """The snapshot `ref` (an id, a unique prefix, or `latest`) names among those `only` lets
    through. Raise NoSnapshotError naming the filter if there is no such snapshot, or more
    than one."""
    chosen = sorted(only.apply(snapshots), key=lambda s: s.time, reverse=True)
    filtered = f" matching {only.describe()}" if only.active else ""
    if ref.strip().lower() == LATEST:
        if not chosen:
            raise NoSnapshotError(f"{where} has no snapshot{filtered}")
        return chosen[0]
    matches = [s for s in chosen if s.id == ref.strip().lower()] or [s for s in chosen if names(s, ref)]
    if len(matches) != 1:
        problem = "is ambiguous" if matches else "does not exist"
        raise NoSnapshotError(f"snapshot {ref!r} {problem} in {where}{filtered}")
    return matches[0]
