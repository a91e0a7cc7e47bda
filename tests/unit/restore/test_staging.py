"""Staging, journal and quarantine: the move into place survives a kill at every step."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
from datetime import UTC, datetime

import pytest

from restore import libc
from restore.errors import LocalIOError, UnsafeVolumeError
from restore.initcontainer.staging import Journal, Staging, entries
from restore.initcontainer.statedir import Volume
from restore.model import SnapshotInfo
from restore.safefs import Folder

SNAP = SnapshotInfo(id="s1", time=datetime(2026, 1, 1, tzinfo=UTC), files=2, dirs=1, bytes=10)
NOW = datetime(2026, 1, 15, 12, 0, 5, 123456, tzinfo=UTC)


def tree(root: pathlib.Path) -> dict[str, str]:
    """Every file under root (relative path -> content), symlinks as '-> target'."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            found[rel] = path.read_text()
    return found


def write(root: pathlib.Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


@contextlib.contextmanager
def opened(root: pathlib.Path):
    """The staging area of a volume, as one run holds it (its descriptors closed after)."""
    with Volume.open(root, create=True) as volume:
        yield Staging(volume)


@pytest.fixture
def staging(tmp_path):
    with opened(tmp_path) as staging:
        yield staging


class KilledError(Exception):
    """Stands for SIGKILL: the process stops between two steps."""


def kill_after(monkeypatch: pytest.MonkeyPatch, steps: int) -> None:
    """Let `steps` renames/unlinks (the journal's removal is the last step) happen, then die."""
    done = {"n": 0}

    def dying(real):
        def step(*args, **kwargs):
            if done["n"] >= steps:
                raise KilledError
            done["n"] += 1
            return real(*args, **kwargs)

        return step

    monkeypatch.setattr(libc, "rename_noreplace", dying(libc.rename_noreplace))
    monkeypatch.setattr(os, "unlink", dying(os.unlink))


class TestEntries:
    def test_ignores_lost_and_found_and_state_folder(self, tmp_path):
        """Only user data counts when deciding whether a volume is empty."""
        (tmp_path / "lost+found").mkdir()
        (tmp_path / ".caretaker").mkdir()
        assert entries(tmp_path) == []
        (tmp_path / ".hidden").write_text("x")
        (tmp_path / "b").mkdir()
        assert entries(tmp_path) == [".hidden", "b"]

    def test_missing_folder_is_empty(self, tmp_path):
        assert entries(tmp_path / "nope") == []

    def test_a_file_instead_of_a_folder_is_a_local_error(self, tmp_path):
        (tmp_path / "file").write_text("x")
        with pytest.raises(LocalIOError, match=r"cannot open .*file: Not a directory"):
            entries(tmp_path / "file")


class TestQuarantineDir:
    def test_names_are_utc_times_and_never_reused(self, tmp_path, staging):
        first = staging.new_quarantine(NOW)
        assert first == tmp_path / ".caretaker" / "quarantine" / "20260115T120005Z"
        second = staging.new_quarantine(NOW)
        assert second.name == "20260115T120005Z-2"
        assert [*first.iterdir(), *second.iterdir()] == []

    def test_a_quarantine_the_app_moved_away_for_a_moment_is_not_reused(self, tmp_path, staging):
        earlier = staging.new_quarantine(NOW)
        (earlier / "app.db").write_text("an earlier run's")
        quarantine = earlier.parent
        quarantine.rename(tmp_path / "away")
        fresh = staging.new_quarantine(NOW)
        (tmp_path / "away").rename(quarantine.with_name("back"))
        assert list(fresh.iterdir()) == []
        assert (quarantine.with_name("back") / earlier.name / "app.db").read_text() == "an earlier run's"


def stage(staging: Staging, files: dict[str, str]) -> None:
    write(staging.prepare(), files)


class TestMoveIn:
    def test_moves_staged_entries_and_cleans_up(self, tmp_path, staging):
        stage(staging, {"a.txt": "new a", "dir/b.txt": "new b"})
        journal = staging.commit(
            kind="restore", source=staging.tree, aside=staging.discard, set_aside=[], snapshot=SNAP
        )
        assert json.loads(staging.journal_path.read_text())["move_in"] == ["a.txt", "dir"]
        staging.apply(journal)
        assert tree(tmp_path) == {"a.txt": "new a", "dir/b.txt": "new b"}
        assert not staging.root.exists()

    def test_sets_existing_data_aside_never_deleting_it(self, tmp_path, staging):
        write(tmp_path, {"a.txt": "old a", "old.txt": "old", "lost+found/x": "fsck"})
        os.symlink("a.txt", tmp_path / "link")
        stage(staging, {"a.txt": "new a"})
        aside = staging.new_quarantine(NOW)
        journal = staging.commit(
            kind="restore", source=staging.tree, aside=aside, set_aside=entries(tmp_path)
        )
        staging.apply(journal)
        assert tree(tmp_path) == {
            "a.txt": "new a",
            "lost+found/x": "fsck",
            ".caretaker/quarantine/20260115T120005Z/a.txt": "old a",
            ".caretaker/quarantine/20260115T120005Z/old.txt": "old",
            ".caretaker/quarantine/20260115T120005Z/link": "-> a.txt",
        }

    def test_staged_state_folder_and_lost_and_found_are_not_moved_in(self, tmp_path, staging):
        """A snapshot holding `.caretaker` or `lost+found` must not clobber ours."""
        stage(staging, {"lost+found/x": "theirs", ".caretaker/evil": "x", "a": "a"})
        staging.apply(
            staging.commit(kind="restore", source=staging.tree, aside=staging.discard, set_aside=[])
        )
        assert tree(tmp_path) == {"a": "a"}

    def test_refuses_to_overwrite_an_entry_that_appeared(self, tmp_path, staging):
        stage(staging, {"a": "new"})
        journal = staging.commit(kind="restore", source=staging.tree, aside=staging.discard, set_aside=[])
        (tmp_path / "a").write_text("appeared")
        with pytest.raises(LocalIOError, match=r"refusing to overwrite .*a: it appeared .* out of the way"):
            staging.apply(journal)
        assert (tmp_path / "a").read_text() == "appeared"
        (tmp_path / "a").rename(tmp_path / "moved by hand")
        with opened(tmp_path) as again:
            assert again.recover() == journal
        assert tree(tmp_path) == {"a": "new", "moved by hand": "appeared"}


class TestRecover:
    def test_leftover_download_without_journal_is_deleted(self, tmp_path, staging):
        stage(staging, {"half/written": "x"})
        (staging.tree / "half").chmod(0o555)
        assert staging.recover() is None
        assert not staging.root.exists()
        assert entries(tmp_path) == []

    def test_nothing_to_do(self, staging):
        assert staging.recover() is None

    def test_unreadable_journal_is_an_error_not_a_guess(self, tmp_path, staging):
        staging.root.mkdir(parents=True)
        staging.journal_path.write_text("{not json")
        with pytest.raises(UnsafeVolumeError, match="unreadable restore journal"):
            staging.recover()
        assert staging.journal_path.exists()

    @pytest.mark.parametrize(
        "bad", [{"set_aside": ["../x"]}, {"move_in": [".caretaker"]}, {"aside": "/etc"}, {"version": 9}]
    )
    def test_hostile_journal_is_refused(self, tmp_path, staging, bad):
        staging.root.mkdir(parents=True)
        good = Journal(
            kind="restore", source="staging/tree", aside="staging/discard", set_aside=(), move_in=()
        )
        staging.journal_path.write_text(json.dumps({**good.to_json(), **bad}))
        with pytest.raises(UnsafeVolumeError):
            staging.pending()

    def test_a_journal_whose_source_was_moved_away_stops_before_moving_anything(self, tmp_path, staging):
        write(tmp_path, {"a": "old"})
        stage(staging, {"a": "new"})
        aside = staging.new_quarantine(NOW)
        journal = staging.commit(
            kind="restore", source=staging.tree, aside=aside, set_aside=entries(tmp_path), snapshot=SNAP
        )
        staging.tree.rename(staging.root / "moved by the app")
        with opened(tmp_path) as again, pytest.raises(UnsafeVolumeError, match="tree vanished"):
            again.recover()
        assert (tmp_path / "a").read_text() == "old"
        assert staging.pending() == journal  # left for the next run, or a human

    def test_journal_round_trips_its_snapshot(self, tmp_path, staging):
        stage(staging, {"a": "a"})
        staging.commit(
            kind="restore", source=staging.tree, aside=staging.discard, set_aside=[], snapshot=SNAP
        )
        assert staging.pending() == Journal(
            kind="restore",
            source="staging/tree",
            aside="staging/discard",
            set_aside=(),
            move_in=("a",),
            snapshot=SNAP,
        )


OLD = {"a.txt": "old a", "keep/x": "old x", "z": "old z"}
NEW = {"a.txt": "new a", "b/c": "new c", "z": "new z"}


def quarantined(files: dict[str, str]) -> dict[str, str]:
    return {f".caretaker/quarantine/20260115T120005Z/{k}": v for k, v in files.items()}


class TestKilledAtEveryStep:
    """6 renames (3 aside, 3 in) and the journal's removal: a kill before any of them, then a
    new run, ends in the same state."""

    @pytest.mark.parametrize("renames", range(7))
    def test_move_in_resumes_to_the_same_end(self, tmp_path, staging, monkeypatch, renames):
        write(tmp_path, OLD)
        stage(staging, NEW)
        aside = staging.new_quarantine(NOW)
        journal = staging.commit(
            kind="restore", source=staging.tree, aside=aside, set_aside=entries(tmp_path), snapshot=SNAP
        )
        kill_after(monkeypatch, renames)
        with pytest.raises(KilledError):
            staging.apply(journal)
        monkeypatch.undo()
        with opened(tmp_path) as again:
            assert again.recover() == journal
        assert tree(tmp_path) == {**NEW, **quarantined(OLD)}
        with opened(tmp_path) as third:
            assert third.recover() is None  # and a third run has nothing left to do

    @pytest.mark.parametrize("renames", range(7))
    def test_rollback_resumes_to_the_original_data(self, tmp_path, staging, monkeypatch, renames):
        write(tmp_path, OLD)
        stage(staging, NEW)
        aside = staging.new_quarantine(NOW)
        staging.apply(
            staging.commit(kind="restore", source=staging.tree, aside=aside, set_aside=entries(tmp_path))
        )
        journal = staging.commit(
            kind="rollback", source=aside, aside=staging.discard, set_aside=entries(tmp_path)
        )
        kill_after(monkeypatch, renames)
        with pytest.raises(KilledError):
            staging.apply(journal)
        monkeypatch.undo()
        with opened(tmp_path) as again:
            again.recover()
        assert tree(tmp_path) == OLD
        assert not aside.exists()
        assert not staging.root.exists()


def test_remove_tree_opens_read_only_folders(tmp_path):
    write(tmp_path, {"ro/deep/file": "x", "ro/closed/y": "y"})
    (tmp_path / "ro" / "deep").chmod(0o555)
    (tmp_path / "ro" / "closed").chmod(0)
    (tmp_path / "ro").chmod(0o555)
    with Folder.at(tmp_path) as folder:
        folder.remove_tree("ro")
    assert not (tmp_path / "ro").exists()
