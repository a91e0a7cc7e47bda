"""Staging, journal and quarantine: how a restore reaches the target without ever leaving it
half-written, and without ever deleting the user's data.

The target is usually a mount point, so it cannot be swapped with a rename. Instead:

1. the snapshot is restored (and verified) into `<target>/.caretaker/staging/tree/`, on the
   same filesystem as the target, so every later move is a cheap atomic `rename`;
2. a journal (`staging/journal.json`) is written, fsynced and renamed into place: from here
   on the restore is decided and a later run will finish it;
3. each existing top-level entry is renamed aside (into a quarantine folder, or into
   `staging/discard/` when it is a copy of repository data), then each staged entry is
   renamed into the target;
4. the journal is removed, then the staging folder.

Every step of 3 is idempotent, so replaying the journal after a kill at any point ends in
the same state (`Staging.recover`). A staging folder without a journal is an interrupted
download: it is deleted. `lost+found` and `.caretaker` are never moved in or out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from restore.clock import format_time
from restore.diskflush import fsync_dir, sync_filesystem
from restore.errors import LocalIOError
from restore.model import STATE_DIR, SnapshotInfo

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

IGNORED = frozenset({"lost+found", STATE_DIR})
JOURNAL_VERSION = 1
JournalKind = Literal["restore", "rollback"]


def entries(folder: Path) -> list[str]:
    """Return the top-level names of `folder` that count as data (sorted; [] if it is missing).

    Raise LocalIOError if the folder cannot be listed or is not a folder.
    """
    try:
        return sorted(child.name for child in folder.iterdir() if child.name not in IGNORED)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise LocalIOError(f"cannot list {folder}: {error.strerror}") from error


def _chmod_and_retry(function: Any, path: str, _: object) -> None:
    # Snapshots may hold read-only folders (mode 0555); as non-root we must open them up
    # before their contents can be deleted.
    failed = Path(path)
    with contextlib.suppress(OSError):
        failed.parent.chmod(stat.S_IRWXU)
        if failed.is_dir() and not failed.is_symlink():
            failed.chmod(stat.S_IRWXU)
    function(path)


def remove_tree(path: Path) -> None:
    """Delete a folder we own (staging); a missing folder is fine."""
    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_chmod_and_retry)
    else:
        shutil.rmtree(path, onerror=_chmod_and_retry)  # deprecated from 3.12 on


def quarantine_dir(target: Path, now: datetime) -> Path:
    """Return a new, unused quarantine folder name for `now` (not created yet)."""
    base = target / STATE_DIR / "quarantine"
    stamp = format_time(now.replace(microsecond=0)).replace("-", "").replace(":", "")
    candidate = base / stamp
    counter = 1
    while os.path.lexists(candidate):
        counter += 1
        candidate = base / f"{stamp}-{counter}"
    return candidate


@dataclasses.dataclass(frozen=True, kw_only=True)
class Journal:
    """A decided move: set `set_aside` names from the target into `aside`, then move
    `move_in` names from `source` into the target. Folders are relative to `.caretaker/`."""

    kind: JournalKind
    source: str
    aside: str
    set_aside: tuple[str, ...]
    move_in: tuple[str, ...]
    snapshot: SnapshotInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": JOURNAL_VERSION,
            "kind": self.kind,
            "source": self.source,
            "aside": self.aside,
            "set_aside": list(self.set_aside),
            "move_in": list(self.move_in),
            "snapshot": self.snapshot.to_json() if self.snapshot else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Journal:
        """Raise ValueError if this is not a journal this version can replay."""
        if data.get("version") != JOURNAL_VERSION or data.get("kind") not in (
            "restore",
            "rollback",
        ):
            raise ValueError(f"unknown journal version/kind: {data.get('version')}/{data.get('kind')}")
        snapshot = data.get("snapshot")
        return cls(
            kind=data["kind"],
            source=_relative(data["source"]),
            aside=_relative(data["aside"]),
            set_aside=tuple(_name(n) for n in data["set_aside"]),
            move_in=tuple(_name(n) for n in data["move_in"]),
            snapshot=SnapshotInfo.from_json(snapshot) if snapshot else None,
        )


def _name(value: Any) -> str:
    if not isinstance(value, str) or "/" in value or value in {"", ".", ".."} or value in IGNORED:
        raise ValueError(f"bad entry name in journal: {value!r}")
    return value


def _relative(value: Any) -> str:
    if not isinstance(value, str) or value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"bad folder in journal: {value!r}")
    return value


class Staging:
    """The staging area of one target folder (see the module docstring)."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.state = target / STATE_DIR
        self.root = self.state / "staging"
        self.tree = self.root / "tree"
        self.discard = self.root / "discard"
        self.journal_path = self.root / "journal.json"

    def relative(self, folder: Path) -> str:
        return folder.relative_to(self.state).as_posix()

    def pending(self) -> Journal | None:
        """Return the journal of an interrupted move, if any.

        Raise LocalIOError if a journal exists but cannot be read: never guess.
        """
        try:
            text = self.journal_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise LocalIOError(f"cannot read {self.journal_path}: {error.strerror}") from error
        try:
            return Journal.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as error:
            raise LocalIOError(f"unreadable restore journal {self.journal_path}: {error}") from error

    def recover(self) -> Journal | None:
        """Finish an interrupted move (returning its journal), or delete a leftover staging
        folder of an interrupted download (returning None)."""
        journal = self.pending()
        if journal is not None:
            self.apply(journal)
            return journal
        self.clean()
        return None

    def clean(self) -> None:
        remove_tree(self.root)

    def prepare(self) -> Path:
        """Return an empty staging tree for the next download, after deleting any leftover."""
        self.clean()
        self.tree.mkdir(parents=True)
        return self.tree

    def commit(
        self,
        *,
        kind: JournalKind,
        source: Path,
        aside: Path,
        set_aside: Sequence[str],
        snapshot: SnapshotInfo | None = None,
    ) -> Journal:
        """Decide a move: write the journal durably and return it (apply it next)."""
        journal = Journal(
            kind=kind,
            source=self.relative(source),
            aside=self.relative(aside),
            set_aside=tuple(set_aside),
            move_in=tuple(entries(source)),
            snapshot=snapshot,
        )
        self.root.mkdir(parents=True, exist_ok=True)
        sync_filesystem(self.root)
        temp = self.journal_path.with_suffix(".tmp")
        with temp.open("w", encoding="utf-8") as handle:
            json.dump(journal.to_json(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        temp.replace(self.journal_path)
        fsync_dir(self.root)
        return journal

    def apply(self, journal: Journal) -> None:
        """Replay a journal to its end; safe to call again after a kill at any point."""
        source = self.state / journal.source
        aside = self.state / journal.aside
        moving = set(journal.move_in)
        aside.mkdir(parents=True, exist_ok=True)
        for name in journal.set_aside:
            here = self.target / name
            # A name that is also moved in and already gone from the source is the new
            # entry: it was set aside before, and must stay.
            if name in moving and not os.path.lexists(source / name):
                continue
            if os.path.lexists(here) and not os.path.lexists(aside / name):
                here.rename(aside / name)
        for name in journal.move_in:
            if not os.path.lexists(source / name):
                continue
            if os.path.lexists(self.target / name):
                raise LocalIOError(
                    f"refusing to overwrite {self.target / name}: it appeared during the restore"
                )
            (source / name).rename(self.target / name)
        fsync_dir(self.target)
        fsync_dir(aside)
        self.journal_path.unlink()
        fsync_dir(self.root)
        self.clean()
        if journal.kind == "rollback":
            with contextlib.suppress(OSError):
                source.rmdir()  # the emptied quarantine folder the data came back from
