"""Where each blob lives: loaded from the repository's index objects into one compact map."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import structlog

from restore.errors import AuthenticationError, ObjectNotFoundError, TransientBackendError
from restore.snapshots.codec import INDEX_OBJECT, Codec
from restore.snapshots.format import INDEX, BlobEntry, decode_index
from restore.snapshots.store import ObjectStore

_KIND_BITS, _RAW_BITS, _LEN_BITS, _OFF_BITS = 1, 24, 24, 40
_PACK_SHIFT = _KIND_BITS + _RAW_BITS + _LEN_BITS + _OFF_BITS
_RAW_MASK, _LEN_MASK = (1 << _RAW_BITS) - 1, (1 << _LEN_BITS) - 1
# Listings of the index: one to read it, one to check that nothing replaced meanwhile was
# missed, more only while prunes keep replacing what was listed.
_LOAD_ROUNDS = 4
# Index objects read before the key that opens them is there: what a small repository's
# index takes (a volume of 100,000 files indexes in about 6 MiB), not a large one's.
_AHEAD_BYTES = 16 << 20


class Location(NamedTuple):
    pack: bytes
    offset: int
    length: int
    raw_length: int
    kind: int


class Extent(NamedTuple):
    pack: int  # number, see BlobIndex.packs
    length: int
    raw_length: int

    @property
    def held(self) -> int:
        """What reading the blob holds in memory at once: its stored or its plain bytes,
        whichever the index says is larger (an index nothing authenticates, a plain
        repository's, may claim a small plain size for a blob stored large)."""
        return max(self.length, self.raw_length)


@dataclasses.dataclass
class IndexObject:
    """What one stored index object describes: pack numbers and how many blobs."""

    packs: list[int] = dataclasses.field(default_factory=list)
    blobs: int = 0


class BlobIndex:
    """Blob id -> location, for every blob of every indexed pack.

    Locations are packed into one int per blob: a volume of a million small files is a
    million entries, and a tuple each would cost several times the memory. The index
    belongs to one repository key: `codec` names its blobs and opens them.
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.packs: list[bytes] = []
        # Bytes of each pack that indexed blobs cover: its expected size.
        self.pack_sizes: list[int] = []
        self._pack_numbers: dict[bytes, int] = {}
        self._blobs: dict[bytes, int] = {}
        # Every index object read, by key: prune replaces objects, it never edits one.
        self.objects: dict[str, IndexObject] = {}
        # Index objects of an encrypted repository that do not authenticate (planted or
        # damaged), by key: left out, so a restore can still fall back to what the rest indexes.
        self.unreadable: dict[str, str] = {}

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
        described = self.objects.setdefault(index_key, IndexObject())
        described.packs.append(number)
        described.blobs += len(entries)
        end = max((e.offset + e.length for e in entries), default=0)
        self.pack_sizes[number] = max(self.pack_sizes[number], end)
        for e in entries:
            if e.id not in self._blobs:
                code = ((number << _OFF_BITS | e.offset) << _LEN_BITS | e.length) << _RAW_BITS
                self._blobs[e.id] = (code | e.raw_length) << _KIND_BITS | e.kind

    def locate(self, blob: bytes) -> Location | None:
        code = self._blobs.get(blob)
        return None if code is None else self._location(code)

    def _location(self, code: int) -> Location:
        kind = code & 1
        code >>= _KIND_BITS
        raw = code & _RAW_MASK
        code >>= _RAW_BITS
        length = code & _LEN_MASK
        code >>= _LEN_BITS
        offset = code & ((1 << _OFF_BITS) - 1)
        return Location(self.packs[code >> _OFF_BITS], offset, length, raw, kind)

    def extent(self, blob: bytes) -> Extent | None:
        """A blob's pack number and sizes, without its place in the pack (what a restore
        plans with, once per blob: cheaper than `locate`)."""
        code = self._blobs.get(blob)
        if code is None:
            return None
        raw = code >> _KIND_BITS & _RAW_MASK
        length = code >> (_KIND_BITS + _RAW_BITS) & _LEN_MASK
        return Extent(code >> _PACK_SHIFT, length, raw)

    def pack_of(self, blob: bytes) -> int:
        """The pack number of a blob known to be indexed."""
        return self._blobs[blob] >> _PACK_SHIFT

    def pack_entries(self, packs: Collection[int]) -> Iterator[tuple[bytes, list[BlobEntry]]]:
        """The blobs indexed in each of `packs`, one pack at a time (to write index objects anew)."""
        found: dict[int, list[bytes]] = {number: [] for number in packs}
        for blob, code in self._blobs.items():
            group = found.get(code >> _PACK_SHIFT)
            if group is not None:
                group.append(blob)
        for number, blobs in found.items():
            places = [(blob, self._location(self._blobs[blob])) for blob in blobs]
            entries = [BlobEntry(b, w.kind, w.offset, w.length, w.raw_length) for b, w in places]
            yield self.packs[number], sorted(entries, key=lambda e: e.offset)

    def blobs(self) -> Iterator[bytes]:
        return iter(self._blobs)


@dataclasses.dataclass(frozen=True)
class IndexListing:
    """One listing of the index, with the objects of it already read (None: gone);
    `load_index` takes them out of `read` as it uses them."""

    keys: list[str]
    read: dict[str, bytes | None]


def read_ahead(store: ObjectStore, workers: int) -> IndexListing:
    """List the index and read its first objects, up to _AHEAD_BYTES, for `load_index`.

    The objects need no key to be read, only to be opened: a backup reads them while an
    encrypted repository's key is derived, which on its own would be a wait.
    """
    keys, chosen, total = [], [], 0
    for item in store.list(INDEX):
        keys.append(item.key)
        if total + item.size <= _AHEAD_BYTES:
            chosen.append(item.key)
            total += item.size
    with ThreadPoolExecutor(max_workers=workers) as pool:
        read = dict(zip(chosen, pool.map(functools.partial(_get_or_none, store), chosen), strict=True))
    return IndexListing(keys, read)


def load_index(
    store: ObjectStore,
    codec: Codec,
    workers: int,
    keep: Callable[[BlobEntry], bool] | None = None,
    first: IndexListing | None = None,
) -> BlobIndex:
    """Read every index object (several at a time: on S3 each is a round trip).

    A prune replaces index objects while others read, writing every replacement before it
    deletes anything. So a reader that missed an object (deleted while a paged listing ran)
    or found a listed one gone sees its replacement in a listing started afterwards. Hence:
    list, read what is new, and return once a later listing shows nothing new that vanished
    and still shows everything read (an object read and gone since may name a pack the
    prune is deleting: then start over). An object that vanished without a replacement
    described only packs no snapshot needs. Raise TransientBackendError if the index keeps
    changing.

    An object that does not authenticate under the repository's key is left out and named
    in `unreadable` (and logged); whether that is fatal is the caller's decision.

    With `keep`, only the entries it accepts are held (browsing needs manifest pieces only).
    With `first` (from `read_ahead`), that listing and what it read are the first round.
    """
    index, read = BlobIndex(codec), set[str]()
    for number in range(_LOAD_ROUNDS):
        listing = first if number == 0 and first is not None else IndexListing(_list(store), {})
        listed = listing.keys
        settled = number > 0 and read.issubset(listed)
        if not settled:
            index, read = BlobIndex(codec), set()
        new = [key for key in listed if key not in read]
        gone = _read_into(index, store, new, workers, keep=keep, read=listing.read)
        read.update(key for key in new if key not in gone)
        if settled and not gone:
            return index
    raise TransientBackendError(f"{store.describe()}: the index kept changing while it was read")


def _list(store: ObjectStore) -> list[str]:
    return [item.key for item in store.list(INDEX)]


def _read_into(
    index: BlobIndex,
    store: ObjectStore,
    keys: list[str],
    workers: int,
    *,
    keep: Callable[[BlobEntry], bool] | None,
    read: dict[str, bytes | None],
) -> list[str]:
    """Add these index objects; return those that were gone. Those in `read` were read
    already: taken out of it as they are used, so that each is held only until then."""
    gone: list[str] = []
    missing = [key for key in keys if key not in read]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        fetched = pool.map(functools.partial(_get_or_none, store), missing)  # in the order of keys
        for key in keys:
            data = read.pop(key) if key in read else next(fetched)
            if data is None:
                gone.append(key)
                continue
            try:
                plain = index.codec.open(data, INDEX_OBJECT, key)
            except AuthenticationError as error:
                structlog.get_logger().warning("index.unreadable", key=key, error=str(error))
                index.unreadable[key] = str(error)
                continue
            for pack, entries in decode_index(plain, key):
                index.add(pack, entries if keep is None else [e for e in entries if keep(e)], key)
    return gone


def _get_or_none(store: ObjectStore, key: str) -> bytes | None:
    try:
        return store.get(key)
    except ObjectNotFoundError:
        return None
