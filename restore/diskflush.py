"""Getting restored data onto the disk: started while the restore writes, and waited for
once, before the restore is declared complete."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from restore import libc


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Flush everything written on `path`'s filesystem (syncfs), so a power cut after the
    journal cannot leave it pointing at data still in the page cache."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc.syncfs(fd)
    finally:
        os.close(fd)


_SYNC_FILE_RANGE_WRITE = 2
# How much of one file is written before its writeback is started (and again when the file
# is complete). Small files are left to the final sync: one `syncfs` writes thousands of
# them together, while a call per file cost more than creating it.
WRITEBACK_STEP = 8 << 20


class Writeback:
    """Starts writing a range of a file to disk without waiting for it (Linux
    `sync_file_range`), so the disk works while a restore still decodes and creates files.

    Advisory only: durability comes from the final `sync_filesystem`, which then finds
    little left to write. Where the call does not exist, this does nothing.
    """

    def __init__(self) -> None:
        call = getattr(ctypes.CDLL(None, use_errno=True), "sync_file_range", None)
        if call is not None:
            call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        self._call = call

    def start(self, fd: int, begin: int, end: int) -> None:
        if self._call is not None:
            self._call(fd, begin, end - begin, _SYNC_FILE_RANGE_WRITE)  # a failure is harmless
