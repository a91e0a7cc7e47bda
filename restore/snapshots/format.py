"""Encodings of everything the engine stores: keys, snapshot records, index objects, blobs.

How objects are sealed (encrypted repositories) and blobs named is `restore.snapshots.codec`;
the repository config and key slots are `restore.snapshots.repokey` and `restore.snapshots.keys`.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

import zstandard

from restore.clock import format_time, parse_time
from restore.errors import IntegrityError
from restore.model import SnapshotInfo

FORMAT_VERSION = 1
CHUNK_SIZE = 1 << 20
# No blob may claim to be larger than this once decompressed: a hostile frame header
# must not make us allocate gigabytes.
MAX_BLOB_SIZE = 8 << 20
# The same for an index object: the whole repository's index, decoded.
MAX_INDEX_SIZE = 1 << 30
ID_BYTES = 32

CONFIG_KEY = "config"
LEASE_KEY = "lease"
SNAPSHOTS = "snapshots/"
INDEX = "index/"
DATA = "data/"
KEYS = "keys/"

KIND_DATA = 0
KIND_MANIFEST = 1


def pack_key(pack: bytes) -> str:
    hexed = pack.hex()
    return f"{DATA}{hexed[:2]}/{hexed}"


def index_key(name: bytes) -> str:
    """An index object's key: named after its pack as a backup writes it, after its own
    content when a prune merges several."""
    return f"{INDEX}{name.hex()}"


class BlobDamageError(IntegrityError):
    """A blob (or the pack holding it) is missing or corrupt; names both for the report."""

    def __init__(self, problem: str, *, blob: bytes | None = None, pack: str | None = None) -> None:
        self.blob = blob
        self.pack = pack
        self.problem = problem
        where = " ".join(filter(None, [f"blob {blob.hex()}" if blob else "", f"in {pack}" if pack else ""]))
        super().__init__(f"{where}: {problem}")


def decompress_frame(
    frame: bytes | memoryview,
    blob: bytes,
    pack: str,
    decompressor: zstandard.ZstdDecompressor | None = None,
) -> bytes:
    """Decompress one blob's zstd frame. Raise BlobDamageError if it is bad or too large.

    Making a decompressor costs several times what decoding a small blob does: callers
    decoding many pass one (used by one thread at a time).
    """
    try:
        size = zstandard.frame_content_size(frame)
        if size < 0 or size > MAX_BLOB_SIZE:
            raise BlobDamageError(f"bad frame size {size}", blob=blob, pack=pack)
        decompressor = decompressor or zstandard.ZstdDecompressor()
        plain: bytes = decompressor.decompress(frame, max_output_size=MAX_BLOB_SIZE)
    except zstandard.ZstdError as error:
        raise BlobDamageError(f"cannot decompress ({error})", blob=blob, pack=pack) from error
    return plain


# -- index objects -------------------------------------------------------------------------

_INDEX_MAGIC = b"CTIDX1\n"
_PACK_HEADER = struct.Struct(">32sI")
_BLOB_ENTRY = struct.Struct(">32sBIII")  # id, kind, offset, length, raw length


class BlobEntry(NamedTuple):
    """Where one blob sits in a pack. A tuple: an index holds one per blob in the repository."""

    id: bytes
    kind: int
    offset: int
    length: int
    raw_length: int


def encode_index(packs: Iterable[tuple[bytes, list[BlobEntry]]]) -> bytes:
    parts = [_INDEX_MAGIC]
    for pack, entries in packs:
        parts.append(_PACK_HEADER.pack(pack, len(entries)))
        parts.extend(_BLOB_ENTRY.pack(e.id, e.kind, e.offset, e.length, e.raw_length) for e in entries)
    return zstandard.ZstdCompressor(level=3).compress(b"".join(parts))


def _pack_entries(plain: bytes, offset: int) -> tuple[bytes, list[BlobEntry], int]:
    """One pack's header and entries at `offset`, and where the next pack starts."""
    pack, count = _PACK_HEADER.unpack_from(plain, offset)
    start = offset + _PACK_HEADER.size
    end = start + count * _BLOB_ENTRY.size
    if end > len(plain):  # a short slice would just yield fewer entries
        raise struct.error("entries past the end")
    entries = plain[start:end]
    _check_widths(entries)
    return pack, list(map(BlobEntry._make, _BLOB_ENTRY.iter_unpack(entries))), end


def _check_widths(entries: bytes) -> None:
    """Raise ValueError unless every kind is 0 or 1 and every length is below 16 MiB: the
    widths the in-memory index packs them into (index.py). Caretaker's frames of at most
    MAX_BLOB_SIZE plain bytes always fit; a wider value would be read back as another one."""
    size = _BLOB_ENTRY.size
    kinds, lengths, raw_lengths = entries[32::size], entries[37::size], entries[41::size]
    if kinds.translate(None, b"\0\1") or lengths.translate(None, b"\0") or raw_lengths.translate(None, b"\0"):
        raise ValueError("an entry has an impossible kind or length")


def decode_index(data: bytes, key: str) -> Iterator[tuple[bytes, list[BlobEntry]]]:
    """Yield (pack id, blobs) from an index object. Raise IntegrityError if malformed."""
    try:
        # The limit below binds only frames that do not state their size: check the claim.
        if zstandard.frame_content_size(data) > MAX_INDEX_SIZE:
            raise IntegrityError(f"index object {key} claims more than {MAX_INDEX_SIZE} bytes")
        plain = zstandard.ZstdDecompressor().decompress(data, max_output_size=MAX_INDEX_SIZE)
    except zstandard.ZstdError as error:
        raise IntegrityError(f"index object {key} is corrupt: {error}") from error
    if not plain.startswith(_INDEX_MAGIC):
        raise IntegrityError(f"index object {key} has an unknown format")
    offset = len(_INDEX_MAGIC)
    try:
        while offset < len(plain):
            pack, entries, offset = _pack_entries(plain, offset)
            yield pack, entries
    except struct.error as error:
        raise IntegrityError(f"index object {key} is truncated") from error
    except ValueError as error:
        raise IntegrityError(f"index object {key} is corrupt: {error}") from error


# -- snapshot records ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class SnapshotRecord:
    info: SnapshotInfo
    manifest: tuple[bytes, ...]
    entries: int
    started: datetime
    parent: str | None = None
    excludes: tuple[str, ...] = ()
    stats: dict[str, int] = dataclasses.field(default_factory=dict)

    def encode(self) -> bytes:
        document: dict[str, Any] = {
            "version": FORMAT_VERSION,
            **self.info.to_json(),
            "started": format_time(self.started),
            "parent": self.parent,
            "excludes": list(self.excludes),
            "entries": self.entries,
            "manifest": [m.hex() for m in self.manifest],
            "stats": self.stats,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, key: str) -> SnapshotRecord:
        """Raise IntegrityError if the record is not a valid snapshot record."""
        try:
            doc = json.loads(data)
            if doc["version"] != FORMAT_VERSION:
                raise IntegrityError(f"snapshot {key} has unsupported format {doc['version']}")
            info = SnapshotInfo.from_json(doc)
            manifest = tuple(bytes.fromhex(m) for m in doc["manifest"])
            if any(len(m) != ID_BYTES for m in manifest) or key.rpartition("/")[2] != info.id:
                raise IntegrityError(f"snapshot record {key} is inconsistent")
            return cls(
                info=info,
                manifest=manifest,
                entries=int(doc["entries"]),
                started=parse_time(doc["started"]),
                parent=doc.get("parent"),
                excludes=tuple(doc.get("excludes", ())),
                stats={str(k): int(v) for k, v in doc.get("stats", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise IntegrityError(f"snapshot record {key} is malformed: {error}") from error


def snapshot_key(snapshot_id: str) -> str:
    return f"{SNAPSHOTS}{snapshot_id}"
