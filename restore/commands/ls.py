"""`caretaker ls`: list what a snapshot holds, without restoring it."""

from __future__ import annotations

import argparse
import contextlib

from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, choose, json_line, node_line
from restore.commands.options import add_repository_options
from restore.errors import NoSnapshotError
from restore.selection import Selection


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    add_filter_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot id (or unique prefix), or latest")
    parser.add_argument(
        "folder", metavar="PATH", nargs="?", default="", help="list only this path and what is below it"
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    selection = Selection.subtree(args.folder)
    with contextlib.closing(open_from_args(args, ctx)) as repo:
        snapshot = choose(repo, args.snapshot, args)
        listed = 0
        for node in repo.nodes(snapshot.id, selection):
            if not selection.inside(node.path):
                continue  # the folders above PATH
            listed += 1
            if args.json:
                json_line(ctx, node.to_json())
            else:
                ctx.stdout.write(node_line(node) + "\n")
    if args.folder and not listed:
        raise NoSnapshotError(f"{args.folder!r} is not in snapshot {snapshot.id}")
    return 0


COMMAND = Command(
    name="ls",
    help="list the folders, files and symlinks of a snapshot",
    description=(
        "List SNAPSHOT (an id, a unique prefix, or latest among those --host/--tag/\n"
        "--snapshot-path select), or only PATH and what is below it: type and permissions,\n"
        "owner, size in bytes, mtime and path, in the snapshot's order (folders before their\n"
        "contents, names sorted). Reads only the snapshot's manifest, streaming: memory does\n"
        "not grow with the snapshot. Exit 3 if the snapshot or PATH does not exist."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
    stdout_is_data=True,
)
