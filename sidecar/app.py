"""Composition root: build metrics, status, runner, scheduler and HTTP server from a
`SidecarConfig`, run until SIGTERM/SIGINT, then shut down within the grace period.

Shutdown: stop scheduling, let running jobs finish, take a final backup if configured, all
before the grace runs out; what is still running then is aborted cleanly (a backup stops
at its next progress report without writing a snapshot, a command's process group is
killed). A second signal exits at once: the engine writes a snapshot record only after all
its data, so even that leaves the repository consistent (the writer lease expires by itself).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType

import structlog
from prometheus_client import CollectorRegistry, disable_created_metrics

from restore import __version__
from restore.backends.registry import OpenOptions, open_repository
from restore.claims.holder import Claimant
from restore.clock import Clock, format_time
from restore.deadline import Deadline
from restore.errors import EXIT_OK, EXIT_SIGNAL_BASE, ConfigError
from restore.identity import host_name
from restore.redaction import redact_url
from restore.repository import Repository
from sidecar.backup_now import BackupNow
from sidecar.claim import ClaimKeeper
from sidecar.metrics import JobLabels, Metrics
from sidecar.notifier import Notifier
from sidecar.readiness import CHECK_TIMEOUT_SECONDS, Readiness
from sidecar.restoremetrics import RestoreResultExport
from sidecar.runner import RepositoryOpener, Runner
from sidecar.scheduler import Scheduler
from sidecar.server import JSON, TEXT, HttpServer, Request, Response
from sidecar.settings.model import SidecarConfig
from sidecar.standing import StandingRepository
from sidecar.status import StatusBoard

# Part of the grace kept for aborting what still runs (an aborted backup still waits for
# its in-flight uploads), so the process exits within the grace and before the kubelet's
# SIGKILL (terminationGracePeriodSeconds should exceed --shutdown-grace).
MAX_ABORT_SECONDS = 5.0
ABORT_SHARE = 0.4
# How often the main thread wakes to run signal handlers (see `run`).
SIGNAL_POLL_SECONDS = 0.2
# `timeout`, shells and some init systems deliver one signal both to the process and to its
# group; only a repeat after this long (or another signal) means "stop now".
DUPLICATE_SIGNAL_SECONDS = 1.0


class Sidecar:
    def __init__(
        self,
        config: SidecarConfig,
        *,
        environ: Mapping[str, str],
        clock: Clock,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        # `_created` series only add noise to every scrape; this is process-wide, which is
        # fine in the one process the sidecar is.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        labels = [JobLabels(job.name, job.kind) for job in config.jobs]
        self.metrics = Metrics.create(registry or CollectorRegistry(), labels, version=__version__)
        self.restore_result = RestoreResultExport(self.metrics.restore, config.path)
        self.metrics.rpo.set(config.rpo.total_seconds() if config.rpo else 0)
        self.board = StatusBoard(config, self.metrics, clock)

        opener = self._writer(environ, clock)
        self.notifier = Notifier(config, host=host_name(environ))
        self.runner = Runner(
            config=config,
            board=self.board,
            environ=environ,
            clock=clock,
            open_repository=opener,
            notifier=self.notifier,
        )
        self.backup_now = BackupNow(config, self.runner)
        self.scheduler = Scheduler(config.jobs, self.runner.run, self.board)
        self.readiness = Readiness(
            board=self.board,
            repository=self.standing,
            clock=clock,
            rpo=config.rpo,
            unready_on_standby=config.unready_on_standby,
        )
        self._stop = threading.Event()
        self._signal: int | None = None
        self._signal_at = 0.0
        self.server = self._bind()

    def _writer(self, environ: Mapping[str, str], clock: Clock) -> RepositoryOpener:
        """Set up the writer claim (when a job writes) and the standing repository; return
        how jobs open the repository: under the sidecar's claim, never taking their own."""
        config = self.config
        claimant = Claimant.of_process(environ, clock=clock, timing=config.claim)

        def opener(deadline: Deadline) -> Repository:
            writer = dataclasses.replace(claimant, held=self.claim)
            # One Encryption for every opening: it remembers the unlocked repository key.
            options = OpenOptions(
                environ=environ, clock=clock, claimant=writer, deadline=deadline, encryption=config.encryption
            )
            return open_repository(config.repository, options)

        self.standing = StandingRepository(opener, seconds=CHECK_TIMEOUT_SECONDS)
        self.claim: ClaimKeeper | None = None
        if config.writes:
            self.claim = ClaimKeeper(repository=self.standing, claimant=claimant, board=self.board)
        return opener

    def _bind(self) -> HttpServer:
        routes = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/status": self._status,
        }
        try:
            return HttpServer(self.config.listen, routes)
        except OSError as error:
            raise ConfigError.single(
                "listen", str(self.config.listen), f"cannot listen: {error.strerror or error}"
            ) from error

    def run(self) -> int:
        """Serve and schedule until a signal arrives; return the exit code."""
        if not self.config.path.is_dir():
            raise ConfigError.single("path", str(self.config.path), "is not a directory")
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.backup_now.install()
        structlog.get_logger().info(
            "sidecar.started",
            version=__version__,
            repository=redact_url(self.config.repository),
            path=str(self.config.path),
            listen=f"{self.config.listen.host}:{self.server.port}",
            config=self.config.source,
            jobs=[job.name for job in self.config.jobs],
        )
        self.server.start()
        if self.claim is not None:
            self.claim.start()
        threading.Thread(target=self.runner.refresh_repository, name="repository", daemon=True).start()
        self.scheduler.start()
        # In short waits: the kernel may deliver SIGTERM to any of our threads, and then only
        # a main thread that wakes up by itself runs the Python handler (an endless wait on
        # the Event would never see the signal: no shutdown, killed after the grace).
        while not self._stop.wait(SIGNAL_POLL_SECONDS):
            pass
        return self.shutdown()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread: no logging here (the logger's
        # lock may be held by the interrupted code), only flags, or the emergency exit.
        now = time.monotonic()
        if self._signal is None:
            self._signal, self._signal_at = signum, now
            self._stop.set()
            return
        if signum == self._signal and now - self._signal_at < DUPLICATE_SIGNAL_SECONDS:
            return  # one signal delivered twice (to us and to our process group), not a request
        self.runner.groups.kill_all()
        line = {
            "event": "sidecar.killed",
            "level": "error",
            "signal": signal.Signals(signum).name,
            "timestamp": format_time(self.board.clock()),
            "running": self.board.busy(),
        }
        os.write(sys.stdout.fileno(), (json.dumps(line) + "\n").encode())
        os._exit(EXIT_SIGNAL_BASE + signum)

    def shutdown(self) -> int:
        """Stop within the grace period (see the module docstring). Return 0."""
        grace = self.config.shutdown_grace.total_seconds()
        deadline = time.monotonic() + grace
        abort_at = deadline - min(MAX_ABORT_SECONDS, grace * ABORT_SHARE)
        log = structlog.get_logger()
        name = signal.Signals(self._signal).name if self._signal else "request"
        log.info("shutdown.start", signal=name, grace_seconds=grace, running=self.board.busy())
        self.board.stopping = True
        self.runner.stop_accepting()
        self.scheduler.stop()
        if self.runner.wait_idle(abort_at - time.monotonic()) and self.config.backup_on_shutdown:
            self._final_backup(abort_at)
        if not self.runner.wait_idle(0):
            log.warning("shutdown.aborting", running=self.board.busy())
            self.runner.cancel_all("sidecar shutting down")
        # The HTTP server keeps answering (/readyz: "shutting down") until the process ends.
        stopped = self.runner.wait_idle(deadline - time.monotonic())
        if stopped:
            self._release_claim(deadline)
        self.standing.close()
        if not self.notifier.close(deadline - time.monotonic()):
            log.warning("shutdown.notifications_left")
        if not stopped:
            # A prune or verify cannot be interrupted; leaving it is safe (it writes nothing
            # a restore depends on), but its thread would keep the process alive.
            log.error("shutdown.abandoned", running=self.board.busy())
            sys.stdout.flush()
            os._exit(EXIT_OK)
        log.info("shutdown.done")
        return EXIT_OK

    def _release_claim(self, until: float) -> None:
        """Give the writer claim back after the final backup, within the grace: a restore
        waiting for us then finds that backup. A store that does not answer in time leaves
        the claim to expire by itself."""
        if self.claim is None:
            return
        self.standing.stop()  # a renewal hung on storage ends now; the release gets a moment
        worker = threading.Thread(target=self.claim.release, name="claim-release", daemon=True)
        worker.start()
        worker.join(max(until - time.monotonic(), 0))

    def _final_backup(self, until: float) -> None:
        backups = [job.name for job in self.config.jobs if job.kind == "backup"]

        def run() -> None:
            for name in backups:
                self.runner.run(name, reason="shutdown")

        worker = threading.Thread(target=run, name="final-backup", daemon=True)
        worker.start()
        worker.join(max(until - time.monotonic(), 0))

    def _metrics(self, request: Request) -> Response:
        self.restore_result.refresh()
        body, content_type = self.metrics.render(request.accept)
        return 200, content_type, body

    def _healthz(self, _: Request) -> Response:
        alive = self.scheduler.alive() or self.board.stopping
        return (200, TEXT, b"ok\n") if alive else (503, TEXT, b"scheduler not running\n")

    def _readyz(self, _: Request) -> Response:
        reasons = self.readiness.check()
        if reasons:
            return 503, TEXT, ("not ready: " + "; ".join(reasons) + "\n").encode()
        return 200, TEXT, b"ready\n"

    def _status(self, _: Request) -> Response:
        self.restore_result.refresh()
        document = self.board.to_json()
        outcome = self.restore_result.outcome
        document["restore"] = outcome.to_json() if outcome else None
        document["ready_problems"] = self.readiness.check()
        return 200, JSON, (json.dumps(document, indent=2) + "\n").encode()
