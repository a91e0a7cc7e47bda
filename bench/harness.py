"""Shared benchmark plumbing: a runtime-only install, test data, timed runs, ratio tables.

Benchmarks run caretaker from a virtualenv holding only its runtime dependencies (what the
image ships), not the development venv: dev tools pull in libraries (rich) that structlog
would import and that would make every start-up slower than a user's.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIME = "/usr/bin/time"
# The image's allocator setting (Dockerfile), for every timed command: caretaker runs as it
# would in the image; tar and restic ignore it; awscli's RSS is a little lower with it.
IMAGE_ENV = {"MALLOC_ARENA_MAX": "2"}


def workdir() -> Path:
    base = Path(os.environ.get("CARETAKER_BENCH_DIR", Path(tempfile.gettempdir()) / "caretaker-bench"))
    base.mkdir(parents=True, exist_ok=True)
    return base


def run_benchmark(main: Callable[[], int | None], *, scratch: str) -> None:
    """Run a benchmark, then remove its `scratch` folder under the work folder (its
    repositories, restored trees and server data: the benchmarks together left tens of GiB).
    The data sets and the runtime venv stay for the next run: they are slow to make."""
    try:
        code = main()
    finally:
        shutil.rmtree(workdir() / scratch, ignore_errors=True)
        print(
            f"data sets kept for the next run in {workdir()} (remove it to free the space)", file=sys.stderr
        )
    sys.exit(code)


def runtime_venv() -> Path:
    """A venv with caretaker and its runtime dependencies only; rebuilt when the code changes."""
    venv = workdir() / "venv"
    stamp = venv / ".stamp"
    newest = max(
        p.stat().st_mtime
        for p in [*ROOT.glob("restore/**/*.py"), *ROOT.glob("sidecar/**/*.py"), ROOT / "pyproject.toml"]
    )
    if not stamp.exists() or stamp.stat().st_mtime < newest:
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--force-reinstall", "--no-deps", str(ROOT)],
            check=True,
        )
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], check=True)
        stamp.touch()
    return venv


def caretaker(venv: Path) -> str:
    return str(venv / "bin" / "caretaker")


def parse_also(values: list[str]) -> dict[str, str]:
    """`--also LABEL=PATH` options: other caretaker builds to measure in the same run."""
    found = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not Path(path).exists():
            sys.exit(f"--also wants LABEL=/path/to/caretaker, got {value!r}")
        found[label] = path
    return found


# -- data ----------------------------------------------------------------------------------

_WORDS = [
    bytes(random.Random(i).choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(2 + i % 8))
    for i in range(5000)
]


def text(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choice(_WORDS) for _ in range(64)) + b"\n"
    return bytes(out[:size])


def mixed_files(root: Path, count: int = 2000) -> Path:
    """~200 MB in `count` files: sizes heavy-tailed, half random bytes, half text."""
    if root.exists():
        return root
    rng = random.Random(1)
    for i in range(count):
        size = 400_000 if i % 10 == 0 else min(int(rng.paretovariate(1.2) * 20_000), 2_000_000)
        path = root / f"d{i % 20}" / f"s{i % 7}" / f"f{i}.dat"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size) if i % 2 else text(size, i))
    return root


def big_file(root: Path, mib: int = 1024) -> Path:
    """One file of `mib` MiB, half random, half text."""
    if root.exists():
        return root
    root.mkdir(parents=True)
    with (root / "big.bin").open("wb") as handle:
        for i in range(mib):
            handle.write(os.urandom(1 << 20) if i % 2 else text(1 << 20, i))
    return root


def change_files(root: Path, fraction: float, seed: int) -> int:
    """Rewrite `fraction` of the files (at least one) with new content; return how many."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    rng = random.Random(seed)
    chosen = rng.sample(files, max(1, int(len(files) * fraction)))
    for path in chosen:
        size = path.stat().st_size
        with path.open("r+b") as handle:
            handle.seek(rng.randrange(max(1, size)))
            handle.write(os.urandom(min(4096, max(1, size))))
    return len(chosen)


# -- measuring -----------------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    wall: float
    cpu: float
    rss_mib: float
    server_cpu: float = 0.0  # CPU seconds a server process (SeaweedFS) spent meanwhile
    stdout: str = ""


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (0.0 without a pid)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(
    command: str, env: dict[str, str] | None = None, cwd: Path | None = None, server_pid: int | None = None
) -> Sample:
    """Run a shell command under GNU time; peak RSS is the largest process of the pipeline.

    With `server_pid`, also the CPU time that server spent meanwhile (client and server
    share the machine's cores, so a tool that makes the server work hard is not free).
    """
    server_before = cpu_seconds(server_pid)
    result = subprocess.run(
        [TIME, "-f", "%e %U %S %M", "sh", "-c", command],
        capture_output=True,
        text=True,
        env={**os.environ, **IMAGE_ENV, **(env or {})},
        cwd=cwd,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"failed ({result.returncode}): {command}\n{result.stderr[-2000:]}")
    wall, user, system, rss = result.stderr.strip().splitlines()[-1].split()
    server = cpu_seconds(server_pid) - server_before
    return Sample(float(wall), float(user) + float(system), int(rss) / 1024, server, result.stdout)


@dataclasses.dataclass
class Row:
    data: str
    operation: str
    tool: str
    samples: list[Sample]

    def median(self, field: str) -> float:
        return statistics.median(getattr(s, field) for s in self.samples)

    def minimum(self, field: str) -> float:
        return min(getattr(s, field) for s in self.samples)


def interleave(reps: int, steps: Sequence[tuple[str, Callable[[], Sample]]]) -> dict[str, list[Sample]]:
    """Run every step once per repetition, in turn, so load changes hit all tools alike.

    Each step starts with nothing dirty in the page cache: otherwise the data a tool left
    unwritten (tar never syncs) is flushed during the next tool's run, and charged to it
    whenever that tool syncs (caretaker's restore ends with `syncfs`).
    """
    found: dict[str, list[Sample]] = {name: [] for name, _ in steps}
    for _ in range(reps):
        for name, step in steps:
            os.sync()
            found[name].append(step())
    return found


def table(rows: list[Row], baseline: str) -> str:
    """Markdown table: medians and minima per tool, and the ratio of minima to the baseline."""
    lines = [
        "| data | operation | tool | wall median s | wall min s | cpu median s | peak RSS MiB | ratio (min wall) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = next(
            (r for r in rows if (r.data, r.operation, r.tool) == (row.data, row.operation, baseline)), None
        )
        ratio = f"{row.minimum('wall') / base.minimum('wall'):.2f}x" if base and base.minimum("wall") else "-"
        lines.append(
            f"| {row.data} | {row.operation} | {row.tool} | {row.median('wall'):.2f} | "
            f"{row.minimum('wall'):.2f} | {row.median('cpu'):.2f} | {max(s.rss_mib for s in row.samples):.0f} | "
            f"{ratio} |"
        )
    return "\n".join(lines)


def synced(sample: Sample, out: Path) -> Sample:
    """`sample` plus a `sync -f` of the restored folder, timed right after it (for peers that
    do not sync before they report a restore complete; caretaker does)."""
    sync = timed(f"sync -f {out}")
    return Sample(sample.wall + sync.wall, sample.cpu + sync.cpu, sample.rss_mib, sample.server_cpu)


def ratio_table(rows: list[Row], subject: str, baselines: Sequence[str]) -> str:
    """Markdown table with server CPU, and the subject's ratio of minima to each baseline."""
    head = "| data | operation | tool | wall median s | wall min s | cpu median s | server cpu median s | peak RSS MiB |"
    lines = [head + "".join(f" vs {b} |" for b in baselines), "|---" * (8 + len(baselines)) + "|"]
    for row in rows:
        ratios = []
        for baseline in baselines:
            base = next(
                (r for r in rows if (r.data, r.operation, r.tool) == (row.data, row.operation, baseline)),
                None,
            )
            usable = row.tool == subject and base is not None and base.minimum("wall") > 0
            ratios.append(f"{row.minimum('wall') / base.minimum('wall'):.2f}x" if usable and base else "")
        lines.append(
            f"| {row.data} | {row.operation} | {row.tool} | {row.median('wall'):.2f} | {row.minimum('wall'):.2f} | "
            f"{row.median('cpu'):.2f} | {row.median('server_cpu'):.2f} | {max(s.rss_mib for s in row.samples):.0f} |"
            + "".join(f" {r} |" for r in ratios)
        )
    return "\n".join(lines)


def restic_repository(
    repository: str, password: str, work: Path, server_env: dict[str, str]
) -> dict[str, str]:
    """Initialise a restic repository; return the environment restic's commands need."""
    env = {
        **server_env,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "RESTIC_REPOSITORY": repository,
        "RESTIC_PASSWORD": password,
        "RESTIC_CACHE_DIR": str(work / "restic-cache"),
    }
    timed("restic init -q", env)
    return env


def listing(root: Path) -> list[tuple[str, int]]:
    """Relative path and size of every file, the way a restore is checked for completeness."""
    found = [(str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file()]
    return sorted(entry for entry in found if not entry[0].startswith(".caretaker"))


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def age_tree_mtimes(root: Path, seconds_ago: int = 86_400) -> None:
    """Give every file an mtime in the past, as on a volume that has existed a while: a
    file modified just before a backup is re-read by the next one (its timestamp cannot
    be trusted yet), which would make any fresh test tree look entirely changed."""
    import time

    moment = time.time() - seconds_ago
    for path in root.rglob("*"):
        os.utime(path, (moment, moment), follow_symlinks=False)
