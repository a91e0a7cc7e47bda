"""A restore races an app that swaps symlinks into the tree being written.

The app shares the volume, so while a restore writes it may replace any folder or file
of the tree with a symlink to somewhere else (here: a canary folder beside the volume),
or plant such links where the restore is about to create an entry. Whatever the timing,
nothing outside the volume may be created, written, chmodded, chowned or touched: the
restore either fails (a local I/O error) or completes inside the volume. Both engines
write through the same tree writer: the snapshot engine, and the git backend (real git,
a bare repository over file://).
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from restore.backends.local import LocalStore
from restore.backends.registry import OpenOptions, open_repository
from restore.errors import LocalIOError
from restore.model import BackupOptions
from restore.repository import Repository
from restore.snapshots.engine import Engine
from tests.support.git_remotes import file_remote, git_env
from tests.support.trees import write_file

FOLDERS, FILES = 12, 60
ROUNDS = 25
# Owner, mode and mtime of the canary differ from every restored entry's, so a chown,
# chmod or utime that reached it would show.
CANARY_UID = 4242
CANARY_MTIME_NS = 1_000_000_000 * 10**9


def _source(root: Path) -> Path:
    for folder in range(FOLDERS):
        for number in range(FILES):
            path = root / f"d{folder:02d}" / f"f{number:03d}"
            write_file(path, b"restored %d %d\n" % (folder, number))
            path.chmod(0o604)
        (root / f"d{folder:02d}" / "sub").mkdir()
        write_file(root / f"d{folder:02d}" / "sub" / "deep", b"deep\n")
        (root / f"d{folder:02d}" / "link").symlink_to("f000")
    return root


def _canary(root: Path) -> Path:
    write_file(root / "file", b"canary\n")
    write_file(root / "inner" / "file", b"canary inner\n")
    for path in [root / "inner" / "file", root / "inner", root / "file", root]:
        if os.geteuid() == 0:
            os.chown(path, CANARY_UID, CANARY_UID)
        os.utime(path, ns=(CANARY_MTIME_NS, CANARY_MTIME_NS))
    return root


def _state(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below and including `root`: type, mode, owner, size, mtime, content hash."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in ["", *dirs, *files]:
            path = os.path.join(folder, name) if name else folder
            info = os.lstat(path)
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).is_file() else ""
            found[path] = (info.st_mode, info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns, digest)
    return found


class Swapper(threading.Thread):
    """Replaces what the restore creates with symlinks to the canary, and plants such
    links where entries are about to appear, until stopped."""

    def __init__(self, dest: Path, canary: Path, seed: int) -> None:
        super().__init__(daemon=True)
        self.dest, self.canary = dest, canary
        self.random = random.Random(seed)
        self.stopped = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        while not self.stopped.is_set():
            for folder, dirs, files in os.walk(self.dest):
                for name in [*dirs, *files]:
                    if self.random.random() < 0.3:
                        self._swap(os.path.join(folder, name), is_dir=name in dirs)
                self._plant(folder)

    def _swap(self, path: str, *, is_dir: bool) -> None:
        target = self.canary if is_dir else self.canary / "file"
        try:
            os.rename(path, f"{path}.moved{self.swaps}")  # aside, still inside the volume
            os.symlink(target, path)
            self.swaps += 1
        except OSError:
            pass  # the restore got there first, or the entry moved meanwhile: try the next one

    def _plant(self, folder: str) -> None:
        name = f"f{self.random.randrange(FILES):03d}" if self.random.random() < 0.5 else "sub"
        try:
            os.symlink(self.canary / ("inner" if name == "sub" else "file"), os.path.join(folder, name))
            self.swaps += 1
        except OSError:
            pass


@pytest.fixture(params=["engine", "git"])
def repository(request: pytest.FixtureRequest, engine: Engine, tmp_path: Path) -> Repository:
    if request.param == "engine":
        return engine
    return open_repository(file_remote(tmp_path), OpenOptions(environ=git_env(tmp_path / "state")))


def test_swapped_symlinks_never_lead_a_restore_outside(repository: Repository, tmp_path: Path) -> None:
    snapshot = repository.backup(_source(tmp_path / "data"), BackupOptions()).snapshot.id
    canary = _canary(tmp_path / "canary")
    before = _state(canary)
    volume = tmp_path / "volume"
    volume.mkdir()
    beside = sorted(p.name for p in tmp_path.iterdir())
    outcomes = {"failed": 0, "completed": 0}
    swaps = 0
    for round_ in range(ROUNDS):
        dest = volume / f"dest{round_}"
        dest.mkdir()
        swapper = Swapper(dest, canary, round_)
        swapper.start()
        try:
            repository.restore(snapshot, dest)
            outcomes["completed"] += 1
        except LocalIOError:
            outcomes["failed"] += 1
        finally:
            swapper.stopped.set()
            swapper.join()
        swaps += swapper.swaps
        assert _state(canary) == before, f"round {round_}: the canary changed ({outcomes})"
        assert sorted(p.name for p in tmp_path.iterdir()) == beside
    assert swaps > ROUNDS, "the swapper never got in the restore's way"


def test_a_symlink_as_the_restore_folder_is_refused(
    engine: Engine, store: LocalStore, tmp_path: Path
) -> None:
    snapshot = engine.backup(_source(tmp_path / "data"), BackupOptions()).snapshot.id
    canary = _canary(tmp_path / "canary")
    before = _state(canary)
    (tmp_path / "dest").symlink_to(canary)
    with pytest.raises(LocalIOError, match="cannot open"):
        engine.restore(snapshot, tmp_path / "dest")
    assert _state(canary) == before
