"""SIGTERM and SIGINT during a command: stop, clean up, exit 128+N.

Kubernetes stops an init container with SIGTERM (and SIGKILL after the grace period). A
signal becomes `CancelledError` in the main thread, so the normal error path removes the
staging folder on its way out; it also triggers the run's `Stop`, so worker threads
waiting on storage (a download pool, a hung request) give up at once instead of holding
the exit until their socket timeouts. Inside `shielded()` (replaying the journal: a handful of
renames) the signal waits until the block ends, so a graceful stop never interrupts the
move into place; a SIGKILL there is finished by the next run from the journal.
"""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING, Any, Self

from restore.deadline import Stop
from restore.errors import CancelledError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType, TracebackType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalGuard:
    """A context manager that turns SIGTERM/SIGINT into CancelledError while active."""

    def __init__(self, stop: Stop | None = None) -> None:
        self.stop = stop or Stop()
        self.depth = 0
        self.pending: int | None = None
        # Every signal seen, even one whose exception was swallowed: a signal that lands in
        # code that ignores exceptions (a finalizer, logging's lock release) raises into the
        # void, and the restore must still never commit after it.
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> Self:
        for signum in SIGNALS:
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _: FrameType | None) -> None:
        self.received = signum
        self.stop.trigger(CancelledError(signum))
        if self.depth:
            self.pending = signum
            return
        raise CancelledError(signum)

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Defer signals until the block ends; then raise CancelledError for the last one.

        Raise CancelledError at once if a stop was requested before the block: nothing
        shielded (the move into place) starts after a signal.
        """
        if self.depth == 0 and self.received is not None:
            raise CancelledError(self.received)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.pending is not None:
            signum, self.pending = self.pending, None
            raise CancelledError(signum)
