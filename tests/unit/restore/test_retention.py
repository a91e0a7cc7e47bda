"""Retention policy selection: pure, with `now` injected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from restore.clock import parse_duration
from restore.model import SnapshotInfo
from restore.retention import RetentionPolicy, select

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _snap(hours_ago: float, files: int = 1) -> SnapshotInfo:
    return SnapshotInfo(
        id=f"s{hours_ago}", time=NOW - timedelta(hours=hours_ago), files=files, dirs=0, bytes=0
    )


def _kept(snaps: list[SnapshotInfo], policy: RetentionPolicy) -> list[str]:
    return [s.id for s in select(snaps, policy, NOW).keep]


def test_keep_last() -> None:
    snaps = [_snap(h) for h in range(10)]
    assert _kept(snaps, RetentionPolicy(last=3)) == ["s0", "s1", "s2"]


def test_keep_daily_keeps_newest_of_each_day() -> None:
    snaps = [_snap(h) for h in range(0, 96, 6)]  # 4 days, 4 a day
    kept = _kept(snaps, RetentionPolicy(daily=3))
    # NOW is 12:00: s0 and s12 (00:00) share a day; s18 is the newest of the day before.
    assert kept == ["s0", "s18", "s42"]


def test_keep_within() -> None:
    snaps = [_snap(h) for h in (1, 5, 30, 50)]
    assert _kept(snaps, RetentionPolicy(within=timedelta(days=1))) == ["s1", "s5"]


def test_newest_is_always_kept_and_reasons_given() -> None:
    snaps = [_snap(h) for h in (1, 2)]
    result = select(snaps, RetentionPolicy(within=timedelta(minutes=1)), NOW)
    assert [s.id for s in result.keep] == ["s1"]
    assert "newest" in result.reasons["s1"]


def test_newest_non_empty_snapshot_is_always_kept() -> None:
    snaps = [_snap(1, files=0), _snap(2, files=0), _snap(3, files=5), _snap(4)]
    result = select(snaps, RetentionPolicy(last=1), NOW)
    assert [s.id for s in result.keep] == ["s1", "s3"]
    assert result.reasons["s3"] == ("newest non-empty",)


def test_no_rule_keeps_everything() -> None:
    snaps = [_snap(h) for h in range(5)]
    assert len(_kept(snaps, RetentionPolicy())) == 5


def test_weekly_monthly_yearly_buckets() -> None:
    snaps = [_snap(24 * d) for d in range(0, 800, 3)]
    kept = set(_kept(snaps, RetentionPolicy(weekly=2, monthly=2, yearly=3)))
    assert len(kept) <= 7
    assert "s0" in kept


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1h30m", 5400), ("2w", 1209600)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "0s", "5", "m5", "1x", "-1h", "1.5h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
