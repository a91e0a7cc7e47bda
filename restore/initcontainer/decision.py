"""The pure half of the restore action: the settings, the decision and the choice.

Nothing here opens the repository: `decide` looks only at the target folder (and runs the
user's check), so an init container whose volume is already populated finishes without
importing a storage library. `choose` turns a snapshot listing into the ordered list of
candidates to try.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Literal, get_args

from restore.clock import format_time
from restore.errors import ConfigError, EmptiedRepositoryError, NoSnapshotError, Problem
from restore.filters import SnapshotFilter, names
from restore.initcontainer.staging import entries
from restore.selection import Selection, pattern_problem
from restore.values import boolean as parse_bool

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from pathlib import Path

    from restore.model import SnapshotInfo


# When an empty volume may start empty because the repository has no snapshot (--allow-empty).
EmptyStart = Literal["never", "new-repository", "always"]
EMPTY_STARTS: tuple[EmptyStart, ...] = get_args(EmptyStart)


def parse_empty_start(text: str) -> EmptyStart:
    """`never`, `new-repository` or `always`; a boolean means always/never (the flag's
    older form). Raise ValueError naming the choices."""
    for choice in EMPTY_STARTS:
        if text.strip().lower() == choice:
            return choice
    try:
        return "always" if parse_bool(text) else "never"
    except ValueError:
        raise ValueError(f"must be one of {', '.join(EMPTY_STARTS)} (or true/false): {text!r}") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class RestoreSettings:
    """What `caretaker restore` was asked to do (flags and their CARETAKER_* twins)."""

    path: Path
    snapshot: str = "latest"
    before: datetime | None = None
    force: bool = False
    check_cmd: tuple[str, ...] = ()
    allow_empty: EmptyStart = "never"
    timeout_seconds: float = 300.0
    max_fallbacks: int = 3
    progress_interval_seconds: float = 10.0
    handover_timeout_seconds: float | None = None  # None: as long as --timeout allows
    only: SnapshotFilter = dataclasses.field(default_factory=SnapshotFilter)
    # --include makes it a partial restore (restore.initcontainer.partial); --exclude alone
    # only leaves paths out of a full one.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    keep_setid: bool = False  # keep setuid/setgid bits of restored files

    @property
    def partial(self) -> bool:
        return bool(self.include)

    def selection(self) -> Selection | None:
        return Selection(self.include, self.exclude) if self.include or self.exclude else None

    def __post_init__(self) -> None:
        problems = [
            Problem(key, pattern, why)
            for key, patterns in (("include", self.include), ("exclude", self.exclude))
            for pattern in patterns
            if (why := pattern_problem(pattern)) is not None
        ]
        if self.snapshot != "latest" and self.before is not None:
            problems.append(
                Problem("before", format_time(self.before), "give --snapshot or --before, not both")
            )
        if self.allow_empty not in EMPTY_STARTS:
            choices = ", ".join(EMPTY_STARTS)
            problems.append(Problem("allow-empty", self.allow_empty, f"must be one of {choices}"))
        if self.max_fallbacks < 0:
            problems.append(Problem("max-fallbacks", self.max_fallbacks, "must be 0 or more"))
        if not self.path.is_absolute():
            problems.append(Problem("path", str(self.path), "must be an absolute path"))
        if problems:
            raise ConfigError(problems)


@dataclasses.dataclass(frozen=True)
class Decision:
    """`restore` or `skip` (or, in a dry run with a check, `check`), and why."""

    action: Literal["restore", "skip", "check"]
    reason: str


def decide(settings: RestoreSettings, check: Callable[[], bool] | None) -> Decision:
    """Decide from the target alone; `check` is None in a dry run (it is never run then)."""
    if not entries(settings.path):
        return Decision("restore", "target is empty")
    if settings.force:
        return Decision("restore", "forced: existing data is moved to quarantine")
    if not settings.check_cmd:
        return Decision("skip", "target is not empty" + _not_restored(settings))
    if check is None:
        return Decision("check", "the check would run; restore if it fails")
    if check():
        return Decision("skip", "check passed on existing data" + _not_restored(settings))
    return Decision("restore", "check failed on existing data")


def empty_start(where: str, mode: EmptyStart, initialization: Callable[[], str | None]) -> str:
    """Why the volume may start empty, the repository `where` having no snapshot.

    `initialization` (asked only for new-repository) tells what shows that a backup used
    the repository before. Raise NoSnapshotError when the volume may not start empty, and
    EmptiedRepositoryError when the repository was used but holds no snapshot now.
    """
    if mode == "always":
        return f"{where} has no snapshot yet"
    if mode == "never":
        raise NoSnapshotError(
            f"{where} has no snapshot; refusing to start on an empty volume (--allow-empty="
            "new-repository allows it while the repository has never held one)"
        )
    evidence = initialization()
    if evidence is None:
        return f"new repository: {where} has never held a snapshot"
    raise EmptiedRepositoryError(
        f"{where} holds no snapshot, but a backup has used it ({evidence}): its snapshots were "
        "deleted or cannot be read, or it belongs to something else (give caretaker a "
        "repository, prefix or branch of its own). Refusing to start on an empty volume; look "
        "with `caretaker snapshots`, and to start empty anyway run once with --allow-empty=always"
    )


def _not_restored(settings: RestoreSettings) -> str:
    """Said when a snapshot was named but the data stays: every pod restart skips (exit 0),
    so a pinned --snapshot cannot keep the app from starting, and --force is the way."""
    if settings.snapshot != "latest":
        return f"; --snapshot {settings.snapshot} not restored (--force replaces the data)"
    if settings.before is not None:
        return f"; --before {format_time(settings.before)} not restored (--force replaces the data)"
    return ""


def choose(snapshots: Sequence[SnapshotInfo], settings: RestoreSettings) -> list[SnapshotInfo]:
    """Return the snapshots to try, best first ([] when the repository has none).

    Raise NoSnapshotError if none matches --snapshot/--before.
    """
    if not snapshots:
        return []
    ordered = sorted(settings.only.apply(snapshots), key=lambda s: s.time, reverse=True)
    filtered = f" matching {settings.only.describe()}" if settings.only.active else ""
    if not ordered:  # never a first boot: the repository has snapshots, the filter is wrong
        raise NoSnapshotError(f"none of the {len(snapshots)} snapshots is{filtered}")
    if settings.snapshot != "latest":
        exact = [s for s in ordered if s.id == settings.snapshot]
        matches = exact or [
            s for s in ordered if s.id.startswith(settings.snapshot) or names(s, settings.snapshot)
        ]
        if len(matches) != 1:
            found = "is ambiguous" if matches else "does not exist"
            raise NoSnapshotError(f"snapshot {settings.snapshot!r} {found}{filtered}")
        return matches
    if settings.before is not None:
        ordered = [s for s in ordered if s.time <= settings.before]
        if not ordered:
            raise NoSnapshotError(
                f"no snapshot{filtered} at or before {format_time(settings.before)} "
                f"(the oldest is from {format_time(snapshots[-1].time)})"
            )
    return ordered[: 1 + settings.max_fallbacks]


def needed_bytes(snapshot: SnapshotInfo, block_size: int) -> int:
    """Estimate the disk space a snapshot takes once restored: its bytes plus a block per entry."""
    return snapshot.bytes + (snapshot.files + snapshot.dirs) * block_size


def free_bytes(path: Path) -> tuple[int, int]:
    """Return (bytes free for us, block size) on the filesystem holding `path`."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    stats = os.statvfs(probe)
    return stats.f_bavail * stats.f_frsize, stats.f_frsize
