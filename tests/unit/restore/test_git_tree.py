"""What a git restore refuses to write, and the metadata git itself does not keep."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import pytest

from restore.backends.git import checkout
from restore.backends.git import meta as git_meta
from restore.backends.git.blobs import Blobs, Known, StatCache
from restore.backends.git.tree import TreeEntry, Walked, count, kinds, tree_problems, walk
from restore.errors import IntegrityError
from restore.model import NoProgress
from restore.safefs import Folder
from restore.snapshots.treewriter import TreeWriter
from tests.support.trees import write_file

SHA = "0" * 40


def blob(path: str, mode: str = "100644", size: int = 1) -> TreeEntry:
    return TreeEntry(mode, "blob", SHA, size, path)


def tree(path: str) -> TreeEntry:
    return TreeEntry("040000", "tree", SHA, 0, path)


def walked(root: Path, patterns: Iterable[str] = (), *, meta: bool = True) -> Walked:
    """The walk alone: file contents go to a buffer, not to git."""
    return walk(root, patterns, Blobs(io.BytesIO(), StatCache({}, 0), NoProgress()), meta=meta)


HOSTILE = {
    "dotdot": [blob("../escape")],
    "inner dotdot": [tree("a"), blob("a/../../escape")],
    "dot": [blob("./a")],
    "empty component": [blob("a//b")],
    "absolute": [blob("/etc/passwd")],
    "dot git": [tree(".git"), blob(".git/config")],
    "dot git, other case": [tree("sub"), tree("sub/.GIT"), blob("sub/.GIT/hooks")],
    "state folder": [tree(".caretaker"), blob(".caretaker/restore-result.json")],
    "submodule": [TreeEntry("160000", "commit", SHA, 0, "vendor")],
    "under a symlink": [blob("link", "120000"), blob("link/escape")],
    "under a file": [blob("a"), blob("a/b")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_trees_are_named(case):
    found = tree_problems(HOSTILE[case])
    assert found
    assert all(path for path, _ in found)


def test_a_normal_tree_has_no_problems():
    entries = [
        tree("a"),
        blob("a/b.txt"),
        blob("a/run.sh", "100755"),
        blob("link", "120000"),
        blob(".caretaker-meta"),
        blob(".gitignore"),
        tree("x.git"),
    ]
    assert tree_problems(entries) == []
    assert count(entries).files == 3  # the metadata file is not the user's


class TestWalk:
    def test_excludes_nested_git_and_state_are_skipped(self, tmp_path):
        write_file(tmp_path / "keep.txt", b"k")
        write_file(tmp_path / "skip.tmp", b"s")
        write_file(tmp_path / "clone" / ".git" / "HEAD", b"ref: refs/heads/main\n")
        write_file(tmp_path / "clone" / "README", b"r")
        write_file(tmp_path / ".caretaker" / "restore-result.json", b"{}")
        write_file(tmp_path / git_meta.META, b"planted\n")
        (tmp_path / "empty").mkdir()
        os.symlink("keep.txt", tmp_path / "link")
        found = walked(tmp_path, ["*.tmp"])
        assert sorted(found.files) == ["clone/README", "keep.txt"]
        assert found.symlinks == ["link"]
        assert sorted(found.dirs) == ["clone", "empty"]
        paths = sorted(line.rstrip().rsplit(" ", 1)[1] for line in found.meta)
        assert paths == ['"clone"', '"clone/README"', '"empty"', '"keep.txt"', '"link"']

    def test_without_meta_a_metadata_file_is_data(self, tmp_path):
        write_file(tmp_path / git_meta.META, b"x")
        assert list(walked(tmp_path, meta=False).files) == [git_meta.META]


def build(tmp_path: Path) -> tuple[Path, list[git_meta.Meta], dict[str, str]]:
    source = tmp_path / "source"
    write_file(source / "conf" / "secret", b"s", mode=0o600, mtime_ns=1_500_000_000_123_456_789)
    write_file(source / "run.sh", b"#!/bin/sh\n", mode=0o750)
    (source / "empty" / "deeper").mkdir(parents=True)
    (source / "empty").chmod(0o711)
    os.symlink("conf/secret", source / "link")
    os.utime(source / "link", ns=(1_400_000_000_000_000_000,) * 2, follow_symlinks=False)
    os.utime(source / "conf", ns=(1_300_000_000_000_000_000,) * 2)
    meta = git_meta.parse(git_meta.encode(walked(source).meta))
    shape = {"conf": "d", "conf/secret": "f", "run.sh": "f", "link": "l"}
    return source, meta, shape


class TestMeta:
    def test_round_trip_restores_modes_times_and_empty_folders(self, tmp_path):
        source, meta, shape = build(tmp_path)
        git_meta.check(meta, shape)
        listed = [tree("conf"), blob("conf/secret"), blob("run.sh", "100755", 10), blob("link", "120000", 11)]
        listed.append(blob(git_meta.META, size=5))
        todo = checkout.entries(listed, meta, {"link": "conf/secret"}, (os.geteuid(), os.getegid()))
        assert [e.path for e in todo] == ["conf", "conf/secret", "empty", "empty/deeper", "link", "run.sh"]
        dest = tmp_path / "dest"
        dest.mkdir()
        with Folder.exact(dest) as root:
            writer = TreeWriter(root, Pieces([b"s", b"#!/bin/sh\n"]), NoProgress(), keep_setid=False)
            writer.write_all(todo)
        assert (writer.stats.files, writer.stats.dirs, writer.stats.symlinks) == (2, 3, 1)
        for name in ["conf", "conf/secret", "run.sh", "link", "empty", "empty/deeper"]:
            want, got = (source / name).lstat(), (dest / name).lstat()
            assert (stat.S_IMODE(got.st_mode), got.st_mtime_ns) == (
                stat.S_IMODE(want.st_mode),
                want.st_mtime_ns,
            ), name
        assert not (dest / git_meta.META).exists()

    def test_a_commit_without_metadata_restores_as_a_plain_checkout(self):
        listed = [tree("bin"), blob("bin/run", "100755"), blob("notes"), blob("link", "120000")]
        todo = checkout.entries(listed, None, {"link": "notes"}, (123, 456))
        modes = {e.path: (e.kind, e.mode, e.uid, e.gid, e.target) for e in todo}
        assert modes == {
            "bin": ("d", 0o755, 123, 456, ""),
            "bin/run": ("f", 0o755, 123, 456, ""),
            "link": ("l", 0o777, 123, 456, "notes"),
            "notes": ("f", 0o644, 123, 456, ""),
        }


class Pieces:
    """A feed of given contents, one per file."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = iter(pieces)

    def next(self) -> bytes:
        return next(self._pieces)


class TestBlobAnswers:
    @staticmethod
    def answer(content: bytes, sha: str | None = None) -> tuple[bytes, str]:
        real = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
        return b"%s blob %d\n%s\n" % ((sha or real).encode(), len(content), content), sha or real

    def test_blobs_are_read_in_pieces_and_checked(self, monkeypatch):
        monkeypatch.setattr(checkout, "PIECE", 4)
        data, sha = self.answer(b"0123456789")
        assert list(checkout.read_blob(io.BytesIO(data), sha, 10)) == [b"0123", b"4567", b"89"]

    def test_a_blob_that_does_not_hash_to_its_id_fails_before_its_last_piece(self, monkeypatch):
        monkeypatch.setattr(checkout, "PIECE", 4)
        data, sha = self.answer(b"0123456789", sha="1" * 40)
        pieces = checkout.read_blob(io.BytesIO(data), sha, 10)
        assert [next(pieces), next(pieces)] == [b"0123", b"4567"]
        with pytest.raises(IntegrityError, match="does not hash to its id"):
            next(pieces)

    def test_an_answer_for_another_object_is_refused(self):
        data, _ = self.answer(b"x")
        with pytest.raises(IntegrityError, match="cannot be read: git answered"):
            list(checkout.read_blob(io.BytesIO(data), "2" * 40, 1))


class TestMetaLines:
    @pytest.mark.parametrize(
        ("line", "match"),
        [
            ('f 0644 1 0 0 "../escape"\n', "unsafe path"),
            ('d 0755 1 0 0 ".git"\n', "unsafe path"),
            ('d 0755 1 0 0 ".GIT. "\n', "unsafe path.*a .git component"),
            ('d 0755 1 0 0 ".caretaker"\n', "unsafe path.*own .caretaker folder"),
            ('f 0644 1 0 0 "not/in/tree"\n', "before"),
            ('f 0644 1 0 0 "ghost"\n', "the tree does not"),
            ('d 0755 1 0 0 "link"\nd 0755 1 0 0 "link/inside"\n', "the tree does not"),
            ('l 0777 1 0 0 "run.sh"\n', "the tree does not"),
        ],
    )
    def test_hostile_lines_are_refused_before_writing(self, tmp_path, line, match):
        _, _, shape = build(tmp_path)
        with pytest.raises(IntegrityError, match=match):
            git_meta.check(git_meta.parse(line.encode()), shape)

    @pytest.mark.parametrize(
        "text", ["garbage\n", 'x 0644 1 0 0 "a"\n', "f 0644 1 0 0 a\n", 'f 09 1 0 0 "a"\n']
    )
    def test_malformed_lines(self, text):
        with pytest.raises(IntegrityError, match="malformed"):
            git_meta.parse(text.encode())

    def test_kinds(self):
        assert kinds([tree("a"), blob("a/b"), blob("l", "120000")]) == {"a": "d", "a/b": "f", "l": "l"}


class TestStatCache:
    """What a git backup may leave unread: only files the cache of the same tree vouches for."""

    def write(self, tmp_path: Path, path: Path, *, started_ns: int) -> Path:
        cache = tmp_path / "walk-cache"
        known = {"odd name\nwith newline": Known.of("a" * 40, path.stat())}
        StatCache.save(cache, "t" * 40, started_ns, known)
        return cache

    def test_unchanged_file_is_known_by_its_blob(self, tmp_path: Path) -> None:
        path = write_file(tmp_path / "f", b"x")
        cache = self.write(tmp_path, path, started_ns=path.stat().st_mtime_ns + 10**10)
        assert StatCache.load(cache, "t" * 40).lookup("odd name\nwith newline", path.stat()) == "a" * 40

    def test_another_tree_or_a_change_or_a_racy_mtime_is_read_again(self, tmp_path: Path) -> None:
        path = write_file(tmp_path / "f", b"x")
        cache = self.write(tmp_path, path, started_ns=path.stat().st_mtime_ns + 10**10)
        assert StatCache.load(cache, "u" * 40).lookup("odd name\nwith newline", path.stat()) is None
        racy = self.write(tmp_path, path, started_ns=path.stat().st_mtime_ns + 10**9)
        assert StatCache.load(racy, "t" * 40).lookup("odd name\nwith newline", path.stat()) is None
        cache = self.write(tmp_path, path, started_ns=path.stat().st_mtime_ns + 10**10)
        write_file(path, b"y")  # same size and mtime; the ctime moved
        assert StatCache.load(cache, "t" * 40).lookup("odd name\nwith newline", path.stat()) is None

    def test_a_damaged_cache_only_costs_reading(self, tmp_path: Path) -> None:
        path = write_file(tmp_path / "f", b"x")
        cache = self.write(tmp_path, path, started_ns=path.stat().st_mtime_ns + 10**10)
        cache.write_bytes(cache.read_bytes()[:-20])
        assert StatCache.load(cache, "t" * 40).known == {}
