"""What the containers `caretaker inject` writes would refuse, found before it writes them.

A pod whose sidecar exits 2 at start-up is worse than no pod: so the environment each
container will get is judged here by the very code that judges it in the pod (the
restore's options and settings, the sidecar's `load`), and every problem is reported
with the inject flag that produced it.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

from restore.cli import build_parser
from restore.commands import Command
from restore.commands import restore as restore_command
from restore.commands.options import apply_environment, check_arguments, subcommand_parser
from restore.errors import ConfigError, Problem
from sidecar import command as sidecar_command

# The chart's default backup schedule, used when neither --schedule nor --config-map is given.
DEFAULT_SCHEDULE = "*/15 * * * *"
# Which inject flag sets which variable of the containers.
_FLAGS = {
    "CARETAKER_REPOSITORY": "--repository",
    "CARETAKER_PATH": "--path",
    "CARETAKER_SCHEDULE": "--schedule",
    "CARETAKER_CHECK_CMD": "--check-cmd",
    "CARETAKER_ALLOW_EMPTY": "--allow-empty",
    "CARETAKER_LISTEN": "--metrics-port",
}
_VARIABLE = re.compile(r"CARETAKER_[A-Z0-9_]+")
# Variables naming files only the pod mounts (a Secret): not at hand where inject runs.
_MOUNTED_FILES = frozenset({"CARETAKER_PASSWORD_FILE"})


def literal_env(container: Mapping[str, Any]) -> dict[str, str]:
    """A container's `env` entries that carry a value (not `valueFrom`), as a mapping;
    without those naming a file the pod mounts, which cannot be read here."""
    return {
        e["name"]: str(e["value"])
        for e in container.get("env", [])
        if "value" in e and e["name"] not in _MOUNTED_FILES
    }


def _parsed(command: Command, environ: Mapping[str, str]) -> argparse.Namespace:
    """The command's options as the container would read them from `environ` alone."""
    parser = build_parser([command])
    chosen = subcommand_parser(parser, command.name)
    assert chosen is not None  # noqa: S101 - the parser was built with this command
    apply_environment(chosen, environ)
    args = parser.parse_args([command.name])
    check_arguments(args, environ if command.checks_repository else None)
    return args


def restore_problems(environ: Mapping[str, str]) -> list[Problem]:
    """What `caretaker restore` would refuse in `environ` (exit 2 in the init container)."""
    try:
        restore_command.settings_from_args(_parsed(restore_command.COMMAND, environ))
    except ConfigError as error:
        return error.problems
    return []


def sidecar_problems(environ: Mapping[str, str], *, config_file: bool) -> list[Problem]:
    """What `caretaker sidecar` would refuse in `environ`; with `config_file`, the jobs are in
    a ConfigMap inject cannot see, and only the rest is judged."""
    from sidecar.settings.load import load, problems_beside_file  # noqa: PLC0415 - APScheduler
    from sidecar.settings.options import flags_from_args  # noqa: PLC0415

    try:
        flags = flags_from_args(_parsed(sidecar_command.COMMAND, environ))
        if config_file:
            return problems_beside_file(flags, environ)
        load(flags, environ)
    except ConfigError as error:
        return error.problems
    return []


def as_inject_flags(problems: list[Problem], *, repository_in_secret: bool) -> list[Problem]:
    """The problems keyed by the inject flag that set the value, each reported once.

    A repository left to the Secret (`--secret` without `--repository`) is not missing.
    """
    found: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        match = _VARIABLE.search(problem.key)
        name = match.group(0) if match else "CARETAKER_REPOSITORY" if problem.key == "repository" else ""
        if name == "CARETAKER_REPOSITORY" and problem.value is None and repository_in_secret:
            continue
        key = _FLAGS.get(name, f"--env {name}" if name else problem.key)
        found.setdefault((key, problem.message), Problem(key, problem.value, problem.message))
    return list(found.values())
