"""Running the installed `caretaker` command in a clean environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from caretaker.cli import main

CARETAKER = str(Path(sys.executable).parent / "caretaker")


def run_caretaker(
    *args: str, environ: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `caretaker ARGS --log-format json` with only PATH, HOME and `environ` set."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **environ}
    return subprocess.run(
        [CARETAKER, *args, "--log-format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class FakeTime:
    """A monotonic clock that moves only when `sleep` is called (retry and backoff tests).

    What other processes do meanwhile (a claim's holder renewing it, or not) are
    `during_sleep` callbacks, run after each sleep.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.during_sleep: list[Callable[[], object]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for action in self.during_sleep:
            action()

    @property
    def slept(self) -> float:
        return sum(self.sleeps)


def run_main(
    args: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, list[dict[str, object]]]:
    """Run the CLI in this process; return exit code, stdout's non-log text, and the log events.

    With --json the log goes to stderr and stdout is one JSON document.
    """
    code = main([*args, "--log-format", "json"], env)
    captured = capsys.readouterr()
    as_json = "--json" in args or env.get("CARETAKER_JSON") == "true"
    log_text = captured.err if as_json else captured.out
    logs = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return code, captured.out if as_json else "", logs
