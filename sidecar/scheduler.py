"""The one module that knows APScheduler: it decides *when* jobs run, nothing else.

Each scheduled job becomes an APScheduler job with `max_instances=1` (a run that would
overlap the previous one is skipped; the listener counts it), `coalesce=True` (runs missed
while the process was starved collapse into one) and an explicit `misfire_grace_time`
(a run later than that is dropped and logged, not run at a surprising hour). What a run
does is `Runner.run`'s business.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from sidecar.settings.model import JobConfig
from sidecar.status import StatusBoard

RunJob = Callable[[str], object]
_EVENTS = (
    EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
)


class Scheduler:
    def __init__(self, jobs: Sequence[JobConfig], run: RunJob, board: StatusBoard) -> None:
        self._jobs = [job for job in jobs if job.schedule is not None]
        self._run = run
        self._board = board
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=max(len(self._jobs), 1))},
        )
        self._scheduler.add_listener(self._on_event, _EVENTS)

    def start(self) -> None:
        """Add every scheduled job and start the scheduler thread."""
        # APScheduler's own INFO lines ("Running job ...") duplicate ours; keep its warnings
        # only when debugging, since we log skips and misses ourselves.
        if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            logging.getLogger("apscheduler").setLevel(logging.ERROR)
        now = datetime.now(UTC)
        for job in self._jobs:
            assert job.schedule is not None  # noqa: S101 - filtered in __init__
            self._scheduler.add_job(
                self._run,
                trigger=job.schedule.trigger(),
                args=(job.name,),
                id=job.name,
                name=job.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(int(job.misfire_grace.total_seconds()), 1),
                **({"next_run_time": now} if job.run_on_start else {}),
            )
        self._scheduler.start()
        for job in self._jobs:
            self._publish_next_run(job.name)

    def alive(self) -> bool:
        """True while the scheduler thread runs (the liveness check)."""
        thread = getattr(self._scheduler, "_thread", None)
        return bool(self._scheduler.running and thread is not None and thread.is_alive())

    def stop(self) -> None:
        """Stop starting runs; running ones continue (the caller waits for them)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def _on_event(self, event: JobEvent) -> None:
        name = event.job_id
        if event.code == EVENT_JOB_MAX_INSTANCES:
            structlog.get_logger().warning("job.skipped", job=name, reason="previous run still going")
            self._board.skipped(name)
        elif event.code == EVENT_JOB_MISSED:
            structlog.get_logger().warning("job.missed", job=name, reason="later than misfire_grace; skipped")
        elif event.code == EVENT_JOB_ERROR:
            # Runner.run never raises; if it did, the bug must be visible.
            structlog.get_logger().error(
                "job.crashed", job=name, error=repr(getattr(event, "exception", None))
            )
        self._publish_next_run(name)

    def _publish_next_run(self, name: str) -> None:
        job = self._scheduler.get_job(name)
        next_run = getattr(job, "next_run_time", None) if job is not None else None
        self._board.next_run(name, next_run)
