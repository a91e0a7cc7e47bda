"""`caretaker copy`: keep a second copy of the snapshots in another repository (3-2-1)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

import structlog

from restore.backends.registry import OpenOptions, open_repository, password_problem, repository_problems
from restore.backends.transfer import copy_snapshots, destination_environ
from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, chosen
from restore.commands.options import add_repository_options, encryption_from
from restore.deadline import Deadline
from restore.errors import ConfigError
from restore.snapshots.encryption import DESTINATION


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    parser.add_argument(
        "--to",
        metavar="URL",
        help="the repository to copy into: file://, s3:// or git+...:// (its settings: see below)",
    )
    parser.add_argument(
        "--to-password-file",
        type=Path,
        metavar="FILE",
        help=f"the destination's password (or the weaker {DESTINATION.variable}); never the source's",
    )
    parser.add_argument(
        "--to-insecure-no-encryption",
        action="store_true",
        help="let the destination be unencrypted (create it so; from an encrypted source: write "
        "its data readable, into git or an unencrypted repository)",
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
    encryption, refused = encryption_from(
        args.to_password_file,
        ctx.environ.get(DESTINATION.variable),
        insecure=args.to_insecure_no_encryption,
        options=DESTINATION,
    )
    problems = refused + repository_problems(args.to, environ)
    if (git := password_problem(args.to, encryption)) is not None:
        problems.append(git)
    if problems:
        raise ConfigError(
            [dataclasses.replace(p, key="to") if p.key == "repository" else p for p in problems]
        )
    deadline = Deadline(stop=ctx.stop)
    claimant = dataclasses.replace(ctx.claimant(), sleep=deadline.sleep)
    options = OpenOptions(
        environ=environ, clock=ctx.clock, claimant=claimant, deadline=deadline, encryption=encryption
    )
    with contextlib.closing(open_from_args(args, ctx, deadline)) as source:
        wanted = chosen(source, args.snapshots, args)
        with contextlib.closing(open_repository(args.to, options)) as dest:
            done = copy_snapshots(source, dest, wanted, plain_allowed=args.to_insecure_no_encryption)
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
        "sides. Interrupted, it goes on where it stopped the next time. The destination has its\n"
        "own password (--to-password-file, CARETAKER_TO_PASSWORD_FILE or CARETAKER_TO_PASSWORD;\n"
        "between encrypted repositories every blob is re-sealed under its key); an encrypted\n"
        "source is copied into git or an unencrypted repository only with\n"
        "--to-insecure-no-encryption. The destination reads the same environment otherwise,\n"
        "except that CARETAKER_TO_AWS_* replace AWS_* and CARETAKER_TO_* replace CARETAKER_*\n"
        "(CARETAKER_TO_S3_ENDPOINT, CARETAKER_TO_GIT_SSH_KEY_FILE...)."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
)
