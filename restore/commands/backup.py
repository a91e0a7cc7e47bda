"""`caretaker backup`: record the data folder as a new snapshot."""

from __future__ import annotations

import argparse
import contextlib

import structlog

from restore.commands import Command, Context, open_from_args
from restore.commands.options import add_claim_options, add_repository_options, timing_from_args
from restore.identity import host_name
from restore.model import BackupOptions
from restore.values import bounded


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="the data folder to back up")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip paths matching this glob (relative to --path; repeatable; env: comma list)",
    )
    parser.add_argument("--tag", action="append", default=[], help="label the snapshot (repeatable)")
    parser.add_argument("--host", default="", help="host name recorded in the snapshot")
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="record an empty folder even when the previous snapshot had data",
    )
    parser.add_argument(
        "--skip-unchanged",
        action="store_true",
        help="record no new snapshot when the folder equals the newest one",
    )
    parser.add_argument(
        "--compression-level", type=bounded(1, 19), default=3, help="zstd level, 1 (fast) to 19 (small)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_claim_options(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    options = BackupOptions(
        excludes=tuple(args.exclude),
        host=args.host or host_name(ctx.environ),
        tags=tuple(args.tag),
        allow_empty=args.allow_empty,
        skip_unchanged=args.skip_unchanged,
        compression_level=args.compression_level,
    )
    with contextlib.closing(open_from_args(args, ctx, timing=timing_from_args(args))) as repo:
        result = repo.backup(args.path, options)
    structlog.get_logger().info(
        "backup.finished",
        snapshot=result.snapshot.id,
        changed=result.changed,
        recorded=result.recorded,
        duration_seconds=round(result.duration_seconds, 3),
        **result.stats.to_json(),
    )
    if args.json:
        ctx.print_json(
            {
                "snapshot": result.snapshot.to_json(),
                "changed": result.changed,
                "recorded": result.recorded,
                "duration_seconds": result.duration_seconds,
                "stats": result.stats.to_json(),
            }
        )
    return 0


COMMAND = Command(
    name="backup",
    help="back up the data folder as a new snapshot",
    description=(
        "Read --path and store it as a snapshot in --repository. Only content not already in\n"
        "the repository is uploaded; files whose size, mtime, inode and ctime are unchanged since the\n"
        "previous snapshot are not even read. The snapshot becomes visible only once all its\n"
        "data is stored, so an interrupted backup leaves nothing half-written behind."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
)
