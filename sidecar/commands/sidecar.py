"""`caretaker sidecar`: scheduled backups and maintenance jobs, metrics and health endpoints."""

from __future__ import annotations

import argparse
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

from restore.clock import format_time
from restore.commands import Command, Context
from restore.retention import KEEP_RULES

if TYPE_CHECKING:
    # Imported inside the functions at run time: `caretaker restore` builds this parser
    # too, and must not pay for the scheduler stack that sidecar.settings pulls in.
    from sidecar.config import SidecarConfig
    from sidecar.settings import Flags

NEXT_RUNS = 3


def configure(parser: argparse.ArgumentParser) -> None:
    from restore.cli import add_repository_options  # noqa: PLC0415

    add_repository_options(parser, path_help="the data folder to look after (default /data)")
    parser.set_defaults(path=None)  # None = not given, so the config file may set it
    add = parser.add_argument
    add("--config", type=Path, metavar="FILE", help="YAML file describing the jobs (see docs)")
    add(
        "--schedule",
        metavar="SPEC",
        help="without --config: the backup schedule (cron, @hourly, '@every 15m')",
    )
    for rule in KEEP_RULES:
        add(
            f"--keep-{rule}",
            metavar="N",
            help="without --config: prune after each backup, keeping "
            + ("the N newest snapshots" if rule == "last" else f"the newest of N {rule} periods"),
        )
    add(
        "--keep-within",
        metavar="DURATION",
        help="without --config: also keep every snapshot younger than this (e.g. 7d)",
    )
    add(
        "--prune-schedule",
        metavar="SPEC",
        help="without --config: prune on this schedule instead of after each backup",
    )
    add("--verify-schedule", metavar="SPEC", help="without --config: verify on this schedule")
    add(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="without --config: skip paths matching this glob (repeatable; env: comma list)",
    )
    add(
        "--run-on-start",
        action="store_true",
        default=None,
        help="without --config: back up once right at start-up",
    )
    add("--listen", metavar="ADDR", help="HTTP address for /metrics etc. (default :9090)")
    add("--rpo", metavar="DURATION", help="/readyz fails when the last good backup is older than this")
    add(
        "--backup-on-shutdown",
        action="store_true",
        default=None,
        help="take a final backup on SIGTERM (within --shutdown-grace)",
    )
    add(
        "--shutdown-grace",
        metavar="DURATION",
        help="how long shutdown may take, final backup included (default 25s)",
    )
    add(
        "--check-config",
        action="store_true",
        help="validate, print the jobs and their next run times, and exit (0 ok, 2 invalid)",
    )


def flags_from_args(args: argparse.Namespace) -> Flags:
    from sidecar.settings import Flags  # noqa: PLC0415

    return Flags(
        repository=args.repository,
        path=args.path,
        config=args.config,
        listen=args.listen,
        rpo=args.rpo,
        shutdown_grace=args.shutdown_grace,
        backup_on_shutdown=args.backup_on_shutdown,
        schedule=args.schedule,
        keep={rule: count for rule in KEEP_RULES if (count := getattr(args, f"keep_{rule}")) is not None},
        keep_within=args.keep_within,
        prune_schedule=args.prune_schedule,
        verify_schedule=args.verify_schedule,
        excludes=tuple(args.exclude or ()),
        run_on_start=args.run_on_start,
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    from sidecar.settings import load  # noqa: PLC0415

    config = load(flags_from_args(args))
    if args.check_config:
        ctx.stdout.write(describe(config, ctx))
        ctx.stdout.flush()
        return 0
    from sidecar.app import Sidecar  # noqa: PLC0415 - the scheduler/HTTP stack only when serving

    return Sidecar(config, environ=ctx.environ, clock=ctx.clock, owner=ctx.owner()).run()


def describe(config: SidecarConfig, ctx: Context) -> str:
    """The effective configuration and each job's next run times, for --check-config."""
    from sidecar.config import redact_url  # noqa: PLC0415

    now = ctx.clock().astimezone(UTC)
    rpo = f"{int(config.rpo.total_seconds())}s" if config.rpo else "none"
    lines = [
        f"config: {config.source} (valid)",
        f"repository: {redact_url(config.repository)}",
        f"path: {config.path}",
        f"listen: {config.listen}",
        f"rpo: {rpo}",
        (
            f"shutdown: grace {int(config.shutdown_grace.total_seconds())}s, "
            f"final backup {'yes' if config.backup_on_shutdown else 'no'}"
        ),
    ]
    for job in config.jobs:
        then = f", then {', '.join(job.then)}" if job.then else ""
        if job.schedule is None:
            lines.append(f"job {job.name} ({job.kind}): after {_chained_by(config, job.name)}{then}")
            continue
        start = ", also at start" if job.run_on_start else ""
        lines.append(f"job {job.name} ({job.kind}): {job.schedule.describe()}{start}{then}")
        lines.extend(f"  next: {format_time(t)}" for t in job.schedule.next_runs(now, NEXT_RUNS))
    return "\n".join(lines) + "\n"


def _chained_by(config: SidecarConfig, name: str) -> str:
    return ", ".join(job.name for job in config.jobs if name in job.then)


COMMAND = Command(
    name="sidecar",
    help="run scheduled backups and maintenance jobs (sidecar container)",
    description=(
        "Run scheduled jobs against --path: backups to --repository, retention (prune),\n"
        "verification, commands and HTTP calls to the app, each with optional before/after\n"
        "hooks. Serves /metrics, /healthz, /readyz and /status on --listen. SIGTERM stops\n"
        "scheduling, lets running jobs finish (or aborts them cleanly) within\n"
        "--shutdown-grace, optionally takes a final backup, and exits 0.\n\n"
        "Without --config, one backup job comes from --schedule (plus prune from --keep-*\n"
        "and verify from --verify-schedule); with --config, the YAML file lists the jobs."
    ),
    configure=configure,
    run=run,
)
