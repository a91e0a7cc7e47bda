"""/readyz: the configuration is loaded (it is, or we would not be running), the repository
answers (and has not lost every snapshot it had), and (optionally) the last good backup is
younger than the RPO and this sidecar is not standing by for another writer.

Standing by is ready by default: a rolling update waits for the new pod to be ready before
it stops the old one, which holds the claim, so an unready standby would stall it.

The repository is asked for its snapshot list, which is cheap, at most every few seconds:
probes may come every second from the kubelet and from humans. While one probe waits on a
slow repository, others get the previous answer instead of piling up behind it, and no
check waits longer than CHECK_TIMEOUT_SECONDS, whatever the store does (its deadline).
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import structlog

from restore.clock import Clock
from restore.errors import BackendError, CaretakerError
from restore.redaction import redact_text
from sidecar.standing import StandingRepository
from sidecar.status import StatusBoard

OK_TTL_SECONDS = 5.0
FAILED_TTL_SECONDS = 2.0
# The longest one check (or one claim renewal) waits for the repository, whatever the store
# does: under the kubelet's probe timeout (the chart's readinessProbe.timeoutSeconds, 5), so
# a hung store is reported with its reason instead of as a probe that timed out.
CHECK_TIMEOUT_SECONDS = 4.0


class Readiness:
    def __init__(
        self,
        *,
        board: StatusBoard,
        repository: StandingRepository,
        clock: Clock,
        rpo: timedelta | None,
        unready_on_standby: bool = False,
    ) -> None:
        self._board = board
        self._unready_on_standby = unready_on_standby
        self._standing = repository
        self._clock = clock
        self._rpo = rpo
        self._probe_lock = threading.Lock()
        self._had_snapshots = 0
        self._last: tuple[float, str | None] | None = None  # (monotonic time, problem)

    def check(self) -> list[str]:
        """Return the reasons the sidecar is not ready (empty when ready)."""
        reasons: list[str] = []
        if self._board.stopping:
            reasons.append("shutting down")
        holder = self._board.standby_holder()
        if holder and self._unready_on_standby:
            reasons.append(f"standing by: the repository is claimed by {holder}")
        problem = self._repository_problem()
        if problem:
            reasons.append(problem)
        if self._rpo is not None:
            last = self._board.last_backup_at() or self._board.started_at
            age = self._clock() - last
            if age > self._rpo:
                reasons.append(
                    f"last backup {int(age.total_seconds())}s ago, older than the "
                    f"rpo of {int(self._rpo.total_seconds())}s"
                )
        return reasons

    def _repository_problem(self) -> str | None:
        last = self._last
        if last is not None:
            ttl = OK_TTL_SECONDS if last[1] is None else FAILED_TTL_SECONDS
            if time.monotonic() - last[0] < ttl:
                return last[1]
        if not self._probe_lock.acquire(blocking=False):
            return last[1] if last else "repository not checked yet"
        try:
            problem = self._probe()
            self._last = (time.monotonic(), problem)
            return problem
        finally:
            self._probe_lock.release()

    def _probe(self) -> str | None:
        repo = None
        try:
            repo = self._standing.get()
            snapshots = repo.snapshots()
            cipher = repo.encryption()
        except Exception as error:
            if repo is not None:
                self._standing.reset(repo)
            reason = redact_text(str(error))
            structlog.get_logger().warning("readyz.repository_unreachable", error=reason)
            # A wrong password or damaged data is no connection problem: say which it is.
            what = "unreachable" if isinstance(error, BackendError) else f"unusable ({_reason(error)})"
            return f"repository {what}: {reason}"
        self._board.snapshots(snapshots)
        self._board.repository_encryption(cipher)
        if snapshots:
            self._had_snapshots = len(snapshots)
            return None
        if self._had_snapshots:
            # Prune always keeps the newest snapshot, so an empty listing after a full one
            # means the storage is gone (an unmounted volume looks like an empty folder).
            return f"repository lists no snapshots any more (it had {self._had_snapshots})"
        return None


def _reason(error: Exception) -> str:
    return error.reason if isinstance(error, CaretakerError) else "error"
