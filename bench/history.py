"""A long history: what a backup and a restore cost after many small backups, before and
after the prune that merges the repository's index.

Usage: .venv/bin/python bench/history.py [--backups 120] [--reps 3]

A backup writes one index object per pack it writes (two for a small change: data and
manifest), and every backup and restore reads all of them; prune merges them (a backup
does too, past 256 small ones: keep --backups under 128 to see the unmerged cost). On a
local repository and on S3 (SeaweedFS), this makes --backups small backups of 200 files,
one file changed each time, then times `caretaker backup` with nothing changed and
`caretaker restore` (--reps each, interleaved), runs `caretaker prune` keeping every
snapshot (so it only merges the index), and times both again. Prints one table: index
objects and minimum wall times before and after the merge.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import (
    ROOT,
    age_tree_mtimes,
    caretaker,
    fresh,
    interleave,
    run_benchmark,
    runtime_venv,
    text,
    timed,
    workdir,
)

sys.path.insert(0, str(ROOT))
from restore.backends.registry import OpenOptions, open_repository
from restore.model import BackupOptions
from restore.snapshots.encryption import Encryption
from restore.snapshots.format import INDEX
from tests.support.seaweed import SeaweedServer

FILES = 200
# The unencrypted engine, as the other benchmarks measure it (bench/encryption.py: its cost).
UNENCRYPTED = Encryption(unencrypted=True)
OPERATIONS = ("backup, nothing changed", "restore")


def volume(root: Path) -> Path:
    fresh(root)
    for number in range(FILES):
        (root / f"f{number:03}.txt").write_bytes(text(20_000, number))
    age_tree_mtimes(root)
    return root


def make_history(url: str, env: dict[str, str], data: Path, backups: int) -> None:
    """`backups` snapshots, one file changed before each. Written in-process, for speed:
    only the measured commands run as a user runs them."""
    repository = open_repository(url, OpenOptions(environ=env, encryption=UNENCRYPTED))
    try:
        for number in range(backups):
            (data / f"f{number % FILES:03}.txt").write_bytes(text(20_000, 1000 + number))
            repository.backup(data, BackupOptions())
    finally:
        repository.close()
    age_tree_mtimes(data)


def index_objects(url: str, env: dict[str, str]) -> int:
    repository = open_repository(url, OpenOptions(environ=env, encryption=UNENCRYPTED))
    try:
        return sum(1 for _ in repository.store.list(INDEX))  # type: ignore[attr-defined]
    finally:
        repository.close()


def minima(tool: str, url: str, env: dict[str, str], data: Path, reps: int) -> dict[str, float]:
    """Minimum wall time of each operation over `reps` interleaved runs."""
    out = workdir() / "history" / "out"
    common = f"--repository {url} --log-level warning"
    restore = f"{tool} restore {common} --path {out} --termination-log {out.parent / 'term.log'}"
    found = interleave(
        reps,
        [
            (OPERATIONS[0], lambda: timed(f"{tool} backup {common} --path {data}", env)),
            (OPERATIONS[1], lambda: (fresh(out), timed(restore, env))[1]),
        ],
    )
    return {operation: min(s.wall for s in samples) for operation, samples in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backups", type=int, default=120)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    tool = caretaker(runtime_venv())
    base = workdir() / "history"
    lines = [
        f"{args.backups} backups of {FILES} files, one changed each time; minimum of {args.reps} runs",
        "",
        "| repository | index objects | operation | before merge s | after merge s | after / before |",
        "|---|---|---|---|---|---|",
    ]
    with SeaweedServer(fresh(base / "seaweed")) as server:
        server.make_bucket("history")
        for name, url, env in (
            ("local", f"file://{fresh(base / 'local')}", {}),
            ("S3 (SeaweedFS)", "s3://history/repo", server.env()),
        ):
            data = volume(base / "data")
            make_history(url, env, data, args.backups)
            objects = index_objects(url, env)
            before = minima(tool, url, env, data, args.reps)
            timed(f"{tool} prune --repository {url} --keep-last {args.backups + args.reps + 1}", env)
            merged = index_objects(url, env)
            after = minima(tool, url, env, data, args.reps)
            lines.extend(
                f"| {name} | {objects} → {merged} | {operation} | {before[operation]:.2f} | "
                f"{after[operation]:.2f} | {after[operation] / before[operation]:.2f}x |"
                for operation in OPERATIONS
            )
    print("\n".join(lines))


if __name__ == "__main__":
    run_benchmark(main, scratch="history")
