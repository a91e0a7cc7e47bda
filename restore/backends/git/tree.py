"""The data folder as git sees it: what a backup stages, and what a restore may trust.

A backup stages regular files and symlinks from caretaker's own walk (excludes applied,
nested `.git` skipped; their contents sent to git by caretaker, see `blobs`) plus
`.caretaker-meta` (modes, owners, mtimes, folders: see `git_meta`). A restore first checks
the tree: a commit made by someone else may contain `..`, `.git` or absolute paths,
submodules, a file inside a file, or a top-level `.caretaker` that would overwrite
caretaker's own state; `tree_problems` names every such entry before anything is written.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from restore.backends.git import meta as git_meta
from restore.backends.git.blobs import Blobs, Known, git_mode
from restore.excludes import Excludes
from restore.reads import read_link, vanished
from restore.scan import Scanned, scan

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
FILE_MODES = frozenset({"100644", "100755"})
SYMLINK_MODE = "120000"
TREE_MODE = "040000"


@dataclasses.dataclass
class Walked:
    """One walk of the data folder, its contents sent to git (see `blobs`)."""

    files: dict[str, int] = dataclasses.field(default_factory=dict)  # path -> size
    symlinks: list[str] = dataclasses.field(default_factory=list)
    dirs: list[str] = dataclasses.field(default_factory=list)
    special: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    meta: list[str] = dataclasses.field(default_factory=list)  # `.caretaker-meta` lines
    # path -> (git mode, blob: its id, or its fast-import mark until `resolve`), walk order
    blobs: dict[str, tuple[str, str | int]] = dataclasses.field(default_factory=dict)
    # path -> `fstat` of files read unchanged (or known unchanged): the next stat cache
    read: dict[str, os.stat_result] = dataclasses.field(default_factory=dict)
    bytes_read: int = 0
    changed_during_read: int = 0

    @property
    def bytes(self) -> int:
        return sum(self.files.values())

    @property
    def empty(self) -> bool:
        return not (self.files or self.symlinks or self.dirs)

    def resolve(self, marks: dict[int, str]) -> None:
        """Name every blob by its id, given fast-import's marks."""
        for path, (mode, blob) in self.blobs.items():
            if isinstance(blob, int):
                self.blobs[path] = (mode, marks[blob])

    def known(self) -> dict[str, Known]:
        """What the stat cache of the next backup may trust (call `resolve` first)."""
        return {path: Known.of(str(self.blobs[path][1]), info) for path, info in self.read.items()}


def walk(root: Path, patterns: Iterable[str], blobs: Blobs, *, meta: bool = True) -> Walked:
    """Walk `root` without following symlinks, sending every file and link to `blobs`.
    Raise LocalIOError if it cannot be read.

    With `meta`, a top-level `.caretaker-meta` is caretaker's (skipped) and the walk
    records the metadata lines; without, the folder is taken as it is (restore's check).
    """
    # A nested repository's `.git` is its history, not data: committing it would turn the
    # folder into a broken submodule. Its working files are backed up like any others.
    excludes = Excludes([*patterns, ".git", *([f"/{git_meta.META}"] if meta else [])])
    walked = Walked()
    for item in scan(root, excludes, lambda path, kind: walked.special.append((path, kind)), vanished):
        found = _stage(item, blobs, walked)
        if meta and found is not None:
            walked.meta.append(git_meta.line(found[0], item.path, found[1]))
    walked.bytes_read, walked.changed_during_read = blobs.bytes_read, blobs.changed_during_read
    return walked


def _stage(item: Scanned, blobs: Blobs, walked: Walked) -> tuple[str, os.stat_result] | None:
    """Record one entry (its blob sent); return its `.caretaker-meta` kind and metadata."""
    mode = item.stat.st_mode
    if stat.S_ISDIR(mode):
        walked.dirs.append(item.path)
        return "d", item.stat
    if stat.S_ISLNK(mode):
        target = read_link(item)
        if target is None:
            vanished(item.path)
            return None
        walked.symlinks.append(item.path)
        walked.blobs[item.path] = (SYMLINK_MODE, blobs.data(os.fsencode(target)))
        return "l", item.stat
    sent = blobs.file(item)
    if sent is None:
        return None
    walked.files[item.path] = sent.info.st_size
    walked.blobs[item.path] = (git_mode(sent.info), sent.blob)
    if sent.stable:
        walked.read[item.path] = sent.info
    return "f", sent.info


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
