"""Backups of a volume the app keeps changing under them (issue 14, the reading side).

The app can swap a folder of its data for a symlink to somewhere outside the volume — the
pod's service-account token, another mounted Secret — while a backup walks it, or a file
for a FIFO between the walk's look and the read. The snapshot must never hold a byte from
outside the volume, the backup must never block, and the outside must stay untouched. The
canary here is shaped like `/var/run/secrets/kubernetes.io/serviceaccount`, with the same
names as the data folder it stands in for, so a walk that followed a link would find a file
to read at every name.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from restore.backends.local import LocalStore
from restore.model import BackupOptions
from restore.snapshots import backup
from restore.snapshots.engine import Engine
from tests.support.canary import Canary
from tests.support.keys import sealed
from tests.support.racing import Swapper, after_look, in_thread
from tests.support.trees import describe, restored, write_file

MARKER = b"caretaker-canary: a service-account token from outside the volume"
NAMES = ("ca.crt", "namespace", "token", *(f"f{n:03}" for n in range(40)))


@pytest.fixture
def canary(tmp_path: Path) -> Canary:
    return Canary(tmp_path / "canary", {f"serviceaccount/{name}": MARKER for name in NAMES})


def fill(source: Path) -> None:
    for name in NAMES:
        write_file(source / "app" / name, f"the app's own {name}\n".encode())
        write_file(source / "app" / "sub" / name, f"the app's own sub/{name}\n".encode())
    write_file(source / "config", b"the app's config\n")


def leaked(tree: Path) -> list[str]:
    """Files under `tree` that hold the canary's marker."""
    return [
        str(path.relative_to(tree))
        for path in tree.rglob("*")
        if path.is_file() and not path.is_symlink() and MARKER in path.read_bytes()
    ]


class TestSwappedWhileWalked:
    def test_links_swapped_in_during_backups_never_bring_outside_bytes_in(
        self, tmp_path: Path, canary: Canary, source: Path
    ) -> None:
        fill(source)
        outside = canary.path / "serviceaccount"
        links = {
            source / "app": outside,
            source / "app" / "sub": outside,
            source / "config": outside / "token",
        }
        snapshots = []
        with Swapper(links) as swapper:
            started = time.monotonic()
            while len(snapshots) < 30 or time.monotonic() - started < 2:
                # A new repository each time: every file is read, none trusted as unchanged.
                engine = Engine(
                    LocalStore(tmp_path / f"repo{len(snapshots)}"), encryption=sealed(), owner="test"
                )
                snapshots.append((engine, engine.backup(source, BackupOptions()).snapshot.id))
        assert swapper.swaps > 100
        seen_links = 0
        for number, (engine, snapshot) in enumerate(snapshots):
            dest = tmp_path / f"restored{number}"
            tree = restored(engine, snapshot, dest)
            assert leaked(dest) == [], f"snapshot {number} holds bytes from outside the volume"
            seen_links += sum(1 for entry in tree.values() if entry[0] == "link")
        assert seen_links, "no backup met a swapped-in link: the race was not exercised"
        canary.assert_untouched()

    def test_folder_swapped_after_the_walk_entered_it_is_read_where_it_now_is(
        self, engine: Engine, tmp_path: Path, canary: Canary, source: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fill(source)

        def swap() -> None:
            (source / "app").rename(source / "app.moved")
            (source / "app").symlink_to(canary.path / "serviceaccount")

        after_look(monkeypatch, backup, "app", swap)
        result = engine.backup(source, BackupOptions())
        tree = restored(engine, result.snapshot.id, tmp_path / "dest")
        assert (tmp_path / "dest" / "app" / "token").read_bytes() == b"the app's own token\n"
        assert tree["app/sub/token"][0] == "file"
        assert leaked(tmp_path / "dest") == []
        canary.assert_untouched()

    def test_file_swapped_for_a_link_is_left_out_not_followed(
        self, engine: Engine, tmp_path: Path, canary: Canary, source: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fill(source)

        def swap() -> None:
            (source / "config").unlink()
            (source / "config").symlink_to(canary.path / "serviceaccount" / "token")

        after_look(monkeypatch, backup, "config", swap)
        with capture_logs() as logs:
            result = engine.backup(source, BackupOptions())
        assert result.stats.changed_during_read == 1
        tree = restored(engine, result.snapshot.id, tmp_path / "dest")
        assert "config" not in tree
        assert leaked(tmp_path / "dest") == []
        warned = [e for e in logs if e["event"] == "backup.file_changed_during_read"]
        assert [e["path"] for e in warned] == ["config"]
        assert "not stored: a symlink" in warned[0]["detail"]
        canary.assert_untouched()

    def test_file_renamed_over_is_read_as_the_new_file(
        self, engine: Engine, tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # How apps save atomically: a new file renamed over the old one between look and read.
        fill(source)

        def save() -> None:
            write_file(source / "new", b"saved\n").rename(source / "config")

        after_look(monkeypatch, backup, "config", save)
        with capture_logs() as logs:
            result = engine.backup(source, BackupOptions())
        assert result.stats.changed_during_read == 0
        changing = [e["detail"] for e in logs if e["event"] == "backup.file_changing"]
        assert changing == ["replaced by a different file"]
        restored(engine, result.snapshot.id, tmp_path / "dest")
        assert (tmp_path / "dest" / "config").read_bytes() == b"saved\n"


class TestFifoSwappedIn:
    def test_fifo_in_place_of_a_file_never_blocks_the_backup(
        self, engine: Engine, tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        fill(source)

        def swap() -> None:
            (source / "config").unlink()
            os.mkfifo(source / "config")

        after_look(monkeypatch, backup, "config", swap)
        with capture_logs() as logs:
            result = in_thread(lambda: engine.backup(source, BackupOptions()))
        assert result.stats.changed_during_read == 1
        changing = [e["detail"] for e in logs if e["event"] == "backup.file_changing"]
        assert changing == ["replaced by a FIFO"] * 3
        tree = restored(engine, result.snapshot.id, tmp_path / "dest")
        assert "config" not in tree
        assert tree["app/token"][0] == "file"

    def test_fifo_swapped_back_is_read_on_the_next_attempt(
        self, engine: Engine, tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from restore import reads

        fill(source)
        config = source / "config"

        def swap() -> None:
            config.rename(source / "config.aside")
            os.mkfifo(config)

        real_open = reads.open_seen

        def open_then_put_back(folder: int, name: str, seen: os.stat_result) -> tuple[int, os.stat_result]:
            try:
                return real_open(folder, name, seen)
            finally:
                if name == "config" and config.is_fifo():
                    config.unlink()
                    (source / "config.aside").rename(config)

        after_look(monkeypatch, backup, "config", swap)
        monkeypatch.setattr(reads, "open_seen", open_then_put_back)
        result = in_thread(lambda: engine.backup(source, BackupOptions()))
        assert result.stats.changed_during_read == 0
        tree = restored(engine, result.snapshot.id, tmp_path / "dest")
        assert tree["config"][0] == "file"
        assert (tmp_path / "dest" / "config").read_bytes() == b"the app's config\n"


def test_deep_tree_with_few_descriptors(engine: Engine, tmp_path: Path, source: Path) -> None:
    import resource

    depth = 300
    folder = source
    for level in range(depth):
        folder = folder / f"d{level % 10}"
        write_file(folder / "file", f"level {level}\n".encode())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    opened = len(os.listdir("/proc/self/fd"))
    # Room for what is open now and the backup's own files, not for one descriptor per level.
    resource.setrlimit(resource.RLIMIT_NOFILE, (opened + 48, hard))
    try:
        result = engine.backup(source, BackupOptions())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert result.stats.dirs == depth
    assert restored(engine, result.snapshot.id, tmp_path / "dest") == describe(source)
