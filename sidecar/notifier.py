"""A job's notifications and heartbeat pings, sent on a thread of their own.

A run never waits for a notification service: the runner hands over what happened and goes
on; one worker delivers in order, each delivery bounded by a timeout per URL. A full queue
(a service so slow that messages pile up) drops the newest message and says so; a failed
delivery is logged and never changes a run's result.

Which message a finished run gets, per target (the global one, the job's own): `failure`
for a failed or refused run; after a failure, the first success is a `recovery`; any other
success is a `success`. A target receives only the events it asked for. The heartbeat (the
job's own, else the global one for backup jobs) is pinged at the start and the end of
every run: a dead-man's switch also notices a sidecar that stopped running at all.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable

import structlog

from restore import notify
from restore.notify import Event, Message, Notify, Phase
from restore.redaction import redact_text
from sidecar.settings.model import JobConfig, SidecarConfig

QUEUE_SIZE = 100
FAILED = frozenset({"failure", "refused"})

Send = Callable[[tuple[str, ...], Message], list[str]]
Ping = Callable[[str, Phase, str], "str | None"]


class Notifier:
    def __init__(
        self,
        config: SidecarConfig,
        *,
        host: str,
        send: Send = notify.send,
        ping: Ping = notify.ping,
    ) -> None:
        self._config = config
        self._host = host
        self._send = send
        self._ping = ping
        self._last: dict[str, str] = {}
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
        self._thread.start()

    def started(self, job: JobConfig) -> None:
        """A run of `job` starts: ping its heartbeat's `/start`."""
        url = self._heartbeat(job)
        if url:
            self._put(job.name, lambda: self._beat(job.name, url, "start", ""))

    def finished(
        self, job: JobConfig, result: str, *, error: str | None, attempts: int, seconds: float
    ) -> None:
        """A run of `job` ended with `result`: notify whoever wants it, ping the heartbeat."""
        recovered = result == "success" and self._last.get(job.name) in FAILED
        self._last[job.name] = result
        body = self._body(job, result, error=error, attempts=attempts, seconds=seconds)
        for target in (self._config.notify, job.notify):
            event = _event(target, result, recovered=recovered) if target else None
            if target and event:
                message = Message(event=event, title=self._title(job, event), body=body)
                self._put(job.name, functools.partial(self._deliver, job.name, target.urls, message))
        url = self._heartbeat(job)
        if url:
            phase: Phase = "success" if result == "success" else "fail"
            self._put(job.name, lambda: self._beat(job.name, url, phase, body))

    def close(self, timeout: float) -> bool:
        """Deliver what is queued within `timeout` seconds; return False if some is left."""
        try:
            self._queue.put(None, timeout=max(timeout, 0))
        except queue.Full:
            return False
        self._thread.join(max(timeout, 0))
        return not self._thread.is_alive()

    def _heartbeat(self, job: JobConfig) -> str | None:
        own = job.notify.heartbeat if job.notify else None
        return own or (self._config.notify.heartbeat if job.kind == "backup" else None)

    def _title(self, job: JobConfig, event: Event) -> str:
        verb = {"failure": "failed", "recovery": "recovered", "success": "succeeded"}[event]
        return f"caretaker {job.kind} job {job.name} {verb} on {self._host}"

    def _body(self, job: JobConfig, result: str, *, error: str | None, attempts: int, seconds: float) -> str:
        lines = [
            f"host: {self._host}",
            f"task: {job.name} ({job.kind})",
            f"result: {result}",
            f"attempts: {attempts}",
            f"duration: {seconds:.1f}s",
        ]
        if error:
            lines.append(f"error: {redact_text(error)}")
        return "\n".join(lines)

    def _put(self, task: str, item: Callable[[], None]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            structlog.get_logger().warning("notify.dropped", task=task, reason="queue full")

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                item()
            except Exception:  # a bug here must not end the worker
                structlog.get_logger().exception("notify.crashed")

    def _deliver(self, task: str, urls: tuple[str, ...], message: Message) -> None:
        log = structlog.get_logger().bind(task=task, notify_event=message.event)
        problems = self._send(urls, message)
        for problem in problems:
            log.warning("notify.failed", problem=problem)
        log.info("notify.sent", delivered=len(urls) - len(problems), of=len(urls))

    def _beat(self, task: str, url: str, phase: Phase, body: str) -> None:
        problem = self._ping(url, phase, body)
        if problem:
            structlog.get_logger().warning("heartbeat.failed", task=task, phase=phase, problem=problem)


def _event(target: Notify, result: str, *, recovered: bool) -> Event | None:
    if result in FAILED:
        return "failure" if target.wants("failure") else None
    if result != "success":
        return None
    if recovered and target.wants("recovery"):
        return "recovery"
    return "success" if target.wants("success") else None
