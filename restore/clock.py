"""Time: the injected `Clock` (tests never monkeypatch `datetime`), the one time format, durations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
_ZERO_DURATIONS = frozenset({"0", "0s", "0m", "0h", "0d"})
_NOT_A_DURATION = "not a duration (whole numbers with a unit s, m, h, d, w: 30s, 15m, 1h30m, 7d)"


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


def parse_duration(text: str) -> timedelta:
    """Parse `90s`, `15m`, `2h`, `7d`, `2w` or combinations like `1h30m`.

    Raise ValueError if the text is not such a duration or is not positive.
    """
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    total = 0
    number = ""
    for char in text.strip():
        if char.isdigit():
            number += char
        elif char in units and number:
            total += int(number) * units[char]
            number = ""
        else:
            raise ValueError(_NOT_A_DURATION)
    if number or total <= 0:
        raise ValueError(_NOT_A_DURATION)
    return timedelta(seconds=total)


def duration_or_zero(text: str) -> timedelta:
    """Parse a duration like `30s`, also accepting zero. Raise ValueError if invalid."""
    if text.strip() in _ZERO_DURATIONS:
        return timedelta(0)
    return parse_duration(text)
