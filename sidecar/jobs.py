"""The job kinds as plain keyword-only functions: no scheduler, no metrics, no retries.

`sidecar.runner` calls them (with hooks, retries, logging and metrics around them); tests
call them directly. Each one either returns what it did or raises a `CaretakerError`
saying why not. Long-running kinds take a `Cancel` so a timeout or a shutdown can stop
them cleanly: a backup checks it on every progress report (the engine writes its snapshot
record last, so an aborted backup leaves no snapshot), a command gets its whole process
group killed.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

import structlog

from restore import __version__
from restore.backends.registry import OpenOptions, open_repository
from restore.backends.transfer import copy_snapshots, destination_environ
from restore.childenv import child_environment
from restore.claims.holder import Claimant
from restore.clock import Clock
from restore.deadline import Deadline, Stop
from restore.errors import CaretakerError, IntegrityError
from restore.model import (
    SHOWN_FILES,
    BackupOptions,
    BackupResult,
    Copied,
    NoProgress,
    Progress,
    PruneResult,
    VerifyResult,
)
from restore.redaction import redact_url
from restore.snapshots.encryption import Encryption
from sidecar.children import BoundedOutput
from sidecar.settings.model import CommandSpec, HttpSpec

if TYPE_CHECKING:
    from restore.repository import Repository
    from restore.retention import RetentionPolicy

KILL_GRACE_SECONDS = 5.0  # SIGTERM to the group, then SIGKILL after this long
_POLL_SECONDS = 0.2
_MAX_LINE = 8192
_MAX_BODY = 64 * 1024


class JobAbortedError(CaretakerError):
    """A run was stopped on purpose: its timeout passed or the sidecar is shutting down."""

    reason = "aborted"


class CommandFailedError(CaretakerError):
    """A command could not start, exited non-zero or ran out of time."""

    reason = "command-failed"


class HttpCallError(CaretakerError):
    """An HTTP call failed or answered with an unexpected status."""

    reason = "http-failed"


class Cancel(Stop):
    """A one-way switch that asks a running job to stop, with the reason why; as the `Stop`
    of a backup's deadline it also ends the storage calls it waits for."""

    def cancel(self, reason: str) -> None:
        self.trigger(JobAbortedError(reason))

    @property
    def reason(self) -> str:
        return str(self.error or "")

    @property
    def cancelled(self) -> bool:
        return self.triggered


class ProcessGroups:
    """The process groups of commands running now, so a forced exit can kill them first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[int] = set()

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)

    def kill_all(self) -> None:
        with self._lock:
            groups = list(self._groups)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)


class _CancellingProgress:
    """Progress reports are where a backup can be stopped without leaving anything half done."""

    def __init__(self, cancel: Cancel, inner: Progress) -> None:
        self._cancel = cancel
        self._inner = inner

    def start(self, *, files: int, bytes: int) -> None:
        self._cancel.check()
        self._inner.start(files=files, bytes=bytes)

    def advance(self, *, files: int = 0, bytes: int = 0) -> None:
        self._cancel.check()
        self._inner.advance(files=files, bytes=bytes)


def backup(
    *,
    repo: Repository,
    path: Path,
    options: BackupOptions,
    cancel: Cancel,
    progress: Progress | None = None,
) -> BackupResult:
    """Record `path` as a new snapshot (or none, if unchanged and `options.skip_unchanged`).

    Raise RefusedError if the folder is empty over non-empty history (unless allowed),
    JobAbortedError if cancelled (no snapshot is left behind), BackendError on storage trouble.
    """
    cancel.check()
    return repo.backup(path, options, _CancellingProgress(cancel, progress or NoProgress()))


def prune(*, repo: Repository, policy: RetentionPolicy, now: datetime) -> PruneResult:
    """Forget the snapshots `policy` does not keep and free their data."""
    return repo.prune(policy, now=now)


def verify(*, repo: Repository, read_data: float) -> list[VerifyResult]:
    """Check every snapshot (and read a `read_data` fraction of the data).

    Raise IntegrityError naming the damaged snapshots if any check fails.
    """
    results = repo.verify(read_data=read_data)
    damaged = [result for result in results if not result.ok]
    log = structlog.get_logger()
    for result in damaged:
        for damage in result.damage:
            log.error(
                "verify.damage",
                snapshot=result.snapshot_id,
                object=damage.object,
                problem=damage.problem,
                files=list(damage.files[:SHOWN_FILES]),
            )
    if damaged:
        names = ", ".join(result.snapshot_id for result in damaged)
        raise IntegrityError(f"{len(damaged)} of {len(results)} snapshots damaged: {names}")
    return results


def copy(
    *,
    repo: Repository,
    to: str,
    environ: Mapping[str, str],
    clock: Clock,
    cancel: Cancel,
    encryption: Encryption,
) -> list[Copied]:
    """Copy every snapshot of `repo` that the repository at `to` lacks (CARETAKER_TO_*
    variables configure it; `encryption` is its password or opt-out), under its writer
    claim. A cancel ends its storage calls: a copy stopped anywhere leaves no snapshot
    behind, and the next one goes on. Raise ConfigError for a bad URL, LeaseHeldError,
    PasswordError, BackendError, IntegrityError."""
    deadline = Deadline(stop=cancel)
    options = OpenOptions(
        environ=destination_environ(environ),
        clock=clock,
        claimant=dataclasses.replace(Claimant.of_process(environ, clock=clock), sleep=deadline.sleep),
        deadline=deadline,
        encryption=encryption,
    )
    dest = open_repository(to, options)
    try:
        return copy_snapshots(repo, dest, repo.snapshots(), plain_allowed=encryption.unencrypted)
    finally:
        dest.close()


def command(
    *,
    spec: CommandSpec,
    cwd: Path,
    environ: Mapping[str, str],
    cancel: Cancel,
    groups: ProcessGroups,
    variables: Mapping[str, str] | None = None,
    kill_grace: float = KILL_GRACE_SECONDS,
) -> None:
    """Run `spec.argv` in a process group of its own, logging its output (bounded).

    The child gets `environ` (the sidecar's) without caretaker's credentials, plus
    `variables` and `spec.env` (see `sidecar.children`). Whatever happens, the whole group
    (the command and anything it started) is gone when this returns. Raise
    CommandFailedError if it cannot start, exits non-zero or times out, JobAbortedError if
    cancelled.
    """
    workdir = cwd / spec.workdir if spec.workdir else cwd
    env = child_environment(environ, inherit=spec.inherit_env, extra=variables)
    try:
        process = subprocess.Popen(
            spec.argv,
            cwd=workdir,
            env={**env, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as error:
        raise CommandFailedError(f"cannot start {spec.argv[0]!r}: {error.strerror or error}") from error
    groups.add(process.pid)
    assert process.stdout is not None  # noqa: S101 - PIPE given
    assert process.stderr is not None  # noqa: S101
    pumps = [_pump(process.stdout, "stdout"), _pump(process.stderr, "stderr")]
    try:
        code = _wait(process, spec.timeout.total_seconds(), cancel)
    finally:
        _stop_group(process, kill_grace)
        groups.discard(process.pid)
        for pump in pumps:
            pump.join(kill_grace)
    if code is None:
        cancel.check()
        raise CommandFailedError(f"{spec.argv[0]!r} timed out after {spec.timeout}; process group killed")
    if code != 0:
        raise CommandFailedError(f"{spec.argv[0]!r} exited with status {code}")


def _wait(process: subprocess.Popen[bytes], timeout: float, cancel: Cancel) -> int | None:
    """Return the exit status, or None if the time ran out or the run was cancelled."""
    deadline = time.monotonic() + timeout
    while not cancel.cancelled:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return process.wait(min(_POLL_SECONDS, remaining))
        except subprocess.TimeoutExpired:
            continue
    return None


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the command's process group, then SIGKILL whatever is left after `grace`."""
    pgid = process.pid
    if not _signal_group(pgid, signal.SIGTERM):
        process.wait()
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()  # reap our own child, so only live members keep the group alive
        if not _group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        _signal_group(pgid, signal.SIGKILL)
    process.wait()


def _group_alive(pgid: int) -> bool:
    """True while a process of the group still runs. Zombies do not count: an orphan
    waits for PID 1 to reap it, and that is no reason to wait for the kill grace."""
    if not _signal_group(pgid, 0):
        return False
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return True  # no /proc: trust kill(0)
    for pid in entries:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in {"Z", "X"}:
            return True
    return False


def _signal_group(pgid: int, signum: int) -> bool:
    """Send a signal to a process group; return False if the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member changed user: it still exists
    return True


def _pump(stream: IO[bytes], name: str) -> threading.Thread:
    """Log a child's output (bounded), in a thread that keeps the run's bound context."""

    def run() -> None:
        output = BoundedOutput(structlog.get_logger(), name)
        with stream:
            for raw in iter(lambda: stream.readline(_MAX_LINE), b""):
                output.add(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        output.finish()

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(run,), name=f"pump-{name}", daemon=True)
    thread.start()
    return thread


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer (see `HttpSpec.follow_redirects`), not a new request."""

    def redirect_request(self, *_: object) -> None:
        return None


def http(*, spec: HttpSpec) -> int:
    """Send one request (no proxy: these calls are for the app next door). Return the status.

    Redirects are followed only with `spec.follow_redirects`. Raise HttpCallError if the
    request fails or the status is not `spec.expect_status` (naming a redirect's target).
    """
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if not spec.follow_redirects:
        handlers.append(_NoRedirects())
    opener = urllib.request.build_opener(*handlers)
    body = b"" if spec.method in {"POST", "PUT", "PATCH"} else None
    request = urllib.request.Request(  # noqa: S310 - the URL's scheme was checked to be http(s)
        spec.url, data=body, method=spec.method, headers={"User-Agent": f"caretaker/{__version__}"}
    )
    where = f"{spec.method} {redact_url(spec.url)}"
    location = None
    try:
        with opener.open(request, timeout=spec.timeout.total_seconds()) as response:
            response.read(_MAX_BODY)
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
        location = error.headers.get("Location") if 300 <= status < 400 else None
        error.close()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise HttpCallError(f"{where} failed: {reason}") from error
    if status != spec.expect_status:
        redirect = (
            f" (a redirect to {redact_url(location)}, not followed without follow_redirects: true)"
            if location
            else ""
        )
        raise HttpCallError(f"{where} answered {status}{redirect}, expected {spec.expect_status}")
    return status
