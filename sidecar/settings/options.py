"""The sidecar's command-line options (each with its CARETAKER_* twin) and `Flags`, their
values as given.

Kept import-light: every command's parser is built at start-up, `caretaker restore` in an
init container included, so nothing here may pull in the scheduler stack (`sidecar.settings.load`
does, and is imported only when the sidecar runs).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path

from restore.commands.notifying import add_notify_options
from restore.commands.options import add_repository_options, env_name
from restore.notify import EVENTS
from restore.retention import KEEP_RULES

DEFAULT_NOTIFY_EVENTS = "failure,recovery"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Flags:
    """The sidecar's command line after argparse; None means "not given".

    Values stay text until `load` parses them, so a bad flag or environment value is
    reported together with every other problem, naming the flag and its twin.
    """

    repository: str | None = None
    path: Path | None = None
    password_file: Path | None = None
    insecure_no_encryption: bool = False
    config: Path | None = None
    listen: str | None = None
    rpo: str | None = None
    shutdown_grace: str | None = None
    backup_on_shutdown: bool | None = None
    notify: tuple[str, ...] = ()
    notify_file: Path | None = None
    notify_on: str | None = None
    heartbeat_url: str | None = None
    heartbeat_url_file: Path | None = None
    claim_heartbeat: str | None = None
    claim_expiry: str | None = None
    unready_on_standby: bool | None = None
    # environment-only mode: the jobs
    schedule: str | None = None
    keep: Mapping[str, str] = dataclasses.field(default_factory=dict)  # rule -> count, given ones
    keep_within: str | None = None
    prune_schedule: str | None = None
    verify_schedule: str | None = None
    excludes: tuple[str, ...] = ()
    run_on_start: bool | None = None
    skip_unchanged: bool | None = None


def flag_key(option: str) -> str:
    """How problems name a flag: `--schedule (CARETAKER_SCHEDULE)`."""
    return f"--{option} ({env_name('--' + option)})"


def configure(parser: argparse.ArgumentParser) -> None:
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
    add(
        "--skip-unchanged",
        action="store_true",
        default=None,
        help="without --config: record no new snapshot when nothing changed since the last one",
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
    add_notify_options(parser, events=EVENTS, default=DEFAULT_NOTIFY_EVENTS)
    add(
        "--heartbeat-url",
        metavar="URL",
        help="ping this URL (healthchecks.io style: /start, itself, /fail) around every backup run",
    )
    add(
        "--heartbeat-url-file",
        type=Path,
        metavar="FILE",
        help="file holding the heartbeat URL (a mounted Secret)",
    )
    add(
        "--claim-heartbeat",
        metavar="DURATION",
        help="renew the repository's writer claim this often (default 10s)",
    )
    add(
        "--claim-expiry",
        metavar="DURATION",
        help="another sidecar takes the claim over after this long without a renewal (default 30s)",
    )
    add(
        "--unready-on-standby",
        action="store_true",
        default=None,
        help="fail /readyz while another writer holds the repository's claim",
    )
    add(
        "--check-config",
        action="store_true",
        help="validate, print the jobs and their next run times, and exit (0 ok, 2 invalid)",
    )


def flags_from_args(args: argparse.Namespace) -> Flags:
    return Flags(
        repository=args.repository,
        path=args.path,
        password_file=args.password_file,
        insecure_no_encryption=args.insecure_no_encryption,
        config=args.config,
        listen=args.listen,
        rpo=args.rpo,
        shutdown_grace=args.shutdown_grace,
        backup_on_shutdown=args.backup_on_shutdown,
        notify=tuple(args.notify or ()),
        notify_file=args.notify_file,
        notify_on=args.notify_on,
        heartbeat_url=args.heartbeat_url,
        heartbeat_url_file=args.heartbeat_url_file,
        claim_heartbeat=args.claim_heartbeat,
        claim_expiry=args.claim_expiry,
        unready_on_standby=args.unready_on_standby,
        schedule=args.schedule,
        keep={rule: count for rule in KEEP_RULES if (count := getattr(args, f"keep_{rule}")) is not None},
        keep_within=args.keep_within,
        prune_schedule=args.prune_schedule,
        verify_schedule=args.verify_schedule,
        excludes=tuple(args.exclude or ()),
        run_on_start=args.run_on_start,
        skip_unchanged=args.skip_unchanged,
    )
