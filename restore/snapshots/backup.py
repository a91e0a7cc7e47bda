"""One backup run: walk the volume, compare with the previous snapshot, store what changed.

Reading, hashing and compressing overlap: the walk reads files on this thread while a pool
hashes and compresses batches of chunks (`chunks.ChunkPipeline`; both release the GIL).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import structlog

from restore.errors import IntegrityError, LocalIOError, RefusedError
from restore.excludes import Excludes
from restore.model import BackupOptions, BackupStats, Progress, SnapshotInfo
from restore.nodes import sort_key
from restore.reads import RACY_NS, Unreadable, read_link, read_scanned, report, vanished
from restore.scan import Scanned, scan
from restore.snapshots.chunks import ChunkPipeline, Slot, reused_slot
from restore.snapshots.format import CHUNK_SIZE
from restore.snapshots.manifest import (
    DIR,
    FILE,
    MAX_CHUNKS_PER_FILE,
    SYMLINK,
    Entry,
    ManifestWriter,
)


class BackupRun:
    """Turns a data folder into manifest entries, storing new content on the way."""

    def __init__(
        self,
        *,
        pipeline: ChunkPipeline,
        stats: BackupStats,
        writer: ManifestWriter,
        options: BackupOptions,
        progress: Progress,
        previous: Iterator[tuple[Entry, bytes]],
        previous_started: datetime | None,
    ) -> None:
        self.stats = stats
        self._pipeline = pipeline
        self._writer = writer
        self._options = options
        self._progress = progress
        self._previous = previous
        self._racy_before = int(previous_started.timestamp() * 1e9) - RACY_NS if previous_started else 0
        self._log = structlog.get_logger()
        self._parent: tuple[Entry, bytes] | None = None
        self._parent_key = ""

    def run(self, source: Path) -> None:
        excludes = Excludes(self._options.excludes)
        for scanned in scan(source, excludes, self._on_special, vanished):
            self._handle(scanned)
            self._flush_entries()
        self._pipeline.finish()
        self._flush_entries()

    def _flush_entries(self) -> None:
        for slot in self._pipeline.ready:
            slot.write_to(self._writer)
        self._pipeline.ready.clear()

    def _on_special(self, path: str, kind: str) -> None:
        self.stats.skipped_special += 1
        self._log.warning("backup.skipped_special", path=path, type=kind)

    def _parent_of(self, path: str) -> tuple[Entry, bytes] | None:
        """The previous snapshot's entry (and line) for `path`: one step of the merge."""
        key = sort_key(path)
        while self._parent is None or self._parent_key < key:
            nxt = next(self._previous, None)
            if nxt is None:
                self._parent = None
                return None
            self._parent = nxt
            self._parent_key = sort_key(nxt[0].path)
        return self._parent if self._parent_key == key else None

    def _handle(self, scanned: Scanned) -> None:
        info = scanned.stat
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            self.stats.dirs += 1
            entry = Entry(scanned.path, DIR, stat.S_IMODE(mode), info.st_uid, info.st_gid, info.st_mtime_ns)
            self._pipeline.add_entry(reused_slot(entry, self._parent_of(entry.path)))
        elif stat.S_ISLNK(mode):
            target = read_link(scanned)
            if target is None:
                vanished(scanned.path)
                return
            self.stats.symlinks += 1
            entry = Entry(
                scanned.path,
                SYMLINK,
                stat.S_IMODE(mode),
                info.st_uid,
                info.st_gid,
                info.st_mtime_ns,
                size=len(target),
                target=target,
            )
            self._pipeline.add_entry(reused_slot(entry, self._parent_of(entry.path)))
        else:
            entry = Entry(
                scanned.path,
                FILE,
                stat.S_IMODE(mode),
                info.st_uid,
                info.st_gid,
                info.st_mtime_ns,
                size=info.st_size,
                ino=info.st_ino,
                ctime_ns=info.st_ctime_ns,
            )
            self._handle_file(scanned, entry)

    def _unchanged(self, entry: Entry, parent: Entry) -> bool:
        return (
            parent.kind == FILE
            and not parent.unstable
            and (parent.size, parent.mtime_ns, parent.ino, parent.ctime_ns)
            == (entry.size, entry.mtime_ns, entry.ino, entry.ctime_ns)
            and parent.mtime_ns < self._racy_before
            and all(map(self._pipeline.knows, parent.chunks))
        )

    def _handle_file(self, scanned: Scanned, entry: Entry) -> None:
        found = self._parent_of(scanned.path)
        parent = found[0] if found else None
        self.stats.bytes_total += entry.size
        if found and self._unchanged(entry, found[0]):
            self.stats.files_unchanged += 1
            kept = entry._replace(chunks=found[0].chunks)
            self._pipeline.add_entry(reused_slot(kept, found))
            self._progress.advance(files=1, bytes=entry.size)
            return
        slot = self._read_file(scanned, entry)
        if slot is None:
            return
        if parent is not None and parent.kind == FILE:
            self.stats.files_changed += 1
        else:
            self.stats.files_new += 1
        self._pipeline.add_entry(slot)

    def _read_file(self, scanned: Scanned, entry: Entry) -> Slot | None:
        def read_once(fd: int, before: os.stat_result) -> tuple[Slot, int]:
            return self._read_once(fd, before, entry, scanned)

        read = read_scanned(scanned, read_once)
        if report(read, scanned.path, kept="stored as read, marked unstable in the snapshot"):
            self.stats.changed_during_read += 1
        if read is None or isinstance(read, Unreadable):
            return None
        if not read.stable:
            read.value.entry = read.value.entry._replace(unstable=True)
        return read.value

    def _read_once(self, fd: int, before: os.stat_result, entry: Entry, scanned: Scanned) -> tuple[Slot, int]:
        slot = Slot(
            entry._replace(
                size=before.st_size,
                mtime_ns=before.st_mtime_ns,
                ino=before.st_ino,
                ctime_ns=before.st_ctime_ns,
                mode=stat.S_IMODE(before.st_mode),
                uid=before.st_uid,
                gid=before.st_gid,
            )
        )
        total = self._read_chunks(fd, slot, scanned)
        slot.entry = slot.entry._replace(size=total)
        return slot, total

    def _read_chunks(self, fd: int, slot: Slot, scanned: Scanned) -> int:
        total = 0
        count = 0
        while True:
            try:
                data = _read_full(fd, CHUNK_SIZE)
            except OSError as error:
                raise LocalIOError(f"cannot read {scanned.where}: {error.strerror}") from error
            if not data:
                return total
            count += 1
            if count > MAX_CHUNKS_PER_FILE:
                raise RefusedError(
                    f"{scanned.where} is larger than the {MAX_CHUNKS_PER_FILE} MiB a file may have"
                )
            total += len(data)
            self.stats.bytes_read += len(data)
            self._pipeline.add_chunk(slot.chunks, data)
            self._progress.advance(bytes=len(data))
            if len(data) < CHUNK_SIZE:
                # The end of the file as this read saw it. Whatever was appended since is
                # noticed by the size check and read on the next attempt; reading on would put
                # a short chunk mid-file and more chunks than the size allows.
                return total


def _read_full(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining:
        data = os.read(fd, remaining)
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def tolerant(entries: Iterator[tuple[Entry, bytes]]) -> Iterator[tuple[Entry, bytes]]:
    """The previous manifest, or as much of it as is readable: a damaged previous snapshot
    only costs re-reading files, it must never stop new backups."""
    try:
        yield from entries
    except IntegrityError as error:
        structlog.get_logger().warning("backup.previous_unreadable", error=str(error))


def refuse_empty(stats: BackupStats, previous: SnapshotInfo | None, allow: bool) -> None:
    """Raise RefusedError for an empty folder over a snapshot that was not empty, unless
    `allow` (--allow-empty)."""
    if stats.files == 0 and stats.dirs == 0 and previous is not None and not previous.empty and not allow:
        raise RefusedError(
            f"refusing to record an empty data folder over snapshot {previous.id} "
            f"({previous.files} files): the volume looks lost, not emptied; "
            "pass --allow-empty if it is intended"
        )
