"""`caretaker prune`: apply a retention policy, then delete data nothing references."""

from __future__ import annotations

import argparse
import contextlib

import structlog

from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, snapshot_filter
from restore.commands.options import add_claim_options, add_repository_options, timing_from_args
from restore.errors import ConfigError, Problem
from restore.retention import KEEP_RULES, NO_RULE, RetentionPolicy
from restore.values import count, duration


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    for rule in KEEP_RULES:
        parser.add_argument(
            f"--keep-{rule}",
            type=count,
            metavar="N",
            help=f"keep the newest snapshot of each of the last N {rule} periods (0: rule off)"
            if rule != "last"
            else "keep the N newest snapshots (0: rule off)",
        )
    parser.add_argument(
        "--keep-within",
        type=duration,
        default=None,
        metavar="DURATION",
        help="keep every snapshot younger than this (e.g. 7d, 36h)",
    )
    add_filter_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan, delete nothing")
    parser.add_argument("--json", action="store_true", help="print the plan/result as JSON")
    add_claim_options(parser)


def policy_from_args(args: argparse.Namespace) -> RetentionPolicy:
    """The retention policy of the --keep-* flags. Raise ConfigError if rules were given
    but every one is 0: such a prune would forget nothing, which is never what was meant."""
    given = {rule: getattr(args, f"keep_{rule}") for rule in KEEP_RULES}
    counts = {rule: number for rule, number in given.items() if number is not None}
    policy = RetentionPolicy(**counts, within=args.keep_within)
    if counts and policy.keeps_everything:
        message = f"0 turns the rule off, and no other rule is set: {NO_RULE}"
        raise ConfigError([Problem(f"--keep-{rule}", number, message) for rule, number in counts.items()])
    return policy.limited_to(snapshot_filter(args))


def run(args: argparse.Namespace, ctx: Context) -> int:
    policy = policy_from_args(args)
    with contextlib.closing(open_from_args(args, ctx, timing=timing_from_args(args))) as repo:
        result = repo.prune(policy, now=ctx.clock(), dry_run=args.dry_run)
    log = structlog.get_logger()
    for snap in result.removed:
        log.info("prune.forget" if not args.dry_run else "prune.would_forget", snapshot=snap.id)
    log.info(
        "prune.finished",
        dry_run=args.dry_run,
        kept=len(result.kept),
        removed=len(result.removed),
        objects_deleted=result.objects_deleted,
        bytes_freed=result.bytes_freed,
    )
    if args.json:
        ctx.print_json(result.to_json())
    return 0


COMMAND = Command(
    name="prune",
    help="forget old snapshots by a retention policy and free their data",
    description=(
        "Keep the snapshots any --keep-* rule selects (plus, always, the newest and the newest\n"
        "non-empty one), forget the rest, then delete stored data no remaining snapshot uses.\n"
        "A count of 0 turns its rule off. Without any --keep-* rule nothing is forgotten (only\n"
        "data no snapshot uses is deleted); rules that are all 0 are refused (exit 2). With\n"
        "--host, --tag or --snapshot-path, the rules apply to the matching snapshots only;\n"
        "the others are kept."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
)
