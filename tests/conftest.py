"""Shared test fixtures: a hermetic environment and log capture.

Real servers (SeaweedFS, git daemon, sshd) are started by fixtures in `tests/support/`
and the integration conftest files, on 127.0.0.1 with free ports.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog


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
