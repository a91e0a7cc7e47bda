from __future__ import annotations

import os
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from restore.initcontainer.outcome import Outcome, write_result
from restore.model import BackupStats, SnapshotInfo
from sidecar.metrics import RESULTS, JobLabels, Metrics
from sidecar.restoremetrics import OUTCOMES, RestoreResultExport

JOBS = [JobLabels("backup", "backup"), JobLabels("vacuum", "command")]
BACKUP = {"task": "backup", "kind": "backup"}


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render()[0].decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_job_series_exists_at_start_with_zero():
    metrics = Metrics.create(CollectorRegistry(), JOBS, version="1.2.3")
    found = samples(metrics)
    for job in JOBS:
        task = (("kind", job.kind), ("task", job.name))
        for result in RESULTS:
            assert found[("caretaker_job_runs_total", tuple(sorted((*task, ("result", result)))))] == 0
        for name in (
            "caretaker_job_last_success_timestamp_seconds",
            "caretaker_job_last_failure_timestamp_seconds",
            "caretaker_job_next_run_timestamp_seconds",
            "caretaker_job_running",
            "caretaker_job_duration_seconds_count",
        ):
            assert found[(name, task)] == 0
    backup = (("kind", "backup"), ("task", "backup"))
    assert found[("caretaker_backup_files", tuple(sorted((*backup, ("state", "new")))))] == 0
    for name in ("source_bytes", "read_bytes", "stored_bytes", "unchanged_total"):
        assert found[(f"caretaker_backup_{name}", backup)] == 0
    assert not any(
        name.startswith("caretaker_backup_") and ("task", "vacuum") in labels for name, labels in found
    )
    assert found[("caretaker_repository_snapshots", ())] == 0
    assert found[("caretaker_repository_stored_bytes", ())] == 0
    assert found[("caretaker_repository_read_timestamp_seconds", ())] == 0
    assert found[("caretaker_last_backup_timestamp_seconds", ())] == 0
    assert found[("caretaker_repository_encrypted", ())] == -1  # not known before it was reached
    assert found[("caretaker_restore_snapshot_age_seconds", ())] == 0
    assert found[("caretaker_build_info", (("version", "1.2.3"),))] == 1
    for outcome in OUTCOMES:
        assert found[("caretaker_restore_outcome", (("outcome", outcome),))] == 0
    assert found[("caretaker_standby", (("holder", ""),))] == 0


def test_standby_names_the_holder_in_one_series() -> None:
    metrics = Metrics.create(CollectorRegistry(), JOBS, version="1")
    metrics.set_standby("pod-a, sidecar pod-a/7")
    metrics.set_standby("pod-b, sidecar pod-b/9")
    standby = {k: v for k, v in samples(metrics).items() if k[0] == "caretaker_standby"}
    assert standby == {("caretaker_standby", (("holder", "pod-b, sidecar pod-b/9"),)): 1}
    metrics.set_standby(None)
    assert samples(metrics)[("caretaker_standby", (("holder", ""),))] == 0


def test_no_label_collides_with_prometheus_target_labels_and_each_name_means_one_thing():
    metrics = Metrics.create(CollectorRegistry(), JOBS, version="x")
    labels = {name for _, found in samples(metrics) for name, _ in found}
    assert not labels & {"job", "instance"}
    # `kind` is the job kind wherever it appears: it always comes with `task`.
    for name, found in samples(metrics):
        keys = dict(found)
        if "kind" in keys:
            assert "task" in keys, name
            assert keys["kind"] in {"backup", "command"}, name


def test_runs_and_backup_stats_are_recorded():
    registry = CollectorRegistry()
    metrics = Metrics.create(registry, JOBS, version="x")
    at = datetime(2026, 1, 15, 12, tzinfo=UTC)
    metrics.run_finished(JOBS[0], "success", seconds=2.5, at=at)
    metrics.run_finished(JOBS[0], "refused", seconds=0.1, at=at)
    metrics.run_skipped(JOBS[1])
    stats = BackupStats(
        files_new=2, files_changed=1, files_unchanged=7, bytes_total=100, bytes_read=30, bytes_stored=12
    )
    metrics.backup.record(JOBS[0], stats, recorded=True)
    value = registry.get_sample_value
    assert value("caretaker_job_runs_total", {**BACKUP, "result": "success"}) == 1
    assert value("caretaker_job_runs_total", {**BACKUP, "result": "refused"}) == 1
    assert (
        value("caretaker_job_runs_total", {"task": "vacuum", "kind": "command", "result": "skipped_overlap"})
        == 1
    )
    assert value("caretaker_job_duration_seconds_sum", BACKUP) == 2.6
    assert value("caretaker_job_duration_seconds_bucket", {**BACKUP, "le": "1.0"}) == 1
    assert value("caretaker_job_last_success_timestamp_seconds", BACKUP) == at.timestamp()
    assert value("caretaker_job_last_failure_timestamp_seconds", BACKUP) == at.timestamp()
    assert value("caretaker_backup_files", {**BACKUP, "state": "unchanged"}) == 7
    assert value("caretaker_backup_source_bytes", BACKUP) == 100
    assert value("caretaker_backup_read_bytes", BACKUP) == 30
    assert value("caretaker_backup_stored_bytes", BACKUP) == 12
    assert value("caretaker_backup_unchanged_total", BACKUP) == 0
    metrics.backup.record(JOBS[0], BackupStats(files_unchanged=10, bytes_total=100), recorded=False)
    assert value("caretaker_backup_unchanged_total", BACKUP) == 1
    assert value("caretaker_backup_read_bytes", BACKUP) == 0


def test_repository_listing_gives_each_hosts_newest_snapshot_and_forgets_pruned_hosts():
    registry = CollectorRegistry()
    metrics = Metrics.create(registry, JOBS, version="x")

    def snap(sid: str, hour: int, host: str) -> SnapshotInfo:
        return SnapshotInfo(
            id=sid, time=datetime(2026, 1, 15, hour, tzinfo=UTC), files=1, dirs=0, bytes=1, host=host
        )

    read = datetime(2026, 1, 15, 13, tzinfo=UTC)
    metrics.repository.listed([snap("c", 11, "pod-b"), snap("b", 10, "pod-a"), snap("a", 9, "pod-a")], read)
    value = registry.get_sample_value
    newest = "caretaker_repository_newest_snapshot_timestamp_seconds"
    assert value(newest, {"host": "pod-a"}) == datetime(2026, 1, 15, 10, tzinfo=UTC).timestamp()
    assert value(newest, {"host": "pod-b"}) == datetime(2026, 1, 15, 11, tzinfo=UTC).timestamp()
    assert value("caretaker_repository_snapshots") == 3
    assert value("caretaker_repository_read_timestamp_seconds") == read.timestamp()
    metrics.repository.listed([snap("c", 11, "pod-b")], read)
    assert value(newest, {"host": "pod-a"}) is None
    assert value("caretaker_repository_snapshots") == 1


def test_restore_result_file_is_exported_and_followed(tmp_path):
    registry = CollectorRegistry()
    metrics = Metrics.create(registry, JOBS, version="x")
    export = RestoreResultExport(metrics.restore, tmp_path)
    export.refresh()
    assert export.outcome is None
    finished = datetime(2026, 1, 15, 11, 59, tzinfo=UTC)
    write_result(
        tmp_path,
        Outcome(
            outcome="restored",
            exit_code=0,
            finished_at=finished,
            snapshot="abc",
            snapshot_age_seconds=5400.0,
            files=12,
            bytes=3456,
            duration_seconds=7.5,
        ),
    )
    export.refresh()
    value = registry.get_sample_value
    assert value("caretaker_restore_outcome", {"outcome": "restored"}) == 1
    assert value("caretaker_restore_outcome", {"outcome": "failed"}) == 0
    assert value("caretaker_restore_files") == 12
    assert value("caretaker_restore_bytes") == 3456
    assert value("caretaker_restore_duration_seconds") == 7.5
    assert value("caretaker_restore_timestamp_seconds") == finished.timestamp()
    assert value("caretaker_restore_snapshot_age_seconds") == 5400.0
    write_result(tmp_path, Outcome(outcome="failed", exit_code=4, finished_at=finished, files=1))
    export.refresh()
    assert value("caretaker_restore_outcome", {"outcome": "restored"}) == 0
    assert value("caretaker_restore_outcome", {"outcome": "failed"}) == 1
    assert value("caretaker_restore_exit_code") == 4


def test_a_malformed_result_file_reads_as_none(tmp_path):
    metrics = Metrics.create(CollectorRegistry(), JOBS, version="x")
    (tmp_path / ".caretaker").mkdir()
    (tmp_path / ".caretaker" / "restore-result.json").write_text("{not json")
    export = RestoreResultExport(metrics.restore, tmp_path)
    export.refresh()
    assert export.outcome is None


def test_a_fifo_or_link_in_place_of_the_result_file_reads_as_none_at_once(tmp_path):
    """The app can write the volume: a scrape must neither block on a FIFO nor read a file
    outside it through a link."""
    metrics = Metrics.create(CollectorRegistry(), JOBS, version="x")
    outside = tmp_path / "outside.json"
    write_result(
        tmp_path / "elsewhere", Outcome(outcome="restored", exit_code=0, finished_at=datetime.now(UTC))
    )
    outside.write_bytes((tmp_path / "elsewhere" / ".caretaker" / "restore-result.json").read_bytes())
    volume = tmp_path / "volume"
    (volume / ".caretaker").mkdir(parents=True)
    export = RestoreResultExport(metrics.restore, volume)
    os.symlink(outside, volume / ".caretaker" / "restore-result.json")
    export.refresh()
    assert export.outcome is None
    (volume / ".caretaker" / "restore-result.json").unlink()
    os.mkfifo(volume / ".caretaker" / "restore-result.json")
    export.refresh()
    assert export.outcome is None


def test_openmetrics_is_served_to_a_client_that_asks_for_it():
    metrics = Metrics.create(CollectorRegistry(), JOBS, version="1.2.3")
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")
    plain, plain_type = metrics.render("")
    assert plain_type.startswith("text/plain; version=0.0.4")
    assert "# EOF" not in plain.decode()
