"""The sidecar as a real process with a real config file: jobs fire on `@every` schedules,
back up into a real repository, and everything they do shows in /metrics (parsed with the
Prometheus text parser, checked value by value), /status and the JSON log.

One sidecar runs for a few seconds with every kind of job at once; the tests below each
look at one aspect of that run.
"""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from restore.backends.registry import open_repository
from restore.initcontainer.outcome import Outcome, write_result
from tests.support.keys import open_options, password_env
from tests.support.sidecar import App, Samples, Sidecar, parse_metrics, process_gone, wait_until
from tests.support.trees import write_file

pytestmark = pytest.mark.integration

RUN_SECONDS = 4.5
CONFIG = """
repository: file://{d}/repo
path: {d}/data
defaults: {{retries: 0, retry_backoff: 0s}}
shutdown: {{grace: 10s}}
jobs:
  - {{name: backup, kind: backup, schedule: "@every 1s", run_on_start: true, then: [prune],
     excludes: ["*.tmp"]}}
  - {{name: prune, kind: prune, keep: {{last: 3}}}}
  - name: hooked
    kind: command
    schedule: "@every 1s"
    command: [sh, -c, "echo job >> {d}/trail"]
    before: [{{command: [sh, -c, "echo before >> {d}/trail"]}}]
    after: [{{command: [sh, -c, "echo after:$CARETAKER_JOB_RESULT >> {d}/trail"]}}]
  - name: gated
    kind: command
    schedule: "@every 1s"
    command: [sh, -c, "echo job >> {d}/gated"]
    before: [{{command: [sh, -c, "echo gate >> {d}/gated; exit 1"]}}]
  - {{name: slow, kind: command, schedule: "@every 1s", command: [sleep, "2.5"]}}
  - {{name: broken, kind: command, schedule: "@every 1s", command: [sh, -c, "echo oops >&2; exit 3"]}}
  - name: runaway
    kind: command
    schedule: "@every 1h"
    run_on_start: true
    timeout: 1s
    command: [sh, -c, "sleep 60 & echo $! > {d}/grandchild.pid; echo started; wait"]
  - {{name: ping, kind: http, schedule: "@every 1s", method: POST, url: "{app}"}}
"""


@dataclasses.dataclass
class Run:
    workdir: Path
    started: float
    stopped: float
    samples: Samples
    status: dict[str, Any]
    logs: list[dict[str, Any]]
    exit_code: int
    stop_seconds: float
    app: App
    files: int

    def runs(self, job: str, kind: str, result: str) -> float:
        labels = (("kind", kind), ("result", result), ("task", job))
        return self.samples[("caretaker_job_runs_total", labels)]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    workdir = tmp_path_factory.mktemp("busy")
    data = workdir / "data"
    for index in range(5):
        write_file(data / f"dir{index % 2}" / f"file{index}.bin", os.urandom(1000 * (index + 1)))
    write_file(data / "skip.tmp", b"excluded")
    finished = datetime(2026, 1, 15, 11, 0, tzinfo=UTC)
    write_result(
        data,
        Outcome(
            outcome="restored",
            exit_code=0,
            finished_at=finished,
            snapshot="abc",
            files=5,
            bytes=15000,
            duration_seconds=2.5,
        ),
    )
    with (
        App() as app,
        Sidecar(workdir, [], config=CONFIG.format(d=workdir, app=app.url("/flush"))) as sidecar,
    ):
        started = time.time()
        time.sleep(RUN_SECONDS)
        samples = sidecar.metrics()
        status = sidecar.status()
        stop_at = time.monotonic()
        exit_code = sidecar.stop()
        stop_seconds = time.monotonic() - stop_at
        return Run(
            workdir=workdir,
            started=started,
            stopped=time.time(),
            samples=samples,
            status=status,
            logs=sidecar.logs(),
            exit_code=exit_code,
            stop_seconds=stop_seconds,
            app=app,
            files=5,
        )


def test_backups_fire_and_produce_snapshots(run):
    backups = run.runs("backup", "backup", "success")
    assert backups >= 3
    assert run.runs("backup", "backup", "failure") == 0
    assert run.runs("prune", "prune", "success") == backups  # after each successful backup
    assert run.value("caretaker_repository_snapshots") == 3
    backup = {"task": "backup", "kind": "backup"}
    assert run.value("caretaker_job_duration_seconds_count", **backup) == backups
    last = run.value("caretaker_job_last_success_timestamp_seconds", **backup)
    assert run.started - 1 < last < run.stopped
    assert run.value("caretaker_job_next_run_timestamp_seconds", **backup) > last
    assert run.value("caretaker_job_last_failure_timestamp_seconds", **backup) == 0
    assert run.value("caretaker_backup_files", **backup, state="unchanged") == run.files
    assert run.value("caretaker_backup_files", **backup, state="new") == 0
    assert run.value("caretaker_backup_source_bytes", **backup) == 15000
    assert run.value("caretaker_backup_read_bytes", **backup) == 0
    repo = open_repository(f"file://{run.workdir / 'repo'}", open_options(password_env(run.workdir)))
    try:
        snapshots = repo.snapshots()
    finally:
        repo.close()
    assert len(snapshots) >= 3  # a backup may have landed between the scrape and SIGTERM
    assert all(s.files == run.files and s.bytes == 15000 for s in snapshots)


def test_hooks_run_in_order_around_each_run(run):
    trail = (run.workdir / "trail").read_text().split()
    rounds = len(trail) // 3
    assert rounds >= 3
    assert trail == ["before", "job", "after:success"] * rounds
    assert run.runs("hooked", "command", "success") in {rounds, rounds - 1}  # one after the scrape


def test_a_failing_before_hook_fails_the_run_without_the_job(run):
    gated = (run.workdir / "gated").read_text().split()
    assert set(gated) == {"gate"}
    assert run.runs("gated", "command", "failure") >= 3
    assert run.runs("gated", "command", "success") == 0


def test_overlapping_runs_are_skipped_and_counted(run):
    assert run.runs("slow", "command", "success") in {1, 2}
    assert run.runs("slow", "command", "skipped_overlap") >= 2
    slow = next(j for j in run.status["jobs"] if j["name"] == "slow")
    assert slow["skipped_overlap"] == run.runs("slow", "command", "skipped_overlap")


def test_a_failing_command_is_counted_and_its_output_logged(run):
    failures = run.runs("broken", "command", "failure")
    assert failures >= 3
    assert run.runs("broken", "command", "success") == 0
    output = [e for e in run.logs if e["event"] == "command.output" and e.get("job") == "broken"]
    assert len(output) >= failures
    assert {(e["stream"], e["line"]) for e in output} == {("stderr", "oops")}
    errors = [e for e in run.logs if e["event"] == "job.failure" and e.get("job") == "broken"]
    assert errors[0]["error"] == "'sh' exited with status 3"
    broken = next(j for j in run.status["jobs"] if j["name"] == "broken")
    assert broken["last_run"]["result"] == "failure"
    assert broken["last_failure"] is not None


def test_a_timeout_kills_the_whole_process_group(run):
    assert run.runs("runaway", "command", "failure") == 1
    failure = next(e for e in run.logs if e["event"] == "job.failure" and e.get("job") == "runaway")
    assert "timed out" in failure["error"]
    assert 1 <= failure["duration_seconds"] < 3
    assert process_gone(int((run.workdir / "grandchild.pid").read_text()))
    started = [e for e in run.logs if e["event"] == "command.output" and e.get("job") == "runaway"]
    assert [e["line"] for e in started] == ["started"]


def test_http_jobs_reach_the_app(run):
    pings = run.runs("ping", "http", "success")
    assert pings >= 3
    assert run.app.requests[0] == ("POST", "/flush")
    assert len(run.app.requests) >= pings


def test_restore_result_build_info_and_clean_exit(run):
    assert run.value("caretaker_restore_outcome", outcome="restored") == 1
    assert run.value("caretaker_restore_outcome", outcome="failed") == 0
    assert run.value("caretaker_restore_files") == 5
    assert run.value("caretaker_restore_bytes") == 15000
    assert run.value("caretaker_restore_duration_seconds") == 2.5
    assert run.value("caretaker_restore_exit_code") == 0
    assert (
        run.value("caretaker_restore_timestamp_seconds") == datetime(2026, 1, 15, 11, tzinfo=UTC).timestamp()
    )
    assert run.value("caretaker_build_info", version="0.1.0") == 1
    assert run.status["restore"]["outcome"] == "restored"
    assert run.exit_code == 0
    assert run.stop_seconds < 5  # the slow command (2.5 s) may still have been running
    assert [e["event"] for e in run.logs if e["event"].startswith("shutdown.")] == [
        "shutdown.start",
        "shutdown.done",
    ]


def test_every_series_exists_before_the_first_run(tmp_path):
    (tmp_path / "data").mkdir()
    config = f"""
repository: file://{tmp_path}/repo
path: {tmp_path}/data
jobs:
  - {{name: nightly, kind: backup, schedule: "0 3 * * *", timezone: Europe/Berlin}}
  - {{name: tidy, kind: prune, schedule: "@daily", keep: {{daily: 7}}}}
  - {{name: check, kind: verify, schedule: "@weekly", read_data: 0.1}}
"""
    with Sidecar(tmp_path, [], config=config) as sidecar:
        # The repository is read once right after start-up; after that nothing changes.
        wait_until(lambda: sidecar.value("caretaker_repository_read_timestamp_seconds") > 0, 10, "the read")
        samples = sidecar.metrics()
        raw = sidecar.get("/metrics")[1]
    assert parse_metrics(raw) == samples
    for job, kind in (("nightly", "backup"), ("tidy", "prune"), ("check", "verify")):
        for result in ("success", "failure", "skipped_overlap", "refused"):
            key = ("caretaker_job_runs_total", (("kind", kind), ("result", result), ("task", job)))
            assert samples[key] == 0
        task = (("kind", kind), ("task", job))
        assert samples[("caretaker_job_running", task)] == 0
        assert samples[("caretaker_job_last_success_timestamp_seconds", task)] == 0
        assert samples[("caretaker_job_next_run_timestamp_seconds", task)] > time.time()
    next_nightly = datetime.fromtimestamp(
        samples[("caretaker_job_next_run_timestamp_seconds", (("kind", "backup"), ("task", "nightly")))], UTC
    )
    assert (next_nightly.hour, next_nightly.minute) in {(2, 0), (1, 0)}  # 03:00 Berlin
    assert samples[("caretaker_restore_outcome", (("outcome", "restored"),))] == 0
    assert "_created" not in raw


def test_environment_only_mode(tmp_path):
    write_file(tmp_path / "data" / "a.txt", b"hello")
    env = {
        "CARETAKER_REPOSITORY": f"file://{tmp_path}/repo",
        "CARETAKER_PATH": str(tmp_path / "data"),
        "CARETAKER_SCHEDULE": "@every 1s",
        "CARETAKER_KEEP_LAST": "2",
        "CARETAKER_RUN_ON_START": "true",
    }
    with Sidecar(tmp_path, [], env=env) as sidecar:
        wait_until(
            lambda: (
                sidecar.value("caretaker_job_runs_total", task="prune", kind="prune", result="success") >= 3
            ),
            10,
            "three backups and prunes",
        )
        assert sidecar.value("caretaker_repository_snapshots") == 2
        assert sidecar.stop() == 0
