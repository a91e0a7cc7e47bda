"""Back up now: SIGUSR1 runs every backup job at once, outside its schedule.

`caretaker trigger` (run with `kubectl exec POD -c caretaker -- caretaker trigger`: no shell
needed) sends the signal; so does `kill -USR1 1` where a shell exists, since tini, the
image's PID 1, forwards it to caretaker. A triggered run is a run like any other (reason
`trigger`): one that would overlap a running one is skipped and counted, a standby sidecar
(another writer holds the repository) does not back up, and during shutdown nothing starts.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog

from sidecar.runner import Runner
from sidecar.settings.model import SidecarConfig


class BackupNow:
    def __init__(self, config: SidecarConfig, runner: Runner) -> None:
        self._jobs = [job.name for job in config.jobs if job.kind == "backup"]
        self._runner = runner
        self._wanted = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="backup-now", daemon=True)

    def install(self) -> None:
        """Handle SIGUSR1 from now on (its default action would end the process)."""
        signal.signal(signal.SIGUSR1, self._on_signal)
        self._thread.start()

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        # A signal handler runs between two bytecodes of the main thread: only set a flag.
        self._wanted.set()

    def _serve(self) -> None:
        while self._wanted.wait():
            self._wanted.clear()
            structlog.get_logger().info("backup_now.requested", jobs=self._jobs)
            for name in self._jobs:
                # Each in a thread of its own, so a run already going is an overlap (skipped
                # and counted) rather than a wait, as for a scheduled run.
                threading.Thread(
                    target=self._runner.run, args=(name,), kwargs={"reason": "trigger"}, daemon=True
                ).start()
