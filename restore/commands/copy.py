"""`caretaker copy`: keep a second copy of the snapshots in another repository (3-2-1)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses

import structlog

from restore.backends.registry import OpenOptions, open_repository, repository_problems
from restore.backends.transfer import copy_snapshots, destination_environ
from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, chosen
from restore.commands.options import add_repository_options
from restore.deadline import Deadline
from restore.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    parser.add_argument(
        "--to",
        metavar="URL",
        help="the repository to copy into: file://, s3:// or git+...:// (its settings: see below)",
    )
    add_filter_options(parser)
    parser.add_argument("--json", action="store_true", help="print what was copied as JSON")
    parser.add_argument(
        "snapshots",
        metavar="SNAPSHOT",
        nargs="*",
        help="snapshot ids or unique prefixes (default: every snapshot the filters select)",
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    if not args.to:
        raise ConfigError.single("to", None, "no destination: set --to or CARETAKER_TO")
    environ = destination_environ(ctx.environ)
    if problems := repository_problems(args.to, environ):
        raise ConfigError(
            [dataclasses.replace(p, key="to") if p.key == "repository" else p for p in problems]
        )
    options = OpenOptions(
        environ=environ, clock=ctx.clock, owner=ctx.owner(), deadline=Deadline(stop=ctx.stop)
    )
    with contextlib.closing(open_from_args(args, ctx)) as source:
        wanted = chosen(source, args.snapshots, args)
        with contextlib.closing(open_repository(args.to, options)) as dest:
            done = copy_snapshots(source, dest, wanted)
    log = structlog.get_logger()
    for item in done:
        log.info("copy.copied" if item.copied else "copy.present", **item.to_json())
    copied = [c for c in done if c.copied]
    log.info(
        "copy.finished",
        copied=len(copied),
        present=len(done) - len(copied),
        bytes=sum(c.bytes for c in copied),
    )
    if args.json:
        ctx.print_json([c.to_json() for c in done])
    return 0


COMMAND = Command(
    name="copy",
    help="copy snapshots into a second repository",
    description=(
        "Copy snapshots of --repository (file:// or s3://) into --to (file://, s3:// or a git\n"
        "remote), oldest first, skipping those the destination has. Only data the destination\n"
        "lacks is read and written, every blob is checked on the way, and the copies keep\n"
        "their ids, times, hosts and tags: `--snapshot ID` names the same snapshot on both\n"
        "sides. Interrupted, it goes on where it stopped the next time. The destination reads\n"
        "the same environment, except that CARETAKER_TO_AWS_* replace AWS_* and CARETAKER_TO_*\n"
        "replace CARETAKER_* (CARETAKER_TO_S3_ENDPOINT, CARETAKER_TO_GIT_SSH_KEY_FILE...)."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
)
