"""Creating a restored tree through directory descriptors, never through paths.

The folder a restore writes into sits on a volume the app can write too. Were entries
created, chmodded or touched by path, a symlink swapped in at the right moment (a folder
of the tree replaced by a link to `/etc`) would redirect the write outside the volume.
So every folder is opened right after `mkdir`, without following a symlink, and
everything inside it is created relative to that descriptor: files with
`O_CREAT|O_EXCL|O_NOFOLLOW`, metadata set through the file's own descriptor, symlinks'
metadata without following them. A name swapped meanwhile makes the restore fail
(`EEXIST`, `ELOOP`), and a folder moved meanwhile keeps receiving its entries wherever
it now is, inside the volume.

Each file takes one `open`, its `write`s, `fchown` (as root), `fchmod`, `futimens` and
`close`; a folder gets its final owner, mode and mtime when the walk leaves it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Protocol

from restore.diskflush import WRITEBACK_STEP, Writeback
from restore.errors import IntegrityError, LocalIOError
from restore.model import Progress, RestoreStats
from restore.safefs import CREATE_FLAGS, DIR_FLAGS, Folder, write_fully
from restore.snapshots.manifest import DIR, FILE, Entry

# setuid/setgid on a restored file: an executable that runs as its owner (root, when the
# restore ran as root) from data nobody authenticated. Kept only when asked for.
SETID_BITS = stat.S_ISUID | stat.S_ISGID
# Files up to this size are left to the final sync: starting their writeback one by one
# cost more than writing them.
SMALL_FILE = 64 << 10


class Feed(Protocol):
    def next(self) -> bytes:
        """The next piece of content, in the order of the entries' `chunks`."""


def open_target(dest: Path) -> Folder:
    """Open the empty folder a restore writes into. Raise LocalIOError if it is not a real
    folder (a symlink in its place is not followed) or cannot be opened."""
    try:
        return Folder.exact(dest)
    except OSError as error:
        raise LocalIOError(f"cannot open {dest} to restore into: {error.strerror}") from error


def write_error(dest: Path, error: OSError) -> LocalIOError:
    return LocalIOError(f"cannot write into {dest}: {error.strerror} ({error.filename})")


def count(stats: RestoreStats, entry: Entry) -> None:
    if entry.kind == FILE:
        stats.files += 1
        stats.bytes += entry.size
    elif entry.kind == DIR:
        stats.dirs += 1
    else:
        stats.symlinks += 1


class _Folder(NamedTuple):
    entry: Entry
    fd: int


class _Metadata:
    """Sets owners (as root only), modes and mtimes through descriptors."""

    def __init__(self, *, keep_setid: bool) -> None:
        self.as_root = os.geteuid() == 0
        self.file_mode_mask = 0o7777 if keep_setid else 0o7777 & ~SETID_BITS

    def apply(self, fd: int, entry: Entry, mode: int) -> None:
        # Owner first: chown clears setuid/setgid, chmod then sets what is wanted.
        if self.as_root:
            os.fchown(fd, entry.uid, entry.gid)
        os.fchmod(fd, mode)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))

    def file(self, fd: int, entry: Entry) -> None:
        self.apply(fd, entry, entry.mode & self.file_mode_mask)

    def finish_dir(self, folder: _Folder) -> None:
        try:
            self.apply(folder.fd, folder.entry, folder.entry.mode)
        finally:
            os.close(folder.fd)


class TreeWriter:
    """Creates entries below the folder `root` (not closed here), their contents taken from
    `feed`, one piece per chunk.

    Entries come depth first, each folder before its contents (manifest order). Call
    `close()` always, also after an error: it closes the folders still open.
    """

    def __init__(self, root: Folder, feed: Feed, progress: Progress, *, keep_setid: bool) -> None:
        self._root = root.fd
        self._feed = feed
        self._progress = progress
        self._meta = _Metadata(keep_setid=keep_setid)
        self._writeback = Writeback()
        self._open: list[_Folder] = []
        self.stats = RestoreStats()

    def write_all(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.write(entry)
        self.finish()

    def write(self, entry: Entry) -> None:
        parent, _, name = entry.path.rpartition("/")
        while self._open and self._open[-1].entry.path != parent:
            self._meta.finish_dir(self._open.pop())
        if parent and not self._open:
            raise IntegrityError(f"{entry.path!r} comes before (or without) its folder")
        where = self._open[-1].fd if self._open else self._root
        count(self.stats, entry)
        if entry.kind == DIR:
            os.mkdir(name, 0o700, dir_fd=where)
            self._open.append(_Folder(entry, os.open(name, DIR_FLAGS, dir_fd=where)))
        elif entry.kind == FILE:
            self._write_file(where, name, entry)
        else:
            os.symlink(entry.target, name, dir_fd=where)
            if self._meta.as_root:
                os.chown(name, entry.uid, entry.gid, dir_fd=where, follow_symlinks=False)
            os.utime(name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=where, follow_symlinks=False)
            self._progress.advance(files=1)

    def _write_file(self, where: int, name: str, entry: Entry) -> None:
        fd = os.open(name, CREATE_FLAGS, 0o600, dir_fd=where)
        try:
            last = self._write_content(fd, entry)
            self._meta.file(fd, entry)
        finally:
            os.close(fd)
        self._progress.advance(files=1, bytes=last)

    def _write_content(self, fd: int, entry: Entry) -> int:
        """Write the file's chunks; return the size of the last, not reported as progress yet
        (one progress call per small file)."""
        written = handed = last = 0
        for _ in entry.chunks:
            if last:
                self._progress.advance(bytes=last)
            data = self._feed.next()
            write_fully(fd, data)
            written += len(data)
            last = len(data)
            if written - handed >= WRITEBACK_STEP:
                self._writeback.start(fd, handed, written)
                handed = written
        if written != entry.size:
            raise IntegrityError(f"{entry.path}: content is {written} bytes, the manifest says {entry.size}")
        if written > max(handed, SMALL_FILE):
            self._writeback.start(fd, handed, written)
        return last

    def finish(self) -> None:
        """Give the folders still open their metadata (after the last entry)."""
        while self._open:
            self._meta.finish_dir(self._open.pop())

    def close(self) -> None:
        while self._open:
            os.close(self._open.pop().fd)
