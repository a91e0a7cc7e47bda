"""caretaker's state folder on the data volume, `<path>/.caretaker/`, and what may be in it.

```
.caretaker/                  folder
  restore-result.json        file   the last outcome (restore-result.tmp while written)
  staging/                   folder a download and the journal of a decided move
    journal.json             file   (journal.tmp while written)
    tree/  discard/          folders
  quarantine/<UTC time>/     folders the app's data set aside by --force or --check-cmd
```

The app can write the volume, so it can put anything at these names. Every one of them is
reached through a descriptor of the folder above it, without following a symlink
(`restore.safefs`). `Volume.check` runs before a run does anything: a name that holds
something else (a symlink, a FIFO, a file where a folder belongs) stops the run with
`UnsafeVolumeError` (exit 11), naming each such entry, which is left as it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Self

from restore.clock import format_time
from restore.errors import LocalIOError, UnsafeVolumeError
from restore.model import STATE_DIR
from restore.safefs import Folder, wrong_kinds

if TYPE_CHECKING:
    from datetime import datetime

RESULT_FILE = "restore-result.json"
RESULT_TEMP = "restore-result.tmp"
STAGING = "staging"
QUARANTINE = "quarantine"
JOURNAL = "journal.json"
JOURNAL_TEMP = "journal.tmp"
TREE = "tree"
DISCARD = "discard"
IGNORED = frozenset({"lost+found", STATE_DIR})
# What each name caretaker uses must be: a folder (its own layout below) or a file.
Layout = dict[str, "Layout | str"]
LAYOUT: Layout = {
    STATE_DIR: {
        RESULT_FILE: "file",
        RESULT_TEMP: "file",
        STAGING: {JOURNAL: "file", JOURNAL_TEMP: "file"},
        QUARANTINE: {},
    }
}
# The folders a journal may name, relative to `.caretaker/`: nothing else is ever moved.
_JOURNAL_FOLDER = re.compile(r"staging/(tree|discard)|quarantine/[0-9]{8}T[0-9]{6}Z(-[0-9]{1,6})?")


def journal_folder(value: object) -> str:
    """Return `value` if a journal may name it. Raise ValueError otherwise."""
    if not isinstance(value, str) or not _JOURNAL_FOLDER.fullmatch(value):
        raise ValueError(f"bad folder in journal: {value!r}")
    return value


def quarantine_stamp(now: datetime) -> str:
    return format_time(now.replace(microsecond=0)).replace("-", "").replace(":", "")


class Volume:
    """The data folder (`--path`, opened by the path the operator gave) and caretaker's
    state in it, opened through descriptors (see the module docstring)."""

    def __init__(self, root: Folder) -> None:
        self.root = root
        self.path = root.path
        self.state_path = self.path / STATE_DIR
        self._state: Folder | None = None

    @classmethod
    def open(cls, path: Path, *, create: bool) -> Volume:
        """Raise LocalIOError if `path` cannot be opened as a folder (FileNotFoundError if
        it is missing and not `create`)."""
        try:
            return cls(Folder.at(path, create=create))
        except FileNotFoundError:
            raise
        except OSError as error:
            raise LocalIOError(f"cannot open {path}: {error.strerror}") from error

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
        self.root.close()

    def entries(self) -> list[str]:
        """The top-level names that count as data (sorted): not `lost+found`, not ours."""
        try:
            return [name for name in self.root.names() if name not in IGNORED]
        except OSError as error:
            raise LocalIOError(f"cannot list {self.path}: {error.strerror}") from error

    def check(self) -> None:
        """Raise UnsafeVolumeError naming every state entry that is not what caretaker keeps."""
        found: list[tuple[Path, str, str]] = []
        _check(self.root, LAYOUT, found)
        if found:
            raise wrong_kinds(found)

    def state(self) -> Folder:
        """`.caretaker/`, created if missing. Raise UnsafeVolumeError if something else is there."""
        if self._state is None:
            self._state = self.root.make(STATE_DIR)
        return self._state

    def existing_state(self) -> Folder | None:
        """`.caretaker/` if it exists. Raise UnsafeVolumeError if something else is there."""
        if self._state is None:
            self._state = self.root.open_if_present(STATE_DIR)
        return self._state

    def folder(self, relative: str) -> Folder:
        """Open a folder below `.caretaker/` ("staging/tree"), creating what is missing,
        one descriptor at a time. The caller closes it."""
        here = self.state()
        for part in relative.split("/"):
            inner = here.make(part)
            if here is not self._state:
                here.close()
            here = inner
        return here

    def existing(self, relative: str) -> Folder | None:
        """Like `folder`, but None if a part is missing (nothing is created)."""
        here = self.existing_state()
        for part in relative.split("/"):
            if here is None:
                return None
            inner = here.open_if_present(part)
            if here is not self._state:
                here.close()
            here = inner
        return here

    def new_quarantine(self, now: datetime) -> str:
        """Create `quarantine/<time>` for `now` (`<time>-2`, ... if taken) and return it.

        Made here, not named for later: a name only looked up could be one in use by an
        earlier run's quarantine that the app had moved away for that moment, and a move
        into it would then take that run's entries for its own.
        """
        stamp = quarantine_stamp(now)
        with self.folder(QUARANTINE) as quarantine:
            counter, name = 1, stamp
            while (made := quarantine.make_new(name)) is None:
                counter += 1
                name = f"{stamp}-{counter}"
            made.close()
        return f"{QUARANTINE}/{name}"


def _check(folder: Folder, layout: Layout, found: list[tuple[Path, str, str]]) -> None:
    for name, wanted in layout.items():
        kind = folder.kind(name)
        if kind is None:
            continue
        expected = "folder" if isinstance(wanted, dict) else wanted
        if kind != expected:
            found.append((folder.path / name, folder.describe(name), expected))
        elif isinstance(wanted, dict) and wanted:
            try:
                inner = folder.open(name)
            except UnsafeVolumeError:  # swapped since we looked: say so, as for any other
                found.append((folder.path / name, folder.describe(name), expected))
                continue
            with inner:
                _check(inner, wanted, found)
