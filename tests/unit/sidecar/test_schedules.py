from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sidecar.settings.schedule import cron_weekdays, parse_schedule

# A Thursday in winter (Europe/Berlin is UTC+1).
NOW = datetime(2026, 1, 15, 12, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("5-7", "sun,fri,sat"),
        ("SAT,sun", "sun,sat"),
        ("1/3", "mon,thu"),
        ("0-7", "*"),
    ],
)
def test_cron_weekdays_follow_classic_cron_numbering(field, expected):
    assert cron_weekdays(field) == expected


@pytest.mark.parametrize("field", ["8", "mon-", "fri-mon", "*/0", "funday", "1-5/x"])
def test_bad_weekday_fields_are_refused(field):
    with pytest.raises(ValueError, match="day-of-week"):
        cron_weekdays(field)


def test_weekday_schedule_skips_the_weekend():
    # Saturday 2026-01-17 and Sunday 2026-01-18 must be skipped.
    runs = parse_schedule("0 9 * * 1-5").next_runs(NOW, 3)
    assert [r.strftime("%a %d") for r in runs] == ["Fri 16", "Mon 19", "Tue 20"]


def test_sunday_is_zero_as_in_cron():
    runs = parse_schedule("@weekly").next_runs(NOW, 2)
    assert [r.strftime("%a %H:%M") for r in runs] == ["Sun 00:00", "Sun 00:00"]


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    # Classic cron: the 1st of the month OR any Monday.
    runs = parse_schedule("0 0 1 * mon").next_runs(datetime(2026, 1, 27, tzinfo=UTC), 3)
    assert [r.date().isoformat() for r in runs] == ["2026-02-01", "2026-02-02", "2026-02-09"]


def test_macros_and_every():
    assert parse_schedule("@hourly").next_runs(NOW, 1) == [datetime(2026, 1, 15, 13, tzinfo=UTC)]
    assert parse_schedule("@daily").next_runs(NOW, 1) == [datetime(2026, 1, 16, tzinfo=UTC)]
    assert parse_schedule("@monthly").next_runs(NOW, 1) == [datetime(2026, 2, 1, tzinfo=UTC)]
    assert parse_schedule("@yearly").next_runs(NOW, 1) == [datetime(2027, 1, 1, tzinfo=UTC)]
    every = parse_schedule("@every 15m")
    assert every.every == timedelta(minutes=15)
    assert every.next_runs(NOW, 2) == [NOW + timedelta(minutes=15), NOW + timedelta(minutes=30)]


def test_time_zone_per_schedule_and_cron_tz_prefix():
    berlin = parse_schedule("0 3 * * *", timezone="Europe/Berlin")
    assert berlin.next_runs(NOW, 1) == [datetime(2026, 1, 16, 2, tzinfo=UTC)]
    prefixed = parse_schedule("CRON_TZ=America/New_York 0 3 * * *")
    assert prefixed.timezone == "America/New_York"
    assert prefixed.next_runs(NOW, 1) == [datetime(2026, 1, 16, 8, tzinfo=UTC)]


def test_jitter_is_kept_and_described():
    schedule = parse_schedule("*/5 * * * *", jitter=timedelta(seconds=30))
    assert schedule.describe() == "*/5 * * * * (UTC), jitter 30s"
    assert schedule.trigger().jitter == 30
    assert schedule.trigger(jitter=False).jitter is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("61 * * * *", "minute"),
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("@fortnightly", "unknown schedule macro"),
        ("@every", "not a duration"),
        ("@every 0s", "not a duration"),
        ("@every soon", "not a duration"),
        ("CRON_TZ=Mars/Olympus 0 3 * * *", "unknown time zone"),
        ("0 25 * * *", "hour"),
    ],
)
def test_bad_schedules_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_schedule(text)


def test_unknown_time_zone_argument():
    with pytest.raises(ValueError, match="unknown time zone 'Nowhere/Town'"):
        parse_schedule("@daily", timezone="Nowhere/Town")
