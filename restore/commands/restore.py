"""`caretaker restore`: the init container. (Placeholder: issue 4 builds the real action.)"""

from __future__ import annotations

import argparse

from restore.commands import Command, Context, open_from_args
from restore.errors import NoSnapshotError


def configure(parser: argparse.ArgumentParser) -> None:
    from restore.cli import add_repository_options  # noqa: PLC0415

    add_repository_options(parser, path_help="the data folder to restore into")
    parser.add_argument("--snapshot", default="latest", help="snapshot id, or latest")


def run(args: argparse.Namespace, ctx: Context) -> int:
    repo = open_from_args(args, ctx)
    try:
        found = repo.snapshots()
        if not found:
            raise NoSnapshotError("repository has no snapshot")
        chosen = found[0] if args.snapshot == "latest" else next(s for s in found if s.id == args.snapshot)
        repo.restore(chosen.id, args.path)
    finally:
        repo.close()
    return 0


COMMAND = Command(
    name="restore",
    help="restore the data folder from a snapshot (init container)",
    description="Restore --path from --repository.",
    configure=configure,
    run=run,
)
