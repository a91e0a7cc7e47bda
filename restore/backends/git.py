"""`GitRepository`: snapshots as commits on a branch of a git remote (GitPython).

- backup: the data folder is staged into a private index (never a `.git` in the data),
  committed as one commit on top of the branch's tip with counts in trailers, and pushed
  without force. Nothing changed → no commit, the previous snapshot is returned. Another
  writer pushed first → LeaseHeldError, nothing overwritten: git's push is the lease.
- snapshots: the branch's first-parent commits carrying our trailers for this `path=`,
  fetched as commit objects only where the server supports partial clone.
- restore: a depth-1 fetch of exactly that commit into a scratch git dir, checked
  (git's own object checks on receipt, our hostile-path checks), checked out into
  `dest`, and re-hashed from disk: the written tree must hash to the snapshot's tree.

Private git dirs live under the state dir (`CARETAKER_GIT_STATE_DIR`, default the system
temp folder), not on the data volume: the application can write there, and a git config
it planted could make caretaker run its commands with the deploy key at hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import SplitResult

import structlog

from restore.backends import OpenOptions, git_maintenance, git_meta
from restore.backends.git_auth import GitAuth
from restore.backends.git_cmd import GitRunner, MissingRefError, prepare, private_config
from restore.backends.git_history import LOG_ARGS, Commit, parse_log, snapshot_of
from restore.backends.git_settings import GitSettings
from restore.backends.git_stage import BackupWriter, Stager, diff
from restore.backends.git_tree import TreeEntry, count, kinds, parse_ls_tree, tree_problems, walk
from restore.clock import Clock, utc_now
from restore.errors import IntegrityError, LeaseHeldError, LocalIOError, NoSnapshotError
from restore.model import (
    BackupOptions,
    BackupResult,
    NoProgress,
    Progress,
    PruneResult,
    RestoreStats,
    SnapshotInfo,
    VerifyResult,
)
from restore.retention import RetentionPolicy

_LOG = structlog.get_logger()
# Above this many new or changed files a push skips git's delta search (see BackupWriter.push).
_DELTA_LIMIT = 1000


class GitRepository:
    """The Repository protocol over one branch (and folder) of a git remote."""

    def __init__(self, settings: GitSettings, *, clock: Clock = utc_now) -> None:
        self.settings = settings
        self._clock = clock
        self._auth = GitAuth(settings)
        self._auth_env: dict[str, str] | None = None
        # Our snapshots as the last history() listed them. `caretaker restore` lists, then
        # restores one: resolving against this spares a second fetch per candidate. An
        # instance lives for one command or job run, so the list is seconds old at most.
        self._listed: list[tuple[Commit, SnapshotInfo]] | None = None

    @classmethod
    def from_url(cls, url: SplitResult, options: OpenOptions) -> GitRepository:
        """Open a `git+ssh|https|http|file|git://` URL. Raise ConfigError naming bad settings."""
        # No owner: the writer "lease" is git's push, which names no one (see the module doc).
        return cls(GitSettings.from_url(url, options.environ), clock=options.clock)

    def describe(self) -> str:
        return self.settings.display

    def close(self) -> None:
        self._auth.close()
        self._auth_env = None

    # -- private git dirs ------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """This remote's folder in the state dir: the backup and history git dirs, scratch."""
        return self.settings.state_dir / self.settings.cache_key

    def runner(self, git_dir: Path, *, work_tree: Path | None = None) -> GitRunner:
        if self._auth_env is None:
            self._auth_env = self._auth.environ()
        environ = {**self._auth_env, "GIT_ALLOW_PROTOCOL": self.settings.transport}
        return GitRunner(git_dir, environ, remote=self.settings.display, work_tree=work_tree)

    def prepared(
        self, git_dir: Path, *, partial: str | None, compression: int = -1, work_tree: Path | None = None
    ) -> GitRunner:
        runner = self.runner(git_dir, work_tree=work_tree)
        config = private_config(self.settings, partial=partial, compression=compression)
        prepare(runner, config)
        return runner

    @contextlib.contextmanager
    def locked(self, name: str, *, wait: bool) -> Iterator[None]:
        """Hold `<home>/<name>.lock`. Raise LeaseHeldError if busy and not `wait`."""
        lock = self.home / f"{name}.lock"
        try:
            self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
            handle = lock.open("a")
        except OSError as error:
            raise LocalIOError(f"cannot use git state dir {self.home}: {error.strerror}") from error
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError as error:
                raise LeaseHeldError(
                    f"another caretaker process is writing to {self.describe()} from this "
                    f"machine (lock {lock})"
                ) from error
            yield

    @contextlib.contextmanager
    def scratch(self, *, partial: str | None = None) -> Iterator[GitRunner]:
        """A throw-away git dir for one restore, verify or prune, removed afterwards."""
        base = self.home / "scratch"
        try:
            base.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder = Path(tempfile.mkdtemp(dir=base))
        except OSError as error:
            raise LocalIOError(f"cannot use git state dir {base}: {error.strerror}") from error
        try:
            yield self.prepared(folder / "git", partial=partial)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------

    @property
    def tracking_ref(self) -> str:
        return self.settings.tracking_ref

    def fetch_branch(self, runner: GitRunner, *extra: str, action: str) -> bool:
        """Fetch the branch into its tracking ref; return False if the remote has no such branch."""
        try:
            runner.run("fetch", "--quiet", "--no-tags", *extra, "origin", network=action)
        except MissingRefError:
            with contextlib.suppress(Exception):
                runner.run("update-ref", "-d", self.tracking_ref)
            return False
        return True

    def history(self) -> list[Commit]:
        """The branch's first-parent chain, newest first (commit objects only)."""
        with self.locked("history", wait=True):
            runner = self.prepared(self.home / "history.git", partial="tree:0")
            if not self.fetch_branch(runner, "--filter=tree:0", action="list snapshots"):
                self._listed = []
                return []
            commits = parse_log(runner.run("log", *LOG_ARGS, self.tracking_ref))
        self._listed = self.ours(commits)
        return commits

    def ours(self, commits: Sequence[Commit]) -> list[tuple[Commit, SnapshotInfo]]:
        pairs = [(c, snapshot_of(c, self.settings.path)) for c in commits]
        return [(c, info) for c, info in pairs if info is not None]

    def snapshots(self) -> list[SnapshotInfo]:
        return [info for _, info in self.ours(self.history())]

    def resolve(
        self, snapshot_id: str, found: Sequence[tuple[Commit, SnapshotInfo]] | None = None
    ) -> tuple[Commit, SnapshotInfo]:
        """Find a snapshot by id or unique sha prefix. Raise NoSnapshotError if there is none.

        `found` is an already fetched `ours(history())`, so resolving many ids fetches once.
        """
        wanted = snapshot_id.strip().lower()
        if found is None:
            found = self.ours(self.history())
        matches = [(c, i) for c, i in found if len(wanted) >= 4 and c.sha.startswith(wanted)]
        if len(matches) != 1:
            problem = "is ambiguous" if matches else "does not exist"
            raise NoSnapshotError(f"snapshot {snapshot_id!r} {problem} in {self.describe()}")
        return matches[0]

    def resolve_listed(self, snapshot_id: str) -> tuple[Commit, SnapshotInfo]:
        """`resolve`, against the last listing when the id is in it, else a fresh one.

        A hit is the very commit the caller was shown; should it have left the remote
        since, `fetch_commit` raises NoSnapshotError. A miss (a snapshot newer than the
        listing, or none listed yet) lists anew, so unknown ids fail exactly as before.
        """
        if self._listed is not None:
            with contextlib.suppress(NoSnapshotError):
                return self.resolve(snapshot_id, self._listed)
        return self.resolve(snapshot_id)

    def fetch_commit(
        self,
        runner: GitRunner,
        commit: Commit,
        info: SnapshotInfo,
        action: str,
        *,
        ref: str = "refs/caretaker/snapshot",
    ) -> None:
        try:
            runner.run(
                "fetch", "--quiet", "--no-tags", "--depth=1", "origin", f"+{commit.sha}:{ref}", network=action
            )
        except MissingRefError as error:
            raise NoSnapshotError(
                f"snapshot {info.id} is no longer on {self.describe()} (pruned meanwhile?)"
            ) from error

    def subtree(self, runner: GitRunner, commit: Commit) -> str | None:
        """The tree of our folder in `commit`, or None if the folder is not in it (empty)."""
        if not self.settings.path:
            return commit.tree
        listed = parse_ls_tree(runner.run("ls-tree", "-z", "-l", commit.sha, self.settings.path))
        return next((e.sha for e in listed if e.kind == "tree"), None)

    # -- restore ---------------------------------------------------------------------------

    def restore(self, snapshot_id: str, dest: Path, progress: Progress | None = None) -> RestoreStats:
        progress = progress or NoProgress()
        commit, info = self.resolve_listed(snapshot_id)
        if not dest.is_dir():
            raise LocalIOError(f"restore target {dest} is not a directory")
        with self.scratch() as runner:
            self.fetch_commit(runner, commit, info, "restore")
            tree = self.subtree(runner, commit)
            if tree is None:
                progress.start(files=0, bytes=0)
                return RestoreStats()
            entries, meta = self.checked(runner, tree, info)
            totals = count(entries)
            progress.start(files=totals.files + totals.symlinks, bytes=totals.bytes)
            writer = runner.with_work_tree(dest)
            index = {"GIT_INDEX_FILE": str(runner.git_dir / "restore-index")}
            writer.run("read-tree", tree, env=index)
            writer.run("checkout-index", "--all", "--force", env=index)
            self.check_written(runner, dest, tree, info)
            dirs = totals.dirs
            if meta is not None:
                (dest / git_meta.META).unlink()
                dirs = git_meta.apply(dest, meta)
            progress.advance(files=totals.files + totals.symlinks, bytes=totals.bytes)
        return RestoreStats(files=totals.files, dirs=dirs, symlinks=totals.symlinks, bytes=totals.bytes)

    def checked(
        self, runner: GitRunner, tree: str, info: SnapshotInfo
    ) -> tuple[list[TreeEntry], list[git_meta.Meta] | None]:
        """The tree's entries and metadata lines, checked before anything is written.

        Raise IntegrityError naming the entries a restore must not write.
        """
        entries = parse_ls_tree(runner.run("ls-tree", "-r", "-t", "-l", "-z", tree))
        if problems := tree_problems(entries):
            shown = "; ".join(f"{path!r}: {why}" for path, why in problems[:5])
            raise IntegrityError(
                f"snapshot {info.id} in {self.describe()} has entries "
                f"caretaker will not write ({len(problems)}): {shown}"
            )
        return entries, self.metadata(runner, entries)

    @staticmethod
    def metadata(runner: GitRunner, entries: list[TreeEntry]) -> list[git_meta.Meta] | None:
        """The tree's `.caretaker-meta` lines; None in a commit not made by caretaker (plain
        checkout). Raise IntegrityError if they are malformed or disagree with the tree."""
        blob = next((e.sha for e in entries if e.path == git_meta.META and e.kind == "blob"), None)
        if blob is None:
            return None
        meta = git_meta.parse(runner.run("cat-file", "blob", blob))
        git_meta.check(meta, kinds(entries))
        return meta

    def check_written(self, runner: GitRunner, dest: Path, tree: str, info: SnapshotInfo) -> None:
        """Hash what is now on disk; raise IntegrityError unless it is exactly `tree`."""
        walked = walk(dest, (), meta=False)
        stager = Stager(runner.with_work_tree(dest), runner.git_dir / "check-index")
        written = stager.stage(walked, NoProgress())
        if written != tree:
            raise IntegrityError(
                f"restored files of snapshot {info.id} do not hash to its tree "
                f"{tree} (got {written}): the local disk changed them"
            )

    # -- writing ---------------------------------------------------------------------------

    def backup(self, source: Path, options: BackupOptions, progress: Progress | None = None) -> BackupResult:
        start = time.monotonic()
        walked = walk(source, options.excludes)
        with self.locked("backup", wait=False):
            runner = self.prepared(
                self.home / "backup.git",
                partial="blob:none",
                compression=min(9, max(0, options.compression_level)),
                work_tree=source,
            )
            parent = None
            if self.fetch_branch(runner, "--depth=1", "--filter=blob:none", action="fetch"):
                parent = parse_log(runner.run("log", "-1", *LOG_ARGS, self.tracking_ref))[0]
            base, previous = self.previous(runner, parent)
            writer = BackupWriter(runner, self.settings)
            writer.trim()
            before = writer.size()
            stager = Stager(runner, runner.git_dir / "index")
            data_tree = stager.stage(
                walked, progress or NoProgress(), {git_meta.META: git_meta.encode(walked.meta)}
            )
            after = writer.size()
            changes = diff(runner, writer.tree_at(base), data_tree)
            stored = (max(0, after[0] - before[0]), max(0, after[1] - before[1]))
            stats = writer.stats(walked, changes, stored)
            if previous is not None and not (changes.new or changes.changed or changes.deleted):
                _LOG.debug("git.unchanged", snapshot=previous.id)
                return BackupResult(
                    snapshot=previous, stats=stats, changed=False, duration_seconds=time.monotonic() - start
                )
            writer.refuse_empty(walked, previous, options.allow_empty)
            writer.warn_large(walked, changes)
            moment = self._clock()
            sha = writer.commit(
                parent=parent,
                tree=writer.graft(parent, data_tree),
                options=options,
                moment=moment,
                stats=stats,
                deleted=len(set(changes.deleted) - {git_meta.META}),
            )
            writer.push(sha, deltas=base is not None and stats.files_new + stats.files_changed < _DELTA_LIMIT)
        info = SnapshotInfo(
            id=sha[:12],
            time=moment,
            files=stats.files,
            dirs=stats.dirs,
            bytes=stats.bytes_total,
            host=options.host,
            tags=options.tags,
        )
        return BackupResult(
            snapshot=info, stats=stats, changed=True, duration_seconds=time.monotonic() - start
        )

    def previous(self, runner: GitRunner, tip: Commit | None) -> tuple[Commit | None, SnapshotInfo | None]:
        """Our newest snapshot (and its commit, fetched), to compare the folder with.

        Usually the branch's tip; when another folder's backup (or a person) committed
        last, it is found in the history and fetched. Without one, the tip is the base.
        """
        mine = snapshot_of(tip, self.settings.path) if tip is not None else None
        if tip is None or mine is not None:
            return tip, mine
        found = self.ours(self.history())
        if not found:
            return tip, None
        commit, info = found[0]
        self.fetch_commit(runner, commit, info, "fetch", ref="refs/caretaker/previous")
        return commit, info

    # -- maintenance -----------------------------------------------------------------------

    def verify(
        self, snapshot_ids: Sequence[str] | None = None, *, read_data: float = 0.0
    ) -> list[VerifyResult]:
        del read_data  # git checks every object of every fetch; there is no cheaper mode
        return git_maintenance.verify(self, snapshot_ids)

    def prune(self, policy: RetentionPolicy, *, now: datetime, dry_run: bool = False) -> PruneResult:
        try:
            return git_maintenance.prune(self, policy, now=now, dry_run=dry_run)
        finally:
            # Squashing gives kept snapshots new commits and ids: the listing is void.
            self._listed = None
