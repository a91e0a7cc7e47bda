"""`caretaker sidecar`: scheduled backups and maintenance jobs, metrics and health endpoints."""

from __future__ import annotations

import argparse
from datetime import UTC
from typing import TYPE_CHECKING

from restore.clock import format_time
from restore.commands import Command, Context
from restore.redaction import redact_url
from sidecar.settings.options import configure, flags_from_args

if TYPE_CHECKING:
    # Imported inside the functions at run time: `caretaker restore` builds this parser
    # too, and must not pay for the scheduler stack that sidecar.settings.load pulls in.
    from sidecar.settings.model import SidecarConfig

NEXT_RUNS = 3


def run(args: argparse.Namespace, ctx: Context) -> int:
    from sidecar.settings.load import load  # noqa: PLC0415

    config = load(flags_from_args(args), ctx.environ)
    if args.check_config:
        ctx.stdout.write(describe(config, ctx))
        ctx.stdout.flush()
        return 0
    from sidecar.app import Sidecar  # noqa: PLC0415 - the scheduler/HTTP stack only when serving

    return Sidecar(config, environ=ctx.environ, clock=ctx.clock).run()


def describe(config: SidecarConfig, ctx: Context) -> str:
    """The effective configuration and each job's next run times, for --check-config."""
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
        config.notify.describe(),
    ]
    for job in config.jobs:
        then = f", then {', '.join(job.then)}" if job.then else ""
        if job.schedule is None:
            lines.append(f"job {job.name} ({job.kind}): after {_chained_by(config, job.name)}{then}")
        else:
            start = ", also at start" if job.run_on_start else ""
            lines.append(f"job {job.name} ({job.kind}): {job.schedule.describe()}{start}{then}")
            lines.extend(f"  next: {format_time(t)}" for t in job.schedule.next_runs(now, NEXT_RUNS))
        if job.notify:
            lines.append(f"  {job.notify.describe()}")
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
