"""Reading blobs back: one at a time (manifests), or pack by pack with prefetch (restore).

Every blob is opened by the index's codec: authenticated (encrypted repositories),
decompressed and checked against its id before anyone sees a byte of it.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import zstandard

from restore.errors import ObjectNotFoundError
from restore.snapshots.format import BlobDamageError, pack_key
from restore.snapshots.index import BlobIndex, Location
from restore.snapshots.store import ObjectStore

if TYPE_CHECKING:
    from restore.snapshots.codec import Decompressor

# A manifest's pieces read ahead of the one being decoded (pieces hold up to 4 MiB).
_PIECES_AHEAD = 4
_PIECES_AHEAD_BYTES = 8 << 20


class BlobLoader:
    """Fetches single blobs with range reads; for manifests and small lookups."""

    def __init__(self, store: ObjectStore, index: BlobIndex) -> None:
        self._store = store
        self._index = index

    def location(self, blob: bytes) -> Location:
        where = self._index.locate(blob)
        if where is None:
            raise BlobDamageError("not in any indexed pack", blob=blob)
        return where

    def __call__(self, blob: bytes) -> bytes:
        return self.open(blob, self.fetch(blob))

    def fetch(self, blob: bytes) -> bytes:
        """A blob's stored bytes, read from its pack."""
        where = self.location(blob)
        key = pack_key(where.pack)
        try:
            frame = self._store.get_range(key, where.offset, where.length)
        except ObjectNotFoundError as error:
            raise BlobDamageError("pack is missing", blob=blob, pack=key) from error
        if len(frame) != where.length:
            raise BlobDamageError("pack is truncated", blob=blob, pack=key)
        return frame

    def open(self, blob: bytes, frame: bytes, decompressor: Decompressor = None) -> bytes:
        """A blob's verified plain bytes from what `fetch` read."""
        where = self.location(blob)
        return self._index.codec.open_blob(frame, blob, where.kind, pack_key(where.pack), decompressor)

    def in_order(self, blobs: Sequence[bytes]) -> Iterator[bytes]:
        """Each blob's verified plain bytes, in order, the next few read meanwhile.

        For a manifest's pieces: on S3 each is a round trip, and one after another they
        were the longest wait of an incremental backup's start after the key derivation.
        At most _PIECES_AHEAD pieces and _PIECES_AHEAD_BYTES of them are read ahead.
        """
        if len(blobs) < 2:
            yield from map(self, blobs)
            return
        pool = ThreadPoolExecutor(max_workers=_PIECES_AHEAD, thread_name_prefix="piece")
        pending: collections.deque[tuple[int, Future[bytes]]] = collections.deque()
        ahead = 0  # bytes of the pending pieces
        try:
            for blob in blobs:
                pending.append((self._held_length(blob), pool.submit(self, blob)))
                ahead += pending[-1][0]
                while pending and (len(pending) >= _PIECES_AHEAD or ahead >= _PIECES_AHEAD_BYTES):
                    length, done = pending.popleft()
                    ahead -= length
                    yield done.result()
            for _, done in pending:
                yield done.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _held_length(self, blob: bytes) -> int:
        where = self._index.extent(blob)
        return 0 if where is None else where.held


class PackPlan:
    """What a restore will read: how often each pack is needed, in which order first."""

    def __init__(self) -> None:
        self.refs: collections.Counter[int] = collections.Counter()
        self.needed: collections.Counter[int] = collections.Counter()
        self.order: list[int] = []

    def add(self, pack: int, length: int) -> None:
        if pack not in self.refs:
            self.order.append(pack)
        self.refs[pack] += 1
        self.needed[pack] += length


# Whole packs are read in segments of this size, a few at once, so that what a restore reads
# ahead and keeps for the blobs still to decode is a few segments, not several packs of
# 16 MiB or more.
SEGMENT = 8 << 20
Segment = tuple[int, int]  # pack number, segment number in the pack
# Blobs read on their own, requested in shares: each share and the reads of its stored bytes.
Requested = list[tuple[list[bytes], Future[list[bytes]]]]


class PackReader:
    """Serves blobs during a restore, reading mostly-needed packs whole and ahead of time.

    A pack that the restore needs less than half of is read blob by blob with range reads
    instead (old packs after many incremental backups). A pack read whole is read in
    `SEGMENT`s; a blob across two is joined from both. Memory: at most `ahead` segments'
    worth of bytes prefetched plus `cached` segments' worth kept for the blobs still to
    decode. Counted in bytes, not segments: after a history of incremental backups the
    files of a folder come from many small packs, taken in turn, and two kept segments
    meant reading each small pack again for every blob. Thread-safe: `ChunkFeed` decodes
    several blobs at once.
    """

    def __init__(
        self,
        store: ObjectStore,
        index: BlobIndex,
        plan: PackPlan,
        *,
        workers: int,
        ahead: int = 3,
        cached: int = 2,
    ) -> None:
        self._store = store
        self._index = index
        self._plan = plan
        whole = [p for p in plan.order if plan.needed[p] * 2 >= index.pack_sizes[p]]
        self._whole_set = set(whole)
        self._all_whole = len(whole) == len(plan.order)
        self._queue = [(p, n) for p in whole for n in range(_segments(index.pack_sizes[p]))]
        self._single = BlobLoader(store, index)
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
        self._single_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch-blob")
        self._lock = threading.Lock()
        self._futures: dict[Segment, Future[bytes]] = {}
        self._cache: collections.OrderedDict[Segment, bytes] = collections.OrderedDict()
        self._next = 0
        self._ahead_bytes = ahead * SEGMENT
        self._ahead = 0  # bytes of the segments in _futures
        self._cache_bytes = cached * SEGMENT
        self._cached = 0  # bytes in _cache

    def _fetch(self, segment: Segment) -> bytes:
        pack, number = segment
        key = pack_key(self._index.packs[pack])
        start = number * SEGMENT
        # Only what the index says the pack holds: a pack replaced by a huge object must
        # not be read whole into memory.
        length = min(SEGMENT, self._index.pack_sizes[pack] - start)
        try:
            return self._store.get_range(key, start, length)
        except ObjectNotFoundError as error:
            raise BlobDamageError("pack is missing", pack=key) from error

    def _length(self, segment: Segment) -> int:
        pack, number = segment
        return min(SEGMENT, self._index.pack_sizes[pack] - number * SEGMENT)

    def _submit(self, segment: Segment) -> Future[bytes]:
        # Counted as it goes out, not summed at each prefetch: after a long history of
        # small backups thousands of small packs are in flight at once.
        future = self._futures[segment] = self._pool.submit(self._fetch, segment)
        self._ahead += self._length(segment)
        return future

    def _prefetch(self) -> None:
        while self._ahead < self._ahead_bytes and self._next < len(self._queue):
            segment = self._queue[self._next]
            self._next += 1
            if segment not in self._cache and segment not in self._futures:
                self._submit(segment)

    def _segment(self, segment: Segment) -> bytes:
        with self._lock:
            data = self._cache.get(segment)
            if data is not None:
                self._cache.move_to_end(segment)
                return data
            future = self._futures.get(segment)
            if future is None:
                future = self._submit(segment)
            self._prefetch()
        data = future.result()
        with self._lock:
            if self._futures.pop(segment, None) is not None:
                self._ahead -= self._length(segment)
            if segment not in self._cache:
                self._cache[segment] = data
                self._cached += len(data)
            while self._cached > self._cache_bytes and len(self._cache) > 1:
                self._cached -= len(self._cache.popitem(last=False)[1])
        return data

    def _frame(self, pack: int, offset: int, length: int) -> bytes | memoryview:
        """The stored bytes of a blob in a pack read whole (shorter if the pack is)."""
        parts = []
        for number in range(offset // SEGMENT, (offset + length - 1) // SEGMENT + 1):
            start = offset - number * SEGMENT
            parts.append(memoryview(self._segment((pack, number)))[max(start, 0) : start + length])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def queued_length(self, blob: bytes) -> int:
        """What a blob holds in memory between being queued and written (a blob read on
        its own is fetched when queued)."""
        extent = self._index.extent(blob)
        if extent is None:
            raise BlobDamageError("not in any indexed pack", blob=blob)
        return extent.held

    def request(self, batch: list[bytes]) -> Requested:
        """Start reading the blobs of `batch` that are read on their own; `blobs` takes it.

        On S3 each is a round trip: read one after another when decoded, they made a restore
        after a long history wait on the network. So they are requested when a batch is
        queued, a share per worker (a task per blob would cost more than reading a small
        blob from a local file), in a pool of their own (whole packs are not kept waiting).
        """
        if self._all_whole:
            return []
        singles = [blob for blob in batch if not self._in_whole_pack(blob)]
        shares = [singles[i :: self._workers] for i in range(self._workers)]
        return [(share, self._single_pool.submit(self._fetch_all, share)) for share in shares if share]

    def blobs(self, batch: list[bytes], requested: Requested) -> list[bytes]:
        """Return several blobs' verified plain bytes, decoded with one decompressor."""
        decompressor = zstandard.ZstdDecompressor()
        single: dict[bytes, bytes] = {}
        for share, task in requested:
            single.update(zip(share, task.result(), strict=True))
        return [
            self._single.open(blob, single[blob], decompressor)
            if blob in single
            else self.blob(blob, decompressor)
            for blob in batch
        ]

    def _fetch_all(self, blobs: list[bytes]) -> list[bytes]:
        return [self._single.fetch(blob) for blob in blobs]

    def _in_whole_pack(self, blob: bytes) -> bool:
        extent = self._index.extent(blob)
        return extent is not None and extent.pack in self._whole_set

    def blob(self, blob: bytes, decompressor: Decompressor = None) -> bytes:
        """Return a blob's verified plain bytes. Raise IntegrityError if missing or corrupt."""
        where = self._single.location(blob)
        number = self._index.pack_of(blob)
        if number not in self._whole_set:
            return self._single.open(blob, self._single.fetch(blob), decompressor)
        frame = self._frame(number, where.offset, where.length)
        key = pack_key(where.pack)
        if len(frame) != where.length:
            raise BlobDamageError("pack is truncated", blob=blob, pack=key)
        plain = self._index.codec.open_blob(frame, blob, where.kind, key, decompressor)
        with self._lock:
            self._plan.refs[number] -= 1
            if self._plan.refs[number] <= 0:
                for segment in range(_segments(self._index.pack_sizes[number])):
                    self._cached -= len(self._cache.pop((number, segment), b""))
        return plain

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._single_pool.shutdown(wait=True, cancel_futures=True)


def _segments(size: int) -> int:
    return max(1, -(-size // SEGMENT))


# Small blobs travel to the decoding threads in batches: handing each a few hundred
# bytes on its own costs more than decoding it, and decoding them on the writing thread
# would take that thread away from creating files.
_BATCH_BYTES = 1 << 20
_BATCH_ITEMS = 128
# Chunks ahead of the writer, whatever their size: the manifest entries between the two
# (held by the restore's tee) grow with this count, not with bytes.
_AHEAD_ITEMS = 2048


class ChunkFeed:
    """Decodes the chunks a restore will need next, in order, on other threads.

    `chunk_ids` must yield exactly the sequence in which `next()` is called (the restore
    walks a second iterator over the same manifest for it). At most `window` bytes and
    `_AHEAD_ITEMS` decoded chunks wait in memory, plus the batch being handed out.
    """

    def __init__(
        self, reader: PackReader, chunk_ids: Iterator[bytes], *, workers: int, window: int = 12 << 20
    ) -> None:
        self._reader = reader
        self._ids = chunk_ids
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self._pending: collections.deque[tuple[Future[list[bytes]], int]] = collections.deque()
        self._ready: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._queued_items = 0
        self._window = window

    def next(self) -> bytes:
        self._fill()
        if not self._ready:
            future, size = self._pending.popleft()
            self._ready.extend(future.result())
            self._queued -= size
            self._queued_items -= len(self._ready)
        return self._ready.popleft()

    def _fill(self) -> None:
        batch: list[bytes] = []
        size = 0
        while self._queued + size < self._window and self._queued_items + len(batch) < _AHEAD_ITEMS:
            blob = next(self._ids, None)
            if blob is None:
                break
            batch.append(blob)
            size += self._reader.queued_length(blob)
            if size >= _BATCH_BYTES or len(batch) >= _BATCH_ITEMS:
                self._submit(batch, size)
                batch, size = [], 0
        if batch:
            self._submit(batch, size)

    def _submit(self, batch: list[bytes], size: int) -> None:
        requested = self._reader.request(batch)
        self._pending.append((self._pool.submit(self._reader.blobs, batch, requested), size))
        self._queued += size
        self._queued_items += len(batch)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
