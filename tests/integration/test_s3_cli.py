"""`caretaker` on an S3 repository, as a user runs it: real processes, a real SeaweedFS.

The exit codes are the contract (README "Exit codes"): 4 unreachable, 5 denied or no
bucket, 7 corrupt data. The server is killed in the middle of a backup and stopped
during snapshots/restore, and a stored object is damaged behind caretaker's back.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from restore.backends.registry import open_repository
from restore.errors import EXIT_BACKEND_DENIED, EXIT_CORRUPT, EXIT_UNREACHABLE
from restore.model import STATE_DIR, BackupOptions
from tests.integration.conftest import S3_TEST_TUNING, fresh_bucket
from tests.support.cli import CARETAKER, run_caretaker
from tests.support.keys import open_options, password_env
from tests.support.seaweed import SeaweedServer
from tests.support.sidecar import wait_until

pytestmark = pytest.mark.integration


def make_tree(root: Path, *, files: int, size: int) -> Path:
    """Files of random (incompressible) content, spread over a few folders."""
    for number in range(files):
        path = root / f"dir{number % 4}" / f"file{number:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return root


def tree_of(root: Path) -> dict[str, bytes]:
    """Every file's content by relative path, without caretaker's own state folder."""
    files = (p for p in sorted(root.rglob("*")) if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files if STATE_DIR not in p.parts}


def snapshot_ids(url: str, environ: dict[str, str]) -> list[str]:
    listed = run_caretaker("snapshots", "--repository", url, "--json", environ=environ)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    return [snap["id"] for snap in json.loads(listed.stdout[listed.stdout.index("[") :])]


def test_backup_then_restore_round_trip(s3_url: str, s3_env: dict[str, str], tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", files=20, size=50_000)
    (source / "dir0" / "text.txt").write_text("hello " * 10_000)
    done = run_caretaker("backup", "--repository", s3_url, "--path", str(source), environ=s3_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(snapshot_ids(s3_url, s3_env)) == 1
    target = tmp_path / "restored"
    target.mkdir()
    restored = run_caretaker("restore", "--repository", s3_url, "--path", str(target), environ=s3_env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert tree_of(target) == tree_of(source)


def test_wrong_credentials_exit_5_without_leaking_the_secret(
    s3_url: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    wrong = "wrong-secret-must-not-appear-anywhere"
    source = make_tree(tmp_path / "src", files=1, size=10)
    run = run_caretaker(
        "backup",
        "--repository",
        s3_url,
        "--path",
        str(source),
        environ={**s3_env, "AWS_SECRET_ACCESS_KEY": wrong},
    )
    assert run.returncode == EXIT_BACKEND_DENIED, run.stdout + run.stderr
    assert wrong not in run.stdout + run.stderr
    assert "rejected the credentials" in run.stdout


def test_missing_bucket_exit_5(s3_env: dict[str, str]) -> None:
    run = run_caretaker("snapshots", "--repository", "s3://bucket-that-is-not-there/app", environ=s3_env)
    assert run.returncode == EXIT_BACKEND_DENIED, run.stdout + run.stderr
    assert "'bucket-that-is-not-there' not found" in run.stdout


def test_server_down_at_snapshots_and_restore_exit_4(
    private_s3_server: SeaweedServer, tmp_path: Path
) -> None:
    server = private_s3_server
    url, environ = (
        f"s3://{fresh_bucket(server)}/app",
        {**server.env(), **S3_TEST_TUNING, "CARETAKER_TIMEOUT": "3s", **password_env(tmp_path)},
    )
    source = make_tree(tmp_path / "src", files=3, size=1000)
    assert (
        run_caretaker("backup", "--repository", url, "--path", str(source), environ=environ).returncode == 0
    )
    server.stop()
    target = tmp_path / "restored"
    target.mkdir()
    for args in (["snapshots"], ["restore", "--path", str(target)]):
        started = time.monotonic()
        run = run_caretaker(*args, "--repository", url, environ=environ)
        assert run.returncode == EXIT_UNREACHABLE, run.stdout + run.stderr
        assert "unreachable" in run.stdout
        assert time.monotonic() - started < 60
    assert [p.name for p in target.iterdir() if p.name != STATE_DIR] == []
    server.start()
    # A server just started may answer 500 for a few seconds: give it more than 3 s.
    run = run_caretaker(
        "restore", "--repository", url, "--path", str(target), "--timeout", "1m", environ=environ
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert tree_of(target) == tree_of(source)


SHORT_CLAIM = ("--claim-heartbeat", "1s", "--claim-expiry", "2s")


@pytest.mark.slow
def _readable(client: Any, bucket: str, key: str) -> bool:
    try:
        client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception:
        return False
    return True


def test_server_killed_mid_backup_leaves_no_snapshot(
    private_s3_server: SeaweedServer, tmp_path: Path
) -> None:
    server = private_s3_server
    bucket = fresh_bucket(server)
    url, environ = f"s3://{bucket}/app", {**server.env(), **S3_TEST_TUNING, **password_env(tmp_path)}
    source = make_tree(tmp_path / "src", files=60, size=3_000_000)  # ~180 MB: several seconds
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **environ}
    backup = subprocess.Popen(
        [
            CARETAKER,
            "backup",
            "--repository",
            url,
            "--path",
            str(source),
            "--log-format",
            "json",
            *SHORT_CLAIM,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    raw = server.client()
    deadline = time.monotonic() + 60
    while not raw.list_objects_v2(Bucket=bucket, Prefix="app/data/").get("KeyCount"):
        assert backup.poll() is None, "backup finished before any data was stored"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server.kill()
    output, _ = backup.communicate(timeout=120)
    assert backup.returncode == EXIT_UNREACHABLE, output
    server.start()
    # The S3 port answers before every volume server is back: wait until stored objects read.
    wait_until(lambda: _readable(server.client(), bucket, "app/config"), 30, "the restarted server's objects")
    assert snapshot_ids(url, environ) == []
    # The dead backup could not release its claim; it expires by itself (here after 2 s).
    repository = open_repository(url, open_options(environ))
    try:
        result = repository.backup(source, BackupOptions())
        assert result.stats.files == 60
    finally:
        repository.close()
    assert snapshot_ids(url, environ) == [result.snapshot.id]
    target = tmp_path / "restored"
    target.mkdir()
    run = run_caretaker("restore", "--repository", url, "--path", str(target), environ=environ)
    assert run.returncode == 0, run.stdout + run.stderr
    assert tree_of(target) == tree_of(source)


def test_corrupt_object_is_detected_by_verify_and_restore(
    s3_url: str, s3_env: dict[str, str], s3_server: SeaweedServer, tmp_path: Path
) -> None:
    source = make_tree(tmp_path / "src", files=5, size=20_000)
    assert (
        run_caretaker("backup", "--repository", s3_url, "--path", str(source), environ=s3_env).returncode == 0
    )
    assert run_caretaker("verify", "--repository", s3_url, "--read-data", "1", environ=s3_env).returncode == 0
    bucket, prefix = urlsplit(s3_url).netloc, urlsplit(s3_url).path.strip("/")
    raw = s3_server.client()
    packs = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/data/")["Contents"]]
    damaged = bytearray(raw.get_object(Bucket=bucket, Key=packs[0])["Body"].read())
    damaged[len(damaged) // 2] ^= 0xFF  # same size: only reading the bytes can tell
    raw.put_object(Bucket=bucket, Key=packs[0], Body=bytes(damaged))
    verify = run_caretaker("verify", "--repository", s3_url, "--read-data", "1", environ=s3_env)
    assert verify.returncode == EXIT_CORRUPT, verify.stdout + verify.stderr
    assert packs[0].removeprefix(f"{prefix}/") in verify.stdout
    target = tmp_path / "restored"
    target.mkdir()
    restore = run_caretaker("restore", "--repository", s3_url, "--path", str(target), environ=s3_env)
    assert restore.returncode == EXIT_CORRUPT, restore.stdout + restore.stderr
