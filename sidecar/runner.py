"""One run of a job: hooks around it, retries with backoff, logs with the job bound, and the
result recorded for /status and /metrics.

The scheduler only decides *when*; everything a run means lives here, so a run triggered by
the scheduler, by another job (`then`) or by shutdown (`backup_on_shutdown`) behaves the
same. Runs of one job never overlap (a second one is skipped and counted), and jobs that
touch the repository take turns: a prune must not delete data a running backup is writing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta

import structlog

from restore.clock import Clock
from restore.deadline import Deadline
from restore.errors import (
    CaretakerError,
    LeaseHeldError,
    RefusedError,
    ResourceLimitError,
    TransientBackendError,
)
from restore.identity import host_name
from restore.initcontainer.progress import LogProgress
from restore.model import BackupOptions
from restore.redaction import redact_url
from restore.repository import Repository
from sidecar import hooks, jobs
from sidecar.notifier import Notifier
from sidecar.settings.model import (
    BackupAction,
    CommandSpec,
    CopyAction,
    HttpSpec,
    JobConfig,
    PruneAction,
    SidecarConfig,
    VerifyAction,
)
from sidecar.status import StatusBoard

# Opens the repository with its storage calls bounded by (and stopped with) a deadline.
RepositoryOpener = Callable[[Deadline], Repository]
RETRYABLE = (
    TransientBackendError,
    LeaseHeldError,
    ResourceLimitError,
    jobs.CommandFailedError,
    jobs.HttpCallError,
)
# The kinds that write the repository: they wait while another writer holds its claim.
WRITER_KINDS = ("backup", "prune")
MAX_BACKOFF = timedelta(minutes=10)
PROGRESS_INTERVAL_SECONDS = 10.0  # as the restore's default --progress-interval
# The start-up read of the repository's figures: listings, no data; a hung store ends it.
REFRESH_TIMEOUT_SECONDS = 60.0
_LOCK_POLL_SECONDS = 0.5


def result_of(error: BaseException | None) -> str:
    """The `result` label of a finished run."""
    if error is None:
        return "success"
    return "refused" if isinstance(error, RefusedError) else "failure"


def is_retryable(error: BaseException) -> bool:
    """Storage hiccups, a held lease, too many open files and failed commands/HTTP calls (also
    in hooks) may pass."""
    cause = error.cause if isinstance(error, hooks.HookFailedError) else error
    return isinstance(cause, RETRYABLE)


class Runner:
    def __init__(
        self,
        *,
        config: SidecarConfig,
        board: StatusBoard,
        environ: Mapping[str, str],
        clock: Clock,
        open_repository: RepositoryOpener,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier
        self.board = board
        self.environ = environ
        self.clock = clock
        self.groups = jobs.ProcessGroups()
        self._open_repository = open_repository
        self._job_locks = {job.name: threading.Lock() for job in config.jobs}
        self._repository_lock = threading.Lock()
        self._state = threading.Condition()
        self._cancels: set[jobs.Cancel] = set()
        self._accepting = True

    def run(self, name: str, *, reason: str = "schedule") -> str:
        """Run a job once (unless it is running already) and then the jobs it chains.

        Return the result: success, failure, refused, skipped_overlap, standby (another
        writer holds the repository), or not_started during shutdown. Never raises: a run's
        failure is recorded, not propagated.
        """
        if not self._accepting and reason != "shutdown":
            structlog.get_logger().info("job.not_started", job=name, reason="shutting down")
            return "not_started"
        job = self.config.job(name)
        if job.kind in WRITER_KINDS and (holder := self.board.standby_holder()):
            structlog.get_logger().info("job.standby", job=name, holder=holder)
            self.board.skipped_standby(name)
            return "standby"
        lock = self._job_locks[name]
        if not lock.acquire(blocking=False):
            structlog.get_logger().warning("job.skipped", job=name, reason="previous run still going")
            self.board.skipped(name)
            return "skipped_overlap"
        try:
            with structlog.contextvars.bound_contextvars(job=name, kind=job.kind):
                result = self._run_locked(job, reason)
        finally:
            lock.release()
        if result == "success":
            for target in job.then:
                self.run(target, reason=f"after {name}")
        return result

    def stop_accepting(self) -> None:
        """From now on only shutdown runs start (scheduled and chained ones are refused)."""
        self._accepting = False

    def cancel_all(self, reason: str) -> None:
        """Ask every running job to stop now (backups abort cleanly, commands are killed)."""
        with self._state:
            for cancel in self._cancels:
                cancel.cancel(reason)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs; return False if some still run after `timeout` seconds."""
        with self._state:
            return self._state.wait_for(lambda: not self._cancels, max(timeout, 0))

    def _run_locked(self, job: JobConfig, reason: str) -> str:
        """Run while registered as running, so shutdown can wait for it and cancel it."""
        cancel = jobs.Cancel()
        with self._state:
            self._cancels.add(cancel)
        try:
            return self._run_recorded(job, reason, cancel)
        finally:
            with self._state:
                self._cancels.discard(cancel)
                self._state.notify_all()

    def _run_recorded(self, job: JobConfig, reason: str, cancel: jobs.Cancel) -> str:
        log = structlog.get_logger()
        timer = self._start_timer(job, cancel)
        self.board.started(job.name)
        if self.notifier:
            self.notifier.started(job)
        log.info("job.start", reason=reason)
        started = time.monotonic()
        try:
            attempts, error = self._attempts(job, cancel)
        finally:
            if timer is not None:
                timer.cancel()
        seconds = time.monotonic() - started
        result = result_of(error)
        text = str(error) if error else None
        self.board.finished(job.name, result, error=text, attempts=attempts, seconds=seconds)
        if self.notifier:
            self.notifier.finished(job, result, error=text, attempts=attempts, seconds=seconds)
        if error is None:
            log.info("job.success", duration_seconds=round(seconds, 3), attempts=attempts)
        else:
            reason_code = error.reason if isinstance(error, CaretakerError) else "crashed"
            log.error(
                f"job.{result}",
                error=str(error),
                reason=reason_code,
                attempts=attempts,
                duration_seconds=round(seconds, 3),
            )
        return result

    @staticmethod
    def _start_timer(job: JobConfig, cancel: jobs.Cancel) -> threading.Timer | None:
        if job.timeout is None:
            return None
        timer = threading.Timer(
            job.timeout.total_seconds(), cancel.cancel, args=(f"timed out after {job.timeout}",)
        )
        timer.daemon = True
        timer.start()
        return timer

    def _attempts(self, job: JobConfig, cancel: jobs.Cancel) -> tuple[int, Exception | None]:
        """Try up to 1 + retries times; return how many attempts ran and the final error."""
        log = structlog.get_logger()
        attempt = 0
        while True:
            attempt += 1
            try:
                self._attempt(job, cancel)
            except CaretakerError as error:
                if attempt > job.retries or not is_retryable(error) or cancel.cancelled:
                    return attempt, error
                delay = min(job.retry_backoff * 2 ** (attempt - 1), MAX_BACKOFF)
                log.warning(
                    "job.retry", error=str(error), attempt=attempt, delay_seconds=delay.total_seconds()
                )
                if cancel.wait(delay.total_seconds()):
                    return attempt, jobs.JobAbortedError(cancel.reason)
            except Exception as error:
                log.exception("job.crashed")
                return attempt, error
            else:
                return attempt, None

    def _attempt(self, job: JobConfig, cancel: jobs.Cancel) -> None:
        """before hooks, the job, after hooks (always). The job's own error wins."""
        ctx = hooks.HookContext(
            job=job.name, cwd=self.config.path, environ=self.environ, cancel=cancel, groups=self.groups
        )
        error: Exception | None = None
        try:
            hooks.run_before(job.before, ctx)
            self._execute(job, cancel)
        except Exception as failure:
            error = failure
        if job.after:
            try:
                hooks.run_after(job.after, ctx, result_of(error))
            except hooks.HookFailedError as after_error:
                error = error or after_error
        if error is not None:
            raise error

    def _execute(self, job: JobConfig, cancel: jobs.Cancel) -> None:
        action = job.action
        if isinstance(action, CommandSpec):
            jobs.command(
                spec=action,
                cwd=self.config.path,
                environ=self.environ,
                variables={"CARETAKER_JOB": job.name},
                cancel=cancel,
                groups=self.groups,
            )
        elif isinstance(action, HttpSpec):
            status = jobs.http(spec=action)
            structlog.get_logger().info("http.done", status=status)
        else:
            stop = cancel if job.kind in {"backup", "copy"} else None
            with self._repository(cancel, Deadline(stop=stop)) as repo:
                self._repository_job(job.name, action, repo, cancel)
                self._record_repository(repo)

    def _repository_job(
        self,
        name: str,
        action: BackupAction | PruneAction | VerifyAction | CopyAction,
        repo: Repository,
        cancel: jobs.Cancel,
    ) -> None:
        log = structlog.get_logger()
        if isinstance(action, BackupAction):
            options = BackupOptions(
                excludes=action.excludes,
                host=host_name(self.environ),
                tags=(name,),
                allow_empty=action.allow_empty,
                skip_unchanged=action.skip_unchanged,
            )
            progress = LogProgress(log, interval_seconds=PROGRESS_INTERVAL_SECONDS, event="backup.progress")
            result = jobs.backup(
                repo=repo, path=self.config.path, options=options, cancel=cancel, progress=progress
            )
            self.board.backup_stats(name, result.stats, recorded=result.recorded)
            log.info(
                "backup.done",
                snapshot=result.snapshot.id,
                changed=result.changed,
                recorded=result.recorded,
                **result.stats.to_json(),
            )
        elif isinstance(action, PruneAction):
            pruned = jobs.prune(repo=repo, policy=action.policy, now=self.clock())
            log.info(
                "prune.done",
                kept=len(pruned.kept),
                removed=len(pruned.removed),
                objects_deleted=pruned.objects_deleted,
                bytes_freed=pruned.bytes_freed,
            )
        elif isinstance(action, CopyAction):
            copied = jobs.copy(
                repo=repo,
                to=action.to,
                environ=self.environ,
                clock=self.clock,
                cancel=cancel,
                encryption=self.config.to_encryption,
            )
            log.info(
                "copy.done",
                to=redact_url(action.to),
                copied=sum(c.copied for c in copied),
                present=sum(not c.copied for c in copied),
                bytes=sum(c.bytes for c in copied),
            )
        else:
            checked = jobs.verify(repo=repo, read_data=action.read_data)
            log.info(
                "verify.done", snapshots=len(checked), bytes_checked=sum(r.bytes_checked for r in checked)
            )

    def refresh_repository(self) -> None:
        """Read the repository's figures for /metrics and /status (at start-up: jobs read
        them again after each run). A failure is logged; readiness reports it too."""
        try:
            # Not the jobs' repository turn: reading listings beside a job is harmless, and a
            # hung store must not hold the first backup back for this read's whole deadline.
            with contextlib.closing(self._open_repository(Deadline(REFRESH_TIMEOUT_SECONDS))) as repo:
                self._record_repository(repo)
        except Exception as error:
            structlog.get_logger().warning("repository.unreadable", error=str(error))

    def _record_repository(self, repo: Repository) -> None:
        self.board.snapshots(repo.snapshots())
        self.board.stored_bytes(repo.stored_bytes())
        self.board.repository_encryption(repo.encryption())

    @contextlib.contextmanager
    def _repository(self, cancel: jobs.Cancel, deadline: Deadline) -> Iterator[Repository]:
        """Take the sidecar's repository turn (abortable while waiting), open, close.

        A backup's and a copy's storage calls end with their cancel (timeout, shutdown: their
        `deadline` stops with it): each writes its snapshot record last, so stopping it
        anywhere leaves nothing half done. Prune and verify run to the end of each call (see
        `Sidecar.shutdown`).
        """
        while not self._repository_lock.acquire(timeout=_LOCK_POLL_SECONDS):
            cancel.check()
        try:
            cancel.check()
            repo = self._open_repository(deadline)
            try:
                yield repo
            finally:
                repo.close()
        finally:
            self._repository_lock.release()
