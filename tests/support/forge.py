"""Write repository objects by hand: hostile or damaged data that caretaker never writes itself."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import zstandard

from restore.model import SnapshotInfo
from restore.snapshots.codec import INDEX_OBJECT, SNAPSHOT_RECORD, Codec, PlainCodec
from restore.snapshots.format import (
    CONFIG_KEY,
    INDEX,
    KIND_DATA,
    KIND_MANIFEST,
    BlobEntry,
    SnapshotRecord,
    encode_index,
    pack_key,
    snapshot_key,
)
from restore.snapshots.repokey import RepositoryConfig
from restore.snapshots.store import ObjectStore


def forge_blob(store: ObjectStore, data: bytes, kind: int = KIND_DATA, codec: Codec | None = None) -> bytes:
    """Store one blob in a pack of its own (sealed by `codec`, plain by default); return its id."""
    codec = codec or PlainCodec()
    blob = codec.blob_id(data)
    frame = codec.seal_blob(zstandard.ZstdCompressor().compress(data), blob, kind)
    pack = os.urandom(32)
    store.put(pack_key(pack), frame)
    key = f"{INDEX}{pack.hex()}"
    entries = encode_index([(pack, [BlobEntry(blob, kind, 0, len(frame), len(data))])])
    store.put(key, codec.seal(entries, INDEX_OBJECT, key))
    return blob


def line(
    path: str,
    kind: str = "f",
    *,
    mode: int = 0o644,
    size: int = 0,
    chunks: list[bytes] | None = None,
    target: str = "",
    uid: int = 0,
    gid: int = 0,
) -> bytes:
    extra = target if kind == "l" else b"".join(chunks or []).hex()
    return (
        json.dumps([path, kind, mode, uid, gid, 1_600_000_000 * 10**9, size, 1, extra, 0, 0]).encode() + b"\n"
    )


def forge_snapshot(
    store: ObjectStore,
    lines: list[bytes],
    snapshot_id: str = "f0f0f0f0f0f0f0f0",
    time: datetime | None = None,
    codec: Codec | None = None,
) -> str:
    """A snapshot of `lines` (its manifest), sealed by `codec` (plain by default); a plain
    repository's config is created if there is none."""
    codec = codec or PlainCodec()
    store.create(CONFIG_KEY, RepositoryConfig("f0" * 16, encrypted=False).encode())
    piece = forge_blob(store, b"".join(lines), KIND_MANIFEST, codec)
    moment = time or datetime(2030, 1, 1, tzinfo=UTC)
    info = SnapshotInfo(id=snapshot_id, time=moment, files=len(lines), dirs=0, bytes=0)
    record = SnapshotRecord(info=info, manifest=(piece,), entries=len(lines), started=moment)
    key = snapshot_key(snapshot_id)
    store.put(key, codec.seal(record.encode(), SNAPSHOT_RECORD, key))
    return snapshot_id
