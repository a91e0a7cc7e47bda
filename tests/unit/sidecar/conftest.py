"""Fixtures for the sidecar's unit tests: JSON log capture and a tiny app on 127.0.0.1.
Everything here is real: no mocks of subprocess or HTTP.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from restore import logs
from tests.support.sidecar import App


@pytest.fixture
def app() -> Iterator[App]:
    with App() as server:
        yield server


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Route structlog to a buffer as JSON (with contextvars merged, unlike capture_logs)."""
    buffer = io.StringIO()
    logs.configure("info", "json", stream=buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line]
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
