"""The user's health check (`--check-cmd`): is the data on the volume usable?

Run without a shell (shlex-split argv) in the data folder, without caretaker's credentials
in its environment (`restore.childenv`); exit status 0 means healthy.
A command that cannot even be started (not installed in the image, not executable) is a
configuration error, not unhealthy data: quarantining good data because of a typo in the
check would be the worst possible reaction.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from typing import TYPE_CHECKING, Any

from restore.childenv import child_environment
from restore.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

OUTPUT_TAIL = 600


def run_check(argv: Sequence[str], cwd: Path, log: Any) -> bool:
    """Run the check in `cwd`; return True if it exited 0.

    Raise ConfigError if the command cannot be started at all.
    """
    try:
        completed = subprocess.run(
            list(argv),
            cwd=cwd,
            env=child_environment(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
    except OSError as error:
        raise ConfigError.single(
            "check-cmd", shlex.join(argv), f"cannot run: {error.strerror or error}"
        ) from error
    output = completed.stdout.decode("utf-8", errors="replace")[-OUTPUT_TAIL:].strip()
    healthy = completed.returncode == 0
    (log.info if healthy else log.warning)(
        "restore.check",
        command=shlex.join(argv),
        healthy=healthy,
        exit_code=completed.returncode,
        output=output,
    )
    return healthy
