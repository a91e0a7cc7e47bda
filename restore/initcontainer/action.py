"""The restore action of the init container: decide -> choose -> apply -> report.

- decide: is the target empty (ignoring `lost+found` and `.caretaker`)? If not, skip —
  unless `--force`, or `--check-cmd` says the data is unhealthy. This happens before the
  repository is opened, so a populated volume never pays for botocore or GitPython.
- wait: if another pod's writer claim is live, until it hands the repository over
  (`restore.initcontainer.handover`), so the newest snapshot is its final backup.
- choose: `latest`, `--snapshot ID` (never a silent fallback) or `--before TIME`, and up to
  `--max-fallbacks` older snapshots behind it.
- apply: download and verify into staging; a snapshot that fails verification is skipped
  (and named); then the journaled move into place (`restore.initcontainer.staging`). With a check, the
  restored data must pass it too, or the next older snapshot is tried; when none passes,
  the volume is put back exactly as it was (exit 8), so a wrong check command costs no data
  and an init container retried by the kubelet does not pile up copies.
- report: `Outcome` (the command logs it and writes the result file and termination log).

Every `CaretakerError` ends as a `failed` outcome carrying its exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import time
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from restore.clock import Clock, format_time, utc_now
from restore.deadline import Deadline, Stop
from restore.errors import (
    EXIT_OK,
    CancelledError,
    CaretakerError,
    CheckFailedError,
    IntegrityError,
    LocalIOError,
    exit_code_of,
)
from restore.identity import Identity
from restore.initcontainer.decision import (
    RestoreSettings,
    choose,
    decide,
    empty_start,
    free_bytes,
    needed_bytes,
)
from restore.initcontainer.handover import Handover, await_handover
from restore.initcontainer.healthcheck import run_check
from restore.initcontainer.outcome import Outcome, OutcomeKind
from restore.initcontainer.progress import LogProgress
from restore.initcontainer.retry import Retrier
from restore.initcontainer.staging import Journal, Staging, entries
from restore.initcontainer.statedir import Volume
from restore.model import human_size

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from restore.model import RestoreStats, SnapshotInfo
    from restore.repository import Repository


@dataclasses.dataclass(frozen=True, kw_only=True)
class Effects:
    """Everything the action touches besides the target folder, injected for tests."""

    # Opens the repository with its storage calls bounded by the run's deadline.
    open_repository: Callable[[Deadline], Repository]
    log: Any
    clock: Clock = utc_now
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] | None = None  # None: the deadline's (ends on a signal)
    stop: Stop = dataclasses.field(default_factory=Stop)
    shielded: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    # (bytes free, block size) of the filesystem holding a path.
    disk_free: Callable[[Path], tuple[int, int]] = free_bytes
    # Our pod: its own writer claim is never waited for (None: every claim is another's).
    identity: Identity | None = None


class InitRun:
    """One run: owns the staging area, the deadline and the list of skipped snapshots."""

    staging: Staging  # on the volume opened by `run`

    def __init__(self, settings: RestoreSettings, effects: Effects) -> None:
        self.settings = settings
        self.effects = effects
        self.log = effects.log
        self.retrier = retrier(settings, effects)
        self.deadline = self.retrier.deadline
        self.started = effects.monotonic()
        self.skipped: list[str] = []
        self.quarantined: Path | None = None
        self.reason = ""

    def check(self) -> bool:
        return run_check(self.settings.check_cmd, self.settings.path, self.log, self.deadline)

    def run(self) -> Outcome:
        """Restore if needed; return the outcome (a `failed` one for any error)."""
        try:
            with Volume.open(self.settings.path, create=True) as volume:
                self.staging = Staging(volume)
                return self._run()
        except CaretakerError as error:
            return self.failed(error)
        except OSError as error:  # the volume itself: permission denied, disk full, read-only
            return self.failed(local_io(error))
        except Exception as error:
            self.log.exception("restore.crashed")
            return self.failed(error)

    def _run(self) -> Outcome:
        self.staging.volume.check()  # before anything is read or written: see statedir
        with self.effects.shielded():
            resumed = self.staging.recover()
        finished = self.resumed(resumed) if resumed is not None else None
        if finished is not None:
            return finished
        decision = decide(self.settings, self.check)
        self.log.info("restore.decided", action=decision.action, reason=decision.reason)
        self.reason = decision.reason
        if decision.action == "skip":
            return self.outcome("skipped", None, reason=decision.reason)
        with opened(self.effects, self.retrier) as repo:
            listed = self.retrier.call(repo.snapshots, what="list snapshots")
            if self.await_handover(repo):  # the old pod's final backup is in now
                listed = self.retrier.call(repo.snapshots, what="list snapshots")
            candidates = choose(listed, self.settings)
            if not candidates:
                return self.first_boot(repo)
            return self.apply(repo, candidates)

    def await_handover(self, repo: Repository) -> bool:
        limit = self.settings.handover_timeout_seconds
        wait = self.deadline.remaining() if limit is None else self.deadline.bound(limit)
        handover = Handover(
            identity=self.effects.identity,
            deadline=self.effects.monotonic() + wait,
            progress_seconds=self.settings.progress_interval_seconds,
            log=self.log,
            monotonic=self.effects.monotonic,
            sleep=self.retrier.sleep,  # ends at once on SIGTERM (the run's stop)
            retry=lambda read: self.retrier.call(read, what="read the writer claim"),
        )
        return await_handover(repo.claim_slot(), handover)

    def resumed(self, journal: Journal) -> Outcome | None:
        """Report a restore that a killed run had decided and this run finished (None if the
        finished move was a rollback, or the check fails on the data: decide as usual)."""
        self.log.warning("restore.resumed", kind=journal.kind, snapshot=snapshot_id(journal))
        if journal.kind != "restore" or journal.snapshot is None:
            return None
        if journal.aside.startswith("quarantine/"):
            self.quarantined = self.staging.state / journal.aside
        if self.settings.check_cmd and not self.check():
            return None
        return self.outcome("restored", journal.snapshot, reason="finished an interrupted restore")

    def first_boot(self, repo: Repository) -> Outcome:
        where = repo.describe()
        if entries(self.settings.path) and not self.settings.force:
            raise CheckFailedError(f"check failed on existing data and {where} has no snapshot to restore")
        reason = empty_start(where, self.settings.allow_empty, initialization(repo, self.retrier))
        return self.outcome("first-boot", None, reason=reason)

    def apply(self, repo: Repository, candidates: list[SnapshotInfo]) -> Outcome:
        """Try candidates in order; return the outcome of the first one that is good.

        Once a restored copy has failed the check, any later failure (including a signal)
        first puts the original data back, so a failed run leaves the volume as it was.
        """
        attempts = _Attempts()
        try:
            for snapshot in candidates:
                outcome = self.attempt(repo, snapshot, attempts)
                if outcome is not None:
                    return outcome
        except BaseException:
            if attempts.ours_in_place:
                self.roll_back(attempts.original)
            raise
        if attempts.ours_in_place:
            self.roll_back(attempts.original)
            raise CheckFailedError(
                f"check {shlex.join(self.settings.check_cmd)!r} failed on the existing data and "
                f"on every snapshot tried ({', '.join(self.skipped)}); the volume was put back as "
                "it was"
            )
        raise IntegrityError(
            f"no restorable snapshot: {', '.join(self.skipped)} failed verification "
            f"(--max-fallbacks {self.settings.max_fallbacks}); last error: {attempts.last_error}"
        )

    def attempt(self, repo: Repository, snapshot: SnapshotInfo, attempts: _Attempts) -> Outcome | None:
        """Restore one candidate; return its outcome, or None to try the next one."""
        try:
            stats = self.stage(repo, snapshot)
        except IntegrityError as error:
            self.log.warning("restore.snapshot_rejected", snapshot=snapshot.id, error=str(error))
            self.skipped.append(snapshot.id)
            attempts.last_error = error
            return None
        try:
            self.move_in(snapshot, attempts)
        except CancelledError:
            with contextlib.suppress(OSError):
                self.staging.clean()  # stopped before the move began: the staged copy goes
            raise
        self.quarantined = attempts.original
        if not self.settings.check_cmd or self.check():
            return self.outcome("restored", snapshot, stats=stats)
        self.log.warning("restore.check_failed", snapshot=snapshot.id)
        self.skipped.append(snapshot.id)
        attempts.ours_in_place = True
        return None

    def stage(self, repo: Repository, snapshot: SnapshotInfo) -> RestoreStats:
        """Download and verify a snapshot into staging. On any error, staging is removed."""
        free, block = self.effects.disk_free(self.settings.path)
        need = needed_bytes(snapshot, block)
        if free < need:
            raise LocalIOError(
                f"not enough space on {self.settings.path} for snapshot {snapshot.id}: "
                f"needs about {human_size(need)}, {human_size(free)} free"
            )
        self.log.info(
            "restore.staging",
            snapshot=snapshot.id,
            time=format_time(snapshot.time),
            files=snapshot.files,
            bytes=snapshot.bytes,
        )

        def attempt() -> RestoreStats:
            progress = LogProgress(
                self.log,
                interval_seconds=self.settings.progress_interval_seconds,
                monotonic=self.effects.monotonic,
            )
            dest = self.staging.prepare()
            selection = self.settings.selection()  # --exclude alone: paths left out
            keep_setid = self.settings.keep_setid
            return repo.restore(snapshot.id, dest, progress, selection=selection, keep_setid=keep_setid)

        try:
            return self.retrier.call(attempt, what=f"restore snapshot {snapshot.id}")
        except BaseException as error:
            self.staging.name_in(error)
            with contextlib.suppress(OSError):
                self.staging.clean()
            raise

    def move_in(self, snapshot: SnapshotInfo, attempts: _Attempts) -> None:
        """Move the staged copy in. The first move sets what the target holds aside into a
        new quarantine folder; a later one only discards our own copy of an older candidate,
        which the repository still holds."""
        with self.effects.shielded():
            present = entries(self.settings.path)
            aside = self.staging.discard
            if present and not attempts.ours_in_place:
                aside = attempts.original = self.staging.new_quarantine(self.effects.clock())
            journal = self.staging.commit(
                kind="restore",
                source=self.staging.tree,
                aside=aside,
                set_aside=present,
                snapshot=snapshot,
            )
            self.staging.apply(journal)
        self.log.info(
            "restore.moved_in",
            snapshot=snapshot.id,
            entries=len(journal.move_in),
            set_aside=len(journal.set_aside),
            aside=str(aside),
        )

    def roll_back(self, original: Path | None) -> None:
        """Put the data that was there before the run back; discard restored copies."""
        with self.effects.shielded():
            journal = self.staging.commit(
                kind="rollback",
                source=original,
                aside=self.staging.discard,
                set_aside=entries(self.settings.path),
            )
            self.staging.apply(journal)
        self.quarantined = None
        self.log.warning("restore.rolled_back", entries=len(journal.move_in))

    def outcome(
        self,
        kind: OutcomeKind,
        snapshot: SnapshotInfo | None,
        *,
        reason: str = "",
        stats: RestoreStats | None = None,
    ) -> Outcome:
        """Build a successful outcome; counts come from `stats`, else from the snapshot record."""
        counted = stats or snapshot
        finished = self.effects.clock()
        return Outcome(
            outcome=kind,
            exit_code=EXIT_OK,
            finished_at=finished,
            reason=reason or self.reason,
            snapshot=snapshot.id if snapshot else None,
            snapshot_time=snapshot.time if snapshot else None,
            snapshot_age_seconds=round((finished - snapshot.time).total_seconds(), 3) if snapshot else None,
            files=counted.files if counted else 0,
            bytes=counted.bytes if counted else 0,
            duration_seconds=round(self.effects.monotonic() - self.started, 3),
            skipped_snapshots=tuple(self.skipped),
            quarantined=str(self.quarantined) if self.quarantined else None,
        )

    def failed(self, error: BaseException) -> Outcome:
        reason = error.reason if isinstance(error, CaretakerError) else "crashed"
        return dataclasses.replace(
            self.outcome("failed", None, reason=reason),
            exit_code=exit_code_of(error),
            error=str(error) or type(error).__name__,
        )


@dataclasses.dataclass
class _Attempts:
    ours_in_place: bool = False  # the target holds our restored copy (which failed the check)
    original: Path | None = None  # the quarantine folder the target's data was set aside into
    last_error: CaretakerError | None = None


def local_io(error: OSError) -> LocalIOError:
    """The error of a run that the volume stopped: permission denied, disk full, read-only,
    an entry changed under it (exit 10)."""
    where = f"{error.filename}: " if error.filename else ""
    return LocalIOError(f"{where}{error.strerror or error}")


def snapshot_id(journal: Journal) -> str | None:
    return journal.snapshot.id if journal.snapshot else None


def initialization(repo: Repository, retries: Retrier) -> Callable[[], str | None]:
    """Ask the repository, retrying while it is unreachable, whether a backup has used it."""
    return lambda: retries.call(repo.initialization, what="look for an earlier backup")


def prepare_volume(settings: RestoreSettings, effects: Effects) -> Outcome:
    """Run the init container's action; return its outcome (never raises CaretakerError)."""
    return InitRun(settings, effects).run()


def retrier(settings: RestoreSettings, effects: Effects) -> Retrier:
    """Retries within the run's deadline: --timeout, the one limit of the whole run, every
    storage attempt included (the repository is opened with it)."""
    deadline = Deadline(settings.timeout_seconds, stop=effects.stop, monotonic=effects.monotonic)
    return Retrier(deadline=deadline, log=effects.log, sleep=effects.sleep)


@contextlib.contextmanager
def opened(effects: Effects, retrier: Retrier) -> Iterator[Repository]:
    repo = retrier.call(lambda: effects.open_repository(retrier.deadline), what="open repository")
    try:
        yield repo
    finally:
        repo.close()
