"""`Remote`: the git plumbing every snapshot operation on one branch of a remote shares.

Private git dirs for each purpose (backup, history, throw-away scratch dirs), the locks that
keep two processes of one machine out of each other's git dirs, fetching the branch and
single commits, the listing of our snapshots, and the checks of a tree before anything of it
is written. `GitRepository` (the Repository protocol) and `maintenance` (verify, prune) are
built on it.

Private git dirs live under the state dir (`CARETAKER_GIT_STATE_DIR`, default the system
temp folder), not on the data volume: the application can write there, and a git config
it planted could make caretaker run its commands with the deploy key at hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from restore.backends.git import meta as git_meta
from restore.backends.git.auth import GitAuth
from restore.backends.git.cmd import GitRunner, MissingRefError, prepare, private_config
from restore.backends.git.history import LOG_ARGS, Commit, parse_log, snapshot_of
from restore.backends.git.settings import GitSettings
from restore.backends.git.tree import TreeEntry, kinds, parse_ls_tree, tree_problems
from restore.deadline import Deadline
from restore.errors import IntegrityError, LeaseHeldError, LocalIOError, NoSnapshotError
from restore.filters import MIN_PREFIX, names
from restore.model import SnapshotInfo


class Remote:
    """One branch (and folder) of a git remote, seen through private git dirs."""

    def __init__(self, settings: GitSettings, deadline: Deadline) -> None:
        self.settings = settings
        self.deadline = deadline
        self._auth = GitAuth(settings)
        self._auth_env: dict[str, str] | None = None
        # Our snapshots as the last history() listed them. `caretaker restore` lists, then
        # restores one: resolving against this spares a second fetch per candidate. An
        # instance lives for one command or job run, so the list is seconds old at most.
        self._listed: list[tuple[Commit, SnapshotInfo]] | None = None

    def describe(self) -> str:
        return self.settings.display

    def close(self) -> None:
        self._auth.close()
        self._auth_env = None

    def forget_listing(self) -> None:
        """Drop the cached listing (after a prune gave kept snapshots new commits and ids)."""
        self._listed = None

    # -- private git dirs ------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """This remote's folder in the state dir: the backup and history git dirs, scratch."""
        return self.settings.state_dir / self.settings.cache_key

    def runner(self, git_dir: Path) -> GitRunner:
        """A runner of `git_dir` without a work tree: a backup gives git no path of the volume."""
        if self._auth_env is None:
            self._auth_env = self._auth.environ()
        environ = {**self._auth_env, "GIT_ALLOW_PROTOCOL": self.settings.transport}
        return GitRunner(git_dir, environ, remote=self.settings.display, deadline=self.deadline)

    def prepared(self, git_dir: Path, *, partial: str | None, compression: int = -1) -> GitRunner:
        runner = self.runner(git_dir)
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
        """Find a snapshot by id, unique id prefix or sha prefix (a copied snapshot's id is
        its source's). Raise NoSnapshotError if there is none.

        `found` is an already fetched `ours(history())`, so resolving many ids fetches once.
        """
        wanted = snapshot_id.strip().lower()
        if found is None:
            found = self.ours(self.history())
        matches = [(c, i) for c, i in found if i.id == wanted] or [
            (c, i)
            for c, i in found
            if len(wanted) >= MIN_PREFIX and (c.sha.startswith(wanted) or names(i, wanted))
        ]
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
