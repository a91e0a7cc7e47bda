"""The user's health check (`--check-cmd`): is the data on the volume usable?

Run without a shell (shlex-split argv) in the data folder, without caretaker's credentials
in its environment (`restore.childenv`); exit status 0 means healthy. It lives within the
run's deadline (`--timeout`) and ends with a signal to the restore: a check that hangs is
killed with everything it started, never left holding the pod back.
A command that cannot even be started (not installed in the image, not executable) is a
configuration error, not unhealthy data: quarantining good data because of a typo in the
check would be the worst possible reaction.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from typing import TYPE_CHECKING, Any

from restore.childenv import child_environment
from restore.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from restore.deadline import Deadline

OUTPUT_TAIL = 600


def run_check(argv: Sequence[str], cwd: Path, log: Any, deadline: Deadline) -> bool:
    """Run the check in `cwd`; return True if it exited 0.

    Raise ConfigError if the command cannot be started at all; DeadlineExceededError or the
    stop's error (the check and what it started killed) if the run's time is up first.
    """
    what = f"check-cmd {shlex.join(argv)}"
    window = deadline.window(what)
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=child_environment(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed with all it started
        )
    except OSError as error:
        raise ConfigError.single(
            "check-cmd", shlex.join(argv), f"cannot run: {error.strerror or error}"
        ) from error
    try:
        stdout, _ = deadline.communicate(process, window, what)
    finally:
        _kill_group(process)
    output = stdout.decode("utf-8", errors="replace")[-OUTPUT_TAIL:].strip()
    healthy = process.returncode == 0
    (log.info if healthy else log.warning)(
        "restore.check",
        command=shlex.join(argv),
        healthy=healthy,
        exit_code=process.returncode,
        output=output,
    )
    return healthy


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the check's process group (what it left running too) and reap the check."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
