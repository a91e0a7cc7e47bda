"""Browsing git snapshots: commits fetched into a scratch git dir, read with `git ls-tree`,
`.caretaker-meta` and `git cat-file`.

A snapshot's nodes come from its tree (sizes, blob ids, symlink targets), checked as a restore
checks it, with modes, owners and mtimes from `.caretaker-meta` (empty folders exist only
there). A commit made by hand, without that file, lists git's own modes (0644 or 0755,
folders 0755) with no owners or times. The listing of one snapshot is held in memory and
sorted into manifest order: git repositories are for small volumes ([git.md](../docs/git.md)).
Diffs compare these listings as two sorted streams; contents stream through one
`git cat-file --batch` process.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence

from restore.backends.git import meta as git_meta
from restore.backends.git.cmd import GitRunner
from restore.backends.git.history import Commit
from restore.backends.git.remote import Remote
from restore.backends.git.tree import SYMLINK_MODE, TREE_MODE, TreeEntry
from restore.errors import IntegrityError
from restore.model import SnapshotInfo
from restore.nodes import DIR, FILE, SYMLINK, Node, sort_key
from restore.selection import Selection

_BLOCK = 1 << 20


@contextlib.contextmanager
def fetched(remote: Remote, snapshot_ids: Sequence[str]) -> Iterator[tuple[GitRunner, list[Snapshot]]]:
    """The snapshots' commits, fetched (depth 1, with git's object checks) into a scratch git
    dir that lives as long as the block. Raise NoSnapshotError for an unknown id."""
    found = remote.ours(remote.history())
    chosen = [remote.resolve(s, found) for s in snapshot_ids]
    with remote.scratch() as runner:
        specs = sorted({f"+{c.sha}:refs/caretaker/{c.sha}" for c, _ in chosen})
        if specs:
            runner.run("fetch", "--quiet", "--no-tags", "--depth=1", "origin", *specs, network="fetch")
        yield runner, [Snapshot(remote, runner, commit, info) for commit, info in chosen]


class Snapshot:
    """One fetched snapshot: its checked tree, listed in manifest order."""

    def __init__(self, remote: Remote, runner: GitRunner, commit: Commit, info: SnapshotInfo) -> None:
        self.info = info
        self.runner = runner
        self.tree = remote.subtree(runner, commit)
        self.entries: list[TreeEntry] = []
        self.meta: list[git_meta.Meta] | None = None
        if self.tree is not None:
            self.entries, self.meta = remote.checked(runner, self.tree, info)

    def nodes(self, selection: Selection | None = None) -> Iterator[Node]:
        listed = sorted(_nodes(self.runner, self.entries, self.meta), key=lambda n: sort_key(n.path))
        if selection is None or selection.everything:
            return iter(listed)
        return selection.filter(listed, lambda n: n.path, lambda n: n.kind == DIR)

    def contents(self, selection: Selection | None) -> Iterator[tuple[Node, Iterator[bytes]]]:
        """`nodes`, files with their bytes, streamed by one `git cat-file --batch`."""
        with self.runner.piped("cat-file", "--batch") as process:
            for node in self.nodes(selection):
                if node.kind != FILE:
                    yield node, iter(())
                    continue
                data = _blob(process, node)
                yield node, data
                for _ in data:
                    pass


def _nodes(runner: GitRunner, entries: list[TreeEntry], meta: list[git_meta.Meta] | None) -> Iterator[Node]:
    targets = _link_targets(runner, [e.sha for e in entries if e.mode == SYMLINK_MODE])
    found: dict[str, Node] = {}
    for entry in entries:
        if entry.path == git_meta.META:
            continue
        kind = DIR if entry.mode == TREE_MODE else SYMLINK if entry.mode == SYMLINK_MODE else FILE
        mode = 0o755 if kind == DIR or entry.mode == "100755" else 0o644 if kind == FILE else 0o777
        target = targets.get(entry.sha, "") if kind == SYMLINK else ""
        size = entry.size if kind == FILE else len(target)
        content = bytes.fromhex(entry.sha) if kind != DIR else b""
        found[entry.path] = Node(entry.path, kind, mode, 0, 0, 0, size, target, content)
    for line in meta or ():
        node = found.get(line.path) or Node(line.path, DIR, line.mode, 0, 0, 0)
        found[line.path] = node._replace(mode=line.mode, uid=line.uid, gid=line.gid, mtime_ns=line.mtime_ns)
    return iter(found.values())


def _link_targets(runner: GitRunner, shas: list[str]) -> dict[str, str]:
    """Blob id -> the link target it holds, for every symlink blob (one `cat-file` run)."""
    if not shas:
        return {}
    output = runner.run("cat-file", "--batch", stdin="".join(f"{s}\n" for s in set(shas)).encode())
    targets: dict[str, str] = {}
    offset = 0
    while offset < len(output):
        header_end = output.index(b"\n", offset)
        sha, _, size = output[offset:header_end].decode("ascii").split()
        start = header_end + 1
        targets[sha] = output[start : start + int(size)].decode("utf-8", "surrogateescape")
        offset = start + int(size) + 1
    return targets


def _blob(process: subprocess.Popen[bytes], node: Node) -> Iterator[bytes]:
    """Ask `cat-file --batch` for one file's blob and stream its bytes."""
    assert process.stdin is not None  # noqa: S101 - piped() gives both pipes
    assert process.stdout is not None  # noqa: S101
    process.stdin.write(node.content.hex().encode() + b"\n")
    process.stdin.flush()
    header = process.stdout.readline().decode("ascii", "replace").split()
    if len(header) != 3 or header[1] != "blob" or int(header[2]) != node.size:
        raise IntegrityError(f"{node.path}: git has no blob of {node.size} bytes for it ({' '.join(header)})")
    left = node.size
    while left:
        data = process.stdout.read(min(_BLOCK, left))
        if not data:
            raise IntegrityError(f"{node.path}: git stopped sending it after {node.size - left} bytes")
        left -= len(data)
        yield data
    process.stdout.read(1)  # the newline after each object


def select_tree(
    entries: list[TreeEntry], meta: list[git_meta.Meta] | None, selection: Selection
) -> tuple[list[TreeEntry], list[git_meta.Meta] | None]:
    """The tree entries and metadata lines a partial restore writes: what `selection`
    chooses, with the folders above it, and `.caretaker-meta` itself (removed after use)."""
    ordered = sorted((e for e in entries if e.path != git_meta.META), key=lambda e: sort_key(e.path))
    kept = list(selection.filter(ordered, lambda e: e.path, lambda e: e.mode == TREE_MODE))
    kept += [e for e in entries if e.path == git_meta.META]
    if meta is None:
        return kept, None
    return kept, list(selection.filter(meta, lambda m: m.path, lambda m: m.kind == "d"))


def stage_entries(runner: GitRunner, entries: list[TreeEntry], env: dict[str, str]) -> str:
    """Fill the index named by `env` with exactly these files and symlinks; return its tree."""
    lines = b"".join(
        f"{e.mode} {e.sha}\t".encode() + e.path.encode("utf-8", "surrogateescape") + b"\0"
        for e in entries
        if e.mode != TREE_MODE
    )
    runner.run("update-index", "--add", "-z", "--index-info", stdin=lines, env=env)
    return runner.text("write-tree", env=env)
