"""Descriptor-based folders (`restore.safefs`) and caretaker's state layout on the volume
(`restore.initcontainer.statedir`): symlinks are never followed, FIFOs and devices never
opened, and a canary folder beside the volume stays untouched."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from restore import libc
from restore.errors import UnsafeVolumeError
from restore.initcontainer.outcome import Outcome, read_result, write_result, write_termination_log
from restore.initcontainer.staging import Journal
from restore.initcontainer.statedir import Volume
from restore.safefs import Folder, NotAFileError
from tests.support.canary import Canary

OUTCOME = Outcome(outcome="skipped", exit_code=0, finished_at=datetime(2026, 1, 15, tzinfo=UTC))


@pytest.fixture
def canary(tmp_path: Path) -> Canary:
    return Canary(tmp_path / "canary")


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


@pytest.fixture
def folder(volume: Path):
    with Folder.at(volume) as opened:
        yield opened


def finishes(call, *args) -> BaseException | None:
    """Run `call` in a thread; fail the test if it blocks (a FIFO opened for reading would)."""
    raised: list[BaseException] = []

    def target():
        try:
            call(*args)
        except BaseException as error:
            raised.append(error)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), f"{call} blocked"
    return raised[0] if raised else None


class TestOpen:
    @pytest.mark.parametrize(
        ("plant", "named"),
        [
            (lambda path, canary: os.symlink(canary, path), "symlink to '"),
            (lambda path, _: path.write_text("x"), "is a file where caretaker keeps a folder"),
            (lambda path, _: os.mkfifo(path), "is a FIFO where caretaker keeps a folder"),
        ],
    )
    def test_a_folder_name_holding_anything_else_is_refused(self, folder, volume, canary, plant, named):
        plant(volume / "state", canary.path)
        error = finishes(folder.open, "state")
        assert isinstance(error, UnsafeVolumeError)
        assert named in str(error)
        assert str(volume / "state") in str(error)
        with pytest.raises(UnsafeVolumeError):
            folder.make("state")
        canary.assert_untouched()

    def test_anchor_follows_the_folder_not_its_name(self, folder, volume, canary):
        """The path handed to the repository's restore keeps reaching the folder it was made
        for after the folder is moved and a symlink to the canary takes its name."""
        staging = folder.make("staging")
        staging.make("tree").close()
        anchor = staging.anchor("tree")
        (volume / "staging").rename(volume / "moved")
        os.symlink(canary.path / "staging", volume / "staging")
        (anchor / "restored").write_text("data")
        assert (volume / "moved" / "tree" / "restored").read_text() == "data"
        staging.close()
        canary.assert_untouched()


class TestFiles:
    def test_read_refuses_a_fifo_without_blocking(self, folder, volume):
        os.mkfifo(volume / "result")
        error = finishes(lambda: folder.read("result", limit=100))
        assert isinstance(error, UnsafeVolumeError)
        assert "result is a FIFO where caretaker keeps a file" in str(error)

    def test_read_refuses_a_symlink_and_never_reads_its_target(self, folder, volume, canary):
        os.symlink(canary.victim, volume / "result")
        with pytest.raises(UnsafeVolumeError, match="symlink to"):
            folder.read("result", limit=100)

    @pytest.mark.skipif(os.geteuid() != 0, reason="creating a device node needs root")
    def test_read_never_opens_a_device(self, folder, volume):
        os.mknod(volume / "result", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null
        with pytest.raises(UnsafeVolumeError, match="character device"):
            folder.read("result", limit=100)

    def test_read_bounds_the_size(self, folder, volume):
        (volume / "result").write_bytes(b"x" * 101)
        with pytest.raises(ValueError, match="larger than 100 bytes"):
            folder.read("result", limit=100)

    @pytest.mark.parametrize("name", ["result.json", "result.tmp"])
    def test_replace_never_writes_through_a_symlink(self, folder, volume, canary, name):
        os.symlink(canary.victim, volume / name)
        with pytest.raises(UnsafeVolumeError, match=f"{name} is a symlink"):
            folder.replace("result.json", b"new", temp="result.tmp")
        canary.assert_untouched()
        assert os.readlink(volume / name) == str(canary.victim)

    def test_replace_removes_a_leftover_temp_file(self, folder, volume):
        (volume / "result.tmp").write_text("left by a killed run")
        folder.replace("result.json", b"new", temp="result.tmp")
        assert sorted(os.listdir(volume)) == ["result.json"]
        assert (volume / "result.json").read_bytes() == b"new"


class RefusingLibc:
    """A C library whose renameat2 fails with `code`: EINVAL where the filesystem knows no
    RENAME_NOREPLACE (some network and FUSE filesystems), EPERM under a seccomp profile
    that does not allow the call."""

    def __init__(self, code: int) -> None:
        self.code = code

    def renameat2(self, *_args: object) -> int:
        ctypes.set_errno(self.code)
        return -1


class TestRename:
    @pytest.fixture(
        params=["renameat2", "without RENAME_NOREPLACE", "refused by seccomp", "without renameat2"]
    )
    def libc(self, request, monkeypatch):
        if request.param == "without RENAME_NOREPLACE":
            monkeypatch.setattr(libc, "_LIBC", RefusingLibc(errno.EINVAL))
        elif request.param == "refused by seccomp":
            monkeypatch.setattr(libc, "_LIBC", RefusingLibc(errno.EPERM))
        elif request.param == "without renameat2":  # musl before 1.2.5, glibc before 2.28
            monkeypatch.setattr(libc, "_LIBC", object())

    @pytest.mark.parametrize("kind", ["file", "folder", "symlink"])
    def test_never_replaces_what_is_at_the_destination(self, folder, volume, libc, kind):
        (volume / "from").mkdir()
        (volume / "from" / "app.db").write_text("restored")
        make = {
            "file": lambda p: p.write_text("the app's"),
            "folder": lambda p: p.mkdir(),
            "symlink": lambda p: p.symlink_to("nowhere"),
        }[kind]
        make(volume / "app.db")
        before = os.lstat(volume / "app.db")
        with folder.open("from") as source, pytest.raises(FileExistsError):
            source.rename("app.db", folder)
        after = os.lstat(volume / "app.db")
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
        assert (volume / "from" / "app.db").read_text() == "restored"

    def test_moves_an_entry_as_itself(self, folder, volume, libc):
        (volume / "from").mkdir()
        (volume / "from" / "link").symlink_to("/nowhere")
        with folder.open("from") as source:
            source.rename("link", folder)
        assert os.readlink(volume / "link") == "/nowhere"
        assert not os.path.lexists(volume / "from" / "link")


class TestRemoveTree:
    def test_links_inside_are_removed_never_followed(self, folder, volume, canary):
        (volume / "staging" / "tree").mkdir(parents=True)
        os.symlink(canary.path, volume / "staging" / "tree" / "to-canary")
        os.symlink(canary.victim, volume / "staging" / "victim")
        folder.remove_tree("staging")
        assert os.listdir(volume) == []
        canary.assert_untouched()

    def test_a_top_level_link_is_removed_itself(self, folder, volume, canary):
        os.symlink(canary.path, volume / "staging")
        folder.remove_tree("staging")
        assert os.listdir(volume) == []
        canary.assert_untouched()

    def test_deep_nesting_does_not_exhaust_the_stack(self, folder, volume):
        """A hostile snapshot can nest folders deeper than Python's recursion limit."""
        depth, fds = 1100, []  # past the interpreter's recursion limit of 1000
        here = os.open(volume, os.O_RDONLY | os.O_DIRECTORY)
        for _ in range(depth):
            os.mkdir("d", dir_fd=here)
            fds.append(here)
            here = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=here)
        fds.append(here)
        for fd in fds:
            os.close(fd)
        folder.remove_tree("d")
        assert os.listdir(volume) == []


class TestVolume:
    def test_check_names_every_wrong_entry_at_once(self, volume, canary):
        state = volume / ".caretaker"
        (state / "staging").mkdir(parents=True)
        os.symlink(canary.path, state / "quarantine")
        os.mkfifo(state / "restore-result.json")
        (state / "staging" / "journal.json").mkdir()
        (state / "not-ours").symlink_to(canary.path)  # names caretaker does not use are ignored
        with Volume.open(volume, create=False) as opened, pytest.raises(UnsafeVolumeError) as raised:
            opened.check()
        message = str(raised.value)
        assert (
            f"{state / 'quarantine'} is a symlink to '{canary.path}' where caretaker keeps a folder"
            in message
        )
        assert f"{state / 'restore-result.json'} is a FIFO where caretaker keeps a file" in message
        assert f"{state / 'staging' / 'journal.json'} is a folder where caretaker keeps a file" in message
        assert "not-ours" not in message
        canary.assert_untouched()

    def test_a_real_layout_passes(self, volume):
        (volume / ".caretaker" / "staging" / "tree").mkdir(parents=True)
        (volume / ".caretaker" / "restore-result.json").write_text("{}")
        with Volume.open(volume, create=False) as opened:
            opened.check()


class TestJournalFolders:
    @pytest.mark.parametrize(
        "bad",
        [
            {"source": "quarantine/../../x"},
            {"source": "quarantine/20260101T000000Z/../../.."},
            {"source": "staging/tree/sub"},
            {"aside": "staging"},
            {"aside": "staging/tree"},  # the same as the source
            {"source": "/staging/tree"},
            {"set_aside": "app.db"},
            {"move_in": ["a\0b"]},
        ],
    )
    def test_only_caretakers_own_folders_and_plain_names(self, bad):
        good = {
            "version": 1,
            "kind": "restore",
            "source": "staging/tree",
            "aside": "quarantine/20260101T000000Z-2",
            "set_aside": ["a"],
            "move_in": ["b"],
        }
        assert Journal.from_json(good).aside == "quarantine/20260101T000000Z-2"
        with pytest.raises((ValueError, TypeError)):
            Journal.from_json(good | bad)


class TestResultFile:
    def test_a_fifo_result_is_malformed_not_a_hang(self, volume):
        (volume / ".caretaker").mkdir()
        os.mkfifo(volume / ".caretaker" / "restore-result.json")
        error = finishes(read_result, volume)
        assert isinstance(error, ValueError)
        assert "FIFO" in str(error)

    def test_a_linked_state_folder_is_not_read_through(self, volume, canary):
        os.symlink(canary.path, volume / ".caretaker")
        (canary.path / "restore-result.json").chmod(0o644)
        with pytest.raises(ValueError, match="symlink"):
            read_result(volume)

    def test_write_refuses_a_linked_temp_file(self, volume, canary):
        (volume / ".caretaker").mkdir()
        os.symlink(canary.victim, volume / ".caretaker" / "restore-result.tmp")
        with pytest.raises(UnsafeVolumeError):
            write_result(volume, OUTCOME)
        canary.assert_untouched()

    def test_round_trip(self, volume):
        write_result(volume, OUTCOME)
        assert read_result(volume) == OUTCOME
        assert json.loads((volume / ".caretaker" / "restore-result.json").read_text())["outcome"] == "skipped"


class TestTerminationLog:
    """Outside the volume (the kubelet's file), but still never written through a symlink
    at its last name, and never to a FIFO or device that could block the exit."""

    def test_a_symlink_is_not_followed(self, tmp_path, canary):
        os.symlink(canary.victim, tmp_path / "termination-log")
        with pytest.raises(NotAFileError, match="symlink"):
            write_termination_log(tmp_path / "termination-log", OUTCOME)
        canary.assert_untouched()

    def test_a_fifo_is_not_opened(self, tmp_path):
        os.mkfifo(tmp_path / "termination-log")
        error = finishes(write_termination_log, tmp_path / "termination-log", OUTCOME)
        assert isinstance(error, NotAFileError)

    def test_an_existing_file_is_replaced(self, tmp_path):
        (tmp_path / "termination-log").write_text("x" * 10_000)
        assert write_termination_log(tmp_path / "termination-log", OUTCOME, create=False)
        assert json.loads((tmp_path / "termination-log").read_text())["outcome"] == "skipped"
