"""The restore action's flow, against an in-memory repository that can fail on demand.

The real engine and backends are exercised in tests/integration/test_restore_*.py; here a
small fake stands in where a failure cannot be produced for real in a unit test (a crash,
an outage of exactly two calls, a nearly full disk) and time is fake.
"""

from __future__ import annotations

import pathlib
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from structlog.testing import capture_logs

from restore.claims.record import ClaimSlot
from restore.errors import (
    ConfigError,
    EmptiedRepositoryError,
    IntegrityError,
    LocalIOError,
    NoSnapshotError,
    TransientBackendError,
)
from restore.initcontainer.action import Effects, prepare_volume
from restore.initcontainer.decision import RestoreSettings
from restore.initcontainer.plan import plan
from restore.initcontainer.staging import Staging
from restore.initcontainer.statedir import Volume
from restore.model import RestoreStats, SnapshotInfo
from tests.support.claims import Unclaimed
from tests.support.cli import FakeTime

T0 = datetime(2026, 1, 10, tzinfo=UTC)


class FakeRepository:
    """Snapshots `s1` (oldest) .. `sN`, each a dict of files; failures on demand."""

    def __init__(
        self,
        *trees: dict[str, str],
        corrupt: tuple[str, ...] = (),
        transient: int = 0,
        crash: bool = False,
        used: str | None = None,
    ):
        self.trees = {f"s{n}": tree for n, tree in enumerate(trees, start=1)}
        self.corrupt = corrupt
        self.transient = transient
        self.crash = crash
        self.used = used  # what initialization() reports
        self.asked = 0
        self.restored: list[str] = []
        self.closed = False
        self.claims: ClaimSlot = Unclaimed()

    def describe(self) -> str:
        return "fake://repo"

    def snapshots(self) -> list[SnapshotInfo]:
        infos = [
            SnapshotInfo(
                id=sid,
                time=T0 + timedelta(hours=n),
                files=len(tree),
                dirs=0,
                bytes=sum(map(len, tree.values())),
            )
            for n, (sid, tree) in enumerate(self.trees.items())
        ]
        return infos[::-1]

    def initialization(self) -> str | None:
        self.asked += 1
        if self.transient:
            self.transient -= 1
            raise TransientBackendError("connection refused")
        return self.used

    def restore(
        self, snapshot_id: str, dest: pathlib.Path, progress=None, selection=None, *, keep_setid=False
    ) -> RestoreStats:
        if self.transient:
            self.transient -= 1
            raise TransientBackendError("connection refused")
        if self.crash:
            (dest / "partial").write_text("x")
            raise RuntimeError("bug")
        self.restored.append(snapshot_id)
        for rel, content in self.trees[snapshot_id].items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_text(content)
            if snapshot_id in self.corrupt:
                raise IntegrityError(
                    f"snapshot {snapshot_id}: blob 00ff in data/00/ff: checksum mismatch (files: {rel})"
                )
        tree = self.trees[snapshot_id]
        return RestoreStats(files=len(tree), bytes=sum(map(len, tree.values())))

    def claim_slot(self) -> ClaimSlot:
        return self.claims

    def close(self) -> None:
        self.closed = True


def effects(repo: FakeRepository, time: FakeTime | None = None, **kw) -> Effects:
    time = time or FakeTime()
    return Effects(
        open_repository=lambda _deadline: repo,
        log=structlog.get_logger(),
        clock=lambda: datetime(2026, 1, 15, 12, 0, tzinfo=UTC),
        monotonic=time.monotonic,
        sleep=time.sleep,
        **kw,
    )


def files(root: pathlib.Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def run(path: pathlib.Path, repo: FakeRepository, time: FakeTime | None = None, **kw):
    settings_kw = {k: v for k, v in kw.items() if k != "disk_free"}
    effect_kw = {k: v for k, v in kw.items() if k == "disk_free"}
    return prepare_volume(RestoreSettings(path=path, **settings_kw), effects(repo, time, **effect_kw))


GOOD = {"app.db": "good", "sub/x": "x"}
QUARANTINE = ".caretaker/quarantine/20260115T120000Z/"


class TestOutcomes:
    def test_restores_the_newest_snapshot(self, tmp_path):
        repo = FakeRepository({"old": "1"}, GOOD)
        outcome = run(tmp_path, repo)
        assert (outcome.outcome, outcome.exit_code, outcome.snapshot) == ("restored", 0, "s2")
        assert (outcome.files, outcome.bytes, outcome.reason) == (2, 5, "target is empty")
        assert files(tmp_path) == GOOD
        assert repo.closed

    def test_skips_a_populated_volume_without_opening_the_repository(self, tmp_path):
        (tmp_path / "mine").write_text("mine")
        outcome = prepare_volume(RestoreSettings(path=tmp_path), effects(None))  # type: ignore[arg-type]
        assert (outcome.outcome, outcome.exit_code, outcome.reason) == ("skipped", 0, "target is not empty")
        assert files(tmp_path) == {"mine": "mine"}

    def test_no_snapshot_fails_closed(self, tmp_path):
        outcome = run(tmp_path, FakeRepository())
        assert (outcome.outcome, outcome.exit_code, outcome.reason) == ("failed", 3, "no-snapshot")
        assert "fake://repo has no snapshot" in outcome.error

    def test_first_boot_when_allowed(self, tmp_path):
        repo = FakeRepository(used="its config object exists")
        outcome = run(tmp_path, repo, allow_empty="always")
        assert (outcome.outcome, outcome.exit_code) == ("first-boot", 0)
        assert outcome.reason == "fake://repo has no snapshot yet"
        assert files(tmp_path) == {}
        assert repo.asked == 0, "always does not ask whether the repository was used"


class TestNewRepository:
    """--allow-empty=new-repository: an empty start only while no backup ever used it."""

    def test_a_repository_never_used_is_a_first_boot(self, tmp_path):
        outcome = run(tmp_path, FakeRepository(), allow_empty="new-repository")
        assert (outcome.outcome, outcome.exit_code) == ("first-boot", 0)
        assert outcome.reason == "new repository: fake://repo has never held a snapshot"

    def test_a_used_repository_without_snapshots_fails_closed(self, tmp_path):
        repo = FakeRepository(used="its config object exists")
        outcome = run(tmp_path, repo, allow_empty="new-repository")
        assert (outcome.outcome, outcome.exit_code, outcome.reason) == ("failed", 3, "emptied")
        assert "fake://repo holds no snapshot, but a backup has used it (its config object exists)" in (
            outcome.error
        )
        assert "--allow-empty=always" in outcome.error
        assert files(tmp_path) == {}

    def test_a_repository_with_snapshots_is_restored_without_asking(self, tmp_path):
        repo = FakeRepository(GOOD)
        outcome = run(tmp_path, repo, allow_empty="new-repository")
        assert (outcome.outcome, outcome.snapshot) == ("restored", "s1")
        assert repo.asked == 0

    def test_the_question_is_retried_while_storage_is_down(self, tmp_path):
        repo = FakeRepository(transient=2)
        outcome = run(tmp_path, repo, allow_empty="new-repository")
        assert (outcome.outcome, outcome.exit_code) == ("first-boot", 0)
        assert repo.asked == 3

    def test_never_fails_closed_and_names_the_mode(self, tmp_path):
        outcome = run(tmp_path, FakeRepository(), allow_empty="never")
        assert (outcome.outcome, outcome.exit_code, outcome.reason) == ("failed", 3, "no-snapshot")
        assert "--allow-empty=new-repository" in outcome.error

    def test_the_plan_tells_the_same(self, tmp_path):
        document = plan(
            RestoreSettings(path=tmp_path, allow_empty="new-repository"), effects(FakeRepository())
        )
        assert (document["action"], document["reason"]) == (
            "first-boot",
            "new repository: fake://repo has never held a snapshot",
        )
        used = FakeRepository(used="branch 'main' exists")
        with pytest.raises(EmptiedRepositoryError, match="branch 'main' exists"):
            plan(RestoreSettings(path=tmp_path, allow_empty="new-repository"), effects(used))

    @pytest.mark.parametrize("value", [True, "sometimes"])
    def test_an_unknown_mode_is_a_config_error(self, tmp_path, value):
        with pytest.raises(ConfigError, match="allow-empty"):
            RestoreSettings(path=tmp_path, allow_empty=value)

    def test_unexpected_error_is_exit_1_and_staging_is_gone(self, tmp_path):
        with capture_logs() as logs:
            outcome = run(tmp_path, FakeRepository(GOOD, crash=True))
        assert (outcome.outcome, outcome.exit_code, outcome.reason, outcome.error) == (
            "failed",
            1,
            "crashed",
            "bug",
        )
        assert any(e["event"] == "restore.crashed" for e in logs)
        assert files(tmp_path) == {}
        assert not (tmp_path / ".caretaker" / "staging").exists()


class TestUnreachable:
    def test_retries_until_the_repository_answers(self, tmp_path):
        time = FakeTime()
        outcome = run(tmp_path, FakeRepository(GOOD, transient=2), time)
        assert (outcome.outcome, outcome.snapshot) == ("restored", "s1")
        assert time.sleeps == [1, 2]
        assert files(tmp_path) == GOOD

    def test_gives_up_after_the_timeout_with_exit_4(self, tmp_path):
        time = FakeTime()
        outcome = run(tmp_path, FakeRepository(GOOD, transient=1000), time, timeout_seconds=20)
        assert (outcome.outcome, outcome.exit_code, outcome.reason) == ("failed", 4, "unreachable")
        assert sum(time.sleeps) == 20
        assert files(tmp_path) == {}


class TestFallback:
    def test_corrupt_newest_falls_back_and_says_so(self, tmp_path):
        repo = FakeRepository(GOOD, {"app.db": "newer", "b": "b"}, corrupt=("s2",))
        with capture_logs() as logs:
            outcome = run(tmp_path, repo)
        assert (outcome.outcome, outcome.snapshot, outcome.skipped_snapshots) == ("restored", "s1", ("s2",))
        assert files(tmp_path) == GOOD
        rejected = [e for e in logs if e["event"] == "restore.snapshot_rejected"]
        assert rejected[0]["snapshot"] == "s2"
        assert "checksum mismatch" in rejected[0]["error"]

    def test_gives_up_after_max_fallbacks_with_exit_7(self, tmp_path):
        repo = FakeRepository(GOOD, GOOD, GOOD, corrupt=("s2", "s3"))
        outcome = run(tmp_path, repo, max_fallbacks=1)
        assert (outcome.exit_code, outcome.skipped_snapshots) == (7, ("s3", "s2"))
        assert repo.restored == ["s3", "s2"]
        assert files(tmp_path) == {}

    def test_explicit_snapshot_never_falls_back(self, tmp_path):
        outcome = run(tmp_path, FakeRepository(GOOD, GOOD, corrupt=("s2",)), snapshot="s2")
        assert (outcome.exit_code, outcome.reason) == (7, "corrupt")
        assert files(tmp_path) == {}

    def test_unknown_snapshot_is_exit_3(self, tmp_path):
        assert run(tmp_path, FakeRepository(GOOD), snapshot="nope").exit_code == 3


class TestQuarantine:
    def test_force_sets_existing_data_aside(self, tmp_path):
        (tmp_path / "app.db").write_text("mine")
        outcome = run(tmp_path, FakeRepository(GOOD), force=True)
        assert outcome.quarantined == str(tmp_path / QUARANTINE.rstrip("/"))
        assert files(tmp_path) == {**GOOD, QUARANTINE + "app.db": "mine"}

    def test_data_written_into_an_empty_target_meanwhile_is_quarantined_not_discarded(self, tmp_path):
        class WrittenDuringDownload(FakeRepository):
            def restore(self, snapshot_id, dest, *args, **kw):
                (tmp_path / "app.db").write_text("written meanwhile")
                return super().restore(snapshot_id, dest, *args, **kw)

        outcome = run(tmp_path, WrittenDuringDownload(GOOD))
        assert (outcome.outcome, outcome.reason) == ("restored", "target is empty")
        assert outcome.quarantined == str(tmp_path / QUARANTINE.rstrip("/"))
        assert files(tmp_path) == {**GOOD, QUARANTINE + "app.db": "written meanwhile"}

    def test_failed_check_restores_the_newest_good_snapshot(self, tmp_path):
        (tmp_path / "app.db").write_text("broken")
        check = ("grep", "-q", "good", "app.db")
        repo = FakeRepository(GOOD, {"app.db": "bad too"})
        outcome = run(tmp_path, repo, check_cmd=check)
        assert (outcome.outcome, outcome.snapshot, outcome.skipped_snapshots) == ("restored", "s1", ("s2",))
        assert files(tmp_path) == {**GOOD, QUARANTINE + "app.db": "broken"}

    def test_check_failing_everywhere_puts_the_volume_back_with_exit_8(self, tmp_path):
        (tmp_path / "app.db").write_text("broken")
        repo = FakeRepository({"app.db": "bad 1"}, {"app.db": "bad 2", "extra": "e"})
        outcome = run(tmp_path, repo, check_cmd=("false",))
        assert (outcome.outcome, outcome.exit_code, outcome.skipped_snapshots) == ("failed", 8, ("s2", "s1"))
        assert outcome.quarantined is None
        assert files(tmp_path) == {"app.db": "broken"}
        assert not (tmp_path / ".caretaker" / "quarantine" / "20260115T120000Z").exists()

    def test_check_failing_and_nothing_to_restore_is_exit_8(self, tmp_path):
        (tmp_path / "app.db").write_text("broken")
        outcome = run(tmp_path, FakeRepository(), check_cmd=("false",), allow_empty="always")
        assert outcome.exit_code == 8
        assert files(tmp_path) == {"app.db": "broken"}

    def test_check_failing_on_a_restored_empty_volume_leaves_it_empty(self, tmp_path):
        outcome = run(tmp_path, FakeRepository(GOOD), check_cmd=("false",))
        assert outcome.exit_code == 8
        assert files(tmp_path) == {}

    def test_check_passing_skips(self, tmp_path):
        (tmp_path / "app.db").write_text("good")
        outcome = run(tmp_path, FakeRepository(GOOD), check_cmd=("grep", "-q", "good", "app.db"))
        assert (outcome.outcome, outcome.reason) == ("skipped", "check passed on existing data")


class TestDiskSpace:
    def test_not_enough_space_is_exit_10_before_writing(self, tmp_path):
        outcome = run(tmp_path, FakeRepository(GOOD), disk_free=lambda _: (4096, 4096))
        assert (outcome.exit_code, outcome.reason) == (10, "local-io")
        assert "needs about 8.0 KiB, 4.0 KiB free" in outcome.error
        assert files(tmp_path) == {}

    def test_errors_name_the_staging_folder_not_the_descriptor_path(self, tmp_path):
        """The download is given a path through caretaker's descriptor (/proc/<pid>/fd/<n>);
        a message about it names the folder a user can look at."""

        class Full(FakeRepository):
            def restore(self, snapshot_id, dest, progress=None, selection=None, *, keep_setid=False):
                assert str(dest).startswith("/proc/")
                raise LocalIOError(f"cannot write into {dest}: No space left on device")

        outcome = run(tmp_path, Full(GOOD))
        assert outcome.exit_code == 10
        assert (
            outcome.error == f"cannot write into {tmp_path}/.caretaker/staging/tree: No space left on device"
        )


class TestResume:
    def test_an_interrupted_move_is_finished_and_reported(self, tmp_path):
        repo = FakeRepository(GOOD)
        snapshot = repo.snapshots()[0]
        with Volume.open(tmp_path, create=True) as volume:
            staging = Staging(volume)
            repo.restore("s1", staging.prepare())
            staging.commit(
                kind="restore", source=staging.tree, aside=staging.discard, set_aside=[], snapshot=snapshot
            )
        outcome = prepare_volume(RestoreSettings(path=tmp_path), effects(None))  # type: ignore[arg-type]
        assert (outcome.outcome, outcome.snapshot, outcome.reason) == (
            "restored",
            "s1",
            "finished an interrupted restore",
        )
        assert files(tmp_path) == GOOD


class TestPlan:
    def test_plan_names_snapshot_and_size_and_writes_nothing(self, tmp_path):
        document = plan(RestoreSettings(path=tmp_path / "data"), effects(FakeRepository({"a": "1"}, GOOD)))
        assert document | {"free_bytes": 0, "needed_bytes": 0} == {
            "outcome": "planned",
            "path": str(tmp_path / "data"),
            "action": "restore",
            "reason": "target is empty",
            "repository": "fake://repo",
            "snapshot": "s2",
            "snapshot_time": "2026-01-10T01:00:00Z",
            "files": 2,
            "bytes": 5,
            "fallbacks": ["s1"],
            "set_aside": 0,
            "needed_bytes": 0,
            "free_bytes": 0,
        }
        assert list(tmp_path.iterdir()) == []

    def test_plan_fails_like_the_run_would(self, tmp_path):
        with pytest.raises(NoSnapshotError):
            plan(RestoreSettings(path=tmp_path), effects(FakeRepository()))


class TestLocalErrors:
    def test_a_volume_that_is_not_a_folder_is_exit_10_not_a_crash(self, tmp_path):
        volume = tmp_path / "volume"
        volume.write_text("a file where the data folder belongs")
        outcome = run(volume, FakeRepository(GOOD))
        assert (outcome.outcome, outcome.exit_code, outcome.reason) == ("failed", 10, "local-io")
        assert str(volume) in outcome.error
