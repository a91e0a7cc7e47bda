"""The run's deadline and stop switch: bounded calls, waits that end at the deadline or at
a stop, whichever thread waits."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from restore.deadline import CLEANUP_SECONDS, Deadline, DeadlineExceededError, Stop, in_helper_thread
from restore.errors import CancelledError, PermanentBackendError
from restore.initcontainer.cancel import SignalGuard
from tests.support.cli import FakeTime


class TestDeadline:
    def test_remaining_and_bound_shrink_with_time(self):
        clock = FakeTime()
        deadline = Deadline(10, monotonic=clock.monotonic)
        clock.now += 4
        assert deadline.remaining() == 6
        assert deadline.bound(60) == 6
        assert deadline.bound(2) == 2
        clock.now += 7
        assert deadline.remaining() == 0
        assert deadline.expired

    def test_without_a_limit_nothing_expires(self):
        deadline = Deadline()
        assert deadline.remaining() == float("inf")
        assert deadline.bound(5) == 5
        assert deadline.describe() == "no deadline"

    def test_restart_counts_again_from_now(self):
        clock = FakeTime()
        deadline = Deadline(5, monotonic=clock.monotonic)
        clock.now += 9
        deadline.restart()
        assert deadline.remaining() == 5

    def test_check_names_the_operation(self):
        clock = FakeTime()
        deadline = Deadline(5, monotonic=clock.monotonic)
        clock.now += 5
        with pytest.raises(DeadlineExceededError, match="list snapshots: the 5s deadline passed"):
            deadline.check("list snapshots")


class TestRun:
    def test_returns_the_result_and_raises_the_operations_error(self):
        deadline = Deadline(5)
        assert deadline.run(lambda: 42, what="x") == 42

        def fails() -> None:
            raise PermanentBackendError("denied")

        with pytest.raises(PermanentBackendError, match="denied"):
            deadline.run(fails, what="x")

    def test_a_hung_operation_is_given_up_at_the_deadline(self):
        release = threading.Event()
        deadline = Deadline(0.5)
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match=r"GET k: no answer within the 0\.5s deadline"):
            deadline.run(lambda: release.wait(30), what="GET k")
        assert time.monotonic() - started < 1.5
        release.set()

    def test_a_stop_ends_the_wait_in_another_thread(self):
        release = threading.Event()
        stop = Stop()
        deadline = Deadline(None, stop=stop)
        errors: list[BaseException] = []

        def wait() -> None:
            try:
                deadline.run(lambda: release.wait(30), what="GET k")
            except BaseException as error:
                errors.append(error)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)
        stop.trigger(CancelledError(signal.SIGTERM))
        waiter.join(2)
        assert not waiter.is_alive()
        assert isinstance(errors[0], CancelledError)
        release.set()

    def test_a_call_begun_after_the_stop_gets_a_short_while_to_clean_up(self):
        stop = Stop()
        stop.trigger(CancelledError(signal.SIGTERM))
        deadline = Deadline(None, stop=stop)
        assert deadline.run(lambda: "lease released", what="DELETE lease") == "lease released"
        release = threading.Event()
        started = time.monotonic()
        with pytest.raises(CancelledError):
            deadline.run(lambda: release.wait(30), what="DELETE lease")
        assert CLEANUP_SECONDS <= time.monotonic() - started < CLEANUP_SECONDS + 1
        release.set()

    def test_sleep_ends_early_on_a_stop(self):
        stop = Stop()
        deadline = Deadline(None, stop=stop)
        threading.Timer(0.2, stop.trigger, args=(CancelledError(signal.SIGINT),)).start()
        started = time.monotonic()
        with pytest.raises(CancelledError):
            deadline.sleep(30)
        assert time.monotonic() - started < 2

    def test_sleep_ends_at_the_deadline(self):
        deadline = Deadline(0.3)
        started = time.monotonic()
        deadline.sleep(30)
        assert time.monotonic() - started < 1.5


def test_a_signal_triggers_the_guards_stop():
    stop = Stop()

    def interrupted() -> None:
        with SignalGuard(stop):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)

    with pytest.raises(CancelledError):
        interrupted()
    assert stop.triggered
    with pytest.raises(CancelledError) as caught:
        stop.check()
    assert caught.value.signum == signal.SIGTERM


def test_a_signal_the_kernel_hands_to_a_helper_thread_still_ends_the_wait_for_it():
    """SIGTERM lands on any thread of the process (on the helper deriving a key, often): the
    main thread waiting for that helper must still handle it at once, not when it ends."""
    release, entered = threading.Event(), threading.Event()
    helper: list[int] = []

    def derivation() -> None:
        helper.append(threading.get_ident())
        entered.set()
        release.wait(10)

    call = in_helper_thread(derivation, name="open-repository")
    assert entered.wait(5)
    started = time.monotonic()
    try:
        with SignalGuard():
            signal.pthread_kill(helper[0], signal.SIGTERM)
            with pytest.raises(CancelledError):
                call.result()
        assert time.monotonic() - started < 2
    finally:
        release.set()
