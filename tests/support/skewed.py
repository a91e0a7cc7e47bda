"""Test-only: run `caretaker` with its wall clock shifted, like a node whose clock is off.

`python -m tests.support.skewed SECONDS ARGS...` runs the `caretaker` command with a clock
SECONDS ahead of the real one (negative: behind). Nothing in the product reads a setting
for this: the clock is a parameter of `caretaker.cli.main`, and only this launcher, which
lives among the tests, passes a different one.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from caretaker.cli import main
from restore.clock import utc_now


def run() -> None:
    offset = timedelta(seconds=float(sys.argv[1]))
    sys.exit(main(sys.argv[2:], clock=lambda: utc_now() + offset))


if __name__ == "__main__":
    run()
