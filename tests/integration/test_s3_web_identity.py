"""S3 with web identity (EKS IRSA: a role ARN and a token file, no keys), as README.md promises.

STS cannot run here: tests/support/sts.py stands in for it and hands out the keys of the
real SeaweedFS server, so the restore's S3 requests are real and signed with what the
credential chain got from STS.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.integration.conftest import S3_TEST_TUNING, fresh_bucket
from tests.support.keys import password_env
from tests.support.restore_runs import Repo, assert_reported, restore, sample_tree
from tests.support.seaweed import SeaweedServer
from tests.support.sts import StsStandIn

pytestmark = pytest.mark.integration


def test_a_restore_with_web_identity_gets_its_keys_from_sts(
    s3_server: SeaweedServer, tmp_path: Path, target: Path
) -> None:
    url = f"s3://{fresh_bucket(s3_server)}/repo"
    password = password_env(tmp_path)
    Repo(url, {**s3_server.env(), **S3_TEST_TUNING, **password}).backup(sample_tree(tmp_path / "source"))
    token = tmp_path / "token"
    token.write_text("a-service-account-token")
    home = tmp_path / "home"  # no ~/.aws of this machine's user
    home.mkdir()
    with contextlib.closing(StsStandIn(s3_server.access_key, s3_server.secret_key)) as sts:
        environ = {
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/caretaker",
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
            "AWS_ENDPOINT_URL_STS": sts.endpoint,
            "CARETAKER_S3_ENDPOINT": s3_server.endpoint,
            "CARETAKER_S3_REGION": "us-east-1",
            **S3_TEST_TUNING,
            **password,
        }
        run = restore(target, Repo(url, environ))
        requests = list(sts.requests)
    assert_reported(run, "restored", 0)
    assert (target / "app.db").read_bytes() == b"database v1"
    assert [r.get("Action") for r in requests] == ["AssumeRoleWithWebIdentity"]
    assert requests[0]["WebIdentityToken"] == "a-service-account-token"
