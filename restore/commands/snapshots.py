"""`caretaker snapshots`: list the repository's snapshots, newest first, and say whether the
repository is encrypted (an unencrypted one is worth noticing every time it is listed)."""

from __future__ import annotations

import argparse
import contextlib

from restore.clock import format_time
from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, snapshot_filter
from restore.commands.options import add_repository_options
from restore.printable import printable


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    add_filter_options(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON array")


def run(args: argparse.Namespace, ctx: Context) -> int:
    with contextlib.closing(open_from_args(args, ctx)) as repo:
        found = snapshot_filter(args).apply(repo.snapshots())
        cipher = repo.encryption()
        where = repo.describe()
    if args.json:
        ctx.print_json([{**snap.to_json(), "encrypted": cipher is not None} for snap in found])
        return 0
    state = f"encrypted ({cipher})" if cipher else "NOT ENCRYPTED (the storage can read and plant data)"
    ctx.stdout.write(f"repository {where}: {state}\n")
    ctx.stdout.write(f"{'ID':<18} {'TIME':<22} {'FILES':>9} {'BYTES':>14}  {'HOST':<20} {'TAGS':<16} PATH\n")
    for snap in found:
        tags = printable(",".join(snap.tags)) or "-"
        ctx.stdout.write(
            f"{snap.id:<18} {format_time(snap.time)[:19] + 'Z':<22} {snap.files:>9} {snap.bytes:>14}  "
            f"{printable(snap.host):<20} {tags:<16} {printable(snap.path) or '-'}\n"
        )
    return 0


COMMAND = Command(
    name="snapshots",
    help="list snapshots, newest first",
    description=(
        "List the complete snapshots in --repository, newest first, after a line saying whether\n"
        "the repository is encrypted: id, time, files, bytes, host, tags and the data folder each\n"
        "was taken of (with --json: also an `encrypted` field); --host, --tag and --snapshot-path\n"
        "keep only those that match."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
)
