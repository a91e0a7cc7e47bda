"""Checks: every object a snapshot needs exists and has its size; optionally every byte."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from restore.errors import IntegrityError
from restore.model import SHOWN_FILES, Damage, VerifyResult
from restore.snapshots.format import (
    DATA,
    BlobDamageError,
    SnapshotRecord,
    pack_key,
)
from restore.snapshots.index import BlobIndex
from restore.snapshots.manifest import entries_of
from restore.snapshots.reader import BlobLoader
from restore.snapshots.store import ObjectStore


def damaged_packs(store: ObjectStore, index: BlobIndex) -> dict[str, str]:
    """Packs the index names that are missing from the store or shorter than indexed."""
    listed = {item.key: item.size for item in store.list(DATA)}
    bad: dict[str, str] = {}
    for number, pack in enumerate(index.packs):
        key = pack_key(pack)
        size = listed.get(key)
        if size is None:
            bad[key] = "pack is missing"
        elif size < index.pack_sizes[number]:
            bad[key] = f"pack is truncated ({size} of {index.pack_sizes[number]} bytes)"
    return bad


def _sample(index: BlobIndex, fraction: float, exclude: dict[str, str]) -> list[int]:
    candidates = [n for n, p in enumerate(index.packs) if pack_key(p) not in exclude]
    # A stable order keyed by the pack id: repeated partial runs sample different packs
    # only when the repository changes, which keeps results reproducible.
    candidates.sort(key=lambda n: hashlib.sha256(index.packs[n]).digest())
    return candidates[: math.ceil(len(candidates) * fraction)]


def read_packs(
    store: ObjectStore, index: BlobIndex, fraction: float, skip: dict[str, str], workers: int
) -> tuple[dict[bytes, str], int]:
    """Download a share of the packs and check every blob's hash; return bad blobs and bytes read."""
    chosen = set(_sample(index, fraction, skip)) if fraction > 0 else set()
    blobs_of: dict[int, list[bytes]] = defaultdict(list)
    for blob in index.blobs():
        number = index.pack_of(blob)
        if number in chosen:
            blobs_of[number].append(blob)
    bad: dict[bytes, str] = {}

    def check(number: int) -> int:
        key = pack_key(index.packs[number])
        data = store.get_range(key, 0, index.pack_sizes[number])  # not a planted giant whole
        for blob in blobs_of[number]:
            where = index.locate(blob)
            assert where is not None  # noqa: S101 - listed from the index itself
            try:
                index.codec.open_blob(data[where.offset : where.offset + where.length], blob, where.kind, key)
            except BlobDamageError as error:
                bad[blob] = f"{error.problem} in {key}"
        return len(data)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        total = sum(pool.map(check, sorted(chosen)))
    return bad, total


def verify_record(
    record: SnapshotRecord,
    index: BlobIndex,
    loader: BlobLoader,
    bad_packs: dict[str, str],
    bad_blobs: dict[bytes, str],
) -> tuple[Damage, ...]:
    found: dict[str, tuple[str, list[str]]] = {}
    try:
        for entry in entries_of(record, loader):
            for chunk in entry.chunks:
                problem = _problem(chunk, index, bad_packs, bad_blobs)
                if problem is not None:
                    files = found.setdefault(problem[0], (problem[1], []))[1]
                    if entry.path not in files and len(files) < SHOWN_FILES:
                        files.append(entry.path)
    except IntegrityError as error:
        found["manifest"] = (f"manifest unreadable: {error}", [])
    return tuple(
        Damage(object=obj, problem=problem, files=tuple(files)) for obj, (problem, files) in found.items()
    )


def _problem(
    chunk: bytes, index: BlobIndex, bad_packs: dict[str, str], bad_blobs: dict[bytes, str]
) -> tuple[str, str] | None:
    where = index.locate(chunk)
    if where is None:
        return f"blob {chunk.hex()}", "missing from every pack"
    key = pack_key(where.pack)
    if key in bad_packs:
        return key, bad_packs[key]
    if chunk in bad_blobs:
        return f"blob {chunk.hex()}", bad_blobs[chunk]
    return None


def verify_records(
    store: ObjectStore, index: BlobIndex, records: list[SnapshotRecord], read_data: float, workers: int
) -> list[VerifyResult]:
    bad_packs = damaged_packs(store, index)
    bad_blobs, read = read_packs(store, index, read_data, bad_packs, workers)
    loader = BlobLoader(store, index)
    return [
        VerifyResult(
            snapshot_id=r.info.id,
            damage=verify_record(r, index, loader, bad_packs, bad_blobs),
            bytes_checked=read,
        )
        for r in records
    ]
