"""`caretaker unlock`: show the repository's writer claim and, when a person decides, break it.

A claim never needs breaking to recover from a crash: it expires by itself (restore.claims).
Breaking it is for what expiry cannot fix — a holder that promised a long expiry, a claim
from a pod you know is gone for good — and it is logged as a warning naming the holder. A
live holder notices at its next heartbeat and claims the repository again: to take a
repository away from a running sidecar, stop that pod.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import structlog

from restore.commands import Command, Context, open_from_args
from restore.commands.options import add_repository_options
from restore.errors import LeaseHeldError


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="unused; accepted so one environment fits all commands")
    parser.add_argument("--dry-run", action="store_true", help="show the claim, break nothing")
    parser.add_argument("--json", action="store_true", help="print the claim (and what was done) as JSON")


def run(args: argparse.Namespace, ctx: Context) -> int:
    log = structlog.get_logger()
    with contextlib.closing(open_from_args(args, ctx)) as repo:
        slot = repo.claim_slot()
        observed = slot.read()
        where = repo.describe()
        if observed is None:
            log.info("claim.none", repository=where)
            _print(args, ctx, {"repository": where, "claim": None, "broken": False})
            return 0
        record = observed.record
        if args.dry_run:
            log.info("claim.shown", repository=where, holder=record.describe(), renewals=record.renewals)
            _print(args, ctx, {"repository": where, "claim": record.to_json(), "broken": False})
            return 0
        if not slot.remove(version=observed.version):
            raise LeaseHeldError(
                f"the claim of {record.describe()} on {where} changed while we looked: its holder "
                "is renewing it (alive); stop that pod, or run unlock again"
            )
    log.warning(
        "claim.broken",
        repository=where,
        holder=record.describe(),
        by=ctx.claimant().process,
        note="a live holder claims the repository again at its next heartbeat",
    )
    _print(args, ctx, {"repository": where, "claim": record.to_json(), "broken": True})
    return 0


def _print(args: argparse.Namespace, ctx: Context, document: dict[str, Any]) -> None:
    if args.json:
        ctx.print_json(document)


COMMAND = Command(
    name="unlock",
    help="show the repository's writer claim, and break it",
    description=(
        "Show who holds the writer claim of --repository (pod, process, role, heartbeat,\n"
        "expiry) and delete it, logged as a warning. Claims of dead writers expire by\n"
        "themselves within their expiry; break one only when you know its holder is gone.\n"
        "A live holder re-claims at its next heartbeat. --dry-run only shows the claim."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
)
