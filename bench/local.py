"""Local repository benchmark: caretaker vs `tar | zstd -T0 -3` on the same data, same run.
The unencrypted engine (`--insecure-no-encryption`); bench/encryption.py measures what
encryption adds.

Usage: .venv/bin/python bench/local.py [--reps 3] [--only files|big] [--caretaker PATH]
    [--also LABEL=PATH]
Prints one markdown table (medians, minima, peak RSS, ratio of minima to tar+zstd), the
incremental backup's time as a share of the full one's, and the bytes the second backup
of an unchanged tree read.

"caretaker, in-process" rows are the time the backup itself took (its `duration_seconds`),
without the ~0.1 s of interpreter start-up and imports of a command-line run (its CPU and
RSS columns are still the whole process's): that is what
a scheduled backup costs in the sidecar, which starts once. Files are changed 2.1 s before
each incremental backup: a file modified within 2 s of a backup's start is read again by
the next backup as well (its timestamp may not have ticked yet), which in production, with
backups minutes apart, concerns almost no file.

`--caretaker` measures another build (a runtime venv's `caretaker`); `--also` adds the
restore of other builds to the restore interleave (an A/B of a restore change, same run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from harness import (
    Row,
    Sample,
    age_tree_mtimes,
    big_file,
    caretaker,
    change_files,
    fresh,
    interleave,
    mixed_files,
    parse_also,
    run_benchmark,
    runtime_venv,
    table,
    timed,
    workdir,
)


def _datasets(base: Path, only: str | None) -> dict[str, Path]:
    chosen = {"files": ("2,000 files", mixed_files), "big": ("1 GiB file", big_file)}
    found = {name: make(base / key) for key, (name, make) in chosen.items() if only in (None, key)}
    for path in found.values():
        age_tree_mtimes(path)
    return found


def bench_dataset(name: str, data: Path, reps: int, tools: dict[str, str], base: Path) -> list[Row]:
    """Full, incremental and restore rows of one data set; `tools` maps labels to caretaker
    builds: the first is measured throughout, the others only restore."""
    tool = next(iter(tools.values()))
    repo, tarball = base / "repo", base / "full.tar.zst"
    backup = (
        f"{tool} backup --repository file://{repo} --insecure-no-encryption --path {data} "
        "--log-level warning --json"
    )
    full = interleave(
        reps,
        [
            ("caretaker", lambda: (fresh(repo), timed(backup))[1]),
            ("tar+zstd", lambda: timed(f"tar -C {data} -cf - . | zstd -q -T0 -3 -o {tarball} -f")),
        ],
    )
    snar = base / "tar.snar"
    snar.unlink(missing_ok=True)
    timed(
        f"tar -C {data} --listed-incremental={snar} -cf - . | zstd -q -T0 -3 -o {base / 'level0.tar.zst'} -f"
    )
    counter = iter(range(1000))

    def change() -> None:
        change_files(data, 0.01, next(counter))
        time.sleep(2.1)

    incremental = interleave(
        reps,
        [
            ("change", lambda: (change(), Sample(0, 0, 0))[1]),
            ("caretaker", lambda: timed(backup)),
            (
                "tar+zstd",
                lambda: timed(
                    f"tar -C {data} --listed-incremental={snar} -cf - . | "
                    f"zstd -q -T0 -3 -o {base / 'incr.tar.zst'} -f"
                ),
            ),
        ],
    )
    out = base / "out"

    def restore(build: str) -> str:
        return (
            f"{build} restore --repository file://{repo} --path {out} --termination-log {base / 'term.log'} "
            "--log-level warning"
        )

    untar = f"zstd -q -d -c {tarball} | tar -C {out} -xf -"

    def into_empty(command: str) -> Sample:
        fresh(out)
        os.sync()  # the deleted previous copy must not slow down this run
        return timed(command)

    restored = interleave(
        reps,
        [
            *((label, lambda build=build: into_empty(restore(build))) for label, build in tools.items()),
            ("tar+zstd", lambda: into_empty(untar)),
            # caretaker makes the restored data durable (syncfs) before it reports success;
            # the same guarantee for tar costs a sync after it.
            ("tar+zstd, then sync", lambda: into_empty(f"{untar} && sync -f {out}")),
        ],
    )
    rows = []
    for operation, results in (
        ("full backup", full),
        ("incremental (1% changed)", incremental),
        ("restore", restored),
    ):
        rows += [Row(name, operation, tool, samples) for tool, samples in results.items() if tool != "change"]
        if "caretaker" in results and operation != "restore":
            rows.append(Row(name, operation, "caretaker, in-process", in_process(results["caretaker"])))
    return rows


def in_process(samples: list[Sample]) -> list[Sample]:
    """The backup's own duration, as reported in its JSON result."""
    return [Sample(json.loads(s.stdout)["duration_seconds"], s.cpu, s.rss_mib) for s in samples]


def shares(rows: list[Row]) -> str:
    """The incremental backup's minimum time as a share of the full backup's, per dataset."""
    lines = []
    for data in dict.fromkeys(r.data for r in rows):
        for tool in ("caretaker", "caretaker, in-process"):
            found = {r.operation: r.minimum("wall") for r in rows if (r.data, r.tool) == (data, tool)}
            share = found["incremental (1% changed)"] / found["full backup"]
            lines.append(f"{data}: incremental backup = {share:.0%} of the full backup ({tool})")
    return "\n".join(lines)


def unchanged_read(tool: str, data: Path, base: Path) -> int:
    repo = fresh(base / "repo-unchanged")
    command = [
        tool,
        "backup",
        "--repository",
        f"file://{repo}",
        "--insecure-no-encryption",
        "--path",
        str(data),
        "--json",
        "--log-level",
        "warning",
    ]
    subprocess.run(command, check=True, capture_output=True)
    second = subprocess.run(command, check=True, capture_output=True, text=True)
    return int(json.loads(second.stdout)["stats"]["bytes_read"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=("files", "big"))
    parser.add_argument(
        "--caretaker", metavar="PATH", help="the caretaker to measure (default: this checkout's)"
    )
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH")
    args = parser.parse_args()
    tools = {"caretaker": args.caretaker or caretaker(runtime_venv()), **parse_also(args.also)}
    base = workdir() / "local"
    rows: list[Row] = []
    for name, data in _datasets(workdir() / "data", args.only).items():
        rows += bench_dataset(name, data, args.reps, tools, fresh(base))
    print(table(rows, baseline="tar+zstd"))
    print()
    print(shares(rows))
    big = workdir() / "data" / "big"
    if args.only in (None, "big"):
        age_tree_mtimes(big)
        print(
            f"\nsecond backup of the unchanged 1 GiB tree read {unchanged_read(tools['caretaker'], big, base)} bytes"
        )


if __name__ == "__main__":
    run_benchmark(main, scratch="local")
