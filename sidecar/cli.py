"""The full `caretaker` command: the base layer's commands plus `sidecar` and `inject`.

Kept import-light: `caretaker restore` in an init container goes through here, so the
scheduler, metrics and HTTP stack are imported only when the `sidecar` command runs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from restore import cli
from restore.commands import Command


def all_commands() -> list[Command]:
    from sidecar.commands import inject, sidecar  # noqa: PLC0415

    return [*cli.base_commands(), sidecar.COMMAND, inject.COMMAND]


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    return cli.main(argv, environ, all_commands())


def run() -> None:
    sys.exit(main())
