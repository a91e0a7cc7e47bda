"""Scale benchmark: a volume of many small files (default 1,000,000).

Shows that cost grows with what changed and memory does not grow with the volume:
peak RSS of a full backup, a backup with nothing changed, and a full restore.
Usage: .venv/bin/python bench/scale.py [--files 1000000]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness import Row, age_tree_mtimes, caretaker, fresh, run_benchmark, runtime_venv, table, timed, workdir


def small_files(root: Path, count: int) -> Path:
    marker = root / ".complete"
    if marker.exists():
        return root
    per_dir = 1000
    for start in range(0, count, per_dir):
        folder = root / f"d{start // per_dir // 100:03d}" / f"{start // per_dir:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(start, min(start + per_dir, count)):
            (folder / f"f{i}.txt").write_bytes(b"small file %d\n" % i * (1 + i % 7))
    age_tree_mtimes(root)
    marker.touch()
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1_000_000)
    args = parser.parse_args()
    tool = caretaker(runtime_venv())
    data = small_files(workdir() / f"small-{args.files}", args.files)
    base = fresh(workdir() / "scale")
    repo, out = base / "repo", base / "out"
    backup = (
        f"{tool} backup --repository file://{repo} --insecure-no-encryption --path {data} "
        "--exclude .complete --log-level warning"
    )
    restore = f"{tool} restore --repository file://{repo} --path {out} --termination-log {base / 't'} --log-level warning"
    rows = [
        Row(f"{args.files:,} files", "full backup", "caretaker", [timed(backup)]),
        Row(f"{args.files:,} files", "backup, nothing changed", "caretaker", [timed(backup)]),
        Row(f"{args.files:,} files", "restore", "caretaker", [timed(restore)]),
    ]
    print(table(rows, baseline="-"))
    print(
        f"\nrepository: {sum(f.stat().st_size for f in repo.rglob('*') if f.is_file()) / 2**20:.0f} MiB, "
        f"{sum(1 for _ in repo.rglob('*'))} objects; files restored: "
        f"{sum(len(files) for _, _, files in os.walk(out))}"
    )


if __name__ == "__main__":
    run_benchmark(main, scratch="scale")
