"""Hashing, compressing and sealing chunks on a thread pool while the walk reads the next files.

Results are consumed strictly in submission order, so the manifest and the packs come out
deterministic; at most `_WINDOW` bytes (and `_QUEUE_ITEMS` entries) are in flight, whatever
the size of the volume or of one file.
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import zstandard

from restore.model import BackupStats
from restore.snapshots.codec import Codec
from restore.snapshots.format import KIND_DATA
from restore.snapshots.manifest import Entry, ManifestWriter
from restore.snapshots.packer import Packer

_BATCH = 1 << 20
_BATCH_ITEMS = 256
_WINDOW = 12 << 20
# Entries waiting for their batch: bounded too, or a volume of tiny files would queue
# hundreds of thousands of them behind one window of bytes.
_QUEUE_ITEMS = 4096


class _Batch:
    def __init__(self) -> None:
        self.items: list[tuple[list[bytes], bytes]] = []
        self.size = 0
        self.future: Future[list[tuple[bytes, bytes | None]]] | None = None


class Slot:
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
    """Names, compresses and seals chunks on a pool; delivers them to packs in submission order."""

    def __init__(
        self, packer: Packer, pool: ThreadPoolExecutor, level: int, stats: BackupStats, codec: Codec
    ) -> None:
        self._packer = packer
        self._codec = codec
        self._pool = pool
        self._local = _Compressors(level)
        self._stats = stats
        self._queue: collections.deque[_Batch | Slot] = collections.deque()
        self._open: _Batch | None = None
        self._in_flight = 0
        self.ready: list[Slot] = []

    def _work(self, items: list[bytes]) -> list[tuple[bytes, bytes | None]]:
        compress, codec = self._local.compressor.compress, self._codec
        results: list[tuple[bytes, bytes | None]] = []
        for data in items:
            digest = codec.blob_id(data)
            known = self._packer.knows(digest)
            results.append((digest, None if known else codec.seal_blob(compress(data), digest, KIND_DATA)))
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

    def add_entry(self, slot: Slot) -> None:
        if not self._queue:  # nothing in flight ahead of it: ready at once
            self.ready.append(slot)
            return
        self._queue.append(slot)
        self._drain(_WINDOW)

    def _submit(self, batch: _Batch) -> None:
        batch.future = self._pool.submit(self._work, [data for _, data in batch.items])

    def _drain(self, limit: int) -> None:
        while self._queue and (
            self._in_flight > limit or len(self._queue) > _QUEUE_ITEMS or isinstance(self._queue[0], Slot)
        ):
            head = self._queue.popleft()
            if isinstance(head, Slot):
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


def reused_slot(entry: Entry, previous: tuple[Entry, bytes] | None) -> Slot:
    """A slot for an entry that needs no reading; identical to the previous snapshot's
    entry, it reuses that entry's line instead of encoding it again."""
    return Slot(entry, previous[1] if previous and previous[0] == entry else None)
