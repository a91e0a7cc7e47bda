from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from restore.backends.registry import OpenOptions, open_repository
from restore.clock import utc_now
from restore.deadline import Deadline
from restore.retention import RetentionPolicy
from restore.snapshots.encryption import Encryption
from sidecar.metrics import JobLabels, Metrics
from sidecar.runner import Runner
from sidecar.settings.model import (
    BackupAction,
    CommandSpec,
    HttpSpec,
    JobConfig,
    Listen,
    PruneAction,
    SidecarConfig,
)
from sidecar.settings.schedule import parse_schedule
from sidecar.status import StatusBoard
from tests.support.keys import sealed
from tests.support.trees import write_file

HOURLY = parse_schedule("@hourly")


class Rig:
    """A Runner over real jobs, a real file:// repository and a fresh metrics registry."""

    def __init__(self, tmp_path: Path, jobs: list[JobConfig]) -> None:
        self.data = tmp_path / "data"
        self.data.mkdir(exist_ok=True)
        self.url = f"file://{tmp_path / 'repo'}"
        self.encryption = sealed()
        self.registry = CollectorRegistry()
        self.config = SidecarConfig(
            repository=self.url, path=self.data, listen=Listen("", 0), jobs=tuple(jobs)
        )
        metrics = Metrics.create(self.registry, [JobLabels(j.name, j.kind) for j in jobs], version="test")
        self.board = StatusBoard(self.config, metrics, clock=utc_now)
        self.runner = Runner(
            config=self.config,
            board=self.board,
            environ={"PATH": os.environ["PATH"]},
            clock=utc_now,
            open_repository=self.open,
        )

    def open(self, deadline: Deadline | None = None):
        options = OpenOptions(environ={}, deadline=deadline or Deadline(), encryption=self.encryption)
        return open_repository(self.url, options)

    def runs(self, job: str, kind: str, result: str) -> float | None:
        return self.registry.get_sample_value(
            "caretaker_job_runs_total", {"task": job, "kind": kind, "result": result}
        )

    def gauge(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def shell(script: str, **extra: object) -> CommandSpec:
    return CommandSpec(argv=("sh", "-c", script), **extra)  # type: ignore[arg-type]


def job(name: str, action, **extra) -> JobConfig:
    kinds = {BackupAction: "backup", PruneAction: "prune", CommandSpec: "command", HttpSpec: "http"}
    settings = {"schedule": HOURLY, "retry_backoff": timedelta(0), **extra}
    return JobConfig(name=name, kind=kinds[type(action)], action=action, **settings)


def test_hooks_run_before_and_after_the_job_in_order(tmp_path):
    trail = tmp_path / "trail"
    hook = lambda word: shell(f'echo "{word}:$CARETAKER_JOB:$CARETAKER_JOB_RESULT" >> {trail}')  # noqa: E731
    rig = Rig(
        tmp_path,
        [
            job(
                "work",
                shell(f"echo job >> {trail}"),
                before=(hook("before1"), hook("before2")),
                after=(hook("after"),),
            )
        ],
    )
    assert rig.runner.run("work") == "success"
    assert trail.read_text().split() == ["before1:work:", "before2:work:", "job", "after:work:success"]
    assert rig.runs("work", "command", "success") == 1


def test_a_failing_before_hook_fails_the_run_without_the_job(tmp_path):
    trail = tmp_path / "trail"
    rig = Rig(
        tmp_path,
        [
            job(
                "work",
                shell(f"echo job >> {trail}"),
                retries=0,
                before=(shell("exit 4"), shell(f"echo skipped >> {trail}")),
                after=(shell(f'echo "after:$CARETAKER_JOB_RESULT" >> {trail}'),),
            )
        ],
    )
    assert rig.runner.run("work") == "failure"
    assert trail.read_text().split() == ["after:failure"]
    assert rig.runs("work", "command", "failure") == 1
    assert rig.gauge("caretaker_job_last_failure_timestamp_seconds", task="work", kind="command") > 0
    state = rig.board.to_json()["jobs"][0]
    assert "before[0] failed" in state["last_run"]["error"]


def test_failed_commands_are_retried_with_backoff(tmp_path):
    counter = tmp_path / "count"
    script = f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ]"
    rig = Rig(tmp_path, [job("flaky", shell(script), retries=2)])
    assert rig.runner.run("flaky") == "success"
    assert len(counter.read_text().split()) == 3
    assert rig.board.to_json()["jobs"][0]["last_run"]["attempts"] == 3
    assert rig.runs("flaky", "command", "failure") == 0


def test_retries_run_out(tmp_path):
    counter = tmp_path / "count"
    rig = Rig(tmp_path, [job("broken", shell(f"echo x >> {counter}; exit 1"), retries=1)])
    assert rig.runner.run("broken") == "failure"
    assert len(counter.read_text().split()) == 2


def test_backup_then_prune_with_metrics(tmp_path):
    rig = Rig(
        tmp_path,
        [
            job("backup", BackupAction(), then=("prune",)),
            job("prune", PruneAction(policy=RetentionPolicy(last=2)), schedule=None),
        ],
    )
    write_file(rig.data / "a.txt", b"hello")
    for _ in range(3):
        assert rig.runner.run("backup") == "success"
    assert rig.runs("backup", "backup", "success") == 3
    assert rig.runs("prune", "prune", "success") == 3
    assert rig.gauge("caretaker_repository_snapshots") == 2
    assert rig.gauge("caretaker_backup_files", task="backup", kind="backup", state="unchanged") == 1
    assert rig.gauge("caretaker_backup_source_bytes", task="backup", kind="backup") == 5
    repo = rig.open()
    assert len(repo.snapshots()) == 2
    assert all(s.tags == ("backup",) for s in repo.snapshots())


def test_the_repository_figures_come_from_start_up_and_from_each_job_without_readyz(tmp_path):
    rig = Rig(tmp_path, [job("backup", BackupAction())])
    assert rig.gauge("caretaker_repository_encrypted") == -1
    rig.runner.refresh_repository()  # start-up, before the repository exists
    assert rig.gauge("caretaker_repository_encrypted") == 1  # what the first backup creates
    write_file(rig.data / "a.txt", b"hello")
    assert rig.runner.run("backup") == "success"
    assert rig.gauge("caretaker_repository_encrypted") == 1
    assert rig.gauge("caretaker_repository_snapshots") == 1
    assert rig.gauge("caretaker_repository_stored_bytes") > 0

    (tmp_path / "plain").mkdir()
    plain = Rig(tmp_path / "plain", [job("backup", BackupAction())])
    plain.encryption = Encryption(unencrypted=True)
    write_file(plain.data / "a.txt", b"hello")
    assert plain.runner.run("backup") == "success"
    assert plain.gauge("caretaker_repository_encrypted") == 0


def test_an_empty_volume_over_history_is_refused_and_counted(tmp_path):
    rig = Rig(tmp_path, [job("backup", BackupAction(), retries=2)])
    (rig.data / "a.txt").write_text("hello")
    assert rig.runner.run("backup") == "success"
    (rig.data / "a.txt").unlink()
    assert rig.runner.run("backup") == "refused"
    assert rig.runs("backup", "backup", "refused") == 1
    assert rig.board.to_json()["jobs"][0]["last_run"]["attempts"] == 1  # not retried
    assert rig.gauge("caretaker_job_last_failure_timestamp_seconds", task="backup", kind="backup") > 0
    assert len(rig.open().snapshots()) == 1


def test_a_run_overlapping_the_same_job_is_skipped_and_counted(tmp_path):
    marker = tmp_path / "started"
    rig = Rig(tmp_path, [job("slow", shell(f"touch {marker}; sleep 1"))])
    thread = threading.Thread(target=rig.runner.run, args=("slow",))
    thread.start()
    while not marker.exists():
        time.sleep(0.01)
    assert rig.gauge("caretaker_job_running", task="slow", kind="command") == 1
    assert rig.runner.run("slow") == "skipped_overlap"
    thread.join()
    assert rig.runs("slow", "command", "skipped_overlap") == 1
    assert rig.runs("slow", "command", "success") == 1
    assert rig.gauge("caretaker_job_running", task="slow", kind="command") == 0


def test_shutdown_refuses_new_runs_and_aborts_running_ones(tmp_path):
    marker = tmp_path / "started"
    rig = Rig(tmp_path, [job("slow", shell(f"touch {marker}; sleep 30")), job("other", shell("true"))])
    thread = threading.Thread(target=rig.runner.run, args=("slow",))
    thread.start()
    while not marker.exists():
        time.sleep(0.01)
    rig.runner.stop_accepting()
    assert rig.runner.run("other") == "not_started"
    assert not rig.runner.wait_idle(0.1)
    rig.runner.cancel_all("sidecar shutting down")
    assert rig.runner.wait_idle(5)
    thread.join()
    assert rig.board.to_json()["jobs"][0]["last_run"]["error"] == "sidecar shutting down"


def test_cancel_interrupts_the_retry_backoff(tmp_path):
    rig = Rig(tmp_path, [job("broken", shell("exit 1"), retries=5, retry_backoff=timedelta(seconds=60))])
    thread = threading.Thread(target=rig.runner.run, args=("broken",))
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    rig.runner.cancel_all("stop")
    thread.join(5)
    assert time.monotonic() - started < 2
    assert rig.board.to_json()["jobs"][0]["last_run"]["attempts"] == 1


def test_http_jobs(tmp_path, app):
    rig = Rig(tmp_path, [job("ping", HttpSpec(url=app.url("/ping"), method="POST"))])
    assert rig.runner.run("ping") == "success"
    app.status = 500
    assert rig.runner.run("ping") == "failure"
    assert app.requests[:2] == [("POST", "/ping")] * 2
    assert len(app.requests) == 1 + 3  # retried twice


def test_http_hooks_gate_the_job(tmp_path, app):
    trail = tmp_path / "trail"
    rig = Rig(
        tmp_path,
        [
            job(
                "guarded",
                shell(f"echo job >> {trail}"),
                retries=0,
                before=(HttpSpec(url=app.url("/pause"), method="POST"),),
                after=(HttpSpec(url=app.url("/resume"), method="POST"),),
            )
        ],
    )
    assert rig.runner.run("guarded") == "success"
    assert trail.read_text() == "job\n"
    app.status = 409
    assert rig.runner.run("guarded") == "failure"
    assert trail.read_text() == "job\n"
    assert app.requests == [("POST", "/pause"), ("POST", "/resume")] * 2
