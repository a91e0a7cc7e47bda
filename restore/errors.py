"""The error tree. Each class owns its exit code; `cli.main` is the one place that maps them.

Exit codes are part of the public contract (README, "Exit codes"): an init container's
exit code is what `kubectl describe pod` shows, so each failure a user must act on
differently has a code of its own.
"""

from __future__ import annotations

import dataclasses
import errno
from typing import ClassVar

from restore.redaction import redact_text

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_SNAPSHOT = 3
EXIT_UNREACHABLE = 4
EXIT_BACKEND_DENIED = 5
EXIT_LOCKED = 6
EXIT_CORRUPT = 7
EXIT_CHECK_FAILED = 8
EXIT_REFUSED = 9
EXIT_LOCAL_IO = 10
EXIT_UNSAFE_VOLUME = 11
EXIT_REPOSITORY_FULL = 12
EXIT_PASSWORD = 13
EXIT_SIGNAL_BASE = 128
EXIT_CANCELLED = EXIT_SIGNAL_BASE + 2  # SIGINT, as a shell reports it
# Out of file descriptors: the process's limit (`ulimit -n`) or the system's.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})


class CaretakerError(Exception):
    """Base of every error caretaker reports on purpose (anything else is a bug: exit 1)."""

    exit_code: ClassVar[int] = EXIT_FAILURE
    reason: ClassVar[str] = "failed"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One bad configuration value: which key, what was given, what is wrong.

    Printed with any URL in the value redacted: a bad URL may carry credentials.
    """

    key: str
    value: object
    message: str

    def __str__(self) -> str:
        return redact_text(f"{self.key}={self.value!r}: {self.message}")


class ConfigError(CaretakerError):
    """Bad configuration or usage; carries every problem found, not just the first."""

    exit_code = EXIT_USAGE
    reason = "config"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(str(p) for p in problems))

    @classmethod
    def single(cls, key: str, value: object, message: str) -> ConfigError:
        return cls([Problem(key, value, message)])


class NoSnapshotError(CaretakerError):
    """The repository holds no snapshot (or none matching the request)."""

    exit_code = EXIT_NO_SNAPSHOT
    reason = "no-snapshot"


class EmptiedRepositoryError(NoSnapshotError):
    """Repository emptied: a backup has used it, yet it holds no snapshot now."""

    reason = "emptied"


class BackendError(CaretakerError):
    """Trouble talking to the repository's storage."""


class TransientBackendError(BackendError):
    """Storage unreachable or overloaded; worth retrying (connection refused, 5xx, throttling)."""

    exit_code = EXIT_UNREACHABLE
    reason = "unreachable"


class PermanentBackendError(BackendError):
    """Storage answered, and retrying will not help (no such bucket, access denied, bad key)."""

    exit_code = EXIT_BACKEND_DENIED
    reason = "denied"


class RepositoryFullError(BackendError):
    """The repository's storage takes no more data: no space left, quota used up, read-only."""

    exit_code = EXIT_REPOSITORY_FULL
    reason = "repository-full"


class ObjectNotFoundError(PermanentBackendError):
    """A named object does not exist in the store."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"object not found: {key}")


class LeaseHeldError(CaretakerError):
    """Another writer holds the repository (or moved the git branch under us)."""

    exit_code = EXIT_LOCKED
    reason = "locked"


class IntegrityError(CaretakerError):
    """Repository data is missing, corrupt or hostile."""

    exit_code = EXIT_CORRUPT
    reason = "corrupt"


class CheckFailedError(CaretakerError):
    """The user's health check failed, also on freshly restored data."""

    exit_code = EXIT_CHECK_FAILED
    reason = "check-failed"


class RefusedError(CaretakerError):
    """An operation that would lose good data was refused (e.g. an empty backup over data)."""

    exit_code = EXIT_REFUSED
    reason = "refused"


class LocalIOError(CaretakerError):
    """A local folder caretaker works in (the data folder, the git state dir) cannot be read
    or written (permission, disk full, read-only)."""

    exit_code = EXIT_LOCAL_IO
    reason = "local-io"


class UnsafeVolumeError(LocalIOError):
    """caretaker's state on the volume holds something it did not put there (a symlink, a
    FIFO, a file where a folder belongs, a journal naming foreign folders): left alone, and
    the run stops rather than follow it."""

    exit_code = EXIT_UNSAFE_VOLUME
    reason = "unsafe-volume"


class ResourceLimitError(LocalIOError):
    """The process ran out of open files: a local limit, not the storage's answer (which
    "access denied" or "unreachable" would wrongly suggest); it may pass once fewer are open."""


def exhausted_resource(error: BaseException) -> OSError | None:
    """The EMFILE/ENFILE error in `error` or its chain of causes (libraries wrap it), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in RESOURCE_ERRNOS:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def resource_limit(error: BaseException, where: str) -> ResourceLimitError | None:
    """A ResourceLimitError naming `where`, if `error` is (or wraps) an fd exhaustion."""
    cause = exhausted_resource(error)
    if cause is None:
        return None
    return ResourceLimitError(
        f"{where}: {cause.strerror or 'too many open files'} "
        "(the process's open-file limit, ulimit -n, is used up)"
    )


class PasswordError(CaretakerError):
    """The repository's key cannot be used as configured: it is encrypted and no password was
    given or none of its key slots opens with it, or a password was given for a repository
    that is not encrypted (whose objects nothing authenticates)."""

    exit_code = EXIT_PASSWORD
    reason = "password"


class AuthenticationError(IntegrityError):
    """An encrypted object does not authenticate under the repository's key: damaged,
    planted, copied from another repository or stored under another name."""


class CancelledError(CaretakerError):
    """Stopped by a signal; exit code 128 + the signal number."""

    reason = "cancelled"

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"cancelled by signal {signum}")

    @property
    def code(self) -> int:
        return EXIT_SIGNAL_BASE + self.signum


def exit_code_of(error: BaseException) -> int:
    """Return the process exit code for an error (1 for anything unexpected)."""
    if isinstance(error, CancelledError):
        return error.code
    if isinstance(error, CaretakerError):
        return error.exit_code
    return EXIT_FAILURE
