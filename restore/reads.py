"""Reading what the walk found: a file through its folder's descriptor, retried while it
changes; a symlink's target. Shared by every backend's backup (and git's restore check).

A file is opened by `safefs.open_seen` relative to the descriptor of the folder the walk
holds open: never through a symlink, never blocking (a FIFO swapped in is seen to be one
and left unread), and only if it is the very file the walk looked at. Anything else found
there — another file after a rename, a FIFO, a link — counts as a change, like a file
written while it is read: the name is looked at and read again.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

import structlog

from restore.errors import LocalIOError
from restore.safefs import ReplacedError, open_seen
from restore.scan import Scanned

T = TypeVar("T")
# A file that changes while it is read is read again this many times.
RETRIES_WHEN_CHANGING = 2
# A file modified this close to the start of the backup that last read it may have changed
# again in the same timestamp tick after it was read: never trust its metadata ("racy git").
RACY_NS = 2_000_000_000
_LOG = structlog.get_logger()


class FileRead(NamedTuple, Generic[T]):
    """One read of a file: what the reader made of it, the `fstat` before, the bytes read,
    and whether the file stayed as it was (same size, mtime and ctime, all of it read)."""

    value: T
    before: os.stat_result
    size: int
    stable: bool


class Unreadable(NamedTuple):
    """Each attempt found something else than the file that was looked at."""

    found: str


def read_scanned(
    scanned: Scanned, read: Callable[[int, os.stat_result], tuple[T, int]]
) -> FileRead[T] | Unreadable | None:
    """Read the file `scanned` names with `read(fd, fstat) -> (value, bytes read)`.

    The file is opened through its folder's descriptor by `open_seen`: never through a
    symlink, never blocking, and only if it is the very file that was looked at. If it
    changed while read, or was replaced by something else (a FIFO, a symlink, another file),
    it is looked at and read again, up to `RETRIES_WHEN_CHANGING` times; each attempt that
    fails so is logged (`backup.file_changing`). Return the first stable read, else the last
    read (not stable), else Unreadable; None if the file is gone. Raise LocalIOError if it
    cannot be looked at or opened (permissions).
    """
    seen = scanned.stat
    last: FileRead[T] | Unreadable | None = None
    for attempt in range(1, RETRIES_WHEN_CHANGING + 2):
        if attempt > 1:
            try:
                seen = os.stat(scanned.name, dir_fd=scanned.folder, follow_symlinks=False)
            except FileNotFoundError:
                return None
            except OSError as error:
                raise LocalIOError(f"cannot stat {scanned.where}: {error.strerror}") from error
        try:
            fd, before = open_seen(scanned.folder, scanned.name, seen)
        except FileNotFoundError:
            return None
        except ReplacedError as error:
            last = last if isinstance(last, FileRead) else Unreadable(error.found)
            _LOG.info(
                "backup.file_changing",
                path=scanned.path,
                attempt=attempt,
                detail=f"replaced by a {error.found}",
            )
            continue
        except OSError as error:
            raise LocalIOError(f"cannot read {scanned.where}: {error.strerror}") from error
        try:
            value, size = read(fd, before)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        last = FileRead(value, before, size, size == before.st_size and _same(before, after))
        if last.stable:
            return last
        _LOG.info("backup.file_changing", path=scanned.path, attempt=attempt, detail="changed while read")
    return last


def _same(before: os.stat_result, after: os.stat_result) -> bool:
    return (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    )


def report(result: FileRead[T] | Unreadable | None, path: str, *, kept: str) -> bool:
    """Log how a read that did not go well ended; return True if it counts as a file
    changed during read (`kept`: what became of a file that never read the same twice)."""
    if result is None:
        vanished(path)
        return False
    if isinstance(result, Unreadable):
        detail = f"not stored: a {result.found} was there instead each time it was opened"
    elif not result.stable:
        detail = kept
    else:
        return False
    _LOG.warning("backup.file_changed_during_read", path=path, detail=detail)
    return True


def vanished(path: str) -> None:
    """Log an entry that was gone (or no longer what it was) when it was to be read."""
    _LOG.info("backup.vanished", path=path)


def read_link(scanned: Scanned) -> str | None:
    """The symlink's target, read through its folder's descriptor; None if the entry is no
    longer a symlink (or gone). Raise LocalIOError if it cannot be read."""
    try:
        return os.readlink(scanned.name, dir_fd=scanned.folder)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.EINVAL):
            return None
        raise LocalIOError(f"cannot read symlink {scanned.where}: {error.strerror}") from error
