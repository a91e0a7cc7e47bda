"""Missing and corrupt objects: found by restore and verify, named with the files they break."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.errors import IntegrityError
from restore.model import BackupOptions
from restore.snapshots.codec import PlainCodec
from restore.snapshots.engine import Engine
from tests.support.trees import write_file


@pytest.fixture
def backed_up(engine: Engine, source: Path, store: LocalStore) -> tuple[str, dict[str, str]]:
    """Two files, each in a pack of its own (bigger than a pack), plus the snapshot id."""
    write_file(source / "alpha.bin", os.urandom(17 << 20))
    write_file(source / "beta.bin", os.urandom(17 << 20))
    snapshot = engine.backup(source, BackupOptions()).snapshot.id
    return snapshot, {
        "first": _pack_of(engine, store, "alpha.bin", 0),
        "last": _pack_of(engine, store, "beta.bin", -1),
    }


def _pack_of(engine: Engine, store: LocalStore, path: str, chunk: int) -> str:
    """The pack holding one of a file's chunks (packs hold 16 MiB: alpha's first chunk and
    beta's last one are in packs no other file uses)."""
    from restore.snapshots.format import pack_key
    from restore.snapshots.index import load_index
    from restore.snapshots.manifest import entries_of
    from restore.snapshots.reader import BlobLoader

    index = load_index(store, PlainCodec(), 2)
    record = engine._records.listing(engine._codecs)[0]
    entry = next(e for e in entries_of(record, BlobLoader(store, index)) if e.path == path)
    where = index.locate(entry.chunks[chunk])
    assert where is not None
    return pack_key(where.pack)


def _flip_byte(store: LocalStore, key: str, offset: int = 1000) -> None:
    path = store.root / key
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_pack_fails_restore_naming_object_and_files(
    engine: Engine, store: LocalStore, backed_up: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    snapshot, packs = backed_up
    _flip_byte(store, packs["first"])
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError) as caught:
        engine.restore(snapshot, dest)
    message = str(caught.value)
    assert packs["first"] in message
    assert "alpha.bin" in message
    assert "beta.bin" not in message


def test_verify_reads_data_and_reports_the_corrupt_blob(
    engine: Engine, store: LocalStore, backed_up: tuple[str, dict[str, str]]
) -> None:
    _snapshot, packs = backed_up
    assert engine.verify(read_data=1.0)[0].ok
    _flip_byte(store, packs["first"])
    # Structure alone cannot see a flipped byte; reading the data can.
    assert engine.verify()[0].ok
    [result] = engine.verify(read_data=1.0)
    assert not result.ok
    [damage] = result.damage
    assert "does not match its hash" in damage.problem or "cannot decompress" in damage.problem
    assert packs["first"] in damage.problem
    assert damage.files == ("alpha.bin",)


def test_missing_pack_is_found_without_reading_data(
    engine: Engine, store: LocalStore, backed_up: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    snapshot, packs = backed_up
    (store.root / packs["last"]).unlink()
    [result] = engine.verify()
    assert [d.object for d in result.damage] == [packs["last"]]
    assert result.damage[0].problem == "pack is missing"
    assert result.damage[0].files == ("beta.bin",)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError, match=f"{packs['last']}.*pack is missing.*beta.bin"):
        engine.restore(snapshot, dest)


def test_missing_index_fails_before_writing(
    engine: Engine, store: LocalStore, backed_up: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    snapshot, packs = backed_up
    pack_id = packs["first"].rpartition("/")[2]
    (store.root / "index" / pack_id).unlink()
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(IntegrityError, match=r"missing.*alpha\.bin"):
        engine.restore(snapshot, dest)
    assert list(dest.iterdir()) == []


def test_truncated_pack_is_reported(
    engine: Engine, store: LocalStore, backed_up: tuple[str, dict[str, str]]
) -> None:
    _, packs = backed_up
    path = store.root / packs["first"]
    path.write_bytes(path.read_bytes()[:100])
    [result] = engine.verify()
    assert "truncated" in result.damage[0].problem


def test_a_damaged_previous_snapshot_does_not_block_new_backups(
    engine: Engine, store: LocalStore, source: Path, backed_up: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    for key in [o.key for o in store.list("data/")] + [o.key for o in store.list("index/")]:
        store.delete([key])
    result = engine.backup(source, BackupOptions())
    dest = tmp_path / "dest"
    dest.mkdir()
    engine.restore(result.snapshot.id, dest)
    assert (dest / "alpha.bin").read_bytes() == (source / "alpha.bin").read_bytes()
