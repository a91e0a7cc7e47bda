"""Restore of many small files: caretaker vs restic (then `sync`), each run on a new filesystem.

Usage (as root, which mount needs):
    .venv/bin/python bench/small_restore.py [--files 100000] [--files 1000000] [--reps 3]
        [--also LABEL=/path/to/caretaker]
Needs restic, mkfs.ext4 and GNU time (scripts/bench-setup).

Data: `--files` files of 100-700 bytes (text, each unique) in 1,000 folders, backed up once
into an encrypted local caretaker repository (what a user gets by default; restic encrypts
too), an unencrypted one (`--insecure-no-encryption`) and a local restic repository (kept
between runs).

Every timed restore writes into the root of an ext4 filesystem made for that run alone:
a sparse image file, `mkfs.ext4` with its inode tables written up front (no lazy init
thread working in the background), loop-mounted, unmounted and deleted afterwards. Not a
tmpfs: a tmpfs writes nothing back, so `sync` would be free and what a restore costs the
disk (inodes, journal, writeback) would not show; a data volume is a block filesystem.
Not one long-lived filesystem either: a restore right after a large tree was deleted ran
1.5-2x slower for both tools, so the filesystem's state, not the tool, decided the ratio.

caretaker syncs (syncfs) before it reports a restore complete; restic does not, so its
fair time is `restic restore` plus `sync -f` on the same filesystem ("restic + sync",
the baseline of the ratios). restic alone is shown too. Tools run interleaved, one run of
each per repetition. `--also` adds other caretaker builds, restoring the encrypted repository
(an A/B run of a change: build a second runtime venv from the other commit and pass its
`caretaker`). Every run is checked:
the restored tree must list the same paths and sizes as the data.

caretaker runs from a runtime-only virtualenv with MALLOC_ARENA_MAX=2, as in the image.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness import IMAGE_ENV, TIME, Sample, caretaker, parse_also, runtime_venv, synced, text, timed, workdir

FOLDERS = 1000
BASELINE = "restic + sync"
PLAIN = "caretaker (unencrypted)"
PASSWORD = "benchmark password"


def check_tools() -> None:
    """Exit 2 naming what is missing."""
    missing = [name for name in ("restic", "mkfs.ext4", "mount", "umount") if shutil.which(name) is None]
    missing += [TIME] if not Path(TIME).exists() else []
    if missing:
        sys.exit(f"missing: {', '.join(missing)}; run scripts/bench-setup first")
    if os.geteuid() != 0:
        sys.exit("mounting a new filesystem per run needs root")


def small_files(root: Path, count: int) -> Path:
    """`count` unique files of 100-700 bytes in FOLDERS folders (made once)."""
    marker = root.parent / f"{root.name}.complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    corpus = text(1 << 20, 7)
    rng = random.Random(count)
    for folder in range(FOLDERS):
        (root / f"d{folder:04d}").mkdir(parents=True)
    for i in range(count):
        size = rng.randrange(100, 701)
        start = rng.randrange(len(corpus) - size)
        head = b"%d\n" % i
        (root / f"d{i % FOLDERS:04d}" / f"f{i:07d}.txt").write_bytes(
            head + corpus[start : start + size - len(head)]
        )
    marker.touch()
    return root


def caretaker_access(base: Path, *, encrypted: bool) -> list[str]:
    """The options that open (or create) the encrypted or the unencrypted repository."""
    if not encrypted:
        return ["--repository", f"file://{base / 'caretaker-plain-repo'}", "--insecure-no-encryption"]
    return ["--repository", f"file://{base / 'caretaker-repo'}", "--password-file", str(base / "password")]


def repositories(data: Path, base: Path, tool: str) -> Path:
    """Back `data` up once into the caretaker repositories; return the restic repository."""
    restic = base / "restic-repo"
    marker = base / "repos-encrypted.complete"
    if not marker.exists():
        for folder in ("caretaker-repo", "caretaker-plain-repo", "restic-repo"):
            shutil.rmtree(base / folder, ignore_errors=True)
        (base / "password").write_text(PASSWORD + "\n")
        for encrypted in (True, False):
            access = caretaker_access(base, encrypted=encrypted)
            subprocess.run(
                [tool, "backup", *access, "--path", str(data), "--log-level", "warning"],
                check=True,
                env={**os.environ, **IMAGE_ENV},
            )
        env = restic_env(restic, base)
        subprocess.run(["restic", "init", "-q"], check=True, env=env)
        # Backing up `.` stores the files at the snapshot's root, as caretaker does.
        subprocess.run(["restic", "backup", "-q", "."], check=True, env=env, cwd=data)
        marker.touch()
    return restic


def restic_env(repo: Path, base: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RESTIC_REPOSITORY": str(repo),
        "RESTIC_PASSWORD": "benchmark",
        "RESTIC_CACHE_DIR": str(base / "restic-cache"),
    }


class NewFilesystem:
    """A loop-mounted ext4 filesystem sized for `files` small files, gone after the block."""

    def __init__(self, base: Path, files: int) -> None:
        self.image = base / "fs.img"
        self.mount = base / "mnt"
        self.files = files

    def __enter__(self) -> Path:
        subprocess.run(["umount", str(self.mount)], check=False, capture_output=True)  # left by a killed run
        self.image.unlink(missing_ok=True)
        size = self.files * 6 * 1024 + (512 << 20)
        with self.image.open("wb") as handle:
            handle.truncate(size)
        subprocess.run(
            [
                "mkfs.ext4", "-q", "-F", "-N", str(self.files + self.files // 4 + 10_000),
                "-E", "lazy_itable_init=0,lazy_journal_init=0", str(self.image),
            ],
            check=True,
        )  # fmt: skip
        self.mount.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mount)], check=True)
        os.sync()
        return self.mount

    def __exit__(self, *_: object) -> None:
        subprocess.run(["umount", str(self.mount)], check=True)
        self.image.unlink()
        os.sync()


def listing(root: Path) -> list[tuple[str, int]]:
    """Relative path and size of every file below `root`, caretaker's state and lost+found aside."""
    found: list[tuple[str, int]] = []
    for folder, dirs, files in os.walk(root):
        if folder == str(root):
            dirs[:] = [d for d in dirs if d not in {".caretaker", "lost+found"}]
        rel = os.path.relpath(folder, root)
        found += [(os.path.join(rel, f), os.lstat(os.path.join(folder, f)).st_size) for f in files]
    return sorted(found)


class Runs:
    """Each tool's restore commands, and the samples collected so far."""

    def __init__(self, data: Path, base: Path, tools: dict[str, str]) -> None:
        self.data, self.base = data, base
        self.restic_repo = repositories(data, base, tools["caretaker"])
        self.tools = tools
        self.expected = listing(data)
        self.samples: dict[str, list[Sample]] = {name: [] for name in [*tools, PLAIN, "restic", BASELINE]}

    def caretaker(self, name: str, target: Path) -> None:
        tool = self.tools["caretaker" if name == PLAIN else name]
        access = " ".join(caretaker_access(self.base, encrypted=name != PLAIN))
        command = (
            f"{tool} restore {access} --path {target} "
            f"--termination-log {self.base / 'term.log'} --log-level warning"
        )
        self.samples[name].append(timed(command))

    def restic(self, target: Path) -> None:
        env = restic_env(self.restic_repo, self.base)
        restored = timed(f"restic restore latest -q --target {target}", env)
        self.samples["restic"].append(restored)
        self.samples[BASELINE].append(synced(restored, target))

    def one(self, name: str, run: Callable[[Path], None], files: int) -> None:
        before = {key: len(values) for key, values in self.samples.items()}
        with NewFilesystem(self.base, files) as target:
            run(target)
            if listing(target) != self.expected:
                sys.exit(f"{name} restored something else than {self.data}")
        for key, values in self.samples.items():
            if len(values) > before[key]:
                last = values[-1]
                print(
                    f"  {key:<16} {last.wall:7.2f} s  cpu {last.cpu:7.2f} s  {last.rss_mib:5.0f} MiB",
                    flush=True,
                )


def measure(files: int, reps: int, tools: dict[str, str]) -> dict[str, list[Sample]]:
    base = workdir() / f"small-restore-{files}"
    base.mkdir(parents=True, exist_ok=True)
    data = small_files(base / "data", files)
    runs = Runs(data, base, tools)
    for rep in range(reps):
        print(f"{files:,} files, repetition {rep + 1}/{reps}", flush=True)
        for name in [*tools, PLAIN]:
            runs.one(name, lambda target, name=name: runs.caretaker(name, target), files)
        runs.one("restic", runs.restic, files)
    return runs.samples


def spread(samples: list[Sample]) -> float:
    walls = [s.wall for s in samples]
    return (max(walls) - min(walls)) / statistics.median(walls)


def report(files: int, samples: dict[str, list[Sample]]) -> str:
    base = samples[BASELINE]
    base_min, base_median = min(s.wall for s in base), statistics.median(s.wall for s in base)
    head = (
        "| data | tool | wall min s | wall median s | spread (max-min)/median | cpu median s | peak RSS MiB |"
    )
    lines = [head + f" vs {BASELINE} (min) | vs {BASELINE} (median) |", "|---" * 9 + "|"]
    for tool, found in samples.items():
        walls = [s.wall for s in found]
        lines.append(
            f"| {files:,} files | {tool} | {min(walls):.2f} | {statistics.median(walls):.2f} | "
            f"{spread(found):.0%} | {statistics.median(s.cpu for s in found):.2f} | "
            f"{max(s.rss_mib for s in found):.0f} | {min(walls) / base_min:.2f}x | "
            f"{statistics.median(walls) / base_median:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, action="append", help="files per data set (repeatable)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH")
    args = parser.parse_args()
    check_tools()
    tools = {"caretaker": caretaker(runtime_venv()), **parse_also(args.also)}
    tables = [report(files, measure(files, args.reps, tools)) for files in args.files or [100_000, 1_000_000]]
    print()
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
