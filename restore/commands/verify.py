"""`caretaker verify`: check snapshots for missing and corrupt data."""

from __future__ import annotations

import argparse
import contextlib

import structlog

from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, chosen, snapshot_filter
from restore.commands.options import add_repository_options
from restore.errors import IntegrityError
from restore.values import fraction


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    parser.add_argument(
        "--snapshot",
        action="append",
        default=[],
        metavar="ID",
        help="verify only this snapshot (repeatable; default: all)",
    )
    parser.add_argument(
        "--read-data",
        type=fraction,
        default=0.0,
        metavar="FRACTION",
        help="also read and hash this share of the stored data: 1, 0.1 or 10%%",
    )
    add_filter_options(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, ctx: Context) -> int:
    with contextlib.closing(open_from_args(args, ctx)) as repo:
        # Without ids or filters: all, which also reports records that cannot be read.
        choosing = args.snapshot or snapshot_filter(args).active
        ids = [s.id for s in chosen(repo, args.snapshot, args)] if choosing else None
        results = repo.verify(ids, read_data=args.read_data)
    log = structlog.get_logger()
    for result in results:
        if result.ok:
            log.info("verify.ok", snapshot=result.snapshot_id, bytes_checked=result.bytes_checked)
        for damage in result.damage:
            log.error("verify.damage", snapshot=result.snapshot_id, **damage.to_json())
    if args.json:
        ctx.print_json([r.to_json() for r in results])
    bad = [r.snapshot_id for r in results if not r.ok]
    if bad:
        raise IntegrityError(f"{len(bad)} of {len(results)} snapshots damaged: {', '.join(bad)}")
    log.info("verify.finished", snapshots=len(results))
    return 0


COMMAND = Command(
    name="verify",
    help="check snapshots for missing or corrupt data",
    description=(
        "Check that every object each snapshot needs exists; with --read-data, also download\n"
        "that share of the data and check every byte against its id (and, in an encrypted\n"
        "repository, its authentication tag). Exit 7 if any snapshot is damaged, naming the\n"
        "objects and the files affected."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
)
