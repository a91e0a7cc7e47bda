"""The `caretaker` executable starts with the garbage collector paused, and leaves it on."""

from __future__ import annotations

import subprocess
import sys

# After the run: is the collector on, and how many objects did starting freeze?
PROBE = """
import atexit, gc, sys
atexit.register(lambda: print(gc.isenabled(), gc.get_freeze_count()))
sys.argv = ["caretaker", "--help"]
from caretaker.launch import run
run()
"""


def test_the_collector_is_on_after_the_start_and_the_imported_objects_are_frozen() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    enabled, frozen = done.stdout.split()[-2:]
    assert enabled == "True"
    assert int(frozen) > 50_000  # the CLI's modules: nothing collects them later
