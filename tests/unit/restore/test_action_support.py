"""The restore action's helpers: retry until a deadline, progress lines, the health check,
signal handling and the termination log summary."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
from datetime import UTC, datetime

import pytest
import structlog
from structlog.testing import capture_logs

from restore.deadline import Deadline, DeadlineExceededError
from restore.errors import CancelledError, ConfigError, PermanentBackendError, TransientBackendError
from restore.initcontainer.cancel import SignalGuard
from restore.initcontainer.healthcheck import run_check
from restore.initcontainer.outcome import Outcome, termination_message, write_termination_log
from restore.initcontainer.progress import LogProgress
from restore.initcontainer.retry import Retrier
from restore.values import command_line
from tests.support.cli import FakeTime


def flaky(failures: int, error: Exception):
    calls = {"n": 0}

    def operation() -> str:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise error
        return "ok"

    return operation, calls


class TestRetrier:
    def retrier(self, time: FakeTime, timeout: float) -> Retrier:
        deadline = Deadline(timeout, monotonic=time.monotonic)
        return Retrier(deadline=deadline, log=structlog.get_logger(), sleep=time.sleep)

    def test_backs_off_exponentially_until_it_works(self):
        time = FakeTime()
        operation, calls = flaky(4, TransientBackendError("connection refused"))
        with capture_logs() as logs:
            assert self.retrier(time, 300).call(operation, what="list snapshots") == "ok"
        assert time.sleeps == [1, 2, 4, 8]
        assert calls["n"] == 5
        assert [e["attempt"] for e in logs if e["event"] == "restore.retrying"] == [1, 2, 3, 4]

    def test_delay_is_capped(self):
        time = FakeTime()
        operation, _ = flaky(8, TransientBackendError("down"))
        self.retrier(time, 3600).call(operation, what="x")
        assert time.sleeps == [1, 2, 4, 8, 16, 30, 30, 30]

    def test_gives_up_at_the_deadline_saying_how_long_it_tried(self):
        time = FakeTime()
        operation, calls = flaky(100, TransientBackendError("connection refused"))
        with pytest.raises(
            TransientBackendError, match=r"after 5 attempts in 10.0s \(the 10s deadline\): connection refused"
        ):
            self.retrier(time, 10).call(operation, what="open repository")
        assert time.sleeps == [1, 2, 4, 3]  # the last wait is cut to the deadline
        assert calls["n"] == 5

    def test_a_deadline_that_passes_before_an_attempt_reports_the_failure_before_it(self):
        time = FakeTime()
        errors = [TransientBackendError("InternalError"), DeadlineExceededError("x: passed", sent=False)]

        def operation() -> str:
            raise errors.pop(0)

        with pytest.raises(TransientBackendError, match=r"after 2 attempts .*: InternalError$"):
            self.retrier(time, 10).call(operation, what="list snapshots")

    def test_a_hang_cut_by_the_deadline_is_reported_as_the_backend_words_it(self):
        time = FakeTime()
        hung = DeadlineExceededError("S3 unreachable: ListObjectsV2 ...: no answer (3 attempts in 9.9s)")

        def operation() -> str:
            raise hung

        with pytest.raises(DeadlineExceededError) as caught:
            self.retrier(time, 10).call(operation, what="list snapshots")
        assert caught.value is hung

    def test_permanent_errors_are_not_retried(self):
        time = FakeTime()
        operation, calls = flaky(1, PermanentBackendError("access denied"))
        with pytest.raises(PermanentBackendError):
            self.retrier(time, 300).call(operation, what="x")
        assert calls["n"] == 1
        assert time.sleeps == []

    def test_deadline_is_shared_by_all_calls(self):
        time = FakeTime()
        retrier = self.retrier(time, 5)
        time.now += 6
        operation, calls = flaky(1, TransientBackendError("down"))
        with pytest.raises(TransientBackendError):
            retrier.call(operation, what="x")
        assert calls["n"] == 1


class TestProgress:
    def test_logs_at_most_once_per_interval_with_rate_and_eta(self):
        time = FakeTime()
        progress = LogProgress(structlog.get_logger(), interval_seconds=10, monotonic=time.monotonic)
        with capture_logs() as logs:
            progress.start(files=4, bytes=1000)
            for _ in range(4):
                time.now += 4
                progress.advance(files=1, bytes=100)
        lines = [e for e in logs if e["event"] == "restore.progress"]
        assert len(lines) == 1  # at 12 s; 4 s and 8 s are inside the interval, 16 s is 4 s after
        assert lines[0] | {"log_level": "info"} == {
            "event": "restore.progress",
            "log_level": "info",
            "files": 3,
            "files_total": 4,
            "bytes": 300,
            "bytes_total": 1000,
            "percent": 30.0,
            "rate_bytes_per_second": 25,
            "elapsed_seconds": 12.0,
            "eta_seconds": 28.0,
        }

    def test_unknown_eta_before_any_byte(self):
        progress = LogProgress(structlog.get_logger(), interval_seconds=1, monotonic=lambda: 5.0)
        progress.start(files=1, bytes=10)
        assert progress.figures(5.0)["eta_seconds"] is None


class TestHealthCheck:
    def test_parse_splits_like_a_shell_without_one(self):
        assert command_line("sqlite3 /data/app.db 'PRAGMA quick_check'") == (
            "sqlite3",
            "/data/app.db",
            "PRAGMA quick_check",
        )

    @pytest.mark.parametrize("text", ["", "   ", "unterminated 'quote"])
    def test_parse_refuses_nonsense(self, text):
        with pytest.raises(ValueError, match=r"empty command|cannot split"):
            command_line(text)

    def test_runs_in_the_data_folder(self, tmp_path):
        (tmp_path / "app.db").write_text("ok")
        with capture_logs() as logs:
            assert run_check(("test", "-f", "app.db"), tmp_path, structlog.get_logger(), Deadline())
        assert logs[0]["healthy"] is True

    def test_failure_logs_exit_code_and_output_tail(self, tmp_path):
        with capture_logs() as logs:
            assert not run_check(
                ("sh", "-c", "echo database disk image is malformed; exit 3"),
                tmp_path,
                structlog.get_logger(),
                Deadline(),
            )
        assert logs[0]["exit_code"] == 3
        assert logs[0]["output"] == "database disk image is malformed"

    def test_a_check_that_cannot_start_is_a_config_error_not_bad_data(self, tmp_path):
        with pytest.raises(ConfigError, match="cannot run"):
            run_check(("no-such-program-here",), tmp_path, structlog.get_logger(), Deadline())


class TestSignalGuard:
    def test_sigterm_becomes_cancelled_error(self):
        with pytest.raises(CancelledError) as caught, SignalGuard():
            os.kill(os.getpid(), signal.SIGTERM)
        assert caught.value.code == 143

    def test_shielded_block_finishes_first(self):
        done = []

        def work(guard: SignalGuard) -> None:
            with guard.shielded():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("after the signal")
            done.append("never")

        with SignalGuard() as guard, pytest.raises(CancelledError) as caught:
            work(guard)
        assert done == ["after the signal"]
        assert caught.value.code == 130

    def test_a_swallowed_signal_still_stops_the_move_in(self):
        # The handler's exception is lost when the signal lands in code that ignores
        # exceptions; the next shielded step (the move into place) must not start.
        with SignalGuard() as guard:
            with contextlib.suppress(CancelledError):
                os.kill(os.getpid(), signal.SIGTERM)
            with pytest.raises(CancelledError) as caught, guard.shielded():
                pytest.fail("the shielded block must not run")
        assert caught.value.code == 143

    def test_previous_handlers_come_back(self):
        before = signal.getsignal(signal.SIGTERM)
        with SignalGuard():
            pass
        assert signal.getsignal(signal.SIGTERM) is before


OUTCOME = Outcome(
    outcome="failed",
    exit_code=7,
    finished_at=datetime(2026, 1, 15, tzinfo=UTC),
    reason="corrupt",
    skipped_snapshots=("a", "b"),
    error="snapshot a: blob 12ab in data/12/34: checksum mismatch (files: x, y)",
)


class TestTerminationLog:
    def test_summary_leaves_out_empty_fields(self):
        assert json.loads(termination_message(OUTCOME)) == {
            "outcome": "failed",
            "exit_code": 7,
            "reason": "corrupt",
            "skipped_snapshots": ["a", "b"],
            "error": OUTCOME.error,
        }

    def test_long_errors_are_cut_to_the_kubernetes_limit(self):
        huge = dataclasses.replace(OUTCOME, error='files: "' + "é" * 10000)
        text = termination_message(huge)
        assert len(text.encode()) <= 4096
        assert json.loads(text)["error"].endswith("...")

    def test_skipped_when_not_in_a_pod(self, tmp_path):
        assert not write_termination_log(tmp_path / "missing" / "termination-log", OUTCOME)

    def test_written_in_a_pod(self, tmp_path):
        assert write_termination_log(tmp_path / "termination-log", OUTCOME)
        assert json.loads((tmp_path / "termination-log").read_text())["exit_code"] == 7

    def test_default_path_is_only_written_where_the_kubelet_made_it(self, tmp_path):
        # Like /dev/termination-log on a workstation: the folder exists, the file does not.
        path = tmp_path / "termination-log"
        assert not write_termination_log(path, OUTCOME, create=False)
        assert not path.exists()
        path.touch()
        assert write_termination_log(path, OUTCOME, create=False)
        assert json.loads(path.read_text())["outcome"] == "failed"
