"""The `caretaker` executable: the CLI imported with the garbage collector paused.

Starting makes objects that live as long as the process: some 400 modules' worth while
importing, then botocore's S3 client with its models. Collecting while the modules are
imported frees nothing; frozen once imported, they are left out of the collections while the
client is built, and of every later one. Measured: 0.02-0.05 s of each process's start,
every init container's included.
"""

from __future__ import annotations

import gc
import sys


def run() -> None:
    gc.disable()
    try:
        from caretaker.cli import main  # noqa: PLC0415 - the point: imported with the collector paused
    finally:
        gc.freeze()
        gc.enable()
    sys.exit(main())
