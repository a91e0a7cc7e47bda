"""Partial restore (`caretaker restore --include PATH...`): a person getting some paths back.

The init container decides from the volume alone whether to restore all of it (empty volume,
`--force`, a failed `--check-cmd`). A partial restore is not such a decision: someone asks
for these paths from that snapshot, usually into a volume that holds data. So it never skips
a populated target (which may also be a new folder: it is created), never falls back to an
older snapshot, runs no check, and writes no result file or termination log (the sidecar's
restore metrics describe the init container's last run, not this).

What it shares with the full restore: the snapshot is chosen the same way; the chosen paths
(and the folders above them) are downloaded into `<target>/.caretaker/staging/tree/` by the
same tree writer with the same checks of every byte and every path; only then is anything in
the target touched. Each chosen path is then moved in with one rename: where the target lacks
it, or lacks a folder above it, that missing entry is moved in whole; where the target has
it, the restore refuses (exit 9, naming them all) before moving anything, unless `--force`,
which first moves the existing entry to `.caretaker/quarantine/<time>/<same path>`. Paths in
the target are opened folder by folder without following symlinks, so a link planted where
a folder was expected is refused, never followed out of the target.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from restore.errors import LocalIOError, NoSnapshotError, RefusedError
from restore.initcontainer.action import Effects, local_io, opened, retrier
from restore.initcontainer.decision import RestoreSettings, choose
from restore.initcontainer.outcome import Outcome
from restore.initcontainer.progress import LogProgress
from restore.initcontainer.retry import Retrier
from restore.initcontainer.staging import Staging
from restore.initcontainer.statedir import STAGING, TREE, Volume
from restore.model import SHOWN_FILES, STATE_DIR, RestoreStats, SnapshotInfo
from restore.nodes import Node
from restore.repository import Repository
from restore.safefs import Folder
from restore.selection import Selection


@dataclasses.dataclass(frozen=True)
class Move:
    """One entry to move from staging into the target, and whether the target has one there."""

    path: str
    exists: bool


def roots(nodes: Iterable[Node], selection: Selection) -> Iterator[str]:
    """The chosen paths that are not inside another chosen path, in order."""
    current = ""
    for node in nodes:
        if current and node.path.startswith(current + "/"):
            continue
        if selection.selects(node.path):
            current = node.path
            yield current


@contextlib.contextmanager
def below(folder: Folder, parts: Sequence[str], *, create: bool = False) -> Iterator[Folder]:
    """The real folder `parts` below `folder` (made if missing and `create`), one level at a
    time; raise UnsafeVolumeError where something else is in the way."""
    with contextlib.ExitStack() as opened_folders:
        here = folder
        for part in parts:
            here = opened_folders.enter_context(here.make(part) if create else here.open(part))
        yield here


def plan_moves(root: Folder, chosen: Iterable[str]) -> list[Move]:
    """For each chosen path: the shallowest entry the target lacks on the way to it (moved in
    whole), or the path itself, or what is in its way where a folder should be (a file, a
    symlink), when the target has it."""
    moves: dict[str, Move] = {}
    for path in chosen:
        parts = path.split("/")
        with contextlib.ExitStack() as opened_folders:
            here = root
            for depth, part in enumerate(parts, 1):
                prefix = "/".join(parts[:depth])
                kind = here.kind(part)
                if kind is None or kind != "folder" or depth == len(parts):
                    moves.setdefault(prefix, Move(prefix, exists=kind is not None))
                    break
                here = opened_folders.enter_context(here.open(part))
    return sorted(moves.values(), key=lambda m: m.path)


def refuse_existing(volume: Volume, moves: list[Move]) -> None:
    """Raise RefusedError naming the paths the target has already."""
    existing = [m.path for m in moves if m.exists]
    if existing:
        shown = ", ".join(existing[:SHOWN_FILES]) + (" ..." if len(existing) > SHOWN_FILES else "")
        raise RefusedError(
            f"{len(existing)} of the paths to restore exist in {volume.path}: {shown}; refusing to "
            f"replace them (--force moves them to {STATE_DIR}/quarantine/ first)"
        )


def move_in(volume: Volume, moves: list[Move], now: datetime) -> str | None:
    """Set aside what is in the way (into a new quarantine folder, made at the first such
    entry), then move the staged entries in, each with one rename, never over an entry that
    appeared meanwhile. Return the quarantine folder (relative to `.caretaker/`), if any."""
    tree = volume.existing(f"{STAGING}/{TREE}")
    if tree is None:
        raise LocalIOError(f"{volume.state_path / STAGING / TREE} vanished before the move")
    aside = None
    with tree:
        for move in moves:
            *parents, name = move.path.split("/")
            with below(volume.root, parents) as target, below(tree, parents) as source:
                if move.exists:
                    aside = aside or volume.new_quarantine(now)
                    with volume.folder(aside) as quarantine, below(quarantine, parents, create=True) as into:
                        _set_aside(target, name, into)
                try:
                    source.rename(name, target)
                except FileExistsError:
                    raise LocalIOError(
                        f"refusing to overwrite {target.path / name}: it appeared during the restore"
                    ) from None
                target.fsync()
    return aside


def _set_aside(target: Folder, name: str, into: Folder) -> None:
    try:
        target.rename(name, into)
    except FileNotFoundError:
        raise LocalIOError(f"{target.path / name} vanished during the restore") from None


def restore_paths(settings: RestoreSettings, selection: Selection, effects: Effects) -> Outcome:
    """Restore what `selection` chooses into `settings.path` (see the module docstring).

    Raise NoSnapshotError, RefusedError (paths exist, no --force), IntegrityError (no
    fallback), UnsafeVolumeError, LocalIOError, BackendError.
    """
    try:
        return _restore_paths(settings, selection, effects)
    except OSError as error:  # as the init container's run: exit 10, never a crash
        raise local_io(error) from error


def _restore_paths(settings: RestoreSettings, selection: Selection, effects: Effects) -> Outcome:
    started = effects.monotonic()
    with Volume.open(settings.path, create=True) as volume:
        volume.check()
        run = _PartialRun(settings, selection, effects, Staging(volume))
        with effects.shielded():
            run.staging.recover()
        with opened(effects, run.retries) as repo:
            snapshot = _chosen(repo, settings, run.retries)
            try:
                moves, stats, aside = run.restore(repo, snapshot)
            finally:
                with contextlib.suppress(OSError):
                    run.staging.clean()
                with contextlib.suppress(OSError):
                    volume.root.rmdir(STATE_DIR)  # what a restore into a new folder leaves
    effects.log.info("restore.moved_in", snapshot=snapshot.id, entries=[m.path for m in moves[:SHOWN_FILES]])
    replaced = sum(m.exists for m in moves)
    return Outcome(
        outcome="restored",
        exit_code=0,
        finished_at=effects.clock(),
        reason=f"partial: {len(moves)} entries moved in, {replaced} replaced",
        snapshot=snapshot.id,
        snapshot_time=snapshot.time,
        files=stats.files,
        bytes=stats.bytes,
        quarantined=str(volume.state_path / aside) if aside else None,
        duration_seconds=round(effects.monotonic() - started, 3),
    )


class _PartialRun:
    def __init__(
        self, settings: RestoreSettings, selection: Selection, effects: Effects, staging: Staging
    ) -> None:
        self.settings = settings
        self.selection = selection
        self.effects = effects
        self.staging = staging
        self.retries = retrier(settings, effects)

    def restore(
        self, repo: Repository, snapshot: SnapshotInfo
    ) -> tuple[list[Move], RestoreStats, str | None]:
        """Plan the moves (refusing existing paths without --force), download, move in."""
        selection, volume = self.selection, self.staging.volume
        listed = self.retries.call(
            lambda: list(roots(repo.nodes(snapshot.id, selection), selection)), what="list"
        )
        if not listed:
            raise NoSnapshotError(f"snapshot {snapshot.id} has nothing that --include/--exclude choose")
        moves = plan_moves(volume.root, listed)
        if not self.settings.force:
            refuse_existing(volume, moves)
        progress = LogProgress(self.effects.log, interval_seconds=self.settings.progress_interval_seconds)
        stats = self.retries.call(
            lambda: repo.restore(
                snapshot.id, self.staging.prepare(), progress, selection, keep_setid=self.settings.keep_setid
            ),
            what=f"restore snapshot {snapshot.id}",
        )
        with self.effects.shielded():
            aside = move_in(volume, moves, self.effects.clock())
        return moves, stats, aside


def plan_paths(settings: RestoreSettings, selection: Selection, effects: Effects) -> dict[str, object]:
    """What `restore_paths` would do, with nothing written: the snapshot, the entries it
    would move in, and those it would replace (refused without --force)."""
    retries = retrier(settings, effects)
    with opened(effects, retries) as repo:
        snapshot = _chosen(repo, settings, retries)
        listed = retries.call(lambda: list(roots(repo.nodes(snapshot.id, selection), selection)), what="list")
    try:
        with Volume.open(settings.path, create=False) as volume:
            moves = plan_moves(volume.root, listed)
    except FileNotFoundError:
        moves = [Move(path, exists=False) for path in listed]
    return {
        "outcome": "planned",
        "action": "restore-paths",
        "path": str(settings.path),
        "snapshot": snapshot.id,
        "move_in": [m.path for m in moves],
        "replace": [m.path for m in moves if m.exists],
        "refused": any(m.exists for m in moves) and not settings.force,
    }


def _chosen(repo: Repository, settings: RestoreSettings, retries: Retrier) -> SnapshotInfo:
    candidates = choose(retries.call(repo.snapshots, what="list snapshots"), settings)
    if not candidates:
        raise NoSnapshotError(f"{repo.describe()} has no snapshot")
    return candidates[0]
