"""The repository the sidecar keeps open for itself: readiness probes and claim heartbeats.

Jobs open a repository of their own per run; what runs all the time shares one, so the
sidecar holds one S3 client (about 14 MB) or one git auth set-up, not one per user. A user
that meets an error may `reset` it: the next `get` opens a fresh one.

Its storage calls are bounded by one restartable deadline: each `get` gives its caller
`seconds` from then (another user's `get` only ever extends a call under way), so a hung
store answers a readiness probe or a heartbeat with an error in time. `stop` (shutdown)
ends every wait at once; calls begun after it get a moment to clean up (restore.deadline).
"""

from __future__ import annotations

import threading

import structlog

from restore.deadline import Deadline
from restore.repository import Repository
from sidecar.jobs import JobAbortedError
from sidecar.runner import RepositoryOpener


class StandingRepository:
    def __init__(self, open_repository: RepositoryOpener, *, seconds: float) -> None:
        self._open = open_repository
        self._deadline = Deadline(seconds)
        self._repo: Repository | None = None
        self._lock = threading.Lock()

    def get(self) -> Repository:
        """The open repository (opened now if needed), its calls given `seconds` from now.

        Raise what opening raises.
        """
        with self._lock:
            self._deadline.restart()
            if self._repo is None:
                self._repo = self._open(self._deadline)
            return self._repo

    def reset(self, broken: Repository) -> None:
        """Close `broken` (if it is still the current one); the next `get` opens anew."""
        with self._lock:
            if self._repo is not broken:
                return
            self._repo = None
        _close(broken)

    def stop(self) -> None:
        """End every wait on storage now (shutdown)."""
        self._deadline.stop.trigger(JobAbortedError("sidecar shutting down"))

    def close(self) -> None:
        with self._lock:
            repo, self._repo = self._repo, None
        if repo is not None:
            _close(repo)


def _close(repo: Repository) -> None:
    try:
        repo.close()
    except Exception as error:
        structlog.get_logger().debug("repository.close_failed", error=str(error))
