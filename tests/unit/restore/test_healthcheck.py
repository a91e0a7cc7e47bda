"""The user's health check: without caretaker's credentials in its environment, and within
the run's deadline and stop, killed with everything it started."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import structlog

from restore.deadline import Deadline, DeadlineExceededError, Stop
from restore.errors import CancelledError
from restore.initcontainer.healthcheck import run_check


def test_the_check_sees_no_aws_or_caretaker_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-key-value")
    monkeypatch.setenv("CARETAKER_REPOSITORY", "s3://bucket/app")
    monkeypatch.setenv("APP_SETTING", "kept")
    out = tmp_path / "env.txt"
    assert run_check(["sh", "-c", f"env > {out}"], tmp_path, structlog.get_logger(), Deadline())
    seen = out.read_text()
    assert "APP_SETTING=kept" in seen
    assert "secret-key-value" not in seen
    assert "CARETAKER_" not in seen


def _alive(pid: int) -> bool:
    """Running (a killed orphan may stay a zombie until its new parent reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _ends(pid: int) -> bool:
    """Whether `pid` is gone within a second (a SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + 1
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _hanging_check(tmp_path):
    """A check that starts a grandchild (its pid in a file) and then hangs."""
    pid_file = tmp_path / "grandchild.pid"
    return ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; sleep 300"], pid_file


def test_a_hanging_check_ends_at_the_deadline_with_what_it_started(tmp_path):
    argv, pid_file = _hanging_check(tmp_path)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"check-cmd sh -c .*no answer within the 1s deadline"):
        run_check(argv, tmp_path, structlog.get_logger(), Deadline(1))
    assert time.monotonic() - started < 2
    assert _ends(int(pid_file.read_text()))


def test_a_stopped_run_ends_the_check_at_once(tmp_path):
    argv, pid_file = _hanging_check(tmp_path)
    stop = Stop()
    threading.Timer(0.5, stop.trigger, [CancelledError(signal.SIGTERM)]).start()
    started = time.monotonic()
    with pytest.raises(CancelledError, match="signal 15"):
        run_check(argv, tmp_path, structlog.get_logger(), Deadline(stop=stop))
    assert time.monotonic() - started < 1.5
    assert _ends(int(pid_file.read_text()))
