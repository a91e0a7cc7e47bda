"""The data folder as git sees it: what a backup stages, and what a restore may trust.

A backup stages regular files and symlinks from caretaker's own walk (excludes applied,
nested `.git` skipped) plus `.caretaker-meta` (modes, owners, mtimes, folders: see
`git_meta`). A restore first checks the tree: a commit made by someone else may contain
`..`, `.git` or absolute paths, submodules, a file inside a file, or a top-level
`.caretaker` that would overwrite caretaker's own state; `tree_problems` names every such
entry before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from restore.backends.git import meta as git_meta
from restore.excludes import Excludes
from restore.scan import scan

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
FILE_MODES = frozenset({"100644", "100755"})
SYMLINK_MODE = "120000"
TREE_MODE = "040000"


@dataclasses.dataclass
class Walked:
    """One walk of the data folder."""

    files: dict[str, int] = dataclasses.field(default_factory=dict)  # path -> size
    symlinks: list[str] = dataclasses.field(default_factory=list)
    dirs: list[str] = dataclasses.field(default_factory=list)
    special: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    meta: list[str] = dataclasses.field(default_factory=list)  # `.caretaker-meta` lines

    @property
    def bytes(self) -> int:
        return sum(self.files.values())

    @property
    def staged(self) -> list[str]:
        """The paths `git update-index --add` reads from the folder."""
        return [*self.files, *self.symlinks]

    @property
    def empty(self) -> bool:
        return not (self.files or self.symlinks or self.dirs)


def walk(root: Path, patterns: Iterable[str], *, meta: bool = True) -> Walked:
    """Walk `root` without following symlinks. Raise LocalIOError if it cannot be read.

    With `meta`, a top-level `.caretaker-meta` is caretaker's (skipped) and the walk
    records the metadata lines; without, the folder is taken as it is (restore's check).
    """
    # A nested repository's `.git` is its history, not data: committing it would turn the
    # folder into a broken submodule. Its working files are backed up like any others.
    excludes = Excludes([*patterns, ".git", *([f"/{git_meta.META}"] if meta else [])])
    walked = Walked()
    for item in scan(root, excludes, lambda path, kind: walked.special.append((path, kind)), lambda _: None):
        mode = item.stat.st_mode
        if stat.S_ISDIR(mode):
            kind = "d"
            walked.dirs.append(item.path)
        elif stat.S_ISLNK(mode):
            kind = "l"
            walked.symlinks.append(item.path)
        else:
            kind = "f"
            walked.files[item.path] = item.stat.st_size
        if meta:
            walked.meta.append(git_meta.line(kind, item.path, item.stat))
    return walked


@dataclasses.dataclass(frozen=True)
class TreeEntry:
    """One line of `git ls-tree -r -t -l -z`."""

    mode: str
    kind: str
    sha: str
    size: int
    path: str


def parse_ls_tree(output: bytes) -> list[TreeEntry]:
    entries = []
    for record in output.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, sha, size = meta.decode("ascii").split()
        path = os.fsdecode(raw_path)
        entries.append(TreeEntry(mode, kind, sha, 0 if size == "-" else int(size), path))
    return entries


def tree_problems(entries: list[TreeEntry]) -> list[tuple[str, str]]:
    """Return (path, problem) for every entry a restore must refuse to write."""
    problems: list[tuple[str, str]] = []
    leaves: set[str] = set()
    for entry in entries:
        found = git_meta.path_problem(entry.path)
        if found is None and entry.mode not in {*FILE_MODES, SYMLINK_MODE, TREE_MODE}:
            found = f"unsupported mode {entry.mode} ({entry.kind})"
        if found is not None:
            problems.append((entry.path, found))
        if entry.mode != TREE_MODE:
            leaves.add(entry.path)
    for entry in entries:
        parent = entry.path.rpartition("/")[0]
        if parent in leaves:
            problems.append((entry.path, f"inside {parent!r}, which is not a folder"))
    return problems


@dataclasses.dataclass(frozen=True)
class TreeCounts:
    files: int
    dirs: int
    symlinks: int
    bytes: int


def count(entries: list[TreeEntry]) -> TreeCounts:
    """What a tree holds as the user sees it: `.caretaker-meta` is not a file of theirs."""
    files = [e for e in entries if e.mode in FILE_MODES and e.path != git_meta.META]
    return TreeCounts(
        files=len(files),
        dirs=sum(1 for e in entries if e.mode == TREE_MODE),
        symlinks=sum(1 for e in entries if e.mode == SYMLINK_MODE),
        bytes=sum(e.size for e in files),
    )


def kinds(entries: list[TreeEntry]) -> dict[str, str]:
    """path -> d (folder), f (file) or l (symlink), as `.caretaker-meta` names them."""
    return {e.path: "d" if e.mode == TREE_MODE else "l" if e.mode == SYMLINK_MODE else "f" for e in entries}
