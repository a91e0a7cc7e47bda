"""What a command (a `command` job or hook) gets from the sidecar, and what it gives back.

Environment: the sidecar's own without caretaker's credentials (`restore.childenv`): every
`AWS_*` and `CARETAKER_*` variable is left out unless the command lists it in `inherit_env`.
caretaker then adds its own variables for the child (`CARETAKER_JOB`, ...) and the command's
`env`.

Output: logged line by line as `command.output`, but bounded: the first `HEAD_LINES` lines
of each stream as they come, then only a count of what was left out, then the last
`TAIL_LINES` lines when the stream ends. A chatty command cannot flood the log (or the log
shipper's bill), and the end, where errors are, is always there.
"""

from __future__ import annotations

import collections
from typing import Any

HEAD_LINES = 20
TAIL_LINES = 20


class BoundedOutput:
    """The log of one output stream of one command: head as it comes, tail at the end."""

    def __init__(self, log: Any, stream: str, *, head: int = HEAD_LINES, tail: int = TAIL_LINES) -> None:
        self._log = log
        self._stream = stream
        self._head = head
        self._tail: collections.deque[str] = collections.deque(maxlen=tail)
        self._seen = 0

    def add(self, line: str) -> None:
        self._seen += 1
        if self._seen <= self._head:
            self._emit(line)
        else:
            self._tail.append(line)

    def finish(self) -> None:
        """Log what was left out (a count) and the last lines."""
        omitted = self._seen - self._head - len(self._tail)
        if omitted > 0:
            self._log.info("command.output_omitted", stream=self._stream, lines=omitted)
        while self._tail:
            self._emit(self._tail.popleft())

    def _emit(self, line: str) -> None:
        self._log.info("command.output", stream=self._stream, line=line)
