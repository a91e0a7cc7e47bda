"""Shared test fixtures: a hermetic environment and log capture.

Real servers (SeaweedFS, git daemon, sshd) are started by fixtures in `tests/support/`
and the integration conftest files, on 127.0.0.1 with free ports.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog

# A full run writes about 6 GiB at its peak (measured): the image's layers, pods' volumes,
# repositories and pytest's folders. Short of that, tests fail with "No space left on
# device" far from the cause, so the run says up front, and again after failures, how much
# there was.
NEEDED_GIB = 8


def free_space_report() -> tuple[str, bool]:
    """One line naming the free space where the tests write, and whether it is short."""
    places = sorted({tempfile.gettempdir(), os.path.dirname(os.path.dirname(__file__))})
    free = {place: shutil.disk_usage(place).free / 2**30 for place in places}
    short = min(free.values()) < NEEDED_GIB
    sizes = ", ".join(f"{place}: {gib:.1f} GiB" for place, gib in free.items())
    line = f"free disk space: {sizes}"
    if short:
        line += f" (a full run needs about {NEEDED_GIB} GiB: expect failures from a full disk)"
    return line, short


def pytest_report_header() -> str:
    return free_space_report()[0]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if exitstatus == 0:
        return
    line, short = free_space_report()
    if short:
        terminalreporter.write_line(line, red=True)


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in [k for k in os.environ if k.startswith("CARETAKER_")]:
        monkeypatch.delenv(key)
    yield
    # A CLI test configures logging into its captured stdout; later tests must not write
    # to that (closed) stream.
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


class FakeClock:
    """A clock that moves only when told: `clock()` returns now, `clock.advance(...)` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
