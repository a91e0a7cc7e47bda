"""`caretaker find`: which snapshots hold a file, and in which versions."""

from __future__ import annotations

import argparse
import contextlib

import structlog

from restore.clock import format_time
from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, chosen, json_line, node_line
from restore.commands.options import add_repository_options
from restore.excludes import Globs
from restore.selection import check_patterns


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    add_filter_options(parser)
    parser.add_argument(
        "--snapshot",
        action="append",
        default=[],
        metavar="ID",
        help="search only this snapshot (repeatable; default: every snapshot the filters select)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per match and line")
    parser.add_argument(
        "patterns",
        metavar="PATTERN",
        nargs="+",
        help="a name (`*.db`) or a path glob (`conf/*.yaml`, `**` crosses folders)",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    check_patterns("PATTERN", args.patterns)
    globs = Globs(args.patterns)
    found = 0
    with contextlib.closing(open_from_args(args, ctx)) as repo:
        searched = chosen(repo, args.snapshot, args)
        for snapshot, node in repo.find([s.id for s in searched], lambda n: globs.matches(n.path)):
            found += 1
            if args.json:
                json_line(
                    ctx,
                    {"snapshot": snapshot.id, "snapshot_time": format_time(snapshot.time), **node.to_json()},
                )
            else:
                ctx.stdout.write(f"{snapshot.id}  {node_line(node)}\n")
    structlog.get_logger().info("find.finished", snapshots=len(searched), matches=found)
    return 0


COMMAND = Command(
    name="find",
    help="find files by name or path across snapshots",
    description=(
        "Search every snapshot (or those --snapshot names, or --host/--tag/--snapshot-path\n"
        "select), newest first, for paths matching a PATTERN: a name at any depth without '/'\n"
        "(`*.db`), a whole path with '/' (`conf/*.yaml`); `*` stays within a folder, `**`\n"
        "crosses folders. Object-store repositories read each distinct manifest piece once,\n"
        "however many snapshots share it. Exit 0 also when nothing matches."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
    stdout_is_data=True,
)
