"""Kill `caretaker restore` (a real subprocess) at several points; the target must be as it
was, or the next run must finish the move; either way the next run ends `restored`.

Kill points are found by watching the staging folder, not by hooks in the code: files
appearing under `.caretaker/staging/tree/` (download), the journal appearing (move).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from restore.model import STATE_DIR
from tests.support.restore_runs import assert_reported, parse, restore, start
from tests.support.trees import describe, write_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STAGING = Path(STATE_DIR) / "staging"


def many_files(root: Path, *, dirs: int = 40, per_dir: int = 40, top: int = 0) -> Path:
    """Enough small files that a restore takes a while (dNN/fNN, restored in name order)."""
    for d in range(dirs):
        for f in range(per_dir):
            write_file(root / f"d{d:02d}" / f"f{f:02d}", os.urandom(2048))
    for t in range(top):
        write_file(root / f"top{t:05d}", str(t).encode())
    return root


def wait_for(process: subprocess.Popen[str], path: Path, timeout: float = 60) -> bool:
    """Poll until `path` exists; return False if the process ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} never appeared")
        time.sleep(0.0005)
    return True


def kill(process: subprocess.Popen[str], signum: int = signal.SIGKILL) -> tuple[int, str]:
    process.send_signal(signum)
    out, _ = process.communicate(timeout=60)
    return process.returncode, out


class TestSigkill:
    @pytest.mark.parametrize("force", [False, True], ids=["empty", "force"])
    def test_killed_during_download_leaves_the_target_as_it_was(self, repo, target, tmp_path, force):
        source = many_files(tmp_path / "source")
        snapshot = repo.backup(source)
        if force:
            write_file(target / "app.db", b"mine")
        before = describe(target)
        process = start(target, repo, *(["--force"] if force else []))
        assert wait_for(process, target / STAGING / "tree" / "d10" / "f00")
        code, _ = kill(process)
        assert code == -signal.SIGKILL
        assert not (target / STAGING / "journal.json").exists(), "killed too late: the move had begun"
        assert describe(target) == before
        run = restore(target, repo, *(["--force"] if force else []))
        assert_reported(run, "restored", 0)
        assert run.outcome.snapshot == snapshot.id
        assert describe(target) == describe(source)
        assert not (target / STAGING).exists()

    def test_killed_during_the_move_is_finished_by_the_next_run(self, repo, target, tmp_path):
        """Many top-level entries on both sides make the move long enough to be caught."""
        source = many_files(tmp_path / "source", dirs=2, per_dir=2, top=4000)
        snapshot = repo.backup(source)
        for _ in range(5):
            many_files(target, dirs=0, top=3000)
            old = describe(target)
            process = start(target, repo, "--force")
            journal = target / STAGING / "journal.json"
            if wait_for(process, journal):
                kill(process)
                if journal.exists():
                    break
            empty(target)  # the move finished before the kill: try again
        else:
            pytest.fail("the move was never caught in 5 attempts")
        run = restore(target, repo)  # no --force needed: the journal decides
        assert_reported(run, "restored", 0)
        assert (run.outcome.snapshot, run.outcome.reason) == (snapshot.id, "finished an interrupted restore")
        assert describe(target) == describe(source)
        (quarantine,) = (target / STATE_DIR / "quarantine").iterdir()
        assert describe(quarantine) == old
        assert run.outcome.quarantined == str(quarantine)


def empty(target: Path) -> None:
    for child in target.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


class TestSigterm:
    @pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
    def test_stopped_during_download_cleans_staging_and_exits_128_plus_n(
        self, repo, target, tmp_path, signum, code
    ):
        repo.backup(many_files(tmp_path / "source"))
        process = start(target, repo)
        assert wait_for(process, target / STAGING / "tree" / "d05" / "f00")
        returncode, out = kill(process, signum)
        run = parse(target, returncode, out)
        assert_reported(run, "failed", code)
        assert run.outcome.reason == "cancelled"
        assert os.listdir(target) == [STATE_DIR]
        assert sorted(os.listdir(target / STATE_DIR)) == ["restore-result.json"]
