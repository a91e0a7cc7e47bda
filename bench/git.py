"""Git backup benchmark: caretaker's git backend vs plain git on the same data, same run.

Usage: .venv/bin/python bench/git.py [--reps 3] [--also LABEL=/path/to/caretaker]

Data: the 2,000 files (~200 MB) of bench/local.py. Both tools push to a bare repository
over file:// from a private git dir: caretaker with `caretaker backup` (its walk streams
file contents into `git fast-import`), plain git with `git add -A`, `git commit`, `git push`
reading the folder as its work tree, both at zlib level 3 (caretaker's default). A full
backup starts from nothing (new remote, new state); an incremental one follows a change of
1% of the files (2.1 s before, as in bench/local.py). Tools run interleaved, one run of each
per repetition; `--also` adds another caretaker build (an A/B run of a change). The table
shows medians and minima and the ratio of minima to plain git.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from harness import (
    Row,
    Sample,
    age_tree_mtimes,
    caretaker,
    change_files,
    fresh,
    interleave,
    mixed_files,
    run_benchmark,
    runtime_venv,
    table,
    timed,
    workdir,
)

BASELINE = "plain git"


def bare(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(fresh(path))], check=True)
    return path


def plain_git(data: Path, git_dir: Path, remote: Path) -> str:
    """add + commit + push of `data` with plain git, `git_dir` its repository."""
    git = f"git -c core.compression=3 --git-dir={git_dir} --work-tree={data}"
    return (
        f"{git} add -A && {git} -c user.name=b -c user.email=b@b commit -q -m backup && "
        f"{git} push -q {remote} HEAD:refs/heads/main"
    )


def caretaker_backup(tool: str, data: Path, state: Path, remote: Path) -> str:
    return (
        f"CARETAKER_GIT_STATE_DIR={state} {tool} backup --repository git+file://{remote}#branch=main "
        f"--path {data} --log-level warning --json"
    )


def bench(data: Path, tools: dict[str, str], reps: int, base: Path) -> list[Row]:
    def full(label: str, command: Callable[[Path, Path], str]) -> Callable[[], Sample]:
        def step() -> Sample:
            home = fresh(base / label.replace(" ", "-"))
            return timed(command(home / "state", bare(home / "remote.git")))

        return step

    def again(label: str, command: Callable[[Path, Path], str]) -> Callable[[], Sample]:
        home = base / label.replace(" ", "-")
        return lambda: timed(command(home / "state", home / "remote.git"))

    def with_tool(tool: str) -> Callable[[Path, Path], str]:
        return lambda state, remote: caretaker_backup(tool, data, state, remote)

    commands = {label: with_tool(tool) for label, tool in tools.items()}
    commands[BASELINE] = lambda state, remote: (
        f"(test -d {state} || git init -q --bare {state}) && {plain_git(data, state, remote)}"
    )
    counter = iter(range(1000))

    def change() -> Sample:
        change_files(data, 0.01, next(counter))
        time.sleep(2.1)
        return Sample(0, 0, 0)

    first = interleave(reps, [(label, full(label, command)) for label, command in commands.items()])
    later = interleave(
        reps, [("change", change), *((label, again(label, command)) for label, command in commands.items())]
    )
    rows = [Row("2,000 files", "full backup", label, samples) for label, samples in first.items()]
    rows += [
        Row("2,000 files", "incremental (1% changed)", label, s)
        for label, s in later.items()
        if label != "change"
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH")
    args = parser.parse_args()
    tools = {"caretaker": caretaker(runtime_venv()), **dict(a.split("=", 1) for a in args.also)}
    data = mixed_files(workdir() / "data" / "files")
    age_tree_mtimes(data)
    print(table(bench(data, tools, args.reps, fresh(workdir() / "git")), baseline=BASELINE))


if __name__ == "__main__":
    run_benchmark(main, scratch="git")
