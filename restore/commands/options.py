"""Options the commands share, and the `CARETAKER_*` environment twin of every flag (git-sync's habit).

`--keep-last` reads `CARETAKER_KEEP_LAST` when the flag is absent; a flag on the command
line wins. The twin is named in each option's `--help`. Bad environment values are
reported together, naming the variable, like any other configuration error.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from restore.backends.envreader import parse_bool
from restore.clock import parse_duration
from restore.errors import ConfigError, Problem
from restore.initcontainer.decision import EmptyStart, parse_empty_start

ENV_PREFIX = "CARETAKER_"
DEFAULT_PATH = Path("/data")


def env_name(option: str) -> str:
    """Return the environment twin of a long option: `--keep-last` -> `CARETAKER_KEEP_LAST`."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def duration_arg(text: str) -> timedelta:
    """An argparse `type` for durations like `90s`, `5m`, `1h30m`."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def empty_start_arg(text: str) -> EmptyStart:
    """An argparse `type` for --allow-empty: never, new-repository, always (or a boolean)."""
    try:
        return parse_empty_start(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _convert(action: argparse.Action, raw: str) -> Any:
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):  # noqa: SLF001
        flag = parse_bool(raw)
        return flag if isinstance(action, argparse._StoreTrueAction) else not flag  # noqa: SLF001
    convert: Any = action.type if callable(action.type) else str
    if isinstance(action, argparse._AppendAction):  # noqa: SLF001
        return [convert(item.strip()) for item in raw.split(",") if item.strip()]
    value = convert(raw)
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"must be one of {', '.join(map(str, action.choices))}")
    return value


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    """The parser of subcommand `name`, or None if there is no such subcommand."""
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk of its tree
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            found = action.choices.get(name)
            return found if isinstance(found, argparse.ArgumentParser) else None
    return None


def apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Make every long option of `parser` default to its env twin, and name the twin in --help.

    Applied to the one subcommand that runs: a variable meant for another command (the
    sidecar's CARETAKER_KEEP_LAST in an environment shared with the init container) is
    none of this command's business. Raise ConfigError naming each variable whose value
    does not parse.
    """
    problems: list[Problem] = []
    for action in parser._actions:  # noqa: SLF001
        long = next((o for o in action.option_strings if o.startswith("--")), None)
        if long is None or long in {"--help", "--version"}:
            continue
        name = env_name(long)
        if action.help != argparse.SUPPRESS and name not in (action.help or ""):
            action.help = f"{action.help or ''} [env: {name}]".strip()
        if name not in environ:
            continue
        try:
            action.default = _convert(action, environ[name])
        except (ValueError, TypeError, argparse.ArgumentTypeError) as error:
            problems.append(Problem(name, environ[name], str(error)))
            continue
        action.required = False
    if problems:
        raise ConfigError(problems)


def add_repository_options(parser: argparse.ArgumentParser, *, path_help: str) -> None:
    """The options (nearly) every command shares: where the repository is, which folder."""
    parser.add_argument(
        "--repository",
        metavar="URL",
        help="repository URL: file:///dir, s3://bucket/prefix, git+ssh://host/repo.git, ...",
    )
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help=path_help)
