"""The `caretaker` executable: the CLI, imported with the garbage collector paused.

Starting builds a few hundred thousand objects that live as long as the process: some 400
modules and botocore's S3 client with its models. Collections while they are made free
nothing, and cost each process 0.04-0.05 s of its start, every init container's included;
frozen once imported, they are left out of later collections too.
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
