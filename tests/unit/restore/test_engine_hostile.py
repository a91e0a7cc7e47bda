"""Hostile or broken repository data is rejected before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.errors import IntegrityError
from restore.snapshots.engine import Engine
from tests.support.forge import forge_blob, forge_snapshot, line


def _restore_fails(engine: Engine, store: LocalStore, lines: list[bytes], tmp_path: Path, match: str) -> None:
    snapshot = forge_snapshot(store, lines)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError, match=match):
        engine.restore(snapshot, dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "escape").exists()


CASES = {
    "absolute": ([line("/etc/passwd")], "unsafe path"),
    "dotdot": ([line("../escape")], "unsafe path"),
    "inner dotdot": ([line("a", "d", mode=0o755), line("a/../../escape")], "unsafe path"),
    "empty component": ([line("a//b")], "unsafe path"),
    "state folder": ([line(".caretaker", "d"), line(".caretaker/x")], "unsafe path"),
    "nul": ([line("a\0b")], "unsafe path"),
    "lone surrogate": ([line("a\ud800")], "unsafe path"),
    # Escapes of bytes that decode as "é": the same name on disk as "é" itself.
    "escaped valid bytes": ([line("\udcc3\udca9")], "unsafe path"),
    "through symlink": ([line("link", "l", target=".."), line("link/escape")], "no folder entry"),
    "under a file": ([line("a"), line("a/b")], "no folder entry"),
    "missing parent": ([line("nodir/file")], "no folder entry"),
    "duplicate": ([line("a"), line("a")], "duplicate"),
    "out of order": ([line("b"), line("a")], "out of order"),
    "absurd size": ([line("big", size=1 << 60)], "absurd size"),
    "size without chunks": ([line("a", size=10)], "chunks for 10 bytes"),
    "bad mode": ([line("a", mode=0o177777)], "impossible mode"),
    "bad owner": ([line("a", uid=-1)], "impossible mode"),
    "absurd mtime": ([line("a").replace(b"1600000000000000000", b"1" + b"0" * 30)], "impossible mtime"),
    "unknown type": ([line("a", "x")], "unknown type"),
    "dir with content": ([line("a", "d", chunks=[b"\0" * 32])], "not a file"),
    "malformed": ([b'["a", "f"]\n'], "malformed manifest line"),
    "not json": ([b"garbage\n"], "malformed manifest line"),
    "two rows on one line": ([line("a").rstrip(b"\n") + b"," + line("b")], "malformed manifest line"),
    "blank line": ([line("a"), b"\n"], "malformed manifest line"),
    "bool for a number": ([line("a").replace(b'"f", 420', b'"f", true')], "malformed manifest line"),
    "no final newline": ([line("a").rstrip(b"\n")], "truncated"),
    "empty link": ([line("l", "l", target="")], "invalid symlink target"),
    "unencodable link": ([line("l", "l", target="\ud800")], "invalid symlink target"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_manifest_is_rejected_before_writing(
    case: str, engine: Engine, store: LocalStore, tmp_path: Path
) -> None:
    lines, match = CASES[case]
    _restore_fails(engine, store, lines, tmp_path, match)


def test_size_that_disagrees_with_content_is_rejected(
    engine: Engine, store: LocalStore, tmp_path: Path
) -> None:
    blob = forge_blob(store, b"twelve bytes")
    _restore_fails(
        engine,
        store,
        [line("ok", size=12, chunks=[blob]), line("z", size=11, chunks=[blob])],
        tmp_path,
        "says 11 bytes",
    )


def test_blob_claiming_a_huge_size_is_rejected(engine: Engine, store: LocalStore, tmp_path: Path) -> None:
    import os

    import zstandard

    from restore.snapshots.format import INDEX, KIND_DATA, BlobEntry, encode_index, pack_key

    # A frame that decompresses to 64 MiB of zeros, registered as a tiny blob.
    frame = zstandard.ZstdCompressor().compress(b"\0" * (64 << 20))
    fake = b"\1" * 32
    pack = os.urandom(32)
    store.put(pack_key(pack), frame)
    store.put(f"{INDEX}{pack.hex()}", encode_index([(pack, [BlobEntry(fake, KIND_DATA, 0, len(frame), 5)])]))
    snapshot = forge_snapshot(store, [line("bomb", size=5, chunks=[fake])])
    dest = tmp_path / "dest"
    dest.mkdir()
    # Content is checked as it is read, so the file was opened; the restore action discards
    # its staging folder on any error. What matters: no 64 MiB allocation, a precise error.
    with pytest.raises(IntegrityError, match=f"blob {fake.hex()} in data/.*bad frame size.*files: bomb"):
        engine.restore(snapshot, dest)


def test_valid_forged_snapshot_restores(engine: Engine, store: LocalStore, tmp_path: Path) -> None:
    blob = forge_blob(store, b"hello")
    snapshot = forge_snapshot(
        store, [line("d", "d", mode=0o755), line("d/f", size=5, chunks=[blob]), line("d/l", "l", target="f")]
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(snapshot, dest)
    assert (dest / "d" / "f").read_bytes() == b"hello"
    assert (dest / "d" / "l").readlink() == Path("f")


_BAD_RECORDS = {
    "not json": b"{not json",
    "stats not an object": b'{"version": 1, "id": "deadbeefdeadbeef", "time": "2026-01-01T00:00:00Z", '
    b'"files": 0, "dirs": 0, "bytes": 0, "started": "2026-01-01T00:00:00Z", "entries": 0, '
    b'"manifest": [], "stats": []}',
    "time not a string": b'{"version": 1, "id": "deadbeefdeadbeef", "time": 5}',
}


@pytest.mark.parametrize("case", sorted(_BAD_RECORDS))
def test_corrupt_snapshot_record_is_skipped_not_fatal(
    engine: Engine, store: LocalStore, source: Path, case: str
) -> None:
    from restore.model import BackupOptions

    (source / "a").write_bytes(b"1")
    good = engine.backup(source, BackupOptions()).snapshot
    store.put("snapshots/deadbeefdeadbeef", _BAD_RECORDS[case])
    assert [s.id for s in engine.snapshots()] == [good.id]
    results = {r.snapshot_id: r for r in engine.verify()}
    assert results[good.id].ok
    assert not results["deadbeefdeadbeef"].ok
    assert "malformed" in results["deadbeefdeadbeef"].damage[0].problem


@pytest.mark.parametrize("held", [1, 1.5], ids=["at an entry boundary", "mid-entry"])
def test_index_object_claiming_more_entries_than_it_holds_is_rejected(
    engine: Engine, store: LocalStore, tmp_path: Path, held: float
) -> None:
    import os
    import struct

    import zstandard

    from restore.snapshots.format import INDEX

    snapshot = forge_snapshot(store, [line("a")])
    pack = os.urandom(32)
    entry = struct.pack(">32sBIII", os.urandom(32), 0, 0, 10, 10)
    plain = b"CTIDX1\n" + struct.pack(">32sI", pack, 2) + (entry * 2)[: int(len(entry) * held)]
    store.put(f"{INDEX}{pack.hex()}", zstandard.ZstdCompressor().compress(plain))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError, match="truncated"):
        engine.restore(snapshot, dest)


@pytest.mark.parametrize(("kind", "length", "raw_length"), [(2, 10, 10), (0, 1 << 24, 10), (1, 10, 1 << 31)])
def test_index_entry_wider_than_the_index_holds_is_rejected(
    engine: Engine, store: LocalStore, tmp_path: Path, kind: int, length: int, raw_length: int
) -> None:
    import os
    import struct

    import zstandard

    from restore.snapshots.format import INDEX

    snapshot = forge_snapshot(store, [line("a")])
    pack = os.urandom(32)
    entry = struct.pack(">32sBIII", os.urandom(32), kind, 0, length, raw_length)
    plain = b"CTIDX1\n" + struct.pack(">32sI", pack, 1) + entry
    store.put(f"{INDEX}{pack.hex()}", zstandard.ZstdCompressor().compress(plain))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError, match="impossible kind or length"):
        engine.restore(snapshot, dest)


def test_index_object_claiming_a_huge_size_is_rejected_without_allocating(
    engine: Engine, store: LocalStore, tmp_path: Path
) -> None:
    import os

    import zstandard

    from restore.snapshots.format import INDEX

    snapshot = forge_snapshot(store, [line("a")])
    frame = zstandard.ZstdCompressor().compress(b"CTIDX1\n")
    # The same frame with an 8-byte content size field claiming 1 TiB (single segment).
    bomb = frame[:4] + bytes([0b11100000]) + (1 << 40).to_bytes(8, "little") + frame[6:]
    store.put(f"{INDEX}{os.urandom(32).hex()}", bomb)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError, match="claims more than"):
        engine.restore(snapshot, dest)
