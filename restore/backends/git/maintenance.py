"""Verify and prune for git repositories.

verify: the chosen commits are fetched (depth 1) into a scratch git dir with git's object
checks on; every tree and its `.caretaker-meta` are checked for what a restore would
refuse; `git fsck --full --strict` then re-reads every object. A commit that cannot be
fetched intact is reported as damage of that snapshot, not as a failure of the whole run.

prune: git history is append-only, so forgetting snapshots means rewriting the branch.
It is **off by default**: with `CARETAKER_GIT_PRUNE=squash`, every forgotten commit is
squashed into the next kept one (its changes are not lost, only the intermediate state),
the oldest kept commit becomes a new root, and the branch is pushed with
`--force-with-lease` against the tip we read, so a backup pushed meanwhile is never
overwritten (LeaseHeldError instead). Ids of kept snapshots newer than the oldest
forgotten one change. The server frees the old objects at its own next garbage
collection. Without the setting, a prune that would forget anything is refused (exit 9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from restore.backends.git import meta as git_meta
from restore.backends.git.cmd import GitRunner, MissingRefError
from restore.backends.git.history import LOG_ARGS, Commit, parse_log
from restore.backends.git.tree import count, parse_ls_tree, tree_problems
from restore.errors import CaretakerError, IntegrityError, NoSnapshotError, RefusedError
from restore.model import Damage, PruneResult, SnapshotInfo, VerifyResult
from restore.retention import RetentionPolicy, select

if TYPE_CHECKING:
    from restore.backends.git.remote import Remote

_LOG = structlog.get_logger()


def _fetch(runner: GitRunner, commits: Sequence[Commit]) -> dict[str, str]:
    """Fetch commits; return sha -> problem for those that could not be fetched intact."""
    specs = [f"{c.sha}:refs/caretaker/{c.sha}" for c in commits]
    try:
        runner.run("fetch", "--quiet", "--no-tags", "--depth=1", "origin", *specs, network="verify")
    except (IntegrityError, MissingRefError):
        if len(commits) == 1:
            raise
    else:
        return {}
    problems: dict[str, str] = {}
    for commit in commits:  # one by one, to tell the damaged from the good
        try:
            _fetch(runner, [commit])
        except (IntegrityError, MissingRefError) as error:
            problems[commit.sha] = str(error)
    return problems


def _check(remote: Remote, runner: GitRunner, commit: Commit, info: SnapshotInfo) -> VerifyResult:
    tree = remote.subtree(runner, commit)
    if tree is None:
        return VerifyResult(snapshot_id=info.id)
    entries = parse_ls_tree(runner.run("ls-tree", "-r", "-t", "-l", "-z", tree))
    damage = [
        Damage(object=f"tree {tree}", problem=problem, files=(path,))
        for path, problem in tree_problems(entries)
    ]
    try:  # the metadata restore would apply, checked as restore checks it
        remote.metadata(runner, entries)
    except IntegrityError as error:
        damage.append(Damage(object=f"tree {tree}", problem=str(error), files=(git_meta.META,)))
    return VerifyResult(snapshot_id=info.id, damage=tuple(damage), bytes_checked=count(entries).bytes)


def verify(remote: Remote, snapshot_ids: Sequence[str] | None) -> list[VerifyResult]:
    """Check the named snapshots (all when None). Raise NoSnapshotError for an unknown id."""
    found = remote.ours(remote.history())  # one fetch, however many ids are named
    chosen = [remote.resolve(s, found) for s in snapshot_ids] if snapshot_ids else found
    if not chosen:
        return []
    results: list[VerifyResult] = []
    with remote.scratch() as runner:
        failed = _fetch(runner, [c for c, _ in chosen])
        for commit, info in chosen:
            if commit.sha in failed:
                damage = Damage(object=f"commit {commit.sha}", problem=failed[commit.sha])
                results.append(VerifyResult(snapshot_id=info.id, damage=(damage,)))
            else:
                results.append(_check(remote, runner, commit, info))
        try:
            runner.run("fsck", "--full", "--strict", "--no-dangling", "--no-progress")
        except CaretakerError as error:
            broken = Damage(object="git fsck", problem=str(error))
            results = [
                VerifyResult(
                    snapshot_id=r.snapshot_id, damage=(*r.damage, broken), bytes_checked=r.bytes_checked
                )
                for r in results
            ]
    return results


def rewrite(runner: GitRunner, chain: Sequence[Commit], forget: set[str]) -> dict[str, str]:
    """Recreate the first-parent `chain` (oldest first) without the `forget` commits.

    Each kept commit keeps its tree, author, dates and message. Return old -> new sha of
    every commit that had to be recreated (those after the first forgotten one).
    """
    renamed: dict[str, str] = {}
    parent: str | None = None
    for commit in chain:
        if commit.sha in forget:
            renamed[commit.sha] = ""
            continue
        if not renamed:
            parent = commit.sha  # nothing forgotten below it: it stays as it is
            continue
        parents = ([parent] if parent else []) + list(commit.parents[1:])
        args = [arg for p in parents for arg in ("-p", p)]
        parent = runner.text(
            "commit-tree",
            commit.tree,
            *args,
            "-F",
            "-",
            stdin=commit.message.encode("utf-8", "surrogateescape"),
            env=commit.env(),
        )
        renamed[commit.sha] = parent
    return {old: new for old, new in renamed.items() if new}


def prune(remote: Remote, policy: RetentionPolicy, *, now: datetime, dry_run: bool) -> PruneResult:
    """Apply the policy (see the module docstring). Raise RefusedError when squashing is off."""
    ours = remote.ours(remote.history())
    chosen = select([info for _, info in ours], policy, now)
    if not chosen.remove or dry_run:
        return PruneResult(
            kept=tuple(chosen.keep), removed=tuple(chosen.remove), reasons=chosen.reasons, dry_run=dry_run
        )
    if remote.settings.prune != "squash":
        raise RefusedError(
            f"prune would forget {len(chosen.remove)} snapshots of {remote.describe()}, which "
            "rewrites git history (force-push); set CARETAKER_GIT_PRUNE=squash to allow it"
        )
    with remote.locked("backup", wait=False), remote.scratch(partial="blob:none") as runner:
        if not remote.fetch_branch(runner, "--filter=blob:none", action="prune"):
            raise NoSnapshotError(f"branch {remote.settings.branch} vanished from {remote.describe()}")
        chain = parse_log(runner.run("log", "--reverse", *LOG_ARGS, remote.tracking_ref))
        snapshots = dict(remote.ours(chain))
        chosen = select(list(snapshots.values()), policy, now)  # the branch may have moved
        gone = {s.id for s in chosen.remove}
        renamed = rewrite(runner, chain, {c.sha for c, i in snapshots.items() if i.id in gone})
        if renamed:
            runner.run(
                "push",
                "--quiet",
                "--no-verify",
                f"--force-with-lease={remote.settings.ref}:{chain[-1].sha}",
                "origin",
                f"{renamed.get(chain[-1].sha, chain[-1].sha)}:{remote.settings.ref}",
                network="prune",
            )
    # A copied snapshot keeps the id of its source (a trailer): only hash ids change.
    new_ids = {
        info.id: renamed[c.sha][:12]
        for c, info in snapshots.items()
        if c.sha in renamed and info.id == c.short
    }
    kept = tuple(_renamed(s, new_ids) for s in chosen.keep)
    reasons = {new_ids.get(k, k): v for k, v in chosen.reasons.items()}
    _LOG.info("git.history_rewritten", forgotten=len(chosen.remove), recreated=len(renamed))
    return PruneResult(
        kept=kept, removed=tuple(chosen.remove), reasons=reasons, objects_deleted=len(chosen.remove)
    )


def _renamed(info: SnapshotInfo, new_ids: dict[str, str]) -> SnapshotInfo:
    return dataclasses.replace(info, id=new_ids.get(info.id, info.id))
