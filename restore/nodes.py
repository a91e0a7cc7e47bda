"""What browsing a snapshot shows: its folders, files and symlinks (`Node`), and how two
snapshots differ (`Change`), whatever repository holds them.

Every repository yields nodes in one order, the manifest's (docs/format.md, 9.2): depth-first,
the names of each folder sorted, a folder before its contents. Two snapshots are therefore
compared as a merge of two sorted streams (`diff_nodes`), holding one node of each at a time.
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol

from restore.clock import format_time

FILE, DIR, SYMLINK = "f", "d", "l"
_TYPES = {FILE: "file", DIR: "dir", SYMLINK: "symlink"}
_MODE_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK}


def sort_key(path: str) -> str:
    """The manifest order as a string order: NUL sorts before every character of a name."""
    return path.replace("/", "\0")


class Node(NamedTuple):
    """One folder, file or symlink of a snapshot. A tuple: a listing streams millions."""

    path: str
    kind: str  # FILE, DIR or SYMLINK
    mode: int  # permission bits, 0..0o7777
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    target: str = ""  # symlinks only
    # Equal values mean equal bytes (the engine: the chunk ids; git: the blob id); only
    # compared within one repository.
    content: bytes = b""

    @property
    def type(self) -> str:
        return _TYPES[self.kind]

    def permissions(self) -> str:
        """`drwxr-xr-x`, as `ls -l` shows it."""
        return stat.filemode(_MODE_BITS[self.kind] | self.mode)

    def mtime(self) -> str:
        seconds, nanos = divmod(self.mtime_ns, 1_000_000_000)
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)
        return format_time(moment)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "path": self.path,
            "type": self.type,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "mtime": self.mtime(),
            "size": self.size,
        }
        if self.kind == SYMLINK:
            document["target"] = self.target
        return document


ChangeKind = Literal["added", "removed", "changed", "metadata"]
_SIGNS: dict[ChangeKind, str] = {"added": "+", "removed": "-", "changed": "M", "metadata": "U"}


@dataclasses.dataclass(frozen=True)
class Change:
    """One path that differs between two snapshots: `changed` means other content or
    another type; `metadata` means only the mode, owner or (not for folders) mtime."""

    kind: ChangeKind
    old: Node | None
    new: Node | None

    @property
    def path(self) -> str:
        node = self.new or self.old
        assert node is not None  # noqa: S101 - a change has at least one side
        return node.path

    @property
    def sign(self) -> str:
        return _SIGNS[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "change": self.kind,
            "path": self.path,
            "old": self.old.to_json() if self.old else None,
            "new": self.new.to_json() if self.new else None,
        }


def compare(old: Node, new: Node) -> ChangeKind | None:
    """How the same path differs between two snapshots, or None if it does not."""
    if old.kind != new.kind or old.content != new.content or old.target != new.target:
        return "changed"
    if old.kind == FILE and old.size != new.size:
        return "changed"
    if (old.mode, old.uid, old.gid) != (new.mode, new.uid, new.gid):
        return "metadata"
    if old.kind != DIR and old.mtime_ns != new.mtime_ns:
        return "metadata"
    return None


class Cursor(Protocol):
    """A node stream that can be looked ahead into by one node."""

    def peek(self) -> Node | None: ...

    def pop(self) -> None: ...


class _Stream:
    def __init__(self, nodes: Iterator[Node]) -> None:
        self._nodes = nodes
        self._next = next(nodes, None)

    def peek(self) -> Node | None:
        return self._next

    def pop(self) -> None:
        self._next = next(self._nodes, None)


def diff_nodes(old: Iterator[Node], new: Iterator[Node]) -> Iterator[Change]:
    """Merge two node streams in manifest order into the changes between them."""
    return diff_cursors(_Stream(old), _Stream(new), lambda: None)


def diff_cursors(old: Cursor, new: Cursor, skip_common: Callable[[], None]) -> Iterator[Change]:
    """`diff_nodes` over cursors; `skip_common` runs before each step and may move both
    cursors past a stretch it knows to be equal on both sides."""
    while True:
        skip_common()
        a, b = old.peek(), new.peek()
        if a is None and b is None:
            return
        if b is None or (a is not None and sort_key(a.path) < sort_key(b.path)):
            yield Change("removed", a, None)
            old.pop()
        elif a is None or sort_key(b.path) < sort_key(a.path):
            yield Change("added", None, b)
            new.pop()
        else:
            kind = compare(a, b)
            if kind is not None:
                yield Change(kind, a, b)
            old.pop()
            new.pop()
