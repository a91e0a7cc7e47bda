"""The tree writer: folders finished after their files, every descriptor closed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.errors import IntegrityError, LocalIOError
from restore.model import BackupOptions
from restore.snapshots.encryption import Encryption
from restore.snapshots.engine import Engine
from restore.snapshots.treewriter import SMALL_FILE
from tests.support.forge import forge_blob, forge_snapshot, line
from tests.support.keys import UNENCRYPTED, sealed
from tests.support.trees import PAST_NS, describe, restored, write_file


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("encryption", [UNENCRYPTED, sealed()], ids=["plain", "encrypted"])
def test_many_folders_of_small_files_restore_exactly(
    encryption: Encryption, store: LocalStore, source: Path, tmp_path: Path
) -> None:
    # Encrypted, every blob of a decoded batch is authenticated by the repository's codec.
    # Read-only folders (finished too early, they would refuse their own files when not
    # running as root, and their mtime would move), hundreds of nested empty folders, a
    # file large enough for its writeback to be started, and a symlink among small files.
    for folder in range(8):
        for number in range(150):
            write_file(source / f"d{folder}" / f"f{number:03d}", b"%d/%d\n" % (folder, number), mode=0o640)
    write_file(source / "d3" / "large", os.urandom(SMALL_FILE + 1))
    (source / "d3" / "link").symlink_to("large")
    for number in range(300):
        (source / "empty" / f"e{number:03d}").mkdir(parents=True)
    for folder in [*source.glob("d*"), *source.glob("empty/*")]:
        folder.chmod(0o555)
        os.utime(folder, ns=(PAST_NS + 7, PAST_NS + 7))
    engine = Engine(store, encryption=encryption, owner="test")
    snapshot = engine.backup(source, BackupOptions()).snapshot.id
    before = _open_descriptors()
    assert restored(engine, snapshot, tmp_path / "dest") == describe(source)
    assert _open_descriptors() == before


def test_a_small_blob_that_fails_authentication_fails_the_restore(
    store: LocalStore, source: Path, tmp_path: Path
) -> None:
    # Incompressible small files: their pack is the largest (the manifest's is far smaller).
    for number in range(300):
        write_file(source / f"f{number:03d}", os.urandom(2000))
    engine = Engine(store, encryption=sealed(), owner="test")
    snapshot = engine.backup(source, BackupOptions()).snapshot.id
    pack = max(
        (p for p in store.root.joinpath("data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    data = bytearray(pack.read_bytes())
    data[100] ^= 0x01  # inside the first file's blob
    pack.write_bytes(bytes(data))
    reopened = Engine(store, encryption=sealed(), owner="test")
    (tmp_path / "dest").mkdir()
    with pytest.raises(IntegrityError, match=r"blob [0-9a-f]{64} in data/.*: fails authentication"):
        reopened.restore(snapshot, tmp_path / "dest")


def test_a_failing_write_fails_the_restore_and_leaks_no_descriptor(
    engine: Engine, store: LocalStore, tmp_path: Path
) -> None:
    blob = forge_blob(store, b"x")
    lines = [line("a", "d", mode=0o755), *(line(f"a/f{n:03d}", size=1, chunks=[blob]) for n in range(200))]
    snapshot = forge_snapshot(store, [*lines, line("taken", size=1, chunks=[blob])])
    dest = tmp_path / "dest"
    write_file(dest / "taken", b"already here")
    before = _open_descriptors()
    with pytest.raises(LocalIOError, match="File exists"):
        engine.restore(snapshot, dest)
    assert _open_descriptors() == before
    assert (dest / "taken").read_bytes() == b"already here"
