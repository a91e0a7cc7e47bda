"""Output into a pipe that was closed: end quietly, as restic and git do.

`caretaker snapshots | head -2` closes the pipe after two lines. Python would raise
BrokenPipeError at the next write (and again while flushing at exit, after the command
had already finished). Here the first such error turns the stream into a sink: the
command finishes its work and exits with its own code, and nothing is printed about the
reader who stopped reading.
"""

from __future__ import annotations

import errno
import io
import os
from typing import IO, TextIO, cast


class QuietPipe(io.TextIOBase):
    """A text stream that writes to `stream` until its reader goes away, then discards."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self._stream.write(text)
            except OSError as error:
                self._closed_by_reader(error)
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except OSError as error:
                self._closed_by_reader(error)

    def _closed_by_reader(self, error: OSError) -> None:
        if error.errno != errno.EPIPE:
            raise error
        self.broken = True
        # The interpreter flushes the real stream once more at exit: let that go nowhere.
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self._stream.fileno())
        finally:
            os.close(null)

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    def as_text(self) -> TextIO:
        """This stream where a `TextIO` is expected."""
        return cast("TextIO", self)
