"""Copying snapshots into a git repository (`caretaker copy --to git+...`).

Each snapshot becomes one commit on the branch, as a backup would make it: the volume's files
and symlinks in the `path=` folder, `.caretaker-meta` with modes, owners, mtimes and folders,
the usual trailers, author and committer dates at the snapshot's time, plus
`Caretaker-Snapshot: <id>`, which makes the copy's id the original's (`--snapshot ID` works on
both sides) and tells the next copy what is there already.

Only what changed is read and sent: when the branch's folder still holds the newest copied
snapshot, the new commit is that tree plus the source's diff between the two snapshots (only
added and changed files are read from the source); otherwise every file is read. File bytes
stream into `git fast-import`, which writes the blobs; caretaker hashes the same bytes and
compares, checks that the new tree holds exactly the snapshot's paths, and pushes without
force (another writer first: exit 6, nothing overwritten). A copy killed before its push
leaves nothing on the remote; the next one starts that snapshot again.
"""

from __future__ import annotations

import collections
import hashlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import structlog

from restore.backends.git import meta as git_meta
from restore.backends.git.blobs import FAST_IMPORT, read_marks
from restore.backends.git.history import LOG_ARGS, Commit, parse_log
from restore.backends.git.remote import Remote
from restore.backends.git.stage import BackupWriter, removals
from restore.errors import IntegrityError
from restore.model import BackupOptions, BackupStats, Copied, SnapshotInfo
from restore.nodes import DIR, FILE, SYMLINK, Change, Node
from restore.repository import Repository
from restore.selection import Selection

_INDEX = "copy-index"


def _mode(node: Node) -> str:
    if node.kind == SYMLINK:
        return "120000"
    return "100755" if node.mode & 0o100 else "100644"


def _git_path(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


class CheckedBlobs:
    """Blobs written through one `git fast-import` (see `blobs.FAST_IMPORT`): what was sent,
    hashed on the way, to be checked against the id git gave it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.marks: list[tuple[str, str, str]] = []  # path, mode, expected blob id
        self.bytes = 0

    def add(self, path: str, mode: str, size: int, blocks: Iterator[bytes]) -> None:
        digest = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        self._stream.write(b"blob\nmark :%d\ndata %d\n" % (len(self.marks) + 1, size))
        sent = 0
        for block in blocks:
            digest.update(block)
            self._stream.write(block)
            sent += len(block)
        if sent != size:
            raise IntegrityError(f"{path}: the source gave {sent} bytes, its snapshot says {size}")
        self._stream.write(b"\n")
        self.marks.append((path, mode, digest.hexdigest()))
        self.bytes += size

    def index_lines(self, marks_file: Path) -> bytes:
        """`mode sha<TAB>path` lines for `update-index --index-info`, checked against the
        ids git computed. Raise IntegrityError if one differs."""
        given = read_marks(marks_file)
        lines = []
        for number, (path, mode, expected) in enumerate(self.marks, 1):
            if (stored := given.get(number)) != expected:
                raise IntegrityError(f"git stored {path} as {stored}, its bytes hash to {expected}")
            lines.append(f"{mode} {expected}\t".encode() + _git_path(path) + b"\0")
        return b"".join(lines)


class Importer:
    """Commits source snapshots onto the remote's branch, one push each."""

    def __init__(self, remote: Remote, source: Repository) -> None:
        self.remote = remote
        self.source = source
        # zlib level 3, as a backup at the default --compression-level writes.
        self.runner = remote.prepared(remote.home / "copy.git", partial="blob:none", compression=3)
        self.env = {"GIT_INDEX_FILE": str(self.runner.git_dir / _INDEX)}

    def run(self, snapshots: Sequence[SnapshotInfo]) -> list[Copied]:
        with self.remote.locked("backup", wait=False):
            present = {info.id for _, info in self.remote.ours(self.remote.history())}
            done = [Copied(s, copied=False) for s in snapshots if s.id in present]
            listed = {s.id for s in self.source.snapshots()}
            for snapshot in sorted((s for s in snapshots if s.id not in present), key=lambda s: s.time):
                done.append(self.one(snapshot, listed))
                self.remote.forget_listing()
        return done

    def tip(self) -> Commit | None:
        if not self.remote.fetch_branch(self.runner, "--depth=1", "--filter=blob:none", action="fetch"):
            return None
        return parse_log(self.runner.run("log", "-1", *LOG_ARGS, self.remote.tracking_ref))[0]

    def base(self, tip: Commit | None, listed: set[str]) -> tuple[str, str | None] | None:
        """(source id, folder tree) of the newest copy, if the branch's folder still holds
        exactly it and the source still has it; else None (a full copy)."""
        ours = self.remote.ours(self.remote.history())
        if tip is None or not ours or ours[0][1].id not in listed:
            return None
        commit, info = ours[0]
        if commit.sha != tip.sha:
            self.remote.fetch_commit(self.runner, commit, info, "fetch", ref="refs/caretaker/base")
        tree = self.remote.subtree(self.runner, tip)
        return (info.id, tree) if tree == self.remote.subtree(self.runner, commit) else None

    def one(self, snapshot: SnapshotInfo, listed: set[str]) -> Copied:
        tip = self.tip()
        base = self.base(tip, listed)
        self.runner.run("read-tree", *([base[1]] if base and base[1] else ["--empty"]), env=self.env)
        if base is None:
            changes: Iterator[Change] = (Change("added", None, n) for n in self.source.nodes(snapshot.id))
        else:
            changes = self.source.diff(base[0], snapshot.id)
        plan = _Plan(changes)
        with tempfile.TemporaryDirectory(dir=self.runner.git_dir) as scratch:
            links = self.write_blobs(snapshot, plan, Path(scratch))
        data_tree = self.runner.text("write-tree", env=self.env)
        self.check_tree(snapshot, data_tree, links)
        writer = BackupWriter(self.runner, self.remote.settings)
        sha = writer.commit(
            parent=tip,
            tree=writer.graft(tip, data_tree),
            options=BackupOptions(host=snapshot.host, tags=snapshot.tags),
            moment=snapshot.time,
            stats=plan.stats(snapshot, links),
            deleted=len(plan.removed),
            extra={"Snapshot": snapshot.id, "Source-Path": snapshot.path},
        )
        writer.push(sha)
        structlog.get_logger().info(
            "copy.snapshot", snapshot=snapshot.id, commit=sha, files=len(plan.content)
        )
        return Copied(snapshot, copied=True, blobs=len(plan.content), bytes=plan.bytes)

    def write_blobs(self, snapshot: SnapshotInfo, plan: _Plan, scratch: Path) -> int:
        """Stream the new blobs and `.caretaker-meta` into fast-import, then put them and the
        removals into the index. Return how many symlinks the snapshot has."""
        meta, links = _meta_file(self.source.nodes(snapshot.id), scratch / "meta")
        marks = scratch / "marks"
        with self.runner.piped(*FAST_IMPORT, f"--export-marks={marks}") as process:
            assert process.stdin is not None  # noqa: S101 - piped() gives a stdin
            blobs = CheckedBlobs(process.stdin)
            for node in plan.links:
                blobs.add(node.path, _mode(node), len(_git_path(node.target)), iter([_git_path(node.target)]))
            wanted = Selection.paths({n.path for n in plan.content})
            for node, data in self.source.contents(snapshot.id, wanted):
                if wanted.selects(node.path):
                    blobs.add(node.path, _mode(node), node.size, data)
            with meta.open("rb") as lines:
                blocks = iter(lambda: lines.read(1 << 20), b"")
                blobs.add(git_meta.META, "100644", meta.stat().st_size, blocks)
            process.stdin.write(b"done\n")
        plan.bytes = blobs.bytes
        # Removals first, so that a file that became a folder is replaced.
        removed = removals(_git_path(p) for p in plan.removed)
        added = blobs.index_lines(marks)
        self.runner.run("update-index", "-z", "--index-info", stdin=removed + added, env=self.env)
        return links

    def check_tree(self, snapshot: SnapshotInfo, tree: str, links: int) -> None:
        """The folder's tree must hold exactly the snapshot's files and symlinks."""
        listed = self.runner.run("ls-tree", "-r", "-z", "--name-only", tree).split(b"\0")
        paths = {p.decode("utf-8", "surrogateescape") for p in listed if p} - {git_meta.META}
        wanted = {n.path for n in self.source.nodes(snapshot.id) if n.kind != DIR}
        if paths != wanted or len(wanted) != snapshot.files + links:
            extra, missing = sorted(paths - wanted)[:5], sorted(wanted - paths)[:5]
            raise IntegrityError(
                f"the copy of snapshot {snapshot.id} would not match it (extra {extra}, missing {missing}); "
                "nothing was pushed"
            )


class _Plan:
    """What a snapshot's commit changes in the folder's tree, from the source's diff."""

    def __init__(self, changes: Iterator[Change]) -> None:
        self.removed: list[str] = []
        self.content: list[Node] = []
        self.links: list[Node] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.bytes = 0
        for change in changes:
            self.add(change)

    def add(self, change: Change) -> None:
        old, new = change.old, change.new
        if old is not None and old.kind != DIR and (new is None or new.kind != old.kind):
            self.removed.append(old.path)
        if new is None or new.kind == DIR:
            return
        same_bits = old is not None and old.kind == new.kind and _mode(old) == _mode(new)
        if change.kind == "metadata" and same_bits:
            return  # only in .caretaker-meta
        (self.links if new.kind == SYMLINK else self.content).append(new)
        if new.kind == FILE:
            self.counts["new" if old is None or old.kind != FILE else "changed"] += 1

    def stats(self, snapshot: SnapshotInfo, links: int) -> BackupStats:
        new, changed = self.counts["new"], self.counts["changed"]
        return BackupStats(
            files_new=new,
            files_changed=changed,
            files_unchanged=snapshot.files - new - changed,
            dirs=snapshot.dirs,
            symlinks=links,
            bytes_total=snapshot.bytes,
            bytes_read=self.bytes,
        )


def _meta_file(nodes: Iterator[Node], path: Path) -> tuple[Path, int]:
    """Write `.caretaker-meta` for the nodes (in their order); return it and the link count."""
    links = 0
    with path.open("w", encoding="utf-8", errors="surrogateescape") as out:
        for node in nodes:
            links += node.kind == SYMLINK
            out.write(
                git_meta.line_of(
                    node.kind, node.path, mode=node.mode, mtime_ns=node.mtime_ns, uid=node.uid, gid=node.gid
                )
            )
    return path, links


def import_snapshots(remote: Remote, source: Repository, snapshots: Sequence[SnapshotInfo]) -> list[Copied]:
    """Copy the snapshots the remote's branch lacks (see the module docstring)."""
    return Importer(remote, source).run(snapshots)
