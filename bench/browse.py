"""Browsing benchmark: `ls`, `diff` and `find` on the 1,000,000-file volume, caretaker beside
restic, in one run (interleaved repetitions, GNU time for wall time and peak RSS).

Both tools back up the volume (bench/scale.py's), then again after 300 files were added,
changed or removed; then each lists the newest snapshot, compares the two and searches every
snapshot for one file name, with output to /dev/null. Local repositories on the same disk,
both encrypted (caretaker's default, restic's only mode): each command pays its key
derivation once.
Usage: .venv/bin/python bench/browse.py [--files 1000000] [--reps 3]   (restic: scripts/bench-setup)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

from harness import Row, caretaker, fresh, interleave, run_benchmark, runtime_venv, table, timed, workdir
from scale import small_files

PASSWORD = "bench-only"
RESTIC_ENV = {"RESTIC_PASSWORD": PASSWORD, "GOMAXPROCS": "2"}


def change(data: Path, count: int, aside: Path) -> list[tuple[Path, Path | None]]:
    """Add, rewrite and remove `count` files each; return what `undo` needs."""
    files = sorted((data / "d000" / "00000").glob("*.txt"))[: 2 * count]
    (data / "added").mkdir(exist_ok=True)
    aside.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (data / "added" / f"new{i}.txt").write_bytes(b"added %d\n" % i)
        files[i].write_bytes(files[i].read_bytes() + b"changed\n")
        files[count + i].rename(aside / files[count + i].name)
    return [(path, None) for path in files[:count]] + [(path, aside / path.name) for path in files[count:]]


def undo(data: Path, changed: list[tuple[Path, Path | None]]) -> None:
    shutil.rmtree(data / "added", ignore_errors=True)
    for path, moved in changed:
        if moved is None:
            path.write_bytes(path.read_bytes().removesuffix(b"changed\n"))
        elif moved.exists():
            moved.rename(path)


def run(command: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        command, shell=True, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    tool = caretaker(runtime_venv())
    data = small_files(workdir() / f"small-{args.files}", args.files)
    base = fresh(workdir() / "browse")
    repo, restic_repo = f"file://{base / 'repo'}", str(base / "restic")
    restic_env = {**RESTIC_ENV, "RESTIC_REPOSITORY": restic_repo, "RESTIC_CACHE_DIR": str(base / "cache")}

    password = base / "password"
    password.write_text(PASSWORD + "\n")

    def ours(command: str) -> str:
        return f"{tool} {command} --repository {repo} --password-file {password} --log-level warning"

    run("restic init --quiet", restic_env)
    snapshots: dict[str, list[str]] = {"caretaker": [], "restic": []}
    changed: list[tuple[Path, Path | None]] = []
    try:
        for step in range(2):
            if step:
                changed = change(data, 100, base / "aside")
            backup = json.loads(run(ours(f"backup --path {data} --exclude .complete --json")))
            snapshots["caretaker"].append(backup["snapshot"]["id"])
            run(f"restic backup --quiet --exclude {data}/.complete {data}", restic_env)
            snapshots["restic"].append(
                json.loads(run("restic snapshots --json latest", restic_env))[0]["short_id"]
            )
    finally:
        undo(data, changed)
    name = f"f{args.files // 2 + 7}.txt"
    commands = {
        ("ls", "caretaker"): ours("ls latest") + " > /dev/null",
        ("ls", "restic"): "restic ls latest > /dev/null",
        ("diff", "caretaker"): ours(f"diff {' '.join(snapshots['caretaker'])}") + " > /dev/null",
        ("diff", "restic"): f"restic diff {' '.join(snapshots['restic'])} > /dev/null",
        ("find", "caretaker"): ours(f"find {name}") + " > /dev/null",
        ("find", "restic"): f"restic find {name} > /dev/null",
    }
    found = interleave(
        args.reps,
        [
            (f"{op}/{who}", lambda c=command: timed(c, env=restic_env))
            for (op, who), command in commands.items()
        ],
    )
    label = f"{args.files:,} files"
    rows = [Row(label, op, who, found[f"{op}/{who}"]) for op, who in commands]
    print(table(rows, baseline="restic"))
    pair = " ".join(snapshots["caretaker"])
    print("\nchanges between the snapshots:", run(ours(f"diff {pair}")).splitlines()[-1])


if __name__ == "__main__":
    run_benchmark(main, scratch="browse")
