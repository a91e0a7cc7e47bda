"""Retrying an unreachable repository until a deadline.

An init container that gives up at the first connection error would start the app on an
empty volume (or crash-loop needlessly) every time storage blips; one that retries forever
hides an outage. So transient errors (`TransientBackendError`) are retried with exponential
backoff until one deadline for the whole run (`--timeout`); anything else, including
permanent backend errors, is raised at once. Time and sleep are injected for tests.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from restore.errors import TransientBackendError

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0


class Retrier:
    """Runs operations, retrying transient failures until `timeout_seconds` after creation."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        log: Any,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.deadline = monotonic() + timeout_seconds
        self.timeout_seconds = timeout_seconds
        self.log = log
        self.monotonic = monotonic
        self.sleep = sleep

    def call(self, operation: Callable[[], T], *, what: str) -> T:
        """Return `operation()`, retried while it raises TransientBackendError.

        Raise TransientBackendError (saying how long we tried) once the deadline has passed;
        any other error at once.
        """
        delay = FIRST_DELAY_SECONDS
        attempt = 1
        while True:
            try:
                return operation()
            except TransientBackendError as error:
                remaining = self.deadline - self.monotonic()
                if remaining <= 0:
                    raise TransientBackendError(
                        f"{what}: still failing after {attempt} attempts over "
                        f"{self.timeout_seconds:g}s: {error}"
                    ) from error
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
