"""Back up now: `caretaker trigger` (SIGUSR1) makes a real sidecar run its backup jobs outside
their schedule, without overlapping a running one; under tini as PID 1 of its own PID
namespace (as in the image), `caretaker trigger` finds the sidecar and `kill -USR1 1` is
forwarded to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.cli import run_caretaker
from tests.support.keys import password_env
from tests.support.seaweed import free_ports
from tests.support.sidecar import Sidecar, parse_metrics, wait_until
from tests.support.trees import write_file

pytestmark = pytest.mark.integration

CONFIG = """
repository: file://{d}/repo
path: {d}/data
jobs:
  - name: backup
    kind: backup
    schedule: "0 0 1 1 *"
    before: [{{command: [sleep, "1.5"]}}]
"""


def triggered(sidecar: Sidecar) -> int:
    return len(sidecar.events("job.start", reason="trigger"))


def test_trigger_runs_the_backup_now_and_counts_an_overlap(tmp_path: Path):
    write_file(tmp_path / "data" / "a.txt", b"hello")
    with Sidecar(tmp_path, [], config=CONFIG.format(d=tmp_path)) as sidecar:
        assert sidecar.process is not None
        pid = str(sidecar.process.pid)
        first = run_caretaker("trigger", "--pid", pid, environ={})
        wait_until(lambda: triggered(sidecar) == 1, 10, "the triggered backup to start")
        second = run_caretaker("trigger", "--pid", pid, environ={})  # while the first runs
        wait_until(
            lambda: (
                sidecar.value("caretaker_job_runs_total", task="backup", kind="backup", result="success") == 1
            ),
            15,
            "the triggered backup to finish",
        )
        skipped = sidecar.value(
            "caretaker_job_runs_total", task="backup", kind="backup", result="skipped_overlap"
        )
        snapshots = sidecar.value("caretaker_repository_snapshots")
    assert (first.returncode, second.returncode) == (0, 0)
    assert "back up now" in first.stdout
    assert skipped == 1
    assert snapshots == 1


def test_trigger_without_a_sidecar_says_so(tmp_path: Path):
    done = run_caretaker("trigger", "--pid", "999999999", environ={})
    assert done.returncode == 2
    assert "no such process" in done.stdout + done.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("tini", "unshare", "nsenter")),
    reason="needs root, tini, unshare and nsenter (a PID namespace of our own)",
)
def test_under_tini_as_pid_1_trigger_finds_the_sidecar_and_kill_usr1_1_is_forwarded(tmp_path: Path):
    write_file(tmp_path / "data" / "a.txt", b"hello")
    (tmp_path / "sidecar.yaml").write_text(CONFIG.format(d=tmp_path))
    port = free_ports(1)[0]
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "tini", "--", sys.executable, "-m", "caretaker"]
    argv += ["sidecar", "--config", str(tmp_path / "sidecar.yaml"), "--listen", f"127.0.0.1:{port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARETAKER_")} | password_env(tmp_path)
    with (tmp_path / "sidecar.log").open("wb") as log:
        unshare = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        tini = wait_until(lambda: _child(unshare.pid), 10, "tini to start")
        inside = ["nsenter", "--target", str(tini), "--pid", "--mount", "--"]

        wait_until(lambda: _successes(port) == 0, 20, "the sidecar to serve /metrics")
        found = subprocess.run(
            [*inside, sys.executable, "-m", "caretaker", "trigger"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env=env,
        )
        assert found.returncode == 0, found.stdout + found.stderr
        assert "pid 2" in found.stdout  # the sidecar, tini's child, not tini itself
        wait_until(lambda: _successes(port) == 1, 15, "the backup asked for by caretaker trigger")
        forwarded = subprocess.run(
            [*inside, "/bin/kill", "-USR1", "1"], capture_output=True, text=True, check=False, timeout=10
        )
        assert forwarded.returncode == 0, forwarded.stderr
        wait_until(lambda: _successes(port) == 2, 15, "the backup asked for through tini")
        # SIGTERM the same way: tini forwards it, the sidecar stops cleanly, tini exits with it.
        subprocess.run([*inside, "/bin/kill", "-TERM", "1"], check=True, timeout=10)
        assert unshare.wait(30) == 0
    finally:
        if unshare.poll() is None:
            unshare.kill()
            unshare.wait(10)


def _successes(port: int) -> float | None:
    """Successful backup runs, or None while the sidecar does not answer yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            samples = parse_metrics(response.read().decode())
    except OSError:
        return None
    return samples[
        ("caretaker_job_runs_total", (("kind", "backup"), ("result", "success"), ("task", "backup")))
    ]


def _child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    time.sleep(0.2)
    return int(children[0]) if children else None
