"""Start-up cost of `caretaker restore` on a volume that already has data.

Every pod start runs the init container; on a populated volume it has nothing to do and
must get out of the way fast. This measures, for each repository kind, the wall time of
the real `caretaker` console script (median and minimum of --runs), and proves with
`python -X importtime` that neither boto3/botocore nor GitPython was imported: the
decision "is the target empty?" is taken before the repository is opened.

    python bench/startup.py [--runs 15]

Prints one JSON object per repository kind; exits 1 if a storage library was imported or
the outcome was not `skipped`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The requirement: no storage library on this path. The sidecar's stack should not be
# there either (caretaker/cli.py is meant to stay argparse-level); it is reported, not fatal.
STORAGE = ("boto3", "botocore", "s3transfer", "git")
SIDECAR_STACK = ("apscheduler", "prometheus_client", "yaml", "tzlocal")
URLS = {
    "local": "file:///nonexistent/backups",
    "s3": "s3://bucket/prefix",
    "git": "git+ssh://git@example.invalid/org/repo.git",
}


def caretaker_script() -> str:
    beside = Path(sys.executable).parent / "caretaker"
    found = str(beside) if beside.exists() else shutil.which("caretaker")
    if found is None:
        sys.exit("caretaker console script not found: pip install -e .")
    return found


def argv(url: str, volume: Path, *python_flags: str) -> list[str]:
    return [
        sys.executable,
        *python_flags,
        caretaker_script(),
        "restore",
        "--repository",
        url,
        "--path",
        str(volume),
        "--termination-log",
        str(volume.parent / "termination-log"),
    ]


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CARETAKER_", "AWS_"))}


def imported_modules(url: str, volume: Path) -> set[str]:
    """Top-level package names imported during one run (from -X importtime on stderr)."""
    done = subprocess.run(
        argv(url, volume, "-X", "importtime"), env=environment(), capture_output=True, text=True, check=False
    )
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def timed_runs(url: str, volume: Path, runs: int) -> tuple[list[float], str]:
    times = []
    outcome = ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            argv(url, volume), env=environment(), capture_output=True, text=True, check=False
        )
        times.append(time.perf_counter() - started)
        result = json.loads((volume / ".caretaker" / "restore-result.json").read_text())
        outcome = f"{result['outcome']}/{done.returncode}"
    return times, outcome


def python_floor(runs: int) -> float:
    """The bare interpreter's start-up, for comparison."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as temp:
        volume = Path(temp) / "data"
        (volume / "app").mkdir(parents=True)
        (volume / "app" / "app.db").write_bytes(os.urandom(4096))
        floor = python_floor(args.runs)
        for kind, url in URLS.items():
            imported = imported_modules(url, volume)
            storage = sorted(imported & set(STORAGE))
            times, outcome = timed_runs(url, volume, args.runs)
            report = {
                "repository": kind,
                "outcome": outcome,
                "runs": args.runs,
                "wall_seconds_median": round(statistics.median(times), 4),
                "wall_seconds_min": round(min(times), 4),
                "python_startup_seconds_min": round(floor, 4),
                "storage_imports": storage,
                "sidecar_stack_imports": sorted(imported & set(SIDECAR_STACK)),
                "modules_imported": len(imported),
            }
            print(json.dumps(report))
            failed |= bool(storage) or outcome != "skipped/0"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
