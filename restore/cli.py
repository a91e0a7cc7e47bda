"""`caretaker` command line: flags (each with a CARETAKER_* twin) → a command → an exit code.

This is the one place where exceptions become exit codes (see `restore.errors`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import structlog

from restore import __version__, logs
from restore.commands import Command, Context, backup, prune, restore, snapshots, verify
from restore.commands.options import apply_environment, subcommand_parser
from restore.errors import EXIT_CANCELLED, EXIT_USAGE, CaretakerError, ConfigError, exit_code_of


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="info", choices=logs.LEVELS, help="log verbosity")
    parser.add_argument(
        "--log-format",
        default="auto",
        choices=("auto", "json", "console"),
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
    return [backup.COMMAND, restore.COMMAND, snapshots.COMMAND, verify.COMMAND, prune.COMMAND]


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    commands: Sequence[Command] | None = None,
) -> int:
    """Run one command; return its exit code (see the README's exit code table)."""
    env = os.environ if environ is None else environ
    parser = build_parser(base_commands() if commands is None else commands)
    args_list = sys.argv[1:] if argv is None else list(argv)
    chosen = next((subcommand_parser(parser, a) for a in args_list if not a.startswith("-")), None)
    try:
        if chosen is not None:
            apply_environment(chosen, env)
    except ConfigError as error:
        logs.configure()
        structlog.get_logger().error("config.invalid", problems=[str(p) for p in error.problems])
        return EXIT_USAGE
    args = parser.parse_args(args_list)
    command: Command = args.command
    # When stdout carries the result (--json, or a command's own output), the log moves to stderr.
    data_on_stdout = command.stdout_is_data or getattr(args, "json", False)
    logs.configure(args.log_level, args.log_format, sys.stderr if data_on_stdout else sys.stdout)
    log = structlog.get_logger().bind(command=args.command_name)
    try:
        return command.run(args, Context(environ=env))
    except ConfigError as error:
        log.error("config.invalid", problems=[str(p) for p in error.problems])
        return error.exit_code
    except CaretakerError as error:
        log.error(f"{args.command_name}.failed", error=str(error), reason=error.reason)
        return exit_code_of(error)
    except KeyboardInterrupt:
        log.warning(f"{args.command_name}.cancelled")
        return EXIT_CANCELLED
    except Exception:
        log.exception(f"{args.command_name}.crashed")
        return exit_code_of(Exception())


def run() -> None:
    sys.exit(main())
