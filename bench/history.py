"""A long history: what a backup and a restore cost after many small backups, before and
after the prune that merges the repository's index.

Usage: .venv/bin/python bench/history.py [--backups 120] [--spread 1] [--reps 3]
                                          [--latency-ms 20] [--also LABEL=/path/to/caretaker]

A backup writes one index object per pack it writes (two for a small change: data and
manifest), and every backup and restore reads all of them; prune merges them (a backup
does too, past 256 small ones: keep --backups under 128 to see the unmerged cost). On a
local repository and on S3 (SeaweedFS), this makes --backups small backups of 200 files,
--spread files changed each time (1 by default; several are spread evenly over the
volume, as an app touching a few files between backups does, so the files of the last
snapshot come from many packs in turn), then times `caretaker backup` with nothing changed and
`caretaker restore` (--reps each, interleaved), runs `caretaker prune` keeping every
snapshot (so it only merges the index), and times both again. Prints one table: index
objects and minimum wall times before and after the merge. `--latency-ms` adds a third
repository: the S3 one again, reached through a proxy adding that round trip to every
request (bench/latency.py). `--also` times another caretaker build in the same runs (an A/B
of a change), with its ratio to this one.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from harness import (
    ROOT,
    age_tree_mtimes,
    caretaker,
    fresh,
    interleave,
    parse_also,
    run_benchmark,
    runtime_venv,
    text,
    timed,
    workdir,
)
from latency import LatencyProxy

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
HEADER = (
    "| repository | index objects | operation | tool | before merge s | after merge s | after / before "
    "| vs caretaker (before / after) |"
)


def volume(root: Path) -> Path:
    fresh(root)
    for number in range(FILES):
        (root / f"f{number:03}.txt").write_bytes(text(20_000, number))
    age_tree_mtimes(root)
    return root


def make_history(url: str, env: dict[str, str], data: Path, backups: int, spread: int) -> None:
    """`backups` snapshots, `spread` files changed before each. Written in-process, for
    speed: only the measured commands run as a user runs them."""
    repository = open_repository(url, OpenOptions(environ=env, encryption=UNENCRYPTED))
    try:
        for number in range(backups):
            for part in range(spread):
                changed = (number + part * FILES // spread) % FILES
                (data / f"f{changed:03}.txt").write_bytes(text(20_000, 1000 + number * spread + part))
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


def minima(tools: dict[str, str], url: str, env: dict[str, str], data: Path, reps: int) -> dict[str, float]:
    """Minimum wall time of each operation and tool ("operation/tool") over `reps` interleaved runs."""
    out = workdir() / "history" / "out"
    common = f"--repository {url} --log-level warning"
    steps = []
    for label, tool in tools.items():
        restore = f"{tool} restore {common} --path {out} --termination-log {out.parent / 'term.log'}"
        backup = f"{tool} backup {common} --path {data}"
        steps += [
            (f"{OPERATIONS[0]}/{label}", lambda b=backup: timed(b, env)),
            (f"{OPERATIONS[1]}/{label}", lambda r=restore: (fresh(out), timed(r, env))[1]),
        ]
    found = interleave(reps, steps)
    return {name: min(s.wall for s in samples) for name, samples in found.items()}


def rows(
    name: str, counts: str, tools: dict[str, str], times: tuple[dict[str, float], dict[str, float]]
) -> list[str]:
    """Table rows of one repository: each operation and tool, and its ratio to this build."""
    before, after = times
    found = []
    for operation in OPERATIONS:
        for label in tools:
            key, own = f"{operation}/{label}", f"{operation}/caretaker"
            ratio = f"{before[key] / before[own]:.2f}x / {after[key] / after[own]:.2f}x" if key != own else ""
            found.append(
                f"| {name} | {counts} | {operation} | {label} | {before[key]:.2f} | {after[key]:.2f} | "
                f"{after[key] / before[key]:.2f}x | {ratio} |"
            )
    return found


def one_repository(
    name: str, url: str, server: SeaweedServer | None, tools: dict[str, str], args: argparse.Namespace
) -> list[str]:
    """Make the history, time it, merge the index, time it again; with a latency, also through
    the proxy (the history itself is written directly)."""
    env = server.env() if server else {}
    data = volume(workdir() / "history" / "data")
    make_history(url, env, data, args.backups, args.spread)
    objects = index_objects(url, env)
    with contextlib.ExitStack() as stack:
        measured = {name: env}
        if server and args.latency_ms:
            proxy = stack.enter_context(LatencyProxy(server.endpoint, rtt_ms=args.latency_ms))
            measured[f"{name}, {args.latency_ms:g} ms away"] = {
                **env,
                "CARETAKER_S3_ENDPOINT": proxy.endpoint,
            }
        before = {label: minima(tools, url, where, data, args.reps) for label, where in measured.items()}
        kept = args.backups + 2 * args.reps * len(tools) * len(measured) + 1
        timed(f"{tools['caretaker']} prune --repository {url} --keep-last {kept}", env)
        after = {label: minima(tools, url, where, data, args.reps) for label, where in measured.items()}
    counts = f"{objects} → {index_objects(url, env)}"
    return [line for label in measured for line in rows(label, counts, tools, (before[label], after[label]))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backups", type=int, default=120)
    parser.add_argument("--spread", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH")
    args = parser.parse_args()
    tools = {"caretaker": caretaker(runtime_venv()), **parse_also(args.also)}
    base = workdir() / "history"
    lines = [
        f"{args.backups} backups of {FILES} files, {args.spread} changed each time; minimum of {args.reps} runs",
        "",
        HEADER,
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += one_repository("local", f"file://{fresh(base / 'local')}", None, tools, args)
    with SeaweedServer(fresh(base / "seaweed")) as server:
        server.make_bucket("history")
        lines += one_repository("S3 (SeaweedFS)", "s3://history/repo", server, tools, args)
    print("\n".join(lines))


if __name__ == "__main__":
    run_benchmark(main, scratch="history")
