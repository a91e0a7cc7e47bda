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

The app shares the volume, so every step goes through descriptors of caretaker's own
folders and never follows a symlink (`restore.initcontainer.statedir`, `restore.safefs`):
entries are moved with `renameat` (a symlink moves as itself), staging is deleted without
following links, and a journal is replayed only if it names caretaker's own folders
(`staging/tree`, `staging/discard`, `quarantine/<time>`) and plain entry names; any other
journal stops the run (exit 11) and is left for a human to look at.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from restore.errors import LocalIOError, UnsafeVolumeError
from restore.initcontainer.statedir import (
    DISCARD,
    IGNORED,
    JOURNAL,
    JOURNAL_TEMP,
    QUARANTINE,
    STAGING,
    TREE,
    Volume,
    journal_folder,
)
from restore.model import SnapshotInfo
from restore.safefs import Folder, wrong_kind

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

JOURNAL_VERSION = 1
# A journal lists the target's top-level names; this bounds what a planted one can make us read.
JOURNAL_LIMIT = 64 << 20
JournalKind = Literal["restore", "rollback"]


def entries(folder: Path) -> list[str]:
    """Return the top-level names of `folder` that count as data (sorted; [] if it is missing).

    Raise LocalIOError if the folder cannot be opened or listed.
    """
    try:
        volume = Volume.open(folder, create=False)
    except FileNotFoundError:
        return []
    with volume:
        return volume.entries()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Journal:
    """A decided move: set `set_aside` names from the target into `aside`, then move
    `move_in` names from `source` into the target. Folders are relative to `.caretaker/`
    and only ever caretaker's own (`statedir.journal_folder`); names are single entries."""

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
        if data.get("version") != JOURNAL_VERSION or data.get("kind") not in ("restore", "rollback"):
            raise ValueError(f"unknown journal version/kind: {data.get('version')}/{data.get('kind')}")
        source, aside = journal_folder(data["source"]), journal_folder(data["aside"])
        if source == aside:
            raise ValueError(f"journal moves {source!r} into itself")
        snapshot = data.get("snapshot")
        return cls(
            kind=data["kind"],
            source=source,
            aside=aside,
            set_aside=_names(data["set_aside"]),
            move_in=_names(data["move_in"]),
            snapshot=SnapshotInfo.from_json(snapshot) if snapshot else None,
        )


def _names(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise TypeError(f"journal names must be a list, not {values!r}")
    for value in values:
        if (
            not isinstance(value, str)
            or "/" in value
            or "\0" in value
            or value in {"", ".", ".."}
            or value in IGNORED
        ):
            raise ValueError(f"bad entry name in journal: {value!r}")
    return tuple(values)


class Staging:
    """The staging area of one volume (see the module docstring). The Path attributes are
    where things are, for messages and the outcome; every operation goes through the
    volume's descriptors."""

    def __init__(self, volume: Volume) -> None:
        self.volume = volume
        self.target = volume.path
        self.state = volume.state_path
        self.root = self.state / STAGING
        self.tree = self.root / TREE
        self.discard = self.root / DISCARD
        self.journal_path = self.root / JOURNAL
        self._held: Folder | None = None  # the staging folder this run downloads into
        self._tree: tuple[int, int] | None = None  # and its tree (device, inode)

    def relative(self, folder: Path) -> str:
        return folder.relative_to(self.state).as_posix()

    def new_quarantine(self, now: datetime) -> Path:
        """Create a new, empty quarantine folder for `now` and return its path."""
        return self.state / self.volume.new_quarantine(now)

    def pending(self) -> Journal | None:
        """Return the journal of an interrupted move, if any.

        Raise UnsafeVolumeError if a journal exists but is not one caretaker can replay
        (unreadable, or naming anything but its own folders): never guess.
        """
        staging = self.volume.existing(STAGING)
        if staging is None:
            return None
        with staging:
            try:
                text = staging.read(JOURNAL, limit=JOURNAL_LIMIT)
            except OSError as error:
                raise LocalIOError(f"cannot read {self.journal_path}: {error.strerror}") from error
            except ValueError as error:
                raise UnsafeVolumeError(f"{error}: not a journal caretaker wrote; left as it is") from error
        if text is None:
            return None
        try:
            return Journal.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as error:
            raise UnsafeVolumeError(
                f"unreadable restore journal {self.journal_path}: {error}; left as it is"
            ) from error

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
        """Delete the staging folder and all in it (links removed, never followed). The
        folder this run downloaded into is emptied through its descriptor first, wherever
        it has been moved meanwhile."""
        held, self._held, self._tree = self._held, None, None
        if held is not None:
            with held:
                held.empty()
        state = self.volume.existing_state()
        if state is None:
            return
        if state.kind(STAGING) not in (None, "folder"):
            raise wrong_kind(self.root, state.describe(STAGING), "folder")
        state.remove_tree(STAGING)

    def prepare(self) -> Path:
        """Return an empty staging tree for the next download, after deleting any leftover.

        The path reaches the tree through this run's descriptor of the staging folder
        (`Folder.anchor`): a `.caretaker` or `staging` swapped for a symlink does not
        redirect it. Raise UnsafeVolumeError if `tree` is not a real folder when opened.
        """
        self.clean()
        staging = self.volume.folder(STAGING)
        try:
            staging.make(TREE).close()
            self._tree = staging.identity(TREE)
        except BaseException:
            staging.close()
            raise
        self._held = staging
        return staging.anchor(TREE)

    def name_in(self, error: BaseException) -> None:
        """Put the staging path a user knows into `error`'s message, in place of the
        descriptor path the download was given (`prepare`)."""
        if self._held is not None:
            anchor, known = str(self._held.anchor(TREE)), str(self.tree)
            error.args = tuple(a.replace(anchor, known) if isinstance(a, str) else a for a in error.args)

    def _check_held(self) -> None:
        """Raise UnsafeVolumeError if the staging folder or tree this run downloaded into
        is no longer at its name: moving in would take whatever is there now."""
        state = self.volume.existing_state()
        if self._held is None or state is None:
            return
        if not state.same(STAGING, self._held) or self._held.identity(TREE) != self._tree:
            raise UnsafeVolumeError(
                f"{self.tree} was moved or replaced while caretaker restored into it (not by "
                "caretaker: the app, or whoever else can write the volume, did); nothing was moved in"
            )

    def commit(
        self,
        *,
        kind: JournalKind,
        source: Path | None,
        aside: Path,
        set_aside: Sequence[str],
        snapshot: SnapshotInfo | None = None,
    ) -> Journal:
        """Decide a move: write the journal durably and return it (apply it next). `source`
        None: nothing to move in. The download's tree is listed, and the journal written,
        through this run's descriptor of the staging folder: the journal stays with its tree
        wherever the app moves them.

        Raise UnsafeVolumeError if `source` is not there: listing nothing would decide a move
        that sets everything aside and moves nothing in.
        """
        self._check_held()
        journal = Journal(
            kind=kind,
            source=journal_folder(self.relative(source or self.tree)),
            aside=journal_folder(self.relative(aside)),
            set_aside=tuple(set_aside),
            move_in=tuple(self._listing(source)) if source else (),
            snapshot=snapshot,
        )
        with self._staging() as staging:
            staging.sync_filesystem()
            staging.replace(JOURNAL, json.dumps(journal.to_json()).encode(), temp=JOURNAL_TEMP)
        return journal

    def _staging(self) -> contextlib.AbstractContextManager[Folder]:
        """The staging folder: this run's download's, else the one at its name (made if missing)."""
        return contextlib.nullcontext(self._held) if self._held else self.volume.folder(STAGING)

    def _listing(self, source: Path) -> list[str]:
        if self._held is not None and source == self.tree:
            folder: Folder | None = self._held.open_if_present(TREE)
        else:
            folder = self.volume.existing(self.relative(source))
        if folder is None:
            raise UnsafeVolumeError(
                f"{source} vanished before caretaker moved it in (not by caretaker: the app, or "
                "whoever else can write the volume, did); nothing was moved"
            )
        with folder:
            return [name for name in folder.names() if name not in IGNORED]

    def apply(self, journal: Journal) -> None:
        """Replay a journal to its end; safe to call again after a kill at any point."""
        self._check_held()
        with contextlib.ExitStack() as held:
            aside = held.enter_context(self.volume.folder(journal.aside))
            source = self.volume.existing(journal.source)
            if source is not None:
                held.enter_context(source)
            elif journal.move_in:
                # The journal lives in staging and its source goes only after it: the app
                # moved it. Going on would report entries moved in that never were.
                raise UnsafeVolumeError(
                    f"{self.state / journal.source} vanished while caretaker moved it in (not by "
                    "caretaker: the app, or whoever else can write the volume, did)"
                )
            self._move(journal, source, aside)
        staging = self.volume.existing(STAGING)
        if staging is not None:
            with staging:
                staging.unlink(JOURNAL)
                staging.fsync()
        self.clean()
        if journal.kind == "rollback" and journal.source.startswith(f"{QUARANTINE}/"):
            with contextlib.suppress(OSError):
                self._remove_quarantine(journal.source)  # emptied: the data came back from it

    def _move(self, journal: Journal, source: Folder | None, aside: Folder) -> None:
        root = self.volume.root
        moving = set(journal.move_in)
        for name in journal.set_aside:
            # A name that is also moved in and already gone from the source is the new
            # entry: it was set aside before, and must stay.
            if name in moving and (source is None or source.lstat(name) is None):
                continue
            if root.lstat(name) is None:
                continue
            try:
                root.rename(name, aside)
            except FileExistsError:  # set aside before a kill, and since put back by the app
                if name not in moving:
                    continue
                # never so in a journal caretaker replays: a name taken there
                raise UnsafeVolumeError(
                    f"{self.state / journal.aside / name} is in the way of setting {self.target / name} "
                    "aside (not by caretaker: the app, or whoever else can write the volume, put it "
                    "there or moved the folders); both left as they are"
                ) from None
        for name in journal.move_in:
            if source is None or source.lstat(name) is None:
                continue
            try:
                source.rename(name, root)
            except FileExistsError:
                raise LocalIOError(
                    f"refusing to overwrite {self.target / name}: it appeared during the restore; "
                    f"the move is kept in {self.journal_path}: move that entry out of the way "
                    "and the next run finishes it"
                ) from None
        root.fsync()
        aside.fsync()

    def _remove_quarantine(self, relative: str) -> None:
        quarantine = self.volume.existing(QUARANTINE)
        if quarantine is not None:
            with quarantine:
                quarantine.rmdir(relative.partition("/")[2])
