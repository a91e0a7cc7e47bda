"""/readyz follows the repository: it fails when the S3 server goes away (and recovers when
it returns), when a file:// repository vanishes, and when the last backup is older than the
RPO. /healthz stays up throughout: the scheduler is fine, only storage is not."""

from __future__ import annotations

import shutil

import pytest

from tests.integration.conftest import S3_TEST_TUNING
from tests.support.seaweed import SeaweedServer
from tests.support.sidecar import Sidecar, wait_until
from tests.support.trees import write_file

pytestmark = pytest.mark.integration

# The readiness cache keeps a good answer for 5 s and a bad one for 2 s.
FLIP_SECONDS = 12


def backup_config(url: str, tmp_path, extra: str = "") -> str:
    write_file(tmp_path / "data" / "app.db", b"state")
    return f"""
repository: {url}
path: {tmp_path}/data
{extra}
jobs:
  - {{name: backup, kind: backup, schedule: "@daily", run_on_start: true}}
"""


def readyz(sidecar: Sidecar) -> tuple[int, str]:
    return sidecar.get("/readyz")


def wait_ready(sidecar: Sidecar, expected: int, text: str = "") -> str:
    def check() -> str | None:
        code, body = readyz(sidecar)
        return body if code == expected and text in body else None

    return wait_until(check, FLIP_SECONDS, f"/readyz {expected} {text!r}", interval=0.2)


def test_readyz_fails_while_the_s3_server_is_down(tmp_path, private_s3_server: SeaweedServer):
    private_s3_server.make_bucket("ready")
    env = {**private_s3_server.env(), **S3_TEST_TUNING}
    with Sidecar(tmp_path, [], env=env, config=backup_config("s3://ready/repo", tmp_path)) as sidecar:
        wait_until(lambda: sidecar.value("caretaker_repository_snapshots") == 1, 15, "a snapshot")
        assert wait_ready(sidecar, 200) == "ready\n"
        private_s3_server.kill()
        body = wait_ready(sidecar, 503, "repository unreachable")
        assert body.startswith("not ready: repository unreachable")
        assert sidecar.get("/healthz") == (200, "ok\n")
        assert "repository unreachable" in sidecar.status()["ready_problems"][0]
        private_s3_server.start()
        wait_ready(sidecar, 200)
        assert sidecar.stop() == 0


def test_readyz_fails_when_a_local_repository_vanishes(tmp_path):
    config = backup_config(f"file://{tmp_path}/repo", tmp_path)
    with Sidecar(tmp_path, [], config=config) as sidecar:
        wait_until(lambda: sidecar.value("caretaker_repository_snapshots") == 1, 10, "a snapshot")
        wait_ready(sidecar, 200)
        shutil.rmtree(tmp_path / "repo")  # an unmounted volume looks just like this
        body = wait_ready(sidecar, 503, "no snapshots")
        assert body == "not ready: repository lists no snapshots any more (it had 1)\n"
        assert sidecar.value("caretaker_repository_snapshots") == 0


def test_readyz_fails_when_the_last_backup_is_older_than_the_rpo(tmp_path):
    (tmp_path / "data").mkdir()
    config = f"""
repository: file://{tmp_path}/repo
path: {tmp_path}/data
rpo: 2s
jobs: [{{name: backup, kind: backup, schedule: "@daily"}}]
"""
    with Sidecar(tmp_path, [], config=config) as sidecar:
        assert readyz(sidecar) == (200, "ready\n")
        body = wait_ready(sidecar, 503, "rpo")
        assert "older than the rpo of 2s" in body
        assert sidecar.status()["rpo_seconds"] == 2
