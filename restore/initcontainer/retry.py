"""Retrying an unreachable repository until the run's deadline.

An init container that gives up at the first connection error would start the app on an
empty volume (or crash-loop needlessly) every time storage blips; one that retries forever
hides an outage. So transient errors (`TransientBackendError`) are retried with exponential
backoff until the run's one deadline (`--timeout`, a `restore.deadline.Deadline` that also
bounds every storage attempt inside the backends); anything else, including permanent
backend errors, is raised at once. Sleep is injected for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from restore.deadline import DeadlineExceededError
from restore.errors import TransientBackendError

if TYPE_CHECKING:
    from collections.abc import Callable

    from restore.deadline import Deadline

T = TypeVar("T")

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0


class Retrier:
    """Runs operations, retrying transient failures until the deadline."""

    def __init__(self, *, deadline: Deadline, log: Any, sleep: Callable[[float], None] | None = None) -> None:
        self.deadline = deadline
        self.log = log
        self.sleep = sleep or deadline.sleep

    def call(self, operation: Callable[[], T], *, what: str) -> T:
        """Return `operation()`, retried while it raises TransientBackendError.

        Raise TransientBackendError (saying how many times and how long we tried, and the
        last failure the store gave) once the deadline has passed; any other error at once.
        """
        delay = FIRST_DELAY_SECONDS
        attempt = 1
        last: TransientBackendError | None = None
        while True:
            try:
                return operation()
            except TransientBackendError as error:
                if not (isinstance(error, DeadlineExceededError) and not error.sent and last):
                    last = error
                remaining = self.deadline.remaining()
                if remaining <= 0 or isinstance(error, DeadlineExceededError):
                    raise self.gave_up(what, attempt, last) from error
                wait = min(delay, remaining)
                self.log.warning(
                    "restore.retrying",
                    operation=what,
                    attempt=attempt,
                    delay_seconds=round(wait, 3),
                    remaining_seconds=round(remaining, 3),
                    error=str(error),
                )
                self.sleep(wait)
                delay = min(delay * 2, MAX_DELAY_SECONDS)
                attempt += 1

    def gave_up(self, what: str, attempts: int, error: TransientBackendError) -> TransientBackendError:
        """The error that ends the retries: what, how often, how long, and the last failure."""
        if attempts == 1 and isinstance(error, DeadlineExceededError):
            return error  # the backend's message names the operation, the attempts and the time
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        return TransientBackendError(
            f"{what}: still failing after {tries} in {self.deadline.elapsed():.1f}s "
            f"({self.deadline.describe()}): {error}"
        )
