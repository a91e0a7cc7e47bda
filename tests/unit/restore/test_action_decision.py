"""The pure half of the restore action: settings, decision, choice, space estimate."""

from __future__ import annotations

import pathlib
from datetime import UTC, datetime, timedelta

import pytest

from restore.errors import ConfigError, NoSnapshotError
from restore.initcontainer.decision import Decision, RestoreSettings, choose, decide, free_bytes, needed_bytes
from restore.model import SnapshotInfo, human_size

T0 = datetime(2026, 1, 10, tzinfo=UTC)


def snap(n: int, **kw) -> SnapshotInfo:
    values = {"id": f"{n:02d}aa{n}", "time": T0 + timedelta(days=n), "files": 1, "dirs": 0, "bytes": 5}
    return SnapshotInfo(**{**values, **kw})


SNAPS = [snap(n) for n in (3, 1, 2, 0, 4)]  # deliberately not sorted


def settings(path: pathlib.Path, **kw) -> RestoreSettings:
    return RestoreSettings(path=path, **kw)


class TestSettings:
    def test_reports_every_problem_at_once(self):
        with pytest.raises(ConfigError) as caught:
            RestoreSettings(path=pathlib.Path("rel"), snapshot="abc", before=T0, max_fallbacks=-1)
        assert [p.key for p in caught.value.problems] == ["before", "max-fallbacks", "path"]


class TestDecide:
    def test_empty_target_is_restored(self, tmp_path):
        (tmp_path / "lost+found").mkdir()
        assert decide(settings(tmp_path), None).action == "restore"

    def test_missing_target_counts_as_empty(self, tmp_path):
        assert decide(settings(tmp_path / "missing"), None).action == "restore"

    def test_non_empty_target_is_skipped(self, tmp_path):
        (tmp_path / "app.db").write_text("x")
        assert decide(settings(tmp_path), None) == Decision("skip", "target is not empty")

    def test_force_restores_over_data(self, tmp_path):
        (tmp_path / "app.db").write_text("x")
        assert decide(settings(tmp_path, force=True), None).action == "restore"

    @pytest.mark.parametrize(("healthy", "action"), [(True, "skip"), (False, "restore")])
    def test_check_decides_for_existing_data(self, tmp_path, healthy, action):
        (tmp_path / "app.db").write_text("x")
        calls = []
        decision = decide(settings(tmp_path, check_cmd=("true",)), lambda: calls.append(1) or healthy)
        assert decision.action == action
        assert calls == [1]

    def test_check_is_not_run_on_an_empty_target(self, tmp_path):
        decision = decide(settings(tmp_path, check_cmd=("true",)), lambda: pytest.fail("check ran"))
        assert decision.action == "restore"

    def test_dry_run_never_runs_the_check(self, tmp_path):
        (tmp_path / "app.db").write_text("x")
        assert decide(settings(tmp_path, check_cmd=("true",)), None).action == "check"


class TestChoose:
    def test_latest_then_older_fallbacks(self, tmp_path):
        chosen = choose(SNAPS, settings(tmp_path, max_fallbacks=2))
        assert [s.id for s in chosen] == ["04aa4", "03aa3", "02aa2"]

    def test_no_fallbacks(self, tmp_path):
        assert [s.id for s in choose(SNAPS, settings(tmp_path, max_fallbacks=0))] == ["04aa4"]

    def test_empty_repository_is_not_an_error_here(self, tmp_path):
        assert choose([], settings(tmp_path)) == []

    def test_explicit_snapshot_never_falls_back(self, tmp_path):
        assert [s.id for s in choose(SNAPS, settings(tmp_path, snapshot="02aa2"))] == ["02aa2"]

    def test_unique_prefix_selects(self, tmp_path):
        assert [s.id for s in choose(SNAPS, settings(tmp_path, snapshot="01"))] == ["01aa1"]

    @pytest.mark.parametrize(("wanted", "message"), [("zz", "does not exist"), ("0", "is ambiguous")])
    def test_unknown_or_ambiguous_snapshot(self, tmp_path, wanted, message):
        with pytest.raises(NoSnapshotError, match=message):
            choose(SNAPS, settings(tmp_path, snapshot=wanted))

    def test_before_picks_newest_at_or_before(self, tmp_path):
        chosen = choose(SNAPS, settings(tmp_path, before=T0 + timedelta(days=2), max_fallbacks=5))
        assert [s.id for s in chosen] == ["02aa2", "01aa1", "00aa0"]

    def test_before_everything_is_no_snapshot(self, tmp_path):
        with pytest.raises(NoSnapshotError, match="no snapshot at or before 2026-01-09T00:00:00Z"):
            choose(SNAPS, settings(tmp_path, before=T0 - timedelta(days=1)))


class TestSpace:
    def test_estimate_counts_a_block_per_entry(self):
        assert needed_bytes(snap(1, files=10, dirs=2, bytes=1000), 4096) == 1000 + 12 * 4096

    def test_free_bytes_of_a_folder_not_created_yet(self, tmp_path):
        free, block = free_bytes(tmp_path / "not" / "yet")
        assert free > 0
        assert block > 0

    @pytest.mark.parametrize(
        ("size", "text"),
        [
            (0, "0 B"),
            (1023, "1023 B"),
            (1536, "1.5 KiB"),
            (3 << 30, "3.0 GiB"),
            (5 << 40, "5.0 TiB"),
            (9 << 50, "9216.0 TiB"),
        ],
    )
    def test_human_size(self, size, text):
        assert human_size(size) == text
