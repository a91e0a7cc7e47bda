"""Staging a folder into a private index, and turning it into a pushed backup commit.

The index is built from caretaker's own walk (so excludes mean exactly what they mean for
the other backends, and a `.gitignore` in the data changes nothing): the walk streams the
contents of files whose size, mtime, ctime or inode changed since the last backup in this
pod into `git fast-import` (`blobs`), and the index is written from the blob ids with
`update-index --index-info`. A folder given with `path=` is grafted into the tip's tree in
a second index, so the rest of the repository is carried over untouched.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

import structlog

from restore.backends.git import meta as git_meta
from restore.backends.git.blobs import FAST_IMPORT, Blobs, StatCache, read_marks
from restore.backends.git.cmd import GitRunner
from restore.backends.git.history import ROOT_PATH, Commit, identity_env, message, message_fields, raw_date
from restore.backends.git.settings import GitSettings
from restore.backends.git.tree import EMPTY_TREE, Walked, walk
from restore.clock import format_time
from restore.errors import LocalIOError, RefusedError
from restore.model import BackupOptions, BackupStats, Progress, SnapshotInfo

_LOG = structlog.get_logger()
_CACHE = "walk-cache"
_MARKS = "walk-marks"


def removals(paths: Iterable[bytes]) -> bytes:
    """`update-index -z --index-info` lines that take `paths` out of the index (mode 0:
    unlike `--force-remove`, this needs no work tree)."""
    return b"".join(b"0 %s\t%s\0" % (b"0" * 40, path) for path in paths)


class Stager:
    """Walks a folder into the runner's git dir and makes an index (and tree) of exactly
    what was walked; git itself never opens a file of the folder (see `blobs`)."""

    def __init__(self, runner: GitRunner, index: Path) -> None:
        self.runner = runner
        self.env = {"GIT_INDEX_FILE": str(index)}

    def walk(
        self, root: Path, patterns: Iterable[str], *, meta: bool, cache: StatCache, progress: Progress
    ) -> Walked:
        """Walk `root`, streaming what `cache` does not vouch for into `git fast-import`;
        with `meta`, `.caretaker-meta` too. Raise LocalIOError if the folder cannot be read."""
        marks = self.runner.git_dir / _MARKS
        with self.runner.piped(*FAST_IMPORT, f"--export-marks={marks}") as process:
            assert process.stdin is not None  # noqa: S101 - piped always gives one
            blobs = Blobs(process.stdin, cache, progress)
            walked = walk(root, patterns, blobs, meta=meta)
            if meta:
                walked.blobs[git_meta.META] = ("100644", blobs.data(git_meta.encode(walked.meta)))
            blobs.done()
        walked.resolve(read_marks(marks))
        return walked

    def stage(self, walked: Walked) -> str:
        """A fresh index of exactly the walked blobs; return its tree's sha."""
        lines = b"".join(
            f"{mode} {blob}\t".encode() + os.fsencode(path) + b"\0"
            for path, (mode, blob) in walked.blobs.items()
        )
        self.runner.run("read-tree", "--empty", env=self.env)
        self.runner.run("update-index", "--add", "-z", "--index-info", stdin=lines, env=self.env)
        return self.runner.text("write-tree", env=self.env)

    def backup(
        self, source: Path, patterns: Iterable[str], *, base: str, progress: Progress
    ) -> tuple[Walked, str]:
        """Walk and stage the data folder, reading only files the stat cache written with
        tree `base` (the newest snapshot's) does not vouch for; return the walk and its tree,
        for which the cache is then rewritten."""
        path = self.runner.git_dir / _CACHE
        # Wall-clock time on purpose: it is compared with the files' mtimes, not shown.
        started = time.time_ns()
        walked = self.walk(source, patterns, meta=True, cache=StatCache.load(path, base), progress=progress)
        tree = self.stage(walked)
        try:
            StatCache.save(path, tree, started, walked.known())
        except OSError as error:
            raise LocalIOError(f"cannot write git state dir {path.parent}: {error.strerror}") from error
        return walked, tree


@dataclasses.dataclass(frozen=True)
class Diff:
    new: list[str]
    changed: list[str]
    deleted: list[str]


def diff(runner: GitRunner, old: str, new: str) -> Diff:
    """Files added, changed and deleted between two trees (trees only, no file contents)."""
    out = runner.run("diff-tree", "-r", "-z", "--no-renames", old, new).split(b"\0")
    found = Diff([], [], [])
    for meta, raw in zip(out[0::2], out[1::2], strict=False):
        status = meta.decode("ascii").split()[-1][:1] if meta else ""
        target = {"A": found.new, "D": found.deleted}.get(status, found.changed)
        target.append(os.fsdecode(raw))
    return found


class BackupWriter:
    """One backup's commit: compare with the tip, refuse or skip, commit, push."""

    def __init__(self, runner: GitRunner, settings: GitSettings) -> None:
        self.runner = runner
        self.settings = settings

    def trim(self) -> None:
        """Forget objects only older snapshots use: this cache holds about one copy of the data.

        The depth-1 fetch made the tip shallow, so older commits are unreachable here.
        """
        self.runner.run("prune", "--expire=now")
        self.runner.run("gc", "--auto", "--quiet")

    def size(self) -> tuple[int, int]:
        """(objects, bytes) stored locally, loose and packed."""
        values = dict(line.split(": ", 1) for line in self.runner.text("count-objects", "-v").splitlines())
        objects = int(values.get("count", 0)) + int(values.get("in-pack", 0))
        return objects, (int(values.get("size", 0)) + int(values.get("size-pack", 0))) * 1024

    def tree_at(self, parent: Commit | None) -> str:
        if parent is None:
            return EMPTY_TREE
        if not self.settings.path:
            return parent.tree
        out = self.runner.run("ls-tree", "-z", parent.sha, self.settings.path).split(b"\0")[0]
        meta = out.partition(b"\t")[0].decode("ascii").split()
        return meta[2] if len(meta) == 3 and meta[1] == "tree" else EMPTY_TREE

    def graft(self, parent: Commit | None, data_tree: str) -> str:
        """The whole repository's tree with our folder replaced by `data_tree`."""
        path = self.settings.path
        if not path:
            return data_tree
        env = {"GIT_INDEX_FILE": str(self.runner.git_dir / "graft-index")}
        run = self.runner.run
        run("read-tree", *([parent.tree] if parent else ["--empty"]), env=env)
        inside = [p for p in run("ls-files", "-z", "--", path, env=env).split(b"\0") if p]
        if inside:
            run("update-index", "-z", "--index-info", stdin=removals(inside), env=env)
        if data_tree != EMPTY_TREE:
            run("read-tree", "-i", f"--prefix={path}/", data_tree, env=env)  # -i: no work tree
        # Files outside our folder were not downloaded (partial clone): they stay as they are.
        return self.runner.text("write-tree", "--missing-ok", env=env)

    def refuse_empty(self, walked: Walked, previous: SnapshotInfo | None, allow: bool) -> None:
        if not walked.empty or previous is None or previous.empty or allow:
            return
        raise RefusedError(
            f"refusing to commit an empty data folder over snapshot {previous.id} "
            f"({previous.files} files) in {self.settings.display}: the volume looks lost, "
            "not emptied; pass --allow-empty if it is intended"
        )

    def warn_large(self, walked: Walked, changes: Diff) -> None:
        limit = self.settings.large_file_bytes
        for path in (*changes.new, *changes.changed):
            size = walked.files.get(path, 0)
            if limit and size > limit:
                _LOG.warning(
                    "backup.large_file",
                    path=path,
                    bytes=size,
                    threshold=limit,
                    hint="every changed copy stays in git history; exclude it or "
                    "use an object-store repository",
                )

    def stats(self, walked: Walked, changes: Diff, stored: tuple[int, int]) -> BackupStats:
        files = set(walked.files)
        new = [p for p in changes.new if p in files]
        changed = [p for p in changes.changed if p in files]
        return BackupStats(
            files_new=len(new),
            files_changed=len(changed),
            files_unchanged=len(files) - len(new) - len(changed),
            dirs=len(walked.dirs),
            symlinks=len(walked.symlinks),
            skipped_special=len(walked.special),
            bytes_total=walked.bytes,
            bytes_read=walked.bytes_read,
            changed_during_read=walked.changed_during_read,
            objects_written=stored[0],
            bytes_stored=stored[1],
        )

    def commit(
        self,
        *,
        parent: Commit | None,
        tree: str,
        options: BackupOptions,
        moment: datetime,
        stats: BackupStats,
        deleted: int,
        extra: Mapping[str, object],
    ) -> str:
        counts = {
            "files": stats.files,
            "dirs": stats.dirs,
            "bytes": stats.bytes_total,
            "new": stats.files_new,
            "changed": stats.files_changed,
            "deleted": deleted,
        }
        fields = message_fields(
            moment=moment,
            host=options.host,
            counts=counts,
            branch=self.settings.branch,
            path=self.settings.path,
        )
        trailers = {
            "Time": format_time(moment),
            "Files": counts["files"],
            "Dirs": counts["dirs"],
            "Bytes": counts["bytes"],
            "Symlinks": stats.symlinks,
            "Host": options.host,
            "Path": self.settings.path or ROOT_PATH,
            **extra,
        }
        text = message(self.settings.message, fields, trailers, options.tags)
        who = (self.settings.author_name, self.settings.author_email, raw_date(moment))
        parents = ["-p", parent.sha] if parent else []
        return self.runner.text(
            "commit-tree", tree, *parents, "-F", "-", stdin=text.encode(), env=identity_env(who, who)
        )

    def push(self, sha: str, *, deltas: bool = True) -> None:
        """Push without force; raise LeaseHeldError if another writer pushed first.

        Without `deltas`, git does not search for similar objects to store as deltas: for
        a first backup (nothing older to compare with) that search costs most of the push
        (31 s of 36 s for 2,000 files, 200 MB here) and finds almost nothing.
        """
        window = [] if deltas else ["-c", "pack.window=0"]
        self.runner.run(
            *window, "push", "--quiet", "--no-verify", "origin", f"{sha}:{self.settings.ref}", network="push"
        )
        self.runner.run("update-ref", self.settings.tracking_ref, sha)
