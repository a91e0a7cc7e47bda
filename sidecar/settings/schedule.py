"""When a job runs: cron (5 fields), `@hourly`…, `@every 15m`, with a time zone and jitter.

Schedules are parsed and validated when the configuration is loaded (so a bad cron
expression is reported with every other problem, before anything runs) and turned into
APScheduler triggers only here; the scheduler itself lives in `sidecar.scheduler`.

Two differences between classic cron and APScheduler 3.x are bridged here rather than
documented away: APScheduler numbers weekdays from Monday (cron: 0 and 7 are Sunday), and it
ANDs day-of-month with day-of-week where cron ORs them when both are restricted.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from restore.clock import parse_duration

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_TZ_PREFIXES = ("CRON_TZ=", "TZ=")
_FIELD_LABELS = ("minute", "hour", "day-of-month", "month")
_FIELD_NAMES = ("minute", "hour", "day", "month")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A validated schedule: either a cron expression or a fixed interval."""

    text: str
    timezone: str = "UTC"
    jitter: timedelta = timedelta(0)
    cron: tuple[str, str, str, str, str] | None = None
    every: timedelta | None = None

    def trigger(self, *, jitter: bool = True) -> BaseTrigger:
        """Return a fresh APScheduler trigger (an interval starts counting now)."""
        spread = int(self.jitter.total_seconds()) if jitter else None
        if self.every is not None:
            return IntervalTrigger(seconds=self.every.total_seconds(), timezone=UTC, jitter=spread)
        assert self.cron is not None  # noqa: S101 - one of the two is always set by parse
        return _cron_trigger(self.cron, self.timezone, spread)

    def next_runs(self, now: datetime, count: int) -> list[datetime]:
        """Return the next `count` run times after `now` (without jitter), in UTC."""
        if self.every is not None:
            return [now.astimezone(UTC) + self.every * (i + 1) for i in range(count)]
        trigger = self.trigger(jitter=False)
        runs: list[datetime] = []
        previous: datetime | None = None
        while len(runs) < count:
            moment = trigger.get_next_fire_time(previous, now if previous is None else previous)
            if moment is None:
                break
            runs.append(moment.astimezone(UTC))
            previous = moment
        return runs

    def describe(self) -> str:
        extra = f" ({self.timezone})" if self.cron is not None else ""
        spread = f", jitter {int(self.jitter.total_seconds())}s" if self.jitter else ""
        return f"{self.text}{extra}{spread}"


def parse_schedule(text: str, *, timezone: str = "UTC", jitter: timedelta = timedelta(0)) -> Schedule:
    """Parse a schedule as users write it.

    Raise ValueError (saying what is wrong) if the expression or time zone is invalid.
    """
    spec = " ".join(text.split())
    for prefix in _TZ_PREFIXES:
        if spec.startswith(prefix):
            timezone, _, spec = spec[len(prefix) :].partition(" ")
    check_timezone(timezone)
    if spec.startswith("@every"):
        interval = parse_duration(spec.removeprefix("@every").strip())
        return Schedule(text=text, timezone=timezone, jitter=jitter, every=interval)
    expression = MACROS.get(spec, spec)
    if expression.startswith("@"):
        known = ", ".join([*MACROS, "@every <duration>"])
        raise ValueError(f"unknown schedule macro {spec!r}; use one of {known}")
    fields = expression.split(" ")
    if len(fields) != 5:
        raise ValueError(
            f"cron needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    cron = (fields[0], fields[1], fields[2], fields[3], fields[4])
    _check_fields(cron)
    return Schedule(text=text, timezone=timezone, jitter=jitter, cron=cron)


def _check_fields(cron: tuple[str, str, str, str, str]) -> None:
    """Validate field by field, so the message names the bad one."""
    for label, name, value in zip(_FIELD_LABELS, _FIELD_NAMES, cron[:4], strict=False):
        try:
            CronTrigger(**{name: value}, timezone=UTC)
        except ValueError as error:
            raise ValueError(f"bad {label} field {value!r}: {error}") from error
    cron_weekdays(cron[4])


def check_timezone(name: str) -> None:
    """Raise ValueError if `name` is not an IANA time zone (e.g. Europe/Berlin)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like Europe/Berlin)") from error


def _cron_trigger(cron: tuple[str, str, str, str, str], timezone: str, jitter: int | None) -> BaseTrigger:
    minute, hour, day, month, weekday = cron
    days = cron_weekdays(weekday)

    def make(day: str, day_of_week: str) -> CronTrigger:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week,
            timezone=timezone,
            jitter=jitter,
        )

    # Classic cron: when both day fields are restricted, either one matching is enough.
    if not day.startswith("*") and not weekday.startswith("*"):
        return OrTrigger([make(day, "*"), make("*", days)], jitter=jitter)
    return make(day, days)


def cron_weekdays(field: str) -> str:
    """Translate a cron day-of-week field (0/7 = Sunday, names, ranges, steps) into the
    day names APScheduler understands, e.g. `1-5` -> `mon,tue,wed,thu,fri`.

    Raise ValueError if the field is not valid cron.
    """
    chosen: set[int] = set()
    for item in field.lower().split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() else (0 if step_text else 1)
        if step < 1:
            raise ValueError(f"bad step in day-of-week {field!r}")
        if base == "*":
            first, last = 0, 6
        else:
            low, dash, high = base.partition("-")
            if dash and not high:
                raise ValueError(f"open range in day-of-week {field!r}")
            first = _day_number(low, field)
            last = _day_number(high, field) if high else (6 if step_text else first)
        if first > last:
            raise ValueError(f"backwards range in day-of-week {field!r}")
        chosen.update(number % 7 for number in range(first, last + 1, step))
    if len(chosen) == 7:
        return "*"
    return ",".join(_DAY_NAMES[number] for number in sorted(chosen))


def _day_number(text: str, field: str) -> int:
    if text in _DAY_NAMES:
        return _DAY_NAMES.index(text)
    if text.isdigit() and int(text) <= 7:
        return int(text)
    raise ValueError(f"bad day-of-week {field!r} (use 0-7 or sun..sat)")
