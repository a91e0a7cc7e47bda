from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from restore.backends.registry import OpenOptions, open_repository
from restore.model import BackupOptions
from sidecar import jobs
from sidecar.settings.model import CommandSpec, HttpSpec
from tests.support.keys import UNENCRYPTED
from tests.support.sidecar import process_gone


def run_command(
    tmp_path: Path, argv: list[str], *, timeout: float = 10, cancel=None, groups=None, env=None, workdir=None
) -> None:
    spec = CommandSpec(argv=tuple(argv), env=env or {}, workdir=workdir, timeout=timedelta(seconds=timeout))
    jobs.command(
        spec=spec,
        cwd=tmp_path,
        environ={"PATH": os.environ["PATH"]},
        cancel=cancel or jobs.Cancel(),
        groups=groups or jobs.ProcessGroups(),
        kill_grace=1.0,
    )


def wait_for_file(path: Path, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_command_output_is_logged_line_by_line_with_the_job_bound(tmp_path, json_logs):
    (tmp_path / "sub").mkdir()
    with structlog.contextvars.bound_contextvars(job="vacuum"):
        run_command(
            tmp_path, ["sh", "-c", 'echo "one $K"; echo two >&2; pwd'], env={"K": "V"}, workdir=Path("sub")
        )
    lines = [e for e in json_logs() if e["event"] == "command.output"]
    assert {(e["stream"], e["line"]) for e in lines} == {
        ("stdout", "one V"),
        ("stderr", "two"),
        ("stdout", str(tmp_path / "sub")),
    }
    assert all(e["job"] == "vacuum" for e in lines)


def test_failing_and_missing_commands(tmp_path):
    with pytest.raises(jobs.CommandFailedError, match="exited with status 3"):
        run_command(tmp_path, ["sh", "-c", "exit 3"])
    with pytest.raises(jobs.CommandFailedError, match="cannot start 'no-such-tool'"):
        run_command(tmp_path, ["no-such-tool"])


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    started = time.monotonic()
    with pytest.raises(jobs.CommandFailedError, match="timed out"):
        run_command(tmp_path, ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=0.5)
    assert time.monotonic() - started < 3
    assert process_gone(int(pidfile.read_text()))


def test_a_group_ignoring_sigterm_is_killed(tmp_path):
    pidfile = tmp_path / "stubborn.pid"
    script = f"trap '' TERM; sh -c 'trap \"\" TERM; echo $$ > {pidfile}; sleep 60' & wait"
    started = time.monotonic()
    with pytest.raises(jobs.CommandFailedError, match="timed out"):
        run_command(tmp_path, ["sh", "-c", script], timeout=0.5)
    assert time.monotonic() - started < 4
    assert process_gone(int(pidfile.read_text()))


def test_leftover_background_processes_are_stopped_when_the_command_exits(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    run_command(tmp_path, ["sh", "-c", f"sleep 60 > /dev/null 2>&1 & echo $! > {pidfile}"])
    assert process_gone(int(pidfile.read_text()))


def test_cancel_stops_a_running_command(tmp_path):
    cancel = jobs.Cancel()
    groups = jobs.ProcessGroups()
    pidfile = tmp_path / "pid"
    threading.Timer(0.3, cancel.cancel, args=("shutdown",)).start()
    with pytest.raises(jobs.JobAbortedError, match="shutdown"):
        run_command(tmp_path, ["sh", "-c", f"echo $$ > {pidfile}; sleep 60"], cancel=cancel, groups=groups)
    assert process_gone(int(pidfile.read_text()))


def test_process_groups_kill_all(tmp_path):
    groups = jobs.ProcessGroups()
    pidfile = tmp_path / "pid"
    errors: list[Exception] = []

    def target() -> None:
        try:
            run_command(tmp_path, ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], groups=groups)
        except jobs.CommandFailedError as error:
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    pid = int(wait_for_file(pidfile))
    groups.kill_all()
    thread.join(5)
    assert process_gone(pid)
    assert "status -9" in str(errors[0])


def test_http_calls_check_the_status(app):
    assert jobs.http(spec=HttpSpec(url=app.url("/flush"), method="POST")) == 200
    assert app.requests == [("POST", "/flush")]
    app.status = 503
    with pytest.raises(jobs.HttpCallError, match="answered 503, expected 200"):
        jobs.http(spec=HttpSpec(url=app.url("/flush")))
    assert jobs.http(spec=HttpSpec(url=app.url("/"), expect_status=503)) == 503


def test_http_timeouts_and_refused_connections(app, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # must be ignored: no proxy
    app.delay = 1.0
    with pytest.raises(jobs.HttpCallError, match="failed"):
        jobs.http(spec=HttpSpec(url=app.url("/slow"), timeout=timedelta(seconds=0.2)))
    app.server.server_close()
    with pytest.raises(jobs.HttpCallError, match="failed"):
        jobs.http(spec=HttpSpec(url="http://127.0.0.1:9/"))


class CancelAfter(jobs.Cancel):
    """Cancels itself at the n-th check: deterministically in the middle of a backup."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.left = checks

    def check(self) -> None:
        self.left -= 1
        if self.left < 0:
            self.cancel("sidecar shutting down")
        super().check()


def test_backup_aborts_cleanly_when_cancelled(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for index in range(20):
        (data / f"f{index}").write_bytes(os.urandom(300_000))
    repo = open_repository(f"file://{tmp_path / 'repo'}", OpenOptions(environ={}, encryption=UNENCRYPTED))
    try:
        first = jobs.backup(repo=repo, path=data, options=BackupOptions(), cancel=jobs.Cancel())
        for index in range(20):
            (data / f"g{index}").write_bytes(os.urandom(300_000))
        cancel = CancelAfter(10)
        with pytest.raises(jobs.JobAbortedError, match="shutting down"):
            jobs.backup(repo=repo, path=data, options=BackupOptions(), cancel=cancel)
        assert cancel.left < 0
        assert [s.id for s in repo.snapshots()] == [first.snapshot.id]
        # The lease was released on the way out: the next backup runs at once.
        second = jobs.backup(repo=repo, path=data, options=BackupOptions(), cancel=jobs.Cancel())
        assert second.snapshot.files == 40
    finally:
        repo.close()
