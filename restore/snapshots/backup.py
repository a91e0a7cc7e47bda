"""One backup run: walk the volume, compare with the previous snapshot, store what changed.

Reading, hashing and compressing overlap: the walk reads files on this thread while a pool
hashes and compresses batches of chunks (both release the GIL), and results are consumed
strictly in walk order so the manifest and packs come out deterministic. At most
`_WINDOW` bytes are in flight, whatever the size of the volume or of one file.
"""

from __future__ import annotations

import collections
import errno
import os
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import structlog
import zstandard

from restore.errors import IntegrityError, LocalIOError, RefusedError
from restore.excludes import Excludes
from restore.model import BackupOptions, BackupStats, Progress
from restore.snapshots.format import CHUNK_SIZE, blob_id
from restore.snapshots.manifest import (
    DIR,
    FILE,
    MAX_CHUNKS_PER_FILE,
    SYMLINK,
    Entry,
    ManifestWriter,
    sort_key,
)
from restore.snapshots.packer import Packer
from restore.snapshots.scan import Scanned, scan

_BATCH = 1 << 20
_BATCH_ITEMS = 256
_WINDOW = 12 << 20
# Entries waiting for their batch: bounded too, or a volume of tiny files would queue
# hundreds of thousands of them behind one window of bytes.
_QUEUE_ITEMS = 4096
_RETRIES_WHEN_CHANGING = 2
# A file modified this close to the previous snapshot's start may have changed again in
# the same timestamp tick after it was read: never trust its metadata ("racy git").
_RACY_NS = 2_000_000_000


class _Batch:
    def __init__(self) -> None:
        self.items: list[tuple[list[bytes], bytes]] = []
        self.size = 0
        self.future: Future[list[tuple[bytes, bytes | None]]] | None = None


class _Slot:
    """A manifest entry waiting for its chunk ids, or an unchanged one with its old line."""

    def __init__(self, entry: Entry, line: bytes | None = None) -> None:
        self.entry = entry
        self.line = line
        self.chunks: list[bytes] = list(entry.chunks)

    def write_to(self, writer: ManifestWriter) -> None:
        if self.line is not None:
            writer.add_line(self.entry.path, self.line)
        else:
            writer.add(self.entry._replace(chunks=tuple(self.chunks)))


class _Compressors(threading.local):
    def __init__(self, level: int) -> None:
        self.compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)


class ChunkPipeline:
    """Hashes and compresses chunks on a pool; delivers them to packs in submission order."""

    def __init__(self, packer: Packer, pool: ThreadPoolExecutor, level: int, stats: BackupStats) -> None:
        self._packer = packer
        self._pool = pool
        self._local = _Compressors(level)
        self._stats = stats
        self._queue: collections.deque[_Batch | _Slot] = collections.deque()
        self._open: _Batch | None = None
        self._in_flight = 0
        self.ready: list[_Slot] = []

    def _work(self, items: list[bytes]) -> list[tuple[bytes, bytes | None]]:
        compress = self._local.compressor.compress
        results: list[tuple[bytes, bytes | None]] = []
        for data in items:
            digest = blob_id(data)
            results.append((digest, None if self._packer.knows(digest) else compress(data)))
        return results

    def knows(self, blob: bytes) -> bool:
        """True if the repository or this run already stores `blob`."""
        return self._packer.knows(blob)

    def add_chunk(self, target: list[bytes], data: bytes) -> None:
        if self._open is None:
            self._open = _Batch()
            self._queue.append(self._open)
        self._open.items.append((target, data))
        self._open.size += len(data)
        self._in_flight += len(data)
        if self._open.size >= _BATCH or len(self._open.items) >= _BATCH_ITEMS:
            self._submit(self._open)
            self._open = None
        self._drain(_WINDOW)

    def add_entry(self, slot: _Slot) -> None:
        if not self._queue:  # nothing in flight ahead of it: ready at once
            self.ready.append(slot)
            return
        self._queue.append(slot)
        self._drain(_WINDOW)

    def _submit(self, batch: _Batch) -> None:
        batch.future = self._pool.submit(self._work, [data for _, data in batch.items])

    def _drain(self, limit: int) -> None:
        while self._queue and (
            self._in_flight > limit or len(self._queue) > _QUEUE_ITEMS or isinstance(self._queue[0], _Slot)
        ):
            head = self._queue.popleft()
            if isinstance(head, _Slot):
                self.ready.append(head)
                continue
            if head.future is None:
                self._submit(head)
                if head is self._open:
                    self._open = None
            assert head.future is not None  # noqa: S101 - submitted just above
            for (target, data), (digest, frame) in zip(head.items, head.future.result(), strict=True):
                if frame is not None and self._packer.add(digest, frame, len(data)):
                    self._stats.bytes_stored += len(frame)
                target.append(digest)
            self._in_flight -= head.size

    def finish(self) -> None:
        self._drain(-1)


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
        self._racy_before = int(previous_started.timestamp() * 1e9) - _RACY_NS if previous_started else 0
        self._log = structlog.get_logger()
        self._parent: tuple[Entry, bytes] | None = None
        self._parent_key = ""

    def run(self, source: Path) -> None:
        excludes = Excludes(self._options.excludes)
        for scanned in scan(source, excludes, self._on_special):
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
            self._pipeline.add_entry(_slot(entry, self._parent_of(entry.path)))
        elif stat.S_ISLNK(mode):
            self.stats.symlinks += 1
            target = self._readlink(scanned.full)
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
            self._pipeline.add_entry(_slot(entry, self._parent_of(entry.path)))
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

    def _readlink(self, full: str) -> str:
        try:
            return os.readlink(full)
        except OSError as error:
            raise LocalIOError(f"cannot read symlink {full}: {error.strerror}") from error

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
            self._pipeline.add_entry(_slot(kept, found))
            self._progress.advance(files=1, bytes=entry.size)
            return
        slot = self._read_file(scanned, entry)
        if slot is None:
            self._log.info("backup.file_vanished", path=scanned.path)
            return
        if parent is not None and parent.kind == FILE:
            self.stats.files_changed += 1
        else:
            self.stats.files_new += 1
        self._pipeline.add_entry(slot)

    def _read_file(self, scanned: Scanned, entry: Entry) -> _Slot | None:
        for attempt in range(_RETRIES_WHEN_CHANGING + 1):
            read = self._read_once(scanned.full, entry)
            if read is None:
                return None
            slot, stable = read
            if stable:
                return slot
            self._log.info("backup.file_changing", path=scanned.path, attempt=attempt + 1)
        self.stats.changed_during_read += 1
        self._log.warning(
            "backup.file_changed_during_read",
            path=scanned.path,
            detail="stored as read, marked unstable in the snapshot",
        )
        slot.entry = slot.entry._replace(unstable=True)
        return slot

    def _read_once(self, full: str, entry: Entry) -> tuple[_Slot, bool] | None:
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:  # replaced by a symlink since the walk saw it
                return None
            raise LocalIOError(f"cannot read {full}: {error.strerror}") from error
        try:
            before = os.fstat(fd)
            slot = _Slot(
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
            total = self._read_chunks(fd, slot, full)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        stable = total == before.st_size and (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
            before.st_size,
            before.st_mtime_ns,
            before.st_ctime_ns,
        )
        slot.entry = slot.entry._replace(size=total)
        return slot, stable

    def _read_chunks(self, fd: int, slot: _Slot, full: str) -> int:
        total = 0
        count = 0
        while True:
            try:
                data = _read_full(fd, CHUNK_SIZE)
            except OSError as error:
                raise LocalIOError(f"cannot read {full}: {error.strerror}") from error
            if not data:
                return total
            count += 1
            if count > MAX_CHUNKS_PER_FILE:
                raise RefusedError(f"{full} is larger than the {MAX_CHUNKS_PER_FILE} MiB a file may have")
            total += len(data)
            self.stats.bytes_read += len(data)
            self._pipeline.add_chunk(slot.chunks, data)
            self._progress.advance(bytes=len(data))
            if len(data) < CHUNK_SIZE:
                # The end of the file as this read saw it. Whatever was appended since is
                # noticed by the size check and read on the next attempt; reading on would put
                # a short chunk mid-file and more chunks than the size allows.
                return total


def _slot(entry: Entry, previous: tuple[Entry, bytes] | None) -> _Slot:
    """A slot for an entry that needs no reading; identical to the previous snapshot's
    entry, it reuses that entry's line instead of encoding it again."""
    return _Slot(entry, previous[1] if previous and previous[0] == entry else None)


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
