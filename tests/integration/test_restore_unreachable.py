"""Storage trouble on a real S3 server (SeaweedFS): down -> retry until --timeout, exit 4;
back within the timeout -> restored; denied or missing bucket -> exit 5 at once, no retry.
The app must never start on an empty volume because storage was down."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from restore.model import STATE_DIR
from tests.integration.conftest import S3_TEST_TUNING, fresh_bucket
from tests.support.keys import password_env
from tests.support.restore_runs import Repo, assert_reported, restore, sample_tree, start
from tests.support.seaweed import SeaweedServer
from tests.support.trees import describe

pytestmark = pytest.mark.integration


def s3_repo(server: SeaweedServer, folder: Path) -> Repo:
    return Repo(
        f"s3://{fresh_bucket(server)}/repo", {**server.env(), **S3_TEST_TUNING, **password_env(folder)}
    )


class TestUnreachable:
    def test_down_until_the_timeout_is_exit_4_and_writes_no_data(self, private_s3_server, target, tmp_path):
        repo = s3_repo(private_s3_server, tmp_path)
        repo.backup(sample_tree(tmp_path / "source"))
        private_s3_server.kill()
        started = time.monotonic()
        run = restore(target, repo, "--timeout", "4s")
        elapsed = time.monotonic() - started
        assert_reported(run, "failed", 4)
        assert run.outcome.reason == "unreachable"
        assert "still failing after" in run.termination["error"]
        assert len(run.event("restore.retrying")) >= 2
        assert 4 <= elapsed < 30
        assert os.listdir(target) == [STATE_DIR]

    def test_back_within_the_timeout_is_restored(self, private_s3_server, target, tmp_path):
        repo = s3_repo(private_s3_server, tmp_path)
        source = sample_tree(tmp_path / "source")
        snapshot = repo.backup(source)
        private_s3_server.kill()
        process = start(target, repo, "--timeout", "2m")
        time.sleep(3)
        assert process.poll() is None, "gave up although the timeout is 2 minutes"
        private_s3_server.start()
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, out
        assert '"event": "restore.retrying"' in out
        assert describe(target) == describe(source)
        assert (target / STATE_DIR / "restore-result.json").exists()
        assert snapshot.id in (target.parent / "termination-log").read_text()


class TestDenied:
    def test_wrong_credentials_are_exit_5_without_retrying(self, s3_server, target, tmp_path):
        repo = s3_repo(s3_server, tmp_path)
        repo.backup(sample_tree(tmp_path / "source"))
        wrong = Repo(repo.url, {**repo.environ, "AWS_SECRET_ACCESS_KEY": "not-the-secret"})
        run = restore(target, wrong, "--timeout", "1m")
        assert_reported(run, "failed", 5)
        assert run.event("restore.retrying") == []
        assert "not-the-secret" not in run.stdout
        assert os.listdir(target) == [STATE_DIR]

    def test_missing_bucket_is_exit_5(self, s3_server, target):
        repo = Repo("s3://no-such-bucket-here/repo", {**s3_server.env(), **S3_TEST_TUNING})
        run = restore(target, repo, "--timeout", "1m")
        assert_reported(run, "failed", 5)
        assert "no-such-bucket-here" in run.termination["error"]
