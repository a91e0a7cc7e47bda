"""`caretaker restore`: the init container that makes the data volume ready, or keeps the
pod from starting.

Parsing and reporting live here; the work is `restore.initcontainer`. The repository (and
with it botocore or GitPython) is opened only when the volume needs data, so a pod restart on a
populated volume stays cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from restore.commands import Command, Context, open_from_args
from restore.commands.choosing import add_filter_options, snapshot_filter
from restore.commands.notifying import add_notify_options, notify_outcome, read_notify
from restore.commands.options import add_repository_options
from restore.errors import ConfigError, Problem, UnsafeVolumeError, exit_code_of
from restore.identity import Identity, host_name
from restore.initcontainer.action import Effects, prepare_volume
from restore.initcontainer.allocator import keep_freed_memory
from restore.initcontainer.decision import RestoreSettings, parse_empty_start
from restore.initcontainer.outcome import Outcome, write_result, write_termination_log
from restore.initcontainer.partial import plan_paths, restore_paths
from restore.initcontainer.plan import plan
from restore.values import command_line, count, duration, moment

if TYPE_CHECKING:
    from restore.notify import Event, Notify

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# A restore has no "recovery": `success` is any ready volume (restored, skipped, first-boot).
NOTIFY_EVENTS: tuple[Event, ...] = ("failure", "success")
NOTIFY_DEFAULT = "failure"


OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "--snapshot",
        {"default": "latest", "metavar": "ID", "help": "snapshot id (or unique prefix), or latest"},
    ),
    (
        "--before",
        {"type": moment, "metavar": "RFC3339", "help": "restore the newest snapshot at or before this time"},
    ),
    (
        "--force",
        {
            "action": "store_true",
            "help": "restore even into a non-empty folder; existing data is moved to .caretaker/quarantine/",
        },
    ),
    (
        "--check-cmd",
        {
            "type": command_line,
            "metavar": "CMD",
            "help": "health check run in --path (no shell); on failure the data is quarantined and restored",
        },
    ),
    (
        "--allow-empty",
        {
            "nargs": "?",
            "const": "always",
            "default": "never",
            "type": parse_empty_start,
            "metavar": "WHEN",
            "help": (
                "when the repository has no snapshot, start on the empty volume (exit 0, outcome "
                "first-boot): never (exit 3), new-repository (only while it has never held one), "
                "or always (the flag alone)"
            ),
        },
    ),
    (
        "--timeout",
        {
            "type": duration,
            "default": "5m",
            "metavar": "DURATION",
            "help": "the longest the whole run may take, retries and download included",
        },
    ),
    (
        "--handover-timeout",
        {
            "type": duration,
            "metavar": "DURATION",
            "help": (
                "wait at most this long (and never past --timeout) for another pod's writer "
                "claim to end before restoring (default: until --timeout)"
            ),
        },
    ),
    (
        "--max-fallbacks",
        {
            "type": count,
            "default": 3,
            "metavar": "N",
            "help": "older snapshots to try when one is corrupt or fails the check",
        },
    ),
    (
        "--include",
        {
            "action": "append",
            "default": [],
            "metavar": "PATH",
            "help": (
                "restore only this path or glob (repeatable): a partial restore into --path, "
                "which may hold data or not exist yet; existing paths need --force"
            ),
        },
    ),
    (
        "--exclude",
        {
            "action": "append",
            "default": [],
            "metavar": "GLOB",
            "help": "leave paths matching this glob out of the restore (repeatable)",
        },
    ),
    (
        "--keep-setid",
        {
            "action": "store_true",
            "help": (
                "keep the setuid/setgid bits of restored files (by default they are stripped: "
                "an unauthenticated snapshot must not plant a program that runs as its owner)"
            ),
        },
    ),
    (
        "--dry-run",
        {"action": "store_true", "help": "print the plan; write nothing (not even the result file)"},
    ),
    (
        "--json",
        {"action": "store_true", "help": "print the plan (--dry-run) or the outcome as JSON on stdout"},
    ),
    (
        "--termination-log",
        {
            "type": Path,
            "default": Path(DEFAULT_TERMINATION_LOG),
            "metavar": "PATH",
            "help": (
                "where Kubernetes reads a short outcome summary "
                "(the default is written only where it exists, as in a pod)"
            ),
        },
    ),
    (
        "--progress-interval",
        {
            "type": duration,
            "default": "10s",
            "metavar": "DURATION",
            "help": "log a progress line this often while restoring",
        },
    ),
)


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_options(parser, path_help="the data folder to restore into (usually a volume mount)")
    for flag, options in OPTIONS:
        parser.add_argument(flag, **options)
    add_notify_options(parser, events=NOTIFY_EVENTS, default=NOTIFY_DEFAULT)
    add_filter_options(parser)


def settings_from_args(args: argparse.Namespace) -> RestoreSettings:
    """Raise ConfigError naming each bad combination of flags (each flag's value was checked,
    and --repository with it, even when the volume has data and is not restored)."""
    return RestoreSettings(
        path=args.path.absolute(),
        snapshot=args.snapshot,
        before=args.before,
        force=args.force,
        check_cmd=args.check_cmd or (),
        allow_empty=args.allow_empty,
        timeout_seconds=args.timeout.total_seconds(),
        max_fallbacks=args.max_fallbacks,
        progress_interval_seconds=args.progress_interval.total_seconds(),
        handover_timeout_seconds=args.handover_timeout.total_seconds() if args.handover_timeout else None,
        only=snapshot_filter(args),
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        keep_setid=args.keep_setid,
    )


def config_failed(args: argparse.Namespace, ctx: Context, error: ConfigError) -> int:
    """Bad options: a `failed` outcome (exit 2) in the log, result file and termination log,
    and a notification if the notification options themselves are usable (a dry run and a
    partial restore, which are not the init container's run, write and send none)."""
    if args.dry_run or args.include:
        raise error
    log = structlog.get_logger().bind(command="restore")
    notify = read_notify(args, [], events=NOTIFY_EVENTS, default=NOTIFY_DEFAULT)
    return report(_config_failure(error, ctx), args, ctx, log, notify)


def run(args: argparse.Namespace, ctx: Context) -> int:
    keep_freed_memory(ctx.environ)
    log = structlog.get_logger().bind(command="restore")
    problems: list[Problem] = []
    notify = read_notify(args, problems, events=NOTIFY_EVENTS, default=NOTIFY_DEFAULT)
    try:
        settings = settings_from_args(args)
    except ConfigError as error:
        problems[:0] = error.problems
    if problems:
        return config_failed(args, ctx, ConfigError(problems))
    effects = Effects(
        # A dry run only lists: the index read ahead for a restore would be read for nothing.
        open_repository=lambda deadline: open_from_args(args, ctx, deadline, restoring=not args.dry_run),
        log=log,
        clock=ctx.clock,
        stop=ctx.stop,
        shielded=ctx.shielded,
        identity=Identity.from_environ(ctx.environ),
    )
    if args.dry_run:
        return dry_run(settings, effects, args, ctx)
    if settings.partial:
        return partial(settings, effects, args, ctx)
    return report(prepare_volume(settings, effects), args, ctx, log, notify)


def partial(settings: RestoreSettings, effects: Effects, args: argparse.Namespace, ctx: Context) -> int:
    """A user's partial restore: errors go to the CLI (logged, exit code); no result file."""
    selection = settings.selection()
    assert selection is not None  # noqa: S101 - partial means --include was given
    outcome = restore_paths(settings, selection, effects)
    effects.log.info("restore.outcome", **outcome.to_json())
    if args.json:
        ctx.print_json(outcome.to_json())
    return outcome.exit_code


def dry_run(settings: RestoreSettings, effects: Effects, args: argparse.Namespace, ctx: Context) -> int:
    """Print the plan; errors propagate to the CLI (logged, exit code), nothing is written."""
    selection = settings.selection()
    if settings.partial and selection is not None:
        document = plan_paths(settings, selection, effects)
    else:
        document = plan(settings, effects)
    if args.json:
        ctx.print_json(document)
    else:
        effects.log.info("restore.plan", **document)
    return 0


def _config_failure(error: Exception, ctx: Context) -> Outcome:
    return Outcome(
        outcome="failed",
        exit_code=exit_code_of(error),
        finished_at=ctx.clock(),
        reason="config",
        error=str(error),
    )


def report(outcome: Outcome, args: argparse.Namespace, ctx: Context, log: Any, notify: Notify) -> int:
    """Log the outcome, write the result file and the termination log, notify; return the
    exit code.

    A result file or termination log that cannot be written, or a notification that cannot
    be delivered, is logged, not fatal: the exit code already tells Kubernetes what happened.
    """

    (log.info if outcome.exit_code == 0 else log.error)("restore.outcome", **outcome.to_json())
    if args.json:
        ctx.print_json(outcome.to_json())
    try:
        write_result(args.path.absolute(), outcome)
    except OSError as error:
        log.warning("restore.result_unwritable", path=str(args.path), error=error.strerror)
    except UnsafeVolumeError as error:
        log.warning("restore.result_unwritable", path=str(args.path), error=str(error))
    _write_termination_log(outcome, args, log)
    notify_outcome(notify, outcome, host=host_name(ctx.environ), path=args.path.absolute(), log=log)
    return outcome.exit_code


def _write_termination_log(outcome: Outcome, args: argparse.Namespace, log: Any) -> None:
    termination_log = args.termination_log.absolute()
    if termination_log.is_relative_to(args.path.absolute()):
        # The app can write the volume, and with it every folder on that path.
        log.warning(
            "restore.termination_log_unwritable",
            path=str(termination_log),
            error="inside --path, which the app can write: give a path outside the volume",
        )
        return
    try:
        explicit = args.termination_log != Path(DEFAULT_TERMINATION_LOG)
        write_termination_log(termination_log, outcome, create=explicit)
    except OSError as error:
        log.warning("restore.termination_log_unwritable", path=str(termination_log), error=error.strerror)


COMMAND = Command(
    name="restore",
    help="restore the data folder from a snapshot (init container)",
    description=(
        "Make --path ready before the app starts. An empty folder (ignoring lost+found and\n"
        ".caretaker) is restored from the newest good snapshot of --repository; a folder with\n"
        "data is left alone (exit 0) unless --force, or --check-cmd fails on it. Snapshots that\n"
        "fail verification are skipped for older ones (--max-fallbacks). Data lands in\n"
        ".caretaker/staging/ first and is moved into place only when complete; existing data\n"
        "is moved to .caretaker/quarantine/, never deleted. When another pod's writer still\n"
        "holds the repository's claim, the restore first waits for it to hand over (its final\n"
        "backup), within --handover-timeout and --timeout. The outcome is logged, written to\n"
        "<path>/.caretaker/restore-result.json and to --termination-log.\n\n"
        "Exit codes: 0 ready (restored, skipped, first-boot); 1 unexpected; 2 usage; 3 no\n"
        "snapshot; 4 repository unreachable; 5 access denied; 6 another pod's writer claim did\n"
        "not end in time; 7 no good snapshot; 8 check failed on restored data too; 10 local\n"
        "disk/permission; 11 .caretaker holds what caretaker did not put there (a symlink,\n"
        "FIFO, foreign journal: left alone); 13 the repository is encrypted and the password\n"
        "is missing or wrong; 128+N stopped by signal N."
    ),
    configure=configure,
    run=run,
    checks_repository=True,
    config_failed=config_failed,
)
