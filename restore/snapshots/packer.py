"""Collect blobs into packs and upload them in the background, a bounded number at once."""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from restore.snapshots.codec import INDEX_OBJECT, Codec
from restore.snapshots.format import BlobEntry, encode_index, index_key, pack_key
from restore.snapshots.index import BlobIndex
from restore.snapshots.store import ObjectStore

PACK_TARGET = 16 << 20
# Tiny blobs (small files compress to a few dozen bytes) would otherwise put hundreds of
# thousands of index entries, all held in memory until the pack is written, in one pack.
PACK_MAX_BLOBS = 20_000


class Uploader:
    """Writes packs (then their index object) with at most `in_flight` packs in memory."""

    def __init__(self, store: ObjectStore, codec: Codec, *, workers: int, in_flight: int) -> None:
        self._store = store
        self._codec = codec
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload")
        self._slots = threading.BoundedSemaphore(in_flight)
        self._futures: list[Future[None]] = []
        self.objects_written = 0

    def submit(self, pack: bytes, data: bytearray, entries: list[BlobEntry]) -> None:
        self._slots.acquire()
        self._reap()
        self._futures.append(self._pool.submit(self._upload, pack, data, entries))

    def _upload(self, pack: bytes, data: bytearray, entries: list[BlobEntry]) -> None:
        try:
            self._store.put(pack_key(pack), data)
            # The index object names the pack, so it must follow the pack, never precede it.
            key = index_key(pack)
            self._store.put(key, self._codec.seal(encode_index([(pack, entries)]), INDEX_OBJECT, key))
        finally:
            self._slots.release()

    def _reap(self) -> None:
        done = [f for f in self._futures if f.done()]
        for future in done:
            future.result()  # re-raises an upload's error here
            self.objects_written += 2
            self._futures.remove(future)

    def wait(self) -> None:
        """Block until every pack is durable. Raise the first upload error."""
        for future in list(self._futures):
            future.exception()
        self._reap()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class Packer:
    """Appends compressed blobs to the current pack; hands full packs to the uploader."""

    def __init__(self, index: BlobIndex, uploader: Uploader, *, kind: int, target: int = PACK_TARGET) -> None:
        self._index = index
        self._uploader = uploader
        self._kind = kind
        self._target = target
        self._buffer = bytearray()
        self._entries: list[BlobEntry] = []
        self._pending: set[bytes] = set()

    def add(self, blob: bytes, frame: bytes, raw_length: int) -> bool:
        """Store a blob unless the repository or this run already has it; True if stored."""
        if self.knows(blob):
            return False
        self._entries.append(BlobEntry(blob, self._kind, len(self._buffer), len(frame), raw_length))
        self._pending.add(blob)
        self._buffer += frame
        if len(self._buffer) >= self._target or len(self._entries) >= PACK_MAX_BLOBS:
            self.flush()
        return True

    def knows(self, blob: bytes) -> bool:
        return blob in self._index or blob in self._pending

    def flush(self) -> None:
        if not self._entries:
            return
        pack = secrets.token_bytes(32)
        # The buffer itself goes to the uploader (no 16 MiB copy); this packer starts a new one.
        self._uploader.submit(pack, self._buffer, self._entries)
        self._index.add(pack, self._entries, index_key(pack))
        self._pending.clear()
        self._buffer = bytearray()
        self._entries = []
