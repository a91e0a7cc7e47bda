"""Shared test fixtures: a hermetic environment and log capture.

Real servers (SeaweedFS, git daemon, sshd) are started by fixtures in `tests/support/`
and the integration conftest files, on 127.0.0.1 with free ports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("CARETAKER_")]:
        monkeypatch.delenv(key)


class FakeClock:
    """A clock that moves only when told: `clock()` returns now, `clock.advance(...)` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    yield FakeClock()
