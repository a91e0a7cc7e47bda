"""`caretaker restore --dry-run`: what a run would do, with nothing written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from restore.clock import format_time
from restore.initcontainer.action import Effects, initialization, opened, retrier, snapshot_id
from restore.initcontainer.decision import RestoreSettings, choose, decide, empty_start, needed_bytes
from restore.initcontainer.staging import Journal, Staging, entries
from restore.initcontainer.statedir import Volume

if TYPE_CHECKING:
    from restore.model import SnapshotInfo


def plan(settings: RestoreSettings, effects: Effects) -> dict[str, Any]:
    """Return what a run would do, writing nothing (not even the result file).

    The check command is not run (it might write). Raise CaretakerError where the real run
    would fail before writing (no snapshot, repository unreachable or denied).
    """
    base = {"outcome": "planned", "path": str(settings.path)}
    journal = pending(settings)
    if journal is not None:
        reason = "an interrupted restore would be finished first"
        return {**base, "action": "resume", "reason": reason, "snapshot": snapshot_id(journal)}
    decision = decide(settings, None)
    if decision.action == "skip":
        return {**base, "action": "skip", "reason": decision.reason}
    retries = retrier(settings, effects)
    with opened(effects, retries) as repo:
        where = repo.describe()
        candidates = choose(retries.call(repo.snapshots, what="list snapshots"), settings)
        if not candidates:
            reason = empty_start(where, settings.allow_empty, initialization(repo, retries))
            return {**base, "action": "first-boot", "reason": reason}
    base |= {"action": decision.action, "reason": decision.reason, "repository": where}
    return base | _sizes(candidates, settings, effects)


def pending(settings: RestoreSettings) -> Journal | None:
    """The interrupted move a run would finish first. Raise UnsafeVolumeError where the
    run would stop at its first look at the volume."""
    try:
        volume = Volume.open(settings.path, create=False)
    except FileNotFoundError:
        return None
    with volume:
        volume.check()
        return Staging(volume).pending()


def _sizes(candidates: list[SnapshotInfo], settings: RestoreSettings, effects: Effects) -> dict[str, Any]:
    chosen = candidates[0]
    free, block = effects.disk_free(settings.path)
    return {
        "snapshot": chosen.id,
        "snapshot_time": format_time(chosen.time),
        "files": chosen.files,
        "bytes": chosen.bytes,
        "fallbacks": [c.id for c in candidates[1:]],
        "set_aside": len(entries(settings.path)),
        "needed_bytes": needed_bytes(chosen, block),
        "free_bytes": free,
    }
