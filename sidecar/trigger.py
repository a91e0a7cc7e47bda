"""`caretaker trigger`: ask the sidecar running in this container to back up now.

Meant for `kubectl exec POD -c caretaker -- caretaker trigger`: no shell or `kill` binary
needed in the image. It finds the sidecar among the processes it can see (`/proc`) and sends
it SIGUSR1 (see sidecar.backup_now); it does not wait for the backup, which the sidecar logs
(`job.start` with `reason: trigger`) and counts like any run.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from restore.commands import Command, Context
from restore.errors import ConfigError

PROC = Path("/proc")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pid", type=int, metavar="PID", help="the sidecar's process id (default: find it in /proc)"
    )


def run(args: argparse.Namespace, ctx: Context) -> int:
    pid = args.pid or find_sidecar(PROC, exclude=os.getpid())
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError as error:
        raise ConfigError.single("--pid", pid, "no such process") from error
    except PermissionError as error:
        raise ConfigError.single("--pid", pid, "not allowed to signal it (another user's process)") from error
    ctx.stdout.write(f"asked the sidecar (pid {pid}) to back up now; its log says how it went\n")
    ctx.stdout.flush()
    return 0


def find_sidecar(proc: Path, *, exclude: int) -> int:
    """The pid of the one `caretaker sidecar` process under `proc`.

    Raise ConfigError if there is none, or more than one (then --pid decides).
    """
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if is_sidecar([arg.decode(errors="replace") for arg in argv]):
            found.append(int(entry.name))
    if len(found) != 1:
        problem = "no caretaker sidecar runs here" if not found else f"several sidecars run: {sorted(found)}"
        raise ConfigError.single("--pid", None, f"{problem}; give its --pid")
    return found[0]


def is_sidecar(argv: list[str]) -> bool:
    """`caretaker sidecar ...`, `python .../caretaker sidecar ...` or `python -m caretaker sidecar`.

    An init process that runs it (`tini -- caretaker sidecar`) is not it: tini would forward
    the signal, but the sidecar itself is found as well and is the one to signal.
    """
    for start in (0, 1):
        if Path(argv[start] if len(argv) > start else "").name == "caretaker":
            return argv[start + 1 : start + 2] == ["sidecar"]
    return argv[1:4] == ["-m", "caretaker", "sidecar"]


COMMAND = Command(
    name="trigger",
    help="ask the sidecar in this container to back up now (SIGUSR1)",
    description=(
        "Send SIGUSR1 to the caretaker sidecar process found in /proc (or --pid): it runs\n"
        "every backup job now, unless one is running already (skipped and counted), the\n"
        "sidecar stands by for another writer, or it is shutting down.\n"
        "Usage in a cluster: kubectl exec POD -c caretaker -- caretaker trigger\n\n"
        "Exit codes: 0 the signal was sent; 2 no (or several) sidecars found, or not allowed."
    ),
    configure=configure,
    run=run,
)
