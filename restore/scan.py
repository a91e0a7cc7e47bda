"""Walk a data folder in manifest order through descriptors, never following a symlink.

The volume is shared with the app, which may swap a folder for a symlink (to the pod's
service-account token, say) or a file for a FIFO while a backup walks it. A path is resolved
anew at every use, so the walk resolves none below the root: the root is opened once by the
path the operator gave; every folder below it is opened relative to its parent's descriptor
with `O_DIRECTORY | O_NOFOLLOW`, every entry looked at with `fstatat` without following it,
and a file is read through `restore.reads`, which opens it relative to the folder holding
it. Whatever is renamed or swapped meanwhile, each name is resolved inside a
folder of the volume, one component at a time, and no link is followed.

Descriptors stay few however deep the tree: besides the root, only the `_OPEN_LEVELS`
deepest folders of the current path are open. A shallower one is closed as the walk goes
deeper and opened again on the way back up, from the root down, each folder on the way
checked to be the very folder (device, inode) it was; one that is not (renamed or replaced
meanwhile) is left out of this walk with what remains of it.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from restore.errors import LocalIOError
from restore.excludes import Excludes
from restore.safefs import DIR_FLAGS, kind_of

_OPEN_LEVELS = 16


class Scanned(NamedTuple):
    path: str  # relative, `/`-separated
    folder: int  # descriptor of the folder holding it: valid until the walk goes on
    name: str
    stat: os.stat_result
    root: str  # the data folder, for messages

    @property
    def where(self) -> str:
        """The entry's path for a message (never opened: it may lead elsewhere by now)."""
        return f"{self.root}/{self.path}"


@dataclasses.dataclass(slots=True)
class _Level:
    path: str
    name: str
    identity: tuple[int, int]
    names: list[str]
    fd: int
    position: int = 0


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


class _Levels:
    """The folders from the root to where the walk is: the root and a suffix of them open."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.stack: list[_Level] = []
        self._lo = 1  # stack[1:_lo] are closed, stack[_lo:] open

    def where(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    def push(self, level: _Level) -> None:
        level.names = self._listing(level)
        self.stack.append(level)
        while len(self.stack) - self._lo > _OPEN_LEVELS:
            self._close(self.stack[self._lo])
            self._lo += 1

    def pop(self) -> None:
        self._close(self.stack.pop())
        self._lo = max(1, min(self._lo, len(self.stack)))

    def close(self) -> None:
        for level in self.stack:
            self._close(level)

    def descriptor(self) -> int | str:
        """The deepest folder's descriptor, opened again if need be; or, if a folder on the
        way is not the one walked any more, its path (it and what is below it were left)."""
        top = self.stack[-1]
        if top.fd >= 0:
            return top.fd
        for index in range(1, len(self.stack)):  # all closed: the open ones end with the top
            level, parent = self.stack[index], self.stack[index - 1]
            try:
                level.fd = os.open(level.name, DIR_FLAGS, dir_fd=parent.fd)
            except OSError:
                level.fd = -1
            if level.fd < 0 or _identity(os.fstat(level.fd)) != level.identity:
                while len(self.stack) > index:
                    self.pop()
                self._settle()
                return level.path
            if index > _OPEN_LEVELS:
                self._close(self.stack[index - _OPEN_LEVELS])
        self._settle()
        return top.fd

    def _settle(self) -> None:
        self._lo = len(self.stack)
        while self._lo > 1 and self.stack[self._lo - 1].fd >= 0:
            self._lo -= 1

    def _listing(self, level: _Level) -> list[str]:
        try:
            return sorted(os.listdir(level.fd))
        except OSError as error:
            os.close(level.fd)
            raise LocalIOError(f"cannot list {self.where(level.path)}: {error.strerror}") from error

    @staticmethod
    def _close(level: _Level) -> None:
        if level.fd >= 0:
            os.close(level.fd)
            level.fd = -1


def scan(
    root: Path,
    excludes: Excludes,
    on_special: Callable[[str, str], None],
    on_vanished: Callable[[str], None],
) -> Iterator[Scanned]:
    """Yield every folder, file and symlink under `root`, depth-first, names sorted.

    Sockets, FIFOs and devices are reported to `on_special(path, kind)` and skipped; a folder
    that is no longer a folder when opened (or no longer the same folder when opened again)
    to `on_vanished(path)`, and left out. A folder's `stat` is its descriptor's: what was
    listed. Raise LocalIOError if the root or a folder cannot be read.
    """
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError as error:
        raise LocalIOError(f"data folder {root} is not a directory") from error
    except OSError as error:
        raise LocalIOError(f"cannot read data folder {root}: {error.strerror}") from error
    levels = _Levels(str(root))
    try:
        levels.push(_Level("", "", _identity(os.fstat(fd)), [], fd))
        yield from _walk(levels, excludes, on_special, on_vanished)
    finally:
        levels.close()


def _walk(
    levels: _Levels,
    excludes: Excludes,
    on_special: Callable[[str, str], None],
    on_vanished: Callable[[str], None],
) -> Iterator[Scanned]:
    while levels.stack:
        top = levels.stack[-1]
        if top.position == len(top.names):
            levels.pop()
            continue
        name = top.names[top.position]
        top.position += 1
        path = f"{top.path}/{name}" if top.path else name
        if excludes.excluded(path):
            continue
        folder = levels.descriptor()
        if isinstance(folder, str):
            on_vanished(folder)
            continue
        try:
            info = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we walked: it simply is not in this snapshot
        except OSError as error:
            raise LocalIOError(f"cannot stat {levels.where(path)}: {error.strerror}") from error
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            child = _open_folder(folder, name, levels.where(path))
            if child is None:
                on_vanished(path)
                continue
            info = os.fstat(child)
            # Pushed before the yield, so closing the walk closes it; the push closes only
            # levels above the parent (_OPEN_LEVELS >= 2), so `folder` stays valid.
            levels.push(_Level(path, name, _identity(info), [], child))
            yield Scanned(path, folder, name, info, levels.root)
        elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            yield Scanned(path, folder, name, info, levels.root)
        else:
            on_special(path, kind_of(mode))


def _open_folder(parent: int, name: str, where: str) -> int | None:
    """The folder `name` itself, or None if something else (or nothing) is there now."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise LocalIOError(f"cannot list {where}: {error.strerror}") from error
