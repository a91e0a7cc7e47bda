"""The restore's chunk feed: order kept, read-ahead bounded by bytes and by count."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from restore.snapshots.reader import ChunkFeed


class _Blobs:
    """Stands in for PackReader: a blob's content is its id repeated to `size` bytes."""

    def __init__(self, size: int) -> None:
        self.size = size

    def queued_length(self, blob: bytes) -> int:
        return self.size

    def blob(self, blob: bytes) -> bytes:
        return (blob * (self.size // len(blob) + 1))[: self.size]

    def request(self, batch: list[bytes]) -> list[bytes]:
        return batch

    def blobs(self, batch: list[bytes], requested: list[bytes]) -> list[bytes]:
        assert requested == batch
        return [self.blob(blob) for blob in batch]


class _Counted:
    def __init__(self, count: int) -> None:
        self.taken = 0
        self.count = count

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.count):
            self.taken += 1
            yield i.to_bytes(4, "big")


@pytest.mark.parametrize(
    ("size", "ahead"),
    # 2,048 chunks queued plus one batch of 128 being filled; 12 MiB plus one 1 MiB chunk.
    [(100, 2048 + 128), (1 << 20, 13)],
    ids=["tiny chunks: bounded by count", "1 MiB chunks: bounded by bytes"],
)
def test_feed_keeps_order_and_bounds_read_ahead(size: int, ahead: int) -> None:
    ids = _Counted(20_000 if size < 4096 else 100)
    blobs = _Blobs(size)
    feed = ChunkFeed(blobs, iter(ids), workers=2)  # type: ignore[arg-type]
    try:
        most_ahead = 0
        for i in range(ids.count):
            assert feed.next() == blobs.blob(i.to_bytes(4, "big"))
            most_ahead = max(most_ahead, ids.taken - (i + 1))
    finally:
        feed.close()
    assert 0 < most_ahead <= ahead
