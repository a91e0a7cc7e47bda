"""Running `caretaker restore` as the init container does, and checking what it reported.

Shared by the tests/integration/test_restore_*.py files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from restore.backends.registry import open_repository
from restore.initcontainer.outcome import Outcome, read_result
from restore.model import BackupOptions, SnapshotInfo
from restore.repository import Repository
from tests.support.keys import open_options
from tests.support.trees import age_tree, write_file


@dataclasses.dataclass
class Repo:
    url: str
    environ: dict[str, str]

    def open(self) -> Repository:
        return open_repository(self.url, open_options(self.environ))

    def backup(self, source: Path) -> SnapshotInfo:
        age_tree(source)
        repo = self.open()
        try:
            return repo.backup(source, BackupOptions(allow_empty=True)).snapshot
        finally:
            repo.close()


@dataclasses.dataclass
class Run:
    code: int
    outcome: Outcome | None
    termination: dict[str, Any] | None
    events: list[dict[str, Any]]
    stdout: str

    def event(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]


def command(target: Path, repo: Repo, *args: str) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "restore", "restore", "--repository", repo.url, "--path", str(target)]
    argv += ["--termination-log", str(target.parent / "termination-log"), "--log-format", "json", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARETAKER_")}
    return argv, {**env, **repo.environ}


def parse(target: Path, code: int, stdout: str) -> Run:
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"')]
    log = target.parent / "termination-log"
    termination = json.loads(log.read_text()) if log.exists() else None
    try:
        outcome = read_result(target) if target.is_dir() else None
    except ValueError:  # not a result caretaker wrote (a planted file, a symlinked .caretaker)
        outcome = None
    return Run(code, outcome, termination, events, stdout)


def restore(target: Path, repo: Repo, *args: str, timeout: float = 120, **popen: Any) -> Run:
    """Run `caretaker restore` to its end; the termination log starts fresh each run."""
    (target.parent / "termination-log").unlink(missing_ok=True)
    argv, env = command(target, repo, *args)
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False, **popen
    )
    return parse(target, done.returncode, done.stdout + done.stderr)


def start(target: Path, repo: Repo, *args: str) -> subprocess.Popen[str]:
    (target.parent / "termination-log").unlink(missing_ok=True)
    argv, env = command(target, repo, *args)
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def sample_tree(root: Path, marker: str = "v1") -> Path:
    write_file(root / "app.db", f"database {marker}".encode())
    write_file(root / "conf" / "settings.yaml", b"a: 1\n", mode=0o600)
    write_file(root / "blobs" / "big.bin", os.urandom(300_000))
    os.symlink("conf/settings.yaml", root / "settings")
    return root


def assert_reported(run: Run, outcome: str, code: int) -> None:
    assert run.code == code, run.stdout
    assert run.outcome is not None
    assert (run.outcome.outcome, run.outcome.exit_code) == (outcome, code)
    assert run.termination is not None
    assert (run.termination["outcome"], run.termination["exit_code"]) == (outcome, code)
    final = run.event("restore.outcome")
    assert len(final) == 1
    assert (final[0]["outcome"], final[0]["exit_code"]) == (outcome, code)
