"""`caretaker diff`: what changed between two snapshots."""

from __future__ import annotations

import argparse
import collections
import contextlib

import structlog

from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, choose, json_line
from restore.commands.options import add_repository_options
from restore.model import human_size
from restore.nodes import FILE, Change
from restore.printable import printable


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    add_filter_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object per change and line")
    parser.add_argument("old", metavar="OLD", help="the earlier snapshot: id, unique prefix or latest")
    parser.add_argument("new", metavar="NEW", help="the later snapshot: id, unique prefix or latest")


def describe(change: Change) -> str:
    """`M app.db  300.0 KiB -> 310.2 KiB`, `T current  symlink -> file`, `U run.sh  0644 -> 0755`."""
    old, new = change.old, change.new
    line = f"{change.sign} {printable(change.path)}"
    if old is None or new is None:
        node = old or new
        assert node is not None  # noqa: S101 - a change has a side
        return (
            f"{line}  {node.type}, {human_size(node.size)}" if node.kind == FILE else f"{line}  {node.type}"
        )
    if old.kind != new.kind:
        return f"T{line[1:]}  {old.type} -> {new.type}"
    if change.kind == "changed":
        return f"{line}  {human_size(old.size)} -> {human_size(new.size)}"
    parts = [f"mode {old.mode:04o} -> {new.mode:04o}"] if old.mode != new.mode else []
    parts += (
        [f"owner {old.uid}:{old.gid} -> {new.uid}:{new.gid}"]
        if (old.uid, old.gid) != (new.uid, new.gid)
        else []
    )
    parts += ["mtime"] if old.mtime_ns != new.mtime_ns else []
    return f"{line}  {', '.join(parts)}"


def run(args: argparse.Namespace, ctx: Context) -> int:
    counts: collections.Counter[str] = collections.Counter()
    with contextlib.closing(open_from_args(args, ctx)) as repo:
        old, new = choose(repo, args.old, args), choose(repo, args.new, args)
        for change in repo.diff(old.id, new.id):
            counts[change.kind] += 1
            if change.kind != "metadata":
                counts["bytes_added"] += change.new.size if change.new and change.new.kind == FILE else 0
                counts["bytes_removed"] += change.old.size if change.old and change.old.kind == FILE else 0
            if args.json:
                json_line(ctx, change.to_json())
            else:
                ctx.stdout.write(describe(change) + "\n")
    summary = {
        k: counts[k] for k in ("added", "removed", "changed", "metadata", "bytes_added", "bytes_removed")
    }
    if not args.json:
        ctx.stdout.write(
            f"{old.id} -> {new.id}: {summary['added']} added, {summary['removed']} removed, "
            f"{summary['changed']} changed, {summary['metadata']} with other metadata\n"
        )
    structlog.get_logger().info("diff.finished", old=old.id, new=new.id, **summary)
    return 0


COMMAND = Command(
    name="diff",
    help="show what changed between two snapshots",
    description=(
        "Compare two snapshots path by path: + added, - removed, M other content, T another\n"
        "type, U only mode, owner or mtime changed (a folder's mtime is not counted). Sizes\n"
        "are those of the files. Object-store repositories compare the two manifests as\n"
        "sorted streams and skip the stretches both share without reading them."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
    stdout_is_data=True,
)
