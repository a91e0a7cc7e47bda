"""The `caretaker` command: the base layer's commands plus `sidecar` and `inject`.

The composition root of the three packages. Kept import-light: `caretaker restore` in an init
container goes through here, so each command module imports its heavy libraries (the
scheduler, metrics and HTTP stack; YAML) only when that command runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from caretaker.inject import command as inject
from restore import cli
from restore.clock import Clock, utc_now
from restore.commands import Command
from sidecar import command as sidecar
from sidecar import trigger


def all_commands() -> list[Command]:
    return [*cli.base_commands(), sidecar.COMMAND, trigger.COMMAND, inject.COMMAND]


def main(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, clock: Clock = utc_now
) -> int:
    return cli.main(argv, environ, all_commands(), clock)
