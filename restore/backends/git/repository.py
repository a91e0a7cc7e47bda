"""`GitRepository`: snapshots as commits on a branch of a git remote (GitPython).

- backup: the data folder is staged into a private index (never a `.git` in the data),
  committed as one commit on top of the branch's tip with counts in trailers, and pushed
  without force, under the writer claim (`restore.backends.git.claim`). Nothing changed →
  no commit, the previous snapshot is returned. Another writer pushed first anyway →
  LeaseHeldError, nothing overwritten.
- snapshots: the branch's first-parent commits carrying our trailers for this `path=`,
  fetched as commit objects only where the server supports partial clone.
- restore: a depth-1 fetch of exactly that commit into a scratch git dir, checked
  (git's own object checks on receipt, our hostile-path checks), and written into `dest`
  by caretaker's tree writer through folder descriptors, each blob hashed on its way
  (`restore.backends.git.checkout`): git itself writes nothing there.
- verify and prune: `restore.backends.git.maintenance`.

The plumbing all of these share (private git dirs, locks, fetches, listing) is `Remote`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import SplitResult

import structlog

from restore.backends.git import browse, maintenance
from restore.backends.git import meta as git_meta
from restore.backends.git.checkout import write_tree
from restore.backends.git.claim import GitClaimSlot
from restore.backends.git.cmd import GitRunner
from restore.backends.git.history import LOG_ARGS, Commit, parse_log, snapshot_of
from restore.backends.git.remote import Remote
from restore.backends.git.settings import GitSettings
from restore.backends.git.stage import BackupWriter, Stager, diff
from restore.backends.git.tree import count
from restore.claims.holder import Claimant, WriterGuard, hold
from restore.claims.record import ClaimSlot
from restore.clock import Clock, utc_now
from restore.deadline import Deadline
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
from restore.nodes import Change, Node, diff_nodes
from restore.retention import RetentionPolicy
from restore.selection import Selection

_LOG = structlog.get_logger()
# Above this many new or changed files a push skips git's delta search (see BackupWriter.push).
_DELTA_LIMIT = 1000


class GitRepository:
    """The Repository protocol over one branch (and folder) of a git remote."""

    def __init__(
        self,
        settings: GitSettings,
        *,
        clock: Clock = utc_now,
        deadline: Deadline | None = None,
        claimant: Claimant | None = None,
    ) -> None:
        self.remote = Remote(settings, deadline or Deadline())
        self._clock = clock
        self._claimant = claimant or Claimant.named("", clock=clock)
        self._slot = GitClaimSlot(self.remote, clock=clock)

    @classmethod
    def from_url(
        cls,
        url: SplitResult,
        environ: Mapping[str, str],
        *,
        clock: Clock = utc_now,
        deadline: Deadline | None = None,
        claimant: Claimant | None = None,
    ) -> GitRepository:
        """Open a `git+ssh|https|http|file|git://` URL. Raise ConfigError naming bad settings."""
        settings = GitSettings.from_url(url, environ)
        return cls(settings, clock=clock, deadline=deadline, claimant=claimant)

    @property
    def settings(self) -> GitSettings:
        return self.remote.settings

    def describe(self) -> str:
        return self.remote.describe()

    def close(self) -> None:
        self.remote.close()

    def claim_slot(self) -> ClaimSlot:
        return self._slot

    def snapshots(self) -> list[SnapshotInfo]:
        return [info for _, info in self.remote.ours(self.remote.history())]

    def initialization(self) -> str | None:
        """The branch exists (the first backup creates it). A `path=` folder of a branch that
        several folders share is new while it has no snapshot: other folders' commits are no
        sign of it, so a folder whose snapshots were removed cannot be told from a new one."""
        if self.settings.path:
            return None
        commits = self.remote.history()
        if not commits:
            return None
        branch = self.settings.branch
        return f"branch {branch!r} exists, with {len(commits)} commits and none a caretaker snapshot"

    def stored_bytes(self) -> None:
        return None

    def encryption(self) -> str | None:
        return None  # browsable files by design (docs/git.md); a password is refused

    # -- restore ---------------------------------------------------------------------------

    def restore(
        self,
        snapshot_id: str,
        dest: Path,
        progress: Progress | None = None,
        selection: Selection | None = None,
        *,
        keep_setid: bool = False,
    ) -> RestoreStats:
        progress = progress or NoProgress()
        dest = dest.absolute()  # git runs in it: a relative path would be taken twice
        commit, info = self.remote.resolve_listed(snapshot_id)
        with self.remote.scratch() as runner:
            self.remote.fetch_commit(runner, commit, info, "restore")
            tree = self.remote.subtree(runner, commit)
            if tree is None:
                progress.start(files=0, bytes=0)
                return RestoreStats()
            listed, meta = self.remote.checked(runner, tree, info)
            if selection is not None and not selection.everything:
                listed, meta = browse.select_tree(listed, meta, selection)
            totals = count(listed)
            progress.start(files=totals.files + totals.symlinks, bytes=totals.bytes)
            return write_tree(runner, dest, listed, meta, progress, keep_setid=keep_setid)

    # -- browsing (restore.backends.git.browse) --------------------------------------------

    def nodes(self, snapshot_id: str, selection: Selection | None = None) -> Iterator[Node]:
        with browse.fetched(self.remote, [snapshot_id]) as (_, [snapshot]):
            yield from snapshot.nodes(selection)

    def diff(self, old_id: str, new_id: str) -> Iterator[Change]:
        with browse.fetched(self.remote, [old_id, new_id]) as (_, [old, new]):
            yield from diff_nodes(old.nodes(), new.nodes())

    def find(
        self, snapshot_ids: Sequence[str], match: Callable[[Node], bool]
    ) -> Iterator[tuple[SnapshotInfo, Node]]:
        with browse.fetched(self.remote, snapshot_ids) as (_, snapshots):
            for snapshot in snapshots:
                yield from ((snapshot.info, node) for node in snapshot.nodes() if match(node))

    def contents(
        self, snapshot_id: str, selection: Selection | None = None
    ) -> Iterator[tuple[Node, Iterator[bytes]]]:
        with browse.fetched(self.remote, [snapshot_id]) as (_, [snapshot]):
            yield from snapshot.contents(selection)

    # -- writing ---------------------------------------------------------------------------

    def writer(self, role: str) -> contextlib.AbstractContextManager[WriterGuard]:
        """This repository's writer claim, held for `role`. Raise LeaseHeldError naming
        another writer whose claim is live."""
        return hold(self.claim_slot, self._claimant, role=role)

    def backup(self, source: Path, options: BackupOptions, progress: Progress | None = None) -> BackupResult:
        with hold(self.claim_slot, self._claimant, role="backup") as claim:
            return self._backup(source, options, progress, claim)

    def _backup(
        self, source: Path, options: BackupOptions, progress: Progress | None, claim: WriterGuard
    ) -> BackupResult:
        start = time.monotonic()
        progress = progress or NoProgress()
        with self.remote.locked("backup", wait=False):
            runner = self.remote.prepared(
                self.remote.home / "backup.git",
                partial="blob:none",
                compression=min(9, max(0, options.compression_level)),
            )
            parent = None
            if self.remote.fetch_branch(runner, "--depth=1", "--filter=blob:none", action="fetch"):
                parent = parse_log(runner.run("log", "-1", *LOG_ARGS, self.remote.tracking_ref))[0]
            base, previous = self.previous(runner, parent)
            writer = BackupWriter(runner, self.settings)
            writer.trim()
            before = writer.size()
            # The previous snapshot's size is the best guess of this one's: it gives an ETA.
            progress.start(files=previous.files if previous else 0, bytes=previous.bytes if previous else 0)
            stager = Stager(runner, runner.git_dir / "index")
            walked, data_tree = stager.backup(
                source, options.excludes, base=writer.tree_at(base), progress=progress
            )
            after = writer.size()
            changes = diff(runner, writer.tree_at(base), data_tree)
            stored = (max(0, after[0] - before[0]), max(0, after[1] - before[1]))
            stats = writer.stats(walked, changes, stored)
            if previous is not None and not (changes.new or changes.changed or changes.deleted):
                _LOG.debug("git.unchanged", snapshot=previous.id)
                return BackupResult(
                    snapshot=previous,
                    stats=stats,
                    changed=False,
                    duration_seconds=time.monotonic() - start,
                    recorded=False,
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
                extra={"Source-Path": source.absolute()},
            )
            claim.check()
            writer.push(sha, deltas=base is not None and stats.files_new + stats.files_changed < _DELTA_LIMIT)
        info = SnapshotInfo.of_backup(
            snapshot_id=sha[:12], time=moment, stats=stats, options=options, source=source
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
        found = self.remote.ours(self.remote.history())
        if not found:
            return tip, None
        commit, info = found[0]
        self.remote.fetch_commit(runner, commit, info, "fetch", ref="refs/caretaker/previous")
        return commit, info

    # -- maintenance -----------------------------------------------------------------------

    def verify(
        self, snapshot_ids: Sequence[str] | None = None, *, read_data: float = 0.0
    ) -> list[VerifyResult]:
        del read_data  # git checks every object of every fetch; there is no cheaper mode
        return maintenance.verify(self.remote, snapshot_ids)

    def prune(self, policy: RetentionPolicy, *, now: datetime, dry_run: bool = False) -> PruneResult:
        try:
            with hold(self.claim_slot, self._claimant, role="prune"):
                return maintenance.prune(self.remote, policy, now=now, dry_run=dry_run)
        finally:
            # Squashing gives kept snapshots new commits and ids: the listing is void.
            self.remote.forget_listing()
