"""File contents into git without git ever opening a file of the volume.

`git update-index --add` with a work tree opens each file by its path: it follows a symlink
in any folder of that path (it checks for one first, then opens: a race) and blocks on a
FIFO. The app, which shares the volume, could swap a folder for a link to the pod's
service-account token between that check and the open. So git is given no path of the
volume: caretaker's own walk opens each file (`restore.scan`, `restore.reads`: through folder
descriptors, never through a symlink, never blocking, only the very file it looked at) and
streams its bytes into `git fast-import`, which stores them as blobs in a pack, without
delta search (the push makes deltas where they pay); its marks give each blob's id.

A stat cache (size, mtime, ctime, inode and blob id of each file of the previous backup in
this pod) spares reading unchanged files, as git's index did. It is used only if its tree
is the newest snapshot's (a push that failed, or another writer, leaves it unused), and
never for a file modified within 2 s of the walk that wrote it (`restore.reads.RACY_NS`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

from restore.model import Progress
from restore.reads import RACY_NS, Unreadable, read_scanned, report
from restore.scan import Scanned

_WHOLE = 8 << 20  # files up to this size are read whole, then sent
_BLOCK = 1 << 20
_CACHE_VERSION = "caretaker-walk-cache 1"
FAST_IMPORT = ("fast-import", "--quiet", "--done", "--big-file-threshold=1")


class Known(NamedTuple):
    """A file as the previous backup read it."""

    sha: str
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @classmethod
    def of(cls, sha: str, info: os.stat_result) -> Known:
        return cls(sha, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


class StatCache:
    """The previous backup's files, by path: what may be trusted without reading it."""

    def __init__(self, known: dict[str, Known], trusted_before_ns: int) -> None:
        self.known = known
        self._before = trusted_before_ns

    @classmethod
    def load(cls, path: Path, tree: str) -> StatCache:
        """The cache at `path` if it was written for `tree`; empty otherwise (also if it
        is missing or unreadable: it only saves reading)."""
        try:
            header, _, body = path.read_bytes().partition(b"\n")
            version, written_for, started, count = header.decode("ascii").rsplit(" ", 3)
            known = dict(_parse(body))
            if (version, written_for, int(count)) != (_CACHE_VERSION, tree, len(known)):
                return cls({}, 0)
            return cls(known, int(started) - RACY_NS)
        except (OSError, ValueError):
            return cls({}, 0)

    def lookup(self, path: str, info: os.stat_result) -> str | None:
        """The blob id of `path` if it is unchanged since it was read, else None."""
        known = self.known.get(path)
        if known is None or known != Known.of(known.sha, info) or info.st_mtime_ns >= self._before:
            return None
        return known.sha

    @staticmethod
    def save(path: Path, tree: str, started_ns: int, known: dict[str, Known]) -> None:
        """Write the cache for `tree` (replacing the old one in one rename)."""
        temp = path.with_name(path.name + ".tmp")
        with temp.open("wb") as handle:
            handle.write(f"{_CACHE_VERSION} {tree} {started_ns} {len(known)}\n".encode("ascii"))
            for name, item in known.items():
                fields = f"{item.sha} {item.size} {item.mtime_ns} {item.ctime_ns} {item.ino} "
                handle.write(fields.encode("ascii") + os.fsencode(name) + b"\0")
        temp.replace(path)


def _parse(body: bytes) -> Iterator[tuple[str, Known]]:
    """The records, each ended by NUL. Raise ValueError if one is cut short or malformed."""
    *records, rest = body.split(b"\0")
    if rest:
        raise ValueError("cut short")
    for record in records:
        sha, size, mtime, ctime, ino, name = record.split(b" ", 5)
        yield os.fsdecode(name), Known(sha.decode("ascii"), int(size), int(mtime), int(ctime), int(ino))


class Sent(NamedTuple):
    """A file's blob (its id, or its mark), the `fstat` that describes its bytes, and
    whether they were read unchanged (else stored as read: never trusted by the cache)."""

    blob: str | int
    info: os.stat_result
    stable: bool


def git_mode(info: os.stat_result) -> str:
    """The mode git records for a regular file: executable by its owner or not."""
    return "100755" if info.st_mode & stat.S_IXUSR else "100644"


class Blobs:
    """Blobs streamed into one running `git fast-import` (see FAST_IMPORT); a blob is named
    by its mark (an int) until git is done, or by its id when the cache knew it."""

    def __init__(self, stream: IO[bytes], cache: StatCache, progress: Progress) -> None:
        self._stream = stream
        self._cache = cache
        self._progress = progress
        self._marks = 0
        self.bytes_read = 0
        self.changed_during_read = 0

    def file(self, scanned: Scanned) -> Sent | None:
        """The file's blob, known or sent now; None if it was not stored (gone, or never
        the file the walk saw: logged by `restore.reads`)."""
        known = self._cache.lookup(scanned.path, scanned.stat)
        if known is not None:
            self._progress.advance(files=1, bytes=scanned.stat.st_size)
            return Sent(known, scanned.stat, stable=True)
        read = read_scanned(scanned, self._send)
        if report(read, scanned.path, kept="stored as read"):
            self.changed_during_read += 1
        if read is None or isinstance(read, Unreadable):
            return None
        self._progress.advance(files=1)
        return Sent(read.value, read.before, read.stable)

    def data(self, data: bytes) -> int:
        """Send `data` (a symlink's target, `.caretaker-meta`) as a blob; return its mark."""
        mark = self._header(len(data))
        self._stream.write(data)
        self._stream.write(b"\n")
        return mark

    def done(self) -> None:
        self._stream.write(b"done\n")

    def _header(self, size: int) -> int:
        self._marks += 1
        self._stream.write(b"blob\nmark :%d\ndata %d\n" % (self._marks, size))
        return self._marks

    def _send(self, fd: int, before: os.stat_result) -> tuple[int, int]:
        """Send the open file as a blob of the size `before` says; return (mark, bytes read)."""
        size = before.st_size
        if size <= _WHOLE:
            data = _read(fd, size)
            self._count(len(data))
            return self.data(data), len(data)
        mark = self._header(size)
        sent = 0
        while sent < size and (block := _read(fd, min(_BLOCK, size - sent))):
            self._stream.write(block)
            sent += len(block)
            self._count(len(block))
        # Shorter than its size said: it shrank while read (so it is read again), but git
        # was promised `size` bytes. This blob is then unused, unless each attempt shrank.
        for offset in range(sent, size, _BLOCK):
            self._stream.write(bytes(min(_BLOCK, size - offset)))
        self._stream.write(b"\n")
        return mark, sent

    def _count(self, read: int) -> None:
        self.bytes_read += read
        self._progress.advance(bytes=read)


def _read(fd: int, size: int) -> bytes:
    """Up to `size` bytes from `fd`: fewer only at its end."""
    parts = []
    while size > 0 and (part := os.read(fd, size)):
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def read_marks(path: Path) -> dict[int, str]:
    """`--export-marks` output: mark -> blob id."""
    marks = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text("ascii").splitlines():
            mark, sha = line.split()
            marks[int(mark.removeprefix(":"))] = sha
    return marks
