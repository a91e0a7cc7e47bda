from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from restore.clock import utc_now
from sidecar.metrics import JobLabels, Metrics
from sidecar.scheduler import Scheduler
from sidecar.settings.model import CommandSpec, JobConfig, Listen, SidecarConfig
from sidecar.settings.schedule import parse_schedule
from sidecar.status import StatusBoard


def rig(jobs: list[JobConfig]) -> tuple[StatusBoard, CollectorRegistry]:
    registry = CollectorRegistry()
    config = SidecarConfig(
        repository="file:///unused", path=Path("/"), listen=Listen("", 0), jobs=tuple(jobs)
    )
    metrics = Metrics.create(registry, [JobLabels(j.name, j.kind) for j in jobs], version="t")
    return StatusBoard(config, metrics, utc_now), registry


def command_job(name: str, schedule: str, **extra) -> JobConfig:
    return JobConfig(
        name=name,
        kind="command",
        action=CommandSpec(argv=("true",)),
        schedule=parse_schedule(schedule),
        **extra,
    )


def test_every_schedules_fire_and_overlaps_are_skipped_and_counted():
    calls: list[str] = []
    release = threading.Event()

    def run(name: str) -> str:
        calls.append(name)
        if name == "slow":
            release.wait(10)
        return "success"

    jobs = [command_job("fast", "@every 1s"), command_job("slow", "@every 1s")]
    board, registry = rig(jobs)
    scheduler = Scheduler(jobs, run, board)
    scheduler.start()
    try:
        assert scheduler.alive()
        time.sleep(3.3)
        skipped = registry.get_sample_value(
            "caretaker_job_runs_total", {"task": "slow", "kind": "command", "result": "skipped_overlap"}
        )
        next_run = registry.get_sample_value(
            "caretaker_job_next_run_timestamp_seconds", {"task": "fast", "kind": "command"}
        )
    finally:
        release.set()
        scheduler.stop()
    assert calls.count("fast") >= 2
    assert calls.count("slow") == 1
    assert skipped is not None
    assert skipped >= 1
    assert next_run is not None
    assert -1 < next_run - time.time() <= 1.5
    assert not scheduler.alive()


def test_run_on_start_runs_at_once_and_unscheduled_jobs_are_left_out():
    ran = threading.Event()
    jobs = [
        command_job("boot", "@daily", run_on_start=True),
        JobConfig(name="chained", kind="command", action=CommandSpec(argv=("true",)), schedule=None),
    ]
    board, registry = rig(jobs)
    scheduler = Scheduler(jobs, lambda name: ran.set(), board)
    started = datetime.now(UTC)
    scheduler.start()
    try:
        assert ran.wait(3)
        next_run = registry.get_sample_value(
            "caretaker_job_next_run_timestamp_seconds", {"task": "boot", "kind": "command"}
        )
    finally:
        scheduler.stop()
    # The next @daily (midnight UTC; the one after, if the test ran across it), not "now" again.
    midnight = (started + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert next_run in {midnight.timestamp(), (midnight + timedelta(days=1)).timestamp()}
    assert (
        registry.get_sample_value(
            "caretaker_job_next_run_timestamp_seconds", {"task": "chained", "kind": "command"}
        )
        == 0
    )


def test_jobs_get_overlap_coalesce_misfire_and_jitter_settings():
    jobs = [
        JobConfig(
            name="nightly",
            kind="command",
            action=CommandSpec(argv=("true",)),
            schedule=parse_schedule("0 3 * * *", timezone="Europe/Berlin", jitter=timedelta(seconds=45)),
            misfire_grace=timedelta(minutes=7),
        )
    ]
    board, _ = rig(jobs)
    scheduler = Scheduler(jobs, lambda name: None, board)
    scheduler.start()
    try:
        job = scheduler._scheduler.get_job("nightly")
        assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, 420)
        assert job.trigger.jitter == 45
        assert str(job.trigger.timezone) == "Europe/Berlin"
        local = job.next_run_time.astimezone(job.trigger.timezone)
        assert (local.hour, local.minute) == (3, 0)  # plus up to 45 s of jitter
    finally:
        scheduler.stop()
