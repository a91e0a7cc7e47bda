"""`caretaker` command line: flags (each with a CARETAKER_* twin) → a command → an exit code.

This is the one place where exceptions become exit codes (see `restore.errors`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, cast, get_args

import structlog

from restore import __version__, logs
from restore.clock import Clock, utc_now
from restore.commands import (
    Command,
    Context,
    backup,
    copy,
    diff,
    dump,
    find,
    key,
    ls,
    prune,
    restore,
    snapshots,
    unlock,
    verify,
)
from restore.commands.options import apply_environment, check_arguments, subcommand_parser
from restore.deadline import Stop
from restore.errors import (
    EXIT_CANCELLED,
    CancelledError,
    CaretakerError,
    ConfigError,
    exit_code_of,
)
from restore.initcontainer.cancel import SignalGuard
from restore.pipes import QuietPipe
from restore.values import one_of


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="info",
        type=one_of(*logs.LEVELS),
        help=f"log verbosity: {', '.join(logs.LEVELS)}",
    )
    parser.add_argument(
        "--log-format",
        default="auto",
        type=one_of(*get_args(logs.LogFormat)),
        help="json lines, readable console, or auto (json unless stdout is a terminal)",
    )


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="caretaker",
        description="Restore a pod's data volume before the app starts, and keep it backed up.",
    )
    parser.add_argument("--version", action="version", version=f"caretaker {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    for command in commands:
        child = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.configure(child)
        _add_common(child)
        child.set_defaults(command=command)
    return parser


def base_commands() -> list[Command]:
    """The commands of the base layer (no scheduler, no HTTP)."""
    return [
        backup.COMMAND,
        restore.COMMAND,
        snapshots.COMMAND,
        ls.COMMAND,
        diff.COMMAND,
        find.COMMAND,
        dump.COMMAND,
        copy.COMMAND,
        verify.COMMAND,
        prune.COMMAND,
        unlock.COMMAND,
        key.COMMAND,
    ]


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    commands: Sequence[Command] | None = None,
    clock: Clock = utc_now,
) -> int:
    """Run one command; return its exit code (see the README's exit code table).

    `clock` is the wall clock every command reads (tests run processes with a skewed one).
    """
    env = os.environ if environ is None else environ
    parser = build_parser(base_commands() if commands is None else commands)
    args = parse(parser, sys.argv[1:] if argv is None else list(argv), env)
    command: Command = args.command
    stdout, stderr = QuietPipe(sys.stdout), QuietPipe(sys.stderr)
    # When stdout carries the result (--json, or a command's own output), the log moves to stderr.
    data_on_stdout = command.stdout_is_data or getattr(args, "json", False) is True
    logs.configure(
        args.log_level if isinstance(args.log_level, str) else "info",
        cast("logs.LogFormat", args.log_format if isinstance(args.log_format, str) else "auto"),
        (stderr if data_on_stdout else stdout).as_text(),
    )
    log = structlog.get_logger().bind(command=args.command_name)
    stop = Stop()
    try:
        with SignalGuard(stop) as guard:
            ctx = Context(
                environ=env, clock=clock, stdout=stdout.as_text(), stop=stop, shielded=guard.shielded
            )
            return _checked_run(command, args, ctx)
    except KeyboardInterrupt:
        log.warning(f"{args.command_name}.cancelled")
        return EXIT_CANCELLED
    except Exception as error:
        return report_failure(error, args.command_name, log)


def parse(parser: argparse.ArgumentParser, argv: list[str], environ: Mapping[str, str]) -> argparse.Namespace:
    """Parse the command line with each option's twin; values that break their rule stay
    marked for `check_arguments`. Usage errors (an unknown flag) exit 2 through argparse."""
    chosen = next((subcommand_parser(parser, a) for a in argv if not a.startswith("-")), None)
    if chosen is not None:
        apply_environment(chosen, environ)
    return parser.parse_args(argv)


def _checked_run(command: Command, args: argparse.Namespace, ctx: Context) -> int:
    """Run the command once every option passed its rule; else report all bad ones (exit 2)."""
    try:
        check_arguments(args, ctx.environ if command.checks_repository else None)
    except ConfigError as error:
        if command.config_failed is None:
            raise
        return command.config_failed(args, ctx, error)
    return command.run(args, ctx)


def report_failure(error: Exception, name: str, log: Any) -> int:
    """Log why a command failed; return its exit code (1 and a traceback for a bug)."""
    if isinstance(error, ConfigError):
        log.error("config.invalid", problems=[str(p) for p in error.problems])
    elif isinstance(error, CancelledError):
        log.warning(f"{name}.cancelled", signal=error.signum)
    elif isinstance(error, CaretakerError):
        log.error(f"{name}.failed", error=str(error), reason=error.reason)
    else:
        log.error(f"{name}.crashed", exc_info=error)
    return exit_code_of(error)


def run() -> None:
    sys.exit(main())
