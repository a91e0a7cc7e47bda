"""One time limit per run, and the switch that stops a run early.

A storage call that hangs (a black-holed load balancer, a server that accepts and never
answers, a body that stalls halfway) must not hold an init container longer than its
`--timeout`, nor keep SIGTERM waiting. Socket timeouts cannot promise that: they bound
each read, not a call, and a slow drip or a DNS lookup escapes them. So a run carries one
`Deadline`; every storage attempt is bounded by what is left of it (`Deadline.run` waits
for the attempt in a helper thread and abandons it when time is up), and every wait
(backoff, a lease held by another pod) ends at it.

A `Stop` is the other way a run ends: SIGTERM in the CLI, a cancelled job in the sidecar.
Triggering it wakes every wait at once, in every thread, and raises the error it was given
(`CancelledError`, a job's abort), so thread pools drain in a moment instead of after the
socket timeouts of their hung requests. A call begun after the stop is the run cleaning up
(releasing its writer lease) and gets a short while (CLEANUP_SECONDS), not a refusal.
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from restore.errors import CaretakerError, TransientBackendError

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")

# How often a caller waiting for an operation looks at the stop switch.
_POLL_SECONDS = 0.1
# How long a call begun after the stop may take: the cleanup of a stopped run (a lease
# released, a multipart upload aborted) is worth a moment, not the whole deadline.
CLEANUP_SECONDS = 1.0


class DeadlineExceededError(TransientBackendError):
    """The run's time limit passed while waiting for storage (exit 4, like any unreachable store).

    `sent` is False when it passed before the operation began: then the failures before it
    say more about the store than this error does.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class Stop:
    """A one-way switch that ends a run; it remembers the error every waiter raises."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.error: CaretakerError | None = None

    def trigger(self, error: CaretakerError) -> None:
        """Stop the run with `error` (the first trigger wins)."""
        if not self._event.is_set():
            self.error = error
            self._event.set()

    @property
    def triggered(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return True early if triggered."""
        return self._event.wait(max(seconds, 0.0))

    def check(self) -> None:
        """Raise the stop's error if it was triggered."""
        if self.error is not None:
            raise self.error


class Deadline:
    """The time limit of one run (None: no limit) and the `Stop` that can end it sooner."""

    def __init__(
        self,
        seconds: float | None = None,
        *,
        stop: Stop | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stop = stop or Stop()
        self._monotonic = monotonic
        self.seconds = seconds
        self._end = math.inf
        self.restart()

    def restart(self) -> None:
        """Count `seconds` from now again (a probe that reuses an open repository)."""
        self.started = self._monotonic()
        self._end = math.inf if self.seconds is None else self.started + self.seconds

    def remaining(self) -> float:
        """Seconds left (never negative; infinite without a limit)."""
        return max(self._end - self._monotonic(), 0.0)

    def elapsed(self) -> float:
        return self._monotonic() - self.started

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def describe(self) -> str:
        """How the limit is named in messages: `the 5s deadline`."""
        return "no deadline" if self.seconds is None else f"the {self.seconds:g}s deadline"

    def bound(self, seconds: float) -> float:
        """`seconds`, shortened to what is left of the deadline."""
        return min(seconds, self.remaining())

    def check(self, what: str) -> None:
        """Raise the stop's error if stopped, DeadlineExceededError if no time is left."""
        self.stop.check()
        if self.expired:
            raise DeadlineExceededError(f"{what}: {self.describe()} passed", sent=False)

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds` (shortened to the deadline); raise the stop's error if stopped."""
        self.stop.wait(self.bound(seconds))
        self.stop.check()

    def window(self, what: str) -> Window:
        """The time a call begun now has: until the deadline; or, begun after the stop (the
        cleanup of a stopped run: releasing its lease), CLEANUP_SECONDS at most.

        Raise DeadlineExceededError (nothing sent) if no time is left.
        """
        now = self._monotonic()
        late = self.stop.triggered
        end = min(self._end, now + CLEANUP_SECONDS) if late else self._end
        if end <= now:
            raise DeadlineExceededError(f"{what}: {self.describe()} passed", sent=False)
        return Window(end, late)

    def watch(self, window: Window, what: str) -> None:
        """While a call waits: raise the stop's error if the run stopped after the call began
        (or its cleanup time is up), DeadlineExceededError if the deadline passed."""
        if not window.late:
            self.stop.check()
        if self._monotonic() >= window.end:
            self.stop.check()
            raise DeadlineExceededError(f"{what}: no answer within {self.describe()}")

    def waited(self, window: Window, seconds: float) -> float:
        """`seconds`, shortened to what is left of the call's window."""
        return max(min(seconds, window.end - self._monotonic()), 0.0)

    def communicate(self, process: subprocess.Popen[bytes], window: Window, what: str) -> tuple[bytes, bytes]:
        """Wait for a child process in short steps, so the deadline and the stop are seen;
        return its output. Raise the stop's error, or DeadlineExceededError saying how long
        it ran (the caller kills the process)."""
        started = self.elapsed()
        while True:
            try:
                return process.communicate(timeout=self.waited(window, _POLL_SECONDS))
            except subprocess.TimeoutExpired:
                pass
            try:
                self.watch(window, what)
            except DeadlineExceededError:
                took = self.elapsed() - started
                raise DeadlineExceededError(
                    f"{what}: no answer within {self.describe()} (1 attempt in {took:.1f}s)"
                ) from None

    def run(self, operation: Callable[[], T], *, what: str, window: Window | None = None) -> T:
        """Return `operation()`, or give up on it when its window closes or the run stops.

        The operation runs in a helper thread (with this thread's context variables, so
        its log lines keep their `job=`); given up on, it is left to end by its own socket
        timeouts, while this thread goes on at once. Raise DeadlineExceededError naming
        `what` if time ran out, the stop's error if stopped, else what `operation` raised.
        """
        window = window or self.window(what)
        call = in_helper_thread(operation, name="deadline-call")
        while not call.done.wait(self.waited(window, _POLL_SECONDS)):
            self.watch(window, what)
        return call.result()


@dataclasses.dataclass(frozen=True)
class Window:
    """When one call must be given up (monotonic time), and whether it began after the stop."""

    end: float
    late: bool


def in_helper_thread(operation: Callable[[], T], *, name: str) -> Call[T]:
    """Start `operation` in a daemon thread that has this thread's context variables (so its
    log lines keep their bound context, `job=` in the sidecar); the call holds its outcome."""
    call: Call[T] = Call(operation)
    helper = threading.Thread(target=contextvars.copy_context().run, args=(call.run,), name=name, daemon=True)
    helper.start()
    return call


class Call(Generic[T]):
    """One operation run in a helper thread: its result or its exception, and when it ended."""

    def __init__(self, operation: Callable[[], T]) -> None:
        self._operation = operation
        self.done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._value = self._operation()
        except BaseException as error:
            self._error = error
        finally:
            self.done.set()

    @property
    def failed(self) -> bool:
        """Whether the operation ended by raising."""
        return self.done.is_set() and self._error is not None

    def result(self) -> T:
        """What the operation returned, once it ended; raise what it raised.

        Waits in short steps: a signal the kernel hands to another thread (the helper's) is
        only handled once this one runs again, and SIGTERM must not wait for a key derivation.
        """
        while not self.done.wait(_POLL_SECONDS):
            pass
        if self._error is not None:
            raise self._error
        return cast("T", self._value)
