"""Time is injected (`Clock`) wherever it matters, so tests never monkeypatch `datetime`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """Format a time as RFC 3339 in UTC with a `Z`, the one format caretaker prints."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 (a `Z` suffix or an offset). Raise ValueError if it is not one or has no zone."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time has no zone offset: {text!r}")
    return moment.astimezone(UTC)
