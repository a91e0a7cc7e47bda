"""Where each blob lives: loaded from the repository's index objects into one compact map."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from restore.backends import ObjectStore
from restore.snapshots.format import INDEX, BlobEntry, decode_index

_KIND_BITS, _RAW_BITS, _LEN_BITS, _OFF_BITS = 1, 24, 24, 40


class Location(NamedTuple):
    pack: bytes
    offset: int
    length: int
    raw_length: int
    kind: int


class BlobIndex:
    """Blob id -> location, for every blob of every indexed pack.

    Locations are packed into one int per blob: a volume of a million small files is a
    million entries, and a tuple each would cost several times the memory.
    """

    def __init__(self) -> None:
        self.packs: list[bytes] = []
        # Bytes of each pack that indexed blobs cover: its expected size.
        self.pack_sizes: list[int] = []
        self._pack_numbers: dict[bytes, int] = {}
        self._blobs: dict[bytes, int] = {}
        # Which index object describes each pack (prune deletes both together).
        self.index_keys: dict[bytes, str] = {}

    def __contains__(self, blob: object) -> bool:
        return blob in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)

    def pack_number(self, pack: bytes) -> int:
        number = self._pack_numbers.get(pack)
        if number is None:
            number = len(self.packs)
            self.packs.append(pack)
            self.pack_sizes.append(0)
            self._pack_numbers[pack] = number
        return number

    def add(self, pack: bytes, entries: list[BlobEntry], index_key: str) -> None:
        number = self.pack_number(pack)
        self.index_keys.setdefault(pack, index_key)
        end = max((e.offset + e.length for e in entries), default=0)
        self.pack_sizes[number] = max(self.pack_sizes[number], end)
        for e in entries:
            if e.id not in self._blobs:
                code = ((number << _OFF_BITS | e.offset) << _LEN_BITS | e.length) << _RAW_BITS
                self._blobs[e.id] = (code | e.raw_length) << _KIND_BITS | e.kind

    def locate(self, blob: bytes) -> Location | None:
        code = self._blobs.get(blob)
        if code is None:
            return None
        kind = code & 1
        code >>= _KIND_BITS
        raw = code & ((1 << _RAW_BITS) - 1)
        code >>= _RAW_BITS
        length = code & ((1 << _LEN_BITS) - 1)
        code >>= _LEN_BITS
        offset = code & ((1 << _OFF_BITS) - 1)
        return Location(self.packs[code >> _OFF_BITS], offset, length, raw, kind)

    def pack_of(self, blob: bytes) -> int:
        """The pack number of a blob known to be indexed."""
        return self._blobs[blob] >> (_KIND_BITS + _RAW_BITS + _LEN_BITS + _OFF_BITS)

    def blobs(self) -> Iterator[bytes]:
        return iter(self._blobs)


def load_index(store: ObjectStore, workers: int) -> BlobIndex:
    """Read every index object (several at a time: on S3 each is a round trip)."""
    keys = [item.key for item in store.list(INDEX)]
    index = BlobIndex()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for key, data in zip(keys, pool.map(store.get, keys), strict=True):
            for pack, entries in decode_index(data, key):
                index.add(pack, entries, key)
    return index
