"""Write repository objects by hand: hostile or damaged data that caretaker never writes itself."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import zstandard

from restore.model import SnapshotInfo
from restore.snapshots.format import (
    CONFIG_KEY,
    INDEX,
    KIND_DATA,
    KIND_MANIFEST,
    BlobEntry,
    SnapshotRecord,
    blob_id,
    config_document,
    encode_index,
    pack_key,
    snapshot_key,
)
from restore.snapshots.store import ObjectStore


def forge_blob(store: ObjectStore, data: bytes, kind: int = KIND_DATA) -> bytes:
    """Store one blob in a pack of its own; return its id."""
    blob = blob_id(data)
    frame = zstandard.ZstdCompressor().compress(data)
    pack = os.urandom(32)
    store.put(pack_key(pack), frame)
    store.put(
        f"{INDEX}{pack.hex()}", encode_index([(pack, [BlobEntry(blob, kind, 0, len(frame), len(data))])])
    )
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
) -> str:
    store.create(CONFIG_KEY, config_document("forged"))
    piece = forge_blob(store, b"".join(lines), KIND_MANIFEST)
    moment = time or datetime(2030, 1, 1, tzinfo=UTC)
    info = SnapshotInfo(id=snapshot_id, time=moment, files=len(lines), dirs=0, bytes=0)
    record = SnapshotRecord(info=info, manifest=(piece,), entries=len(lines), started=moment)
    store.put(snapshot_key(snapshot_id), record.encode())
    return snapshot_id
