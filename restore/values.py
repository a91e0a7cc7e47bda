"""The rules every option value is checked by, whichever way it arrives.

A keep count, a duration or a share of the data may come as a flag, its `CARETAKER_*`
twin, a key of the sidecar's YAML file (a ConfigMap the chart renders) or a flag of
`caretaker inject`; each is checked here, once, by the same rule: `--keep-daily -1` is
refused exactly like `keep: {daily: -1}`, and `10%` means the same in a flag and a file.

A rule takes the value as given (text from a flag or the environment, a YAML scalar) and
returns it typed, or raises ValueError saying what is wrong; the caller turns that into a
`Problem` naming the key and the value, so every problem of a run is reported at once.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from restore.clock import duration_or_zero, parse_duration, parse_time

T = TypeVar("T")
Rule = Callable[[object], T]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _whole(value: object) -> int | None:
    """An int from an int (not a bool) or from text of digits with an optional sign."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    return None


def count(value: object) -> int:
    """A whole number >= 0: keep counts, --max-fallbacks. Raise ValueError if not one."""
    number = _whole(value)
    if number is None or number < 0:
        raise ValueError("must be a whole number >= 0")
    return number


def bounded(low: int, high: int) -> Rule[int]:
    """The rule for a whole number from `low` to `high`."""

    def rule(value: object) -> int:
        number = _whole(value)
        if number is None or not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return number

    return rule


def fraction(value: object) -> float:
    """A share from 0 to 1, written `0.1`, `1` or `10%` (as text or a number).

    Raise ValueError if it is none of these or lies outside 0..1 (0%..100%).
    """
    text = str(value).strip() if not isinstance(value, bool) else ""
    percent = text.endswith("%")
    try:
        share = float(text.removesuffix("%")) / (100 if percent else 1)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise ValueError("must be a share from 0 to 1, e.g. 0.1 or 10%")
    return share


def duration(value: object) -> timedelta:
    """A positive duration with a unit: `90s`, `15m`, `1h30m`, `7d`. Raise ValueError if not."""
    return parse_duration(value if isinstance(value, str) else "")  # 30 alone has no unit


def zero_or_duration(value: object) -> timedelta:
    """A duration like `duration`, also accepting zero (`0`, `0s`)."""
    return duration_or_zero(value if isinstance(value, str) else "")


def moment(value: object) -> datetime:
    """An RFC 3339 time with a zone, `2026-01-15T12:00:00Z`. Raise ValueError if not one."""
    try:
        return parse_time(str(value))
    except ValueError:
        raise ValueError("must be an RFC 3339 time with a zone, e.g. 2026-01-15T12:00:00Z") from None


def boolean(value: object) -> bool:
    """A YAML boolean, or text: true/false, yes/no, on/off, 1/0. Raise ValueError if neither
    (a YAML number is not a boolean: `1` there is more likely a slip than a choice)."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower() if isinstance(value, str) else "not text"
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be true or false")


def one_of(*choices: str) -> Rule[str]:
    """The rule for one of a few words."""

    def rule(value: object) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return rule


def command_line(value: object) -> tuple[str, ...]:
    """A command line split the way a shell would, without running one (`--check-cmd`)."""
    try:
        argv = tuple(shlex.split(str(value)))
    except ValueError as error:
        raise ValueError(f"cannot split into arguments: {error}") from None
    if not argv:
        raise ValueError("empty command")
    return argv


def text(value: object) -> str:
    """Any non-empty text."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value
