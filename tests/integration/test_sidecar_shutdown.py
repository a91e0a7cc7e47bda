"""SIGTERM and SIGINT: the sidecar stops scheduling, lets running jobs finish or aborts them
cleanly within --shutdown-grace, takes a final backup when asked, and exits 0; a second
signal exits at once. In no case does a half-written snapshot appear.

The long backups read a 32 GiB sparse file into a real S3 server (SeaweedFS): it takes
seconds to read and hash on any machine, yet costs no disk, and its zero chunks compress
to nothing, so what the test measures is the sidecar, not the upload bandwidth.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import time
from pathlib import Path

import pytest

from restore.backends.registry import open_repository
from restore.model import BackupOptions
from tests.support.keys import UNENCRYPTED_ENV, open_options
from tests.support.sidecar import Sidecar, process_gone, wait_until
from tests.support.trees import write_file

pytestmark = pytest.mark.integration

SPARSE_BYTES = 32 << 30


@pytest.fixture(scope="module")
def big_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("big") / "data"
    write_file(data / "small.txt", b"some real content")
    with (data / "disk.img").open("wb") as image:
        image.truncate(SPARSE_BYTES)
    os.utime(data / "disk.img", ns=(0, 0))
    return data


def long_backup_config(url: str, data: Path, grace: str) -> str:
    return f"""
repository: {url}
path: {data}
shutdown: {{grace: {grace}}}
jobs:
  - {{name: backup, kind: backup, schedule: "@every 1h", run_on_start: true, retries: 0}}
"""


def wait_backup_running(sidecar: Sidecar) -> None:
    wait_until(
        lambda: sidecar.value("caretaker_job_running", task="backup", kind="backup") == 1,
        15,
        "the backup to start",
    )
    wait_until(lambda: sidecar.events("job.start", job="backup"), 5, "the backup's first step")
    time.sleep(0.2)  # inside the upload


def snapshots(url: str, env: dict[str, str]) -> list[str]:
    repo = open_repository(url, open_options(env))
    try:
        return [s.id for s in repo.snapshots()]
    finally:
        repo.close()


def unencrypted(env: dict[str, str]) -> dict[str, str]:
    """Timing tests: a password's key derivation at the start of the first backup (an
    uninterruptible 0.35 s or more on a loaded machine) would blur what they measure."""
    return {**{k: v for k, v in env.items() if k != "CARETAKER_PASSWORD_FILE"}, **UNENCRYPTED_ENV}


def test_sigterm_during_a_long_backup_aborts_it_cleanly_within_the_grace(tmp_path, big_data, s3_url, s3_env):
    config = long_backup_config(s3_url, big_data, "2s")  # aborted at 60%: 1.2 s
    with Sidecar(tmp_path, [], env=unencrypted(s3_env), config=config) as sidecar:
        wait_backup_running(sidecar)
        started = time.monotonic()
        sidecar.signal(signal.SIGTERM)
        assert sidecar.wait(10) == 0
        took = time.monotonic() - started
    assert took < 2.5  # the grace, plus the interpreter's own exit
    events = [e["event"] for e in sidecar.logs() if e["event"].startswith("shutdown.")]
    assert events == ["shutdown.start", "shutdown.aborting", "shutdown.done"]
    failure = sidecar.events("job.failure", job="backup")
    assert failure[0]["error"] == "sidecar shutting down"
    assert failure[0]["reason"] == "aborted"
    assert snapshots(s3_url, sidecar.env) == []
    # The writer lease went with the aborted backup: the next writer need not wait for it.
    small = tmp_path / "small"
    write_file(small / "f", b"after")
    repo = open_repository(s3_url, open_options(sidecar.env))
    try:
        assert repo.backup(small, BackupOptions()).snapshot.files == 1
    finally:
        repo.close()


def test_a_second_signal_exits_at_once_without_a_snapshot(tmp_path, big_data, s3_url, s3_env):
    config = long_backup_config(s3_url, big_data, "60s")
    with Sidecar(tmp_path, [], env=unencrypted(s3_env), config=config) as sidecar:
        wait_backup_running(sidecar)
        sidecar.signal(signal.SIGTERM)
        wait_until(lambda: sidecar.events("shutdown.start"), 5, "shutdown to begin")
        started = time.monotonic()
        sidecar.signal(signal.SIGINT)
        assert sidecar.wait(5) == 128 + signal.SIGINT
        took = time.monotonic() - started
    assert took < 1.0
    killed = sidecar.events("sidecar.killed")
    assert killed[0]["signal"] == "SIGINT"
    assert killed[0]["running"] == ["backup"]
    assert snapshots(s3_url, sidecar.env) == []


def test_backup_on_shutdown_leaves_a_final_snapshot(tmp_path):
    data = tmp_path / "data"
    write_file(data / "db.sqlite", b"precious")
    url = f"file://{tmp_path}/repo"
    config = f"""
repository: {url}
path: {data}
shutdown: {{grace: 10s, backup_on_shutdown: true}}
jobs:
  - name: backup
    kind: backup
    schedule: "@daily"
    before: [{{command: [sh, -c, "echo flushed >> {tmp_path}/trail"]}}]
"""
    with Sidecar(tmp_path, [], config=config) as sidecar:
        assert snapshots(url, sidecar.env) == []
        write_file(data / "late.txt", b"written just before the pod stops")
        assert sidecar.stop(15) == 0
    ids = snapshots(url, sidecar.env)
    assert len(ids) == 1
    repo = open_repository(url, open_options(sidecar.env))
    try:
        assert repo.snapshots()[0].files == 2
    finally:
        repo.close()
    assert (tmp_path / "trail").read_text() == "flushed\n"
    start = sidecar.events("job.start", job="backup")
    assert [e["reason"] for e in start] == ["shutdown"]


def test_running_jobs_finish_or_are_aborted_by_the_deadline(tmp_path):
    (tmp_path / "data").mkdir()
    config = f"""
repository: file://{tmp_path}/repo
path: {tmp_path}/data
shutdown: {{grace: 3s}}
defaults: {{retries: 0}}
jobs:
  - {{name: quick, kind: command, schedule: "@daily", run_on_start: true, command: [sleep, "1"]}}
  - name: stuck
    kind: command
    schedule: "@daily"
    run_on_start: true
    command: [sh, -c, "echo $$ > {tmp_path}/stuck.pid; sleep 60"]
"""
    with Sidecar(tmp_path, [], config=config) as sidecar:
        wait_until((tmp_path / "stuck.pid").exists, 5, "the stuck job")
        started = time.monotonic()
        sidecar.signal(signal.SIGTERM)
        sidecar.signal(signal.SIGTERM)  # one signal delivered twice (process and group)
        assert sidecar.wait(10) == 0
        took = time.monotonic() - started
    assert 1.5 < took < 3.5  # the stuck job is aborted at 3s - 40% = 1.8s
    assert [e["job"] for e in sidecar.events("job.success")] == ["quick"]
    assert sidecar.events("job.failure", job="stuck")[0]["error"] == "sidecar shutting down"
    assert process_gone(int((tmp_path / "stuck.pid").read_text()))


def _tgkill(pid: int, tid: int, signum: int) -> None:
    """Send `signum` to one thread of `pid`, as the kernel may pick any thread for a
    process-directed signal (`kill`)."""
    numbers = {"x86_64": 234, "aarch64": 131}  # the tgkill system call's number
    if platform.machine() not in numbers:
        pytest.skip(f"tgkill's system call number on {platform.machine()} is not known here")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(numbers[platform.machine()], pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


def test_sigterm_delivered_to_any_thread_starts_the_shutdown(tmp_path):
    (tmp_path / "data").mkdir()
    config = f"""
repository: file://{tmp_path}/repo
path: {tmp_path}/data
shutdown: {{grace: 3s}}
jobs:
  - {{name: tick, kind: command, schedule: "@every 1h", command: [sleep, "0"]}}
"""
    with Sidecar(tmp_path, [], config=config) as sidecar:
        threads = [int(task.name) for task in Path(f"/proc/{sidecar.pid}/task").iterdir()]
        others = [tid for tid in threads if tid != sidecar.pid]
        assert others, threads
        started = time.monotonic()
        _tgkill(sidecar.pid, others[-1], signal.SIGTERM)
        assert sidecar.wait(10) == 0
        took = time.monotonic() - started
    assert took < 2
    assert sidecar.events("shutdown.start")[0]["signal"] == "SIGTERM"
