"""S3 benchmark: caretaker vs `tar | zstd -T0 | aws s3 cp -` and vs restic, one SeaweedFS, one run.
The unencrypted engine (`--insecure-no-encryption`); bench/encryption.py measures what
encryption adds.

Usage: .venv/bin/python bench/s3.py [--reps 3] [--only files|big] [--caretaker PATH]
Needs restic, zstd and GNU time (run scripts/bench-setup once) and awscli (dev extras).
`--caretaker` benchmarks another build (a runtime venv's `caretaker`), for before/after runs.

For each data set (2,000 mixed files of ~200 MB; one 1 GiB file, half random) and each
repetition, the three tools run interleaved on fresh buckets of one server: full backup,
incremental backup after changing 1% of the files, restore of the latest state. tar's
incremental is GNU tar's --listed-incremental; its restore extracts the full archive and
then the incremental one. Every step starts with nothing dirty in the page cache (`sync`
first). caretaker syncs (syncfs) before it reports a restore complete, tar and restic do
not: their restores are also shown with a `sync -f` of the restored folder added ("+ sync",
timed right after). Printed: one table (median and minimum wall time, client CPU, server
CPU, peak RSS) and a closing note with the ratios against the issue's targets.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from harness import (
    ROOT,
    TIME,
    Row,
    Sample,
    age_tree_mtimes,
    big_file,
    caretaker,
    change_files,
    fresh,
    listing,
    mixed_files,
    ratio_table,
    restic_repository,
    run_benchmark,
    runtime_venv,
    synced,
    timed,
    workdir,
)

sys.path.insert(0, str(ROOT))
from tests.support.seaweed import SeaweedServer

TOOLS = ("caretaker", "tar+zstd+awscli", "restic")
PHASES = ("full backup", "incremental (1% changed)", "restore")
UNSYNCED = ("tar+zstd+awscli", "restic")  # restores that end before their data is on disk


def check_tools() -> str:
    """Return the awscli path. Exit 2 naming what is missing."""
    aws = Path(sys.executable).parent / "aws"
    missing = [name for name in ("restic", "zstd", "tar") if shutil.which(name) is None]
    missing += [TIME] if not Path(TIME).exists() else []
    missing += ["aws (pip install awscli)"] if not aws.exists() else []
    if missing:
        sys.exit(f"missing: {', '.join(missing)}; run scripts/bench-setup first")
    return str(aws)


class Tools:
    """The three tools' command lines for one repetition, each on its own bucket."""

    def __init__(self, context: tuple[SeaweedServer, str, str], data: Path, base: Path, rep: int) -> None:
        server, self.aws, self.tool = context
        self.server, self.data, self.base = server, data, base
        self.out = base / "out"
        self.buckets = {name: f"{name.split('+')[0]}-{rep}" for name in TOOLS}
        for bucket in self.buckets.values():
            server.make_bucket(bucket)
        self.snar = base / f"tar-{rep}.snar"
        self.snar.unlink(missing_ok=True)
        restic = f"s3:{server.endpoint}/{self.buckets['restic']}/restic"
        self.env = restic_repository(restic, "benchmark", base, server.env())

    def _aws(self, args: str) -> str:
        return f"{self.aws} --endpoint-url {self.server.endpoint} s3 {args} --only-show-errors"

    def _tar_to(self, name: str) -> str:
        url = f"s3://{self.buckets['tar+zstd+awscli']}/{name}"
        return (
            f"tar -C {self.data} --listed-incremental={self.snar} -cf - . | zstd -q -T0 -3 | "
            f"{self._aws(f'cp - {url}')}"
        )

    def _caretaker(self, verb: str, path: Path, extra: str = "") -> str:
        url = f"s3://{self.buckets['caretaker']}/repo"
        return (
            f"{self.tool} {verb} --repository {url} --insecure-no-encryption --path {path} "
            f"--log-level warning {extra}"
        )

    def backup(self, tool: str, archive: str) -> str:
        if tool == "caretaker":
            return self._caretaker("backup", self.data)
        if tool == "restic":
            return f"restic backup -q {self.data}"
        return self._tar_to(f"{archive}.tar.zst")

    def restore(self, tool: str) -> str:
        if tool == "caretaker":
            return self._caretaker("restore", self.out, f"--termination-log {self.base / 'term.log'}")
        if tool == "restic":
            return f"restic restore latest -q --target {self.out}"
        bucket = self.buckets["tar+zstd+awscli"]
        return " && ".join(
            f"{self._aws(f'cp s3://{bucket}/{name}.tar.zst -')} | zstd -q -d | "
            f"tar -C {self.out} --listed-incremental=/dev/null -xf -"
            for name in ("full", "incremental")
        )

    def drop(self) -> None:
        client = self.server.client()
        for bucket in self.buckets.values():
            client.delete_bucket(Bucket=bucket)  # SeaweedFS drops the objects (and their space) too


def restored_path(tool: str, tools: Tools) -> Path:
    # restic restores the absolute source path below --target.
    return tools.out / str(tools.data).lstrip("/") if tool == "restic" else tools.out


def bench_dataset(name: str, data: Path, reps: int, context: tuple[SeaweedServer, str, str]) -> list[Row]:
    server = context[0]
    samples: dict[tuple[str, str], list[Sample]] = {(p, t): [] for p in PHASES for t in TOOLS}
    samples.update({("restore", f"{t} + sync"): [] for t in UNSYNCED})
    base = workdir() / "s3"
    for rep in range(reps):
        tools = Tools(context, data, fresh(base / "work"), rep)
        steps: dict[str, Callable[[str], str]] = {
            "full backup": functools.partial(tools.backup, archive="full"),
            "incremental (1% changed)": functools.partial(tools.backup, archive="incremental"),
            "restore": tools.restore,
        }
        for phase, command in steps.items():
            if phase.startswith("incremental"):
                print(f"  changed {change_files(data, 0.01, rep)} files", flush=True)
            for name_of_tool in TOOLS:
                fresh(tools.out)
                os.sync()  # what the previous step left unwritten is not charged to this one
                sample = timed(command(name_of_tool), tools.env, server_pid=server.pid)
                samples[phase, name_of_tool].append(sample)
                if phase == "restore" and name_of_tool in UNSYNCED:
                    samples[phase, f"{name_of_tool} + sync"].append(synced(sample, tools.out))
                print(
                    f"  {name} rep {rep} {phase:<26} {name_of_tool:<16} {sample.wall:6.2f} s "
                    f"cpu {sample.cpu:6.2f} s server {sample.server_cpu:6.2f} s {sample.rss_mib:5.0f} MiB",
                    flush=True,
                )
                if phase == "restore" and listing(restored_path(name_of_tool, tools)) != listing(data):
                    sys.exit(f"{name_of_tool} restored something else than {data}")
        tools.drop()
    return [Row(name, phase, tool, found) for (phase, tool), found in samples.items()]


def closing_note(rows: list[Row]) -> str:
    def best(data: str, phase: str, tool: str) -> float:
        return next(r for r in rows if (r.data, r.operation, r.tool) == (data, phase, tool)).minimum("wall")

    lines = ["", "Targets (ratios of minimum wall times; below 1 means caretaker is faster):"]
    for data in dict.fromkeys(r.data for r in rows):
        for phase, baseline, limit in (
            ("full backup", "tar+zstd+awscli", 1.25),
            ("restore", "tar+zstd+awscli", 1.25),
            ("incremental (1% changed)", "restic", 1.0),
        ):
            ratio = best(data, phase, "caretaker") / best(data, phase, baseline)
            verdict = "met" if ratio <= limit else "MISSED"
            lines.append(f"- {data}, {phase}: {ratio:.2f}x {baseline} (target <= {limit}x): {verdict}")
        peak = max(s.rss_mib for r in rows if (r.data, r.tool) == (data, "caretaker") for s in r.samples)
        lines.append(f"- {data}, caretaker peak RSS over all phases: {peak:.0f} MiB (target < 200 MB)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=("files", "big"))
    parser.add_argument(
        "--caretaker", metavar="PATH", help="the caretaker to measure (default: this checkout's)"
    )
    args = parser.parse_args()
    aws = check_tools()
    tool = args.caretaker or caretaker(runtime_venv())
    datasets = {"files": ("2,000 files", mixed_files), "big": ("1 GiB file", big_file)}
    rows: list[Row] = []
    # Large volumes: a bucket then grows new volumes rarely, which pauses writes (the
    # buckets of each repetition are deleted, so the volume count does not run out).
    with SeaweedServer(fresh(workdir() / "s3" / "seaweed"), volume_size_mb=1024) as server:
        for key, (name, make) in datasets.items():
            if args.only in (None, key):
                data = make(workdir() / "data" / key)
                age_tree_mtimes(data)
                rows += bench_dataset(name, data, args.reps, (server, aws, tool))
    print()
    print(ratio_table(rows, subject="caretaker", baselines=("tar+zstd+awscli", "restic", "restic + sync")))
    print(closing_note(rows))


if __name__ == "__main__":
    run_benchmark(main, scratch="s3")
