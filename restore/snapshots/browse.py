"""Browsing object-store snapshots without restoring them: list, compare, search, read.

Listing, comparing and searching read manifests only, so they load only the index entries of
manifest pieces (a few per thousand files) and stream the manifest piece by piece: memory
does not grow with the snapshot. Pieces are cut where the paths say (docs/format.md, 9.3), so
the unchanged stretches of two snapshots are the very same pieces: the diff skips a piece
both sides have at the same place without reading it, and a search across snapshots reads
each distinct piece once. Reading file contents goes through the restore's pack reader.
"""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Callable, Iterator, Sequence

from restore.errors import IntegrityError
from restore.model import SnapshotInfo
from restore.nodes import Change, Node, diff_cursors
from restore.selection import Selection
from restore.snapshots.extract import chosen_entries, plan_restore
from restore.snapshots.format import KIND_MANIFEST, BlobEntry, SnapshotRecord
from restore.snapshots.index import BlobIndex
from restore.snapshots.manifest import FILE, Entry, check_entry, read_manifest
from restore.snapshots.reader import BlobLoader, ChunkFeed, PackReader
from restore.snapshots.store import ObjectStore


def manifest_pieces(entry: BlobEntry) -> bool:
    """The index entries browsing needs (`load_index(keep=...)`)."""
    return entry.kind == KIND_MANIFEST


def node_of(entry: Entry) -> Node:
    return Node(
        entry.path,
        entry.kind,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.mtime_ns,
        entry.size,
        entry.target,
        b"".join(entry.chunks),
    )


def nodes(record: SnapshotRecord, loader: BlobLoader, selection: Selection | None) -> Iterator[Node]:
    """The snapshot's entries that `selection` chooses, in manifest order, validated as a
    restore validates them."""
    for entry in chosen_entries(record, loader, selection):
        yield node_of(entry)


def _piece(piece: bytes, loader: BlobLoader) -> list[Node]:
    """One manifest piece's entries, each checked on its own (paths, types, sizes)."""
    found = []
    for entry, _ in read_manifest([piece], loader):
        check_entry(entry)
        found.append(node_of(entry))
    return found


class _Pieces:
    """A manifest read piece by piece, for the diff's merge: a cursor that knows when it
    stands between two pieces, and can step over the next piece without reading it."""

    def __init__(self, record: SnapshotRecord, loader: BlobLoader) -> None:
        self._pieces = record.manifest
        self._loader = loader
        self._next = 0
        self._buffer: collections.deque[Node] = collections.deque()
        self._last = ""

    def upcoming(self) -> bytes | None:
        """The id of the next piece if the cursor stands right before it, else None."""
        if self._buffer or self._next >= len(self._pieces):
            return None
        return self._pieces[self._next]

    def skip(self) -> None:
        self._next += 1

    def peek(self) -> Node | None:
        while not self._buffer and self._next < len(self._pieces):
            self._buffer.extend(_piece(self._pieces[self._next], self._loader))
            self._next += 1
        return self._buffer[0] if self._buffer else None

    def pop(self) -> None:
        node = self._buffer.popleft()
        key = node.path.replace("/", "\0")
        if key <= self._last:
            raise IntegrityError(f"manifest is out of order or has a duplicate at {node.path!r}")
        self._last = key


def diff_records(old: SnapshotRecord, new: SnapshotRecord, loader: BlobLoader) -> Iterator[Change]:
    """The changes from `old` to `new`, in manifest order.

    Both cursors stand between pieces only right after a path both sides had (the merge
    takes the smaller path first), so when their next pieces are the same blob, those
    pieces hold the same lines: both are skipped unread.
    """
    a, b = _Pieces(old, loader), _Pieces(new, loader)

    def skip_common() -> None:
        while (piece := a.upcoming()) is not None and piece == b.upcoming():
            a.skip()
            b.skip()

    return diff_cursors(a, b, skip_common)


def find(
    records: Sequence[SnapshotRecord], loader: BlobLoader, match: Callable[[Node], bool]
) -> Iterator[tuple[SnapshotInfo, Node]]:
    """Every node of every snapshot that `match` accepts, snapshot by snapshot, in manifest
    order. Each distinct piece is read once; only its matches are kept for the others."""
    seen: dict[bytes, list[Node]] = {}
    for record in records:
        for piece in record.manifest:
            hits = seen.get(piece)
            if hits is None:
                hits = seen[piece] = [node for node in _piece(piece, loader) if match(node)]
            for node in hits:
                yield record.info, node


def contents(
    store: ObjectStore, index: BlobIndex, record: SnapshotRecord, selection: Selection | None, workers: int
) -> Iterator[tuple[Node, Iterator[bytes]]]:
    """The chosen entries, each file with an iterator over its verified bytes (others with
    an empty one). Take each iterator before the next entry: what is left of it is skipped.

    Raise IntegrityError before anything is read if the manifest is hostile or data is not
    indexed, and while reading if a blob is corrupt or a file's bytes do not add up.
    """
    loader = BlobLoader(store, index)
    plan, _ = plan_restore(record, index, loader, selection)
    reader = PackReader(store, index, plan, workers=workers)
    entries, ahead = itertools.tee(chosen_entries(record, loader, selection))
    feed = ChunkFeed(reader, (c for e in ahead for c in e.chunks), workers=max(2, os.cpu_count() or 1))
    try:
        for entry in entries:
            data = _bytes_of(entry, feed)
            yield node_of(entry), data
            for _ in data:
                pass
    finally:
        feed.close()
        reader.close()


def _bytes_of(entry: Entry, feed: ChunkFeed) -> Iterator[bytes]:
    total = 0
    for _ in entry.chunks:
        data = feed.next()
        total += len(data)
        yield data
    if entry.kind == FILE and total != entry.size:
        raise IntegrityError(f"{entry.path}: content is {total} bytes, the manifest says {entry.size}")
