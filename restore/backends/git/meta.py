"""What git does not keep, kept beside the data: modes, owners, mtimes and empty folders.

Git stores a file's content and one bit of its mode (executable or not). A restore that
turned a 0600 secret into a 0644 file, lost every mtime, or dropped empty folders an app
expects would not be a faithful restore, so each backup commit also carries
`.caretaker-meta` at the top of its folder: one line per folder, file and symlink,

    f 0600 1700000000123456789 999 999 "conf/secret.yaml"

(kind, permission bits, mtime in ns, uid, gid, path as a JSON string), sorted as walked.
A restore writes each entry with its line's metadata (`checkout`) and never writes the file
itself. Owners are applied only when running as root (like tar). Lines are trusted no more
than the tree: a path that is not a folder, file or symlink of the restored tree is
refused, and nothing is created or changed through a symlink.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Iterable

from restore.errors import IntegrityError
from restore.model import STATE_DIR

META = ".caretaker-meta"
_KINDS = {"d": stat.S_ISDIR, "f": stat.S_ISREG, "l": stat.S_ISLNK}


@dataclasses.dataclass(frozen=True)
class Meta:
    kind: str  # d | f | l
    mode: int
    mtime_ns: int
    uid: int
    gid: int
    path: str


def line(kind: str, path: str, info: os.stat_result) -> str:
    mode = stat.S_IMODE(info.st_mode)
    return line_of(kind, path, mode=mode, mtime_ns=info.st_mtime_ns, uid=info.st_uid, gid=info.st_gid)


def line_of(kind: str, path: str, *, mode: int, mtime_ns: int, uid: int, gid: int) -> str:
    return f"{kind} {mode:04o} {mtime_ns} {uid} {gid} {json.dumps(path)}\n"


def encode(lines: Iterable[str]) -> bytes:
    return "".join(lines).encode("utf-8", "surrogateescape")


def parse(data: bytes) -> list[Meta]:
    """Parse `.caretaker-meta`. Raise IntegrityError naming the first bad line."""
    found = []
    for number, text in enumerate(data.decode("utf-8", "surrogateescape").splitlines(), 1):
        try:
            kind, mode, mtime, uid, gid, raw = text.split(" ", 5)
            entry = Meta(kind, int(mode, 8) & 0o7777, int(mtime), int(uid), int(gid), json.loads(raw))
        except ValueError as error:
            raise IntegrityError(f"{META} line {number} is malformed: {text[:120]!r}") from error
        if entry.kind not in _KINDS or not isinstance(entry.path, str):
            raise IntegrityError(f"{META} line {number} is malformed: {text[:120]!r}")
        found.append(entry)
    return found


def path_problem(path: str) -> str | None:
    """Why a restore must not write `path` from a snapshot, or None if it may.

    The one rule for tree entries and metadata lines alike: no absolute path, no empty,
    `.` or `..` component, no `.git` in any spelling git itself would accept, and nothing
    in caretaker's own state folder.
    """
    if path.startswith("/"):
        return "an absolute path"
    parts = path.split("/")
    if parts[0] == STATE_DIR:
        return f"caretaker's own {STATE_DIR} folder"
    for part in parts:
        if part in {"", ".", ".."}:
            return f"path component {part!r}"
        if part.lower().rstrip(". ") == ".git":
            return "a .git component"
    return None


def check(entries: list[Meta], tree: dict[str, str]) -> None:
    """Check the lines against the snapshot's tree (path -> d/f/l) before anything is written.

    Raise IntegrityError for a path outside the tree, a kind that disagrees with it, or a
    folder whose parent is not a folder (which could lead through a symlink).
    """
    folders = {""}
    for entry in entries:
        problem = path_problem(entry.path)
        if problem is not None:
            raise IntegrityError(f"{META} names the unsafe path {entry.path!r} ({problem})")
        if entry.path.rpartition("/")[0] not in folders:
            raise IntegrityError(f"{META} names {entry.path!r} before (or without) its folder")
        if tree.get(entry.path, "d") != entry.kind:
            raise IntegrityError(f"{META} calls {entry.path!r} a {entry.kind!r}, the tree does not")
        if entry.kind == "d":
            folders.add(entry.path)
