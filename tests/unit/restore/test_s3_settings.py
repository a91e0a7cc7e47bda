"""S3 settings from the URL and the environment: precedence, defaults, and every problem at once."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from restore.backends.s3.settings import Credentials, S3Settings
from restore.errors import ConfigError

SECRET = "s3cr3t-value-never-shown"


def settings(url: str = "s3://my-bucket/app/data", **environ: str) -> S3Settings:
    return S3Settings.from_url(urlsplit(url), environ)


def problems(url: str = "s3://my-bucket/app", **environ: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        settings(url, **environ)
    assert SECRET not in str(caught.value)
    return {p.key: p.message for p in caught.value.problems}


class TestLocation:
    def test_bucket_and_prefix(self) -> None:
        found = settings("s3://my-bucket/app/data/")
        assert (found.bucket, found.prefix, found.url) == ("my-bucket", "app/data", "s3://my-bucket/app/data")

    def test_bucket_root(self) -> None:
        found = settings("s3://my-bucket")
        assert (found.prefix, found.url) == ("", "s3://my-bucket")

    @pytest.mark.parametrize(
        ("url", "rule"),
        [
            ("s3://ab/x", "3-63 characters"),
            ("s3://Upper/x", "3-63 characters"),
            ("s3://under_score/x", "3-63 characters"),
            ("s3:///x", "names no bucket"),
            ("s3:/bucket", "names no bucket"),
            ("s3://-bucket/x", "starts and ends"),
            ("s3://my..bucket/x", "no '..'"),
            ("s3://192.168.1.2/x", "not an IP address"),
            ("s3://xn--bucket/x", "no xn-- prefix"),
        ],
    )
    def test_bad_bucket_names(self, url: str, rule: str) -> None:
        assert rule in problems(url)["repository"]

    @pytest.mark.parametrize("secret", [SECRET, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"])
    def test_credentials_in_the_url_are_refused_and_not_repeated(self, secret: str) -> None:
        with pytest.raises(ConfigError) as caught:
            settings(f"s3://key:{secret}@my-bucket/app")
        assert secret not in str(caught.value)
        assert "/K7MD" not in str(caught.value)
        assert "no credentials in URLs: use AWS_ACCESS_KEY_ID_FILE" in str(caught.value)

    def test_credentials_in_the_endpoint_are_refused_and_not_repeated(self) -> None:
        found = problems("s3://my-bucket/app", CARETAKER_S3_ENDPOINT=f"http://key:{SECRET}@minio:9000")
        assert "AWS_SECRET_ACCESS_KEY_FILE" in found["CARETAKER_S3_ENDPOINT"]

    def test_query_and_port_are_refused(self) -> None:
        assert "no port, query or fragment" in problems("s3://my-bucket/app?region=x")["repository"]


class TestEnvironment:
    def test_defaults(self) -> None:
        found = settings()
        assert (found.endpoint, found.region, found.credentials, found.sse) == (None, None, None, None)
        assert (found.concurrency, found.max_attempts, found.conditional_writes) == (8, 5, "auto")
        assert found.addressing_style == "auto"
        assert found.write_arguments() == {}

    def test_endpoint_and_region_precedence(self) -> None:
        found = settings(
            AWS_ENDPOINT_URL="http://b:1", AWS_ENDPOINT_URL_S3="http://a:1", AWS_DEFAULT_REGION="eu-west-3"
        )
        assert (found.endpoint, found.region) == ("http://a:1", "eu-west-3")
        found = settings(
            CARETAKER_S3_ENDPOINT="https://c:1",
            AWS_ENDPOINT_URL="http://b:1",
            CARETAKER_S3_REGION="us-west-2",
            AWS_REGION="eu-west-1",
        )
        assert (found.endpoint, found.region) == ("https://c:1", "us-west-2")

    def test_path_style_defaults_to_path_with_a_custom_endpoint(self) -> None:
        assert settings(CARETAKER_S3_ENDPOINT="http://minio:9000").addressing_style == "path"
        assert (
            settings(
                CARETAKER_S3_ENDPOINT="http://minio:9000", CARETAKER_S3_PATH_STYLE="false"
            ).addressing_style
            == "virtual"
        )
        assert settings(CARETAKER_S3_PATH_STYLE="true").addressing_style == "path"

    def test_write_options(self) -> None:
        found = settings(
            CARETAKER_S3_SSE="aws:kms",
            CARETAKER_S3_SSE_KMS_KEY_ID="alias/backup",
            CARETAKER_S3_STORAGE_CLASS="STANDARD_IA",
        )
        assert found.write_arguments() == {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": "alias/backup",
            "StorageClass": "STANDARD_IA",
        }

    def test_tuning(self) -> None:
        found = settings(
            CARETAKER_S3_CONCURRENCY="16",
            CARETAKER_S3_MAX_ATTEMPTS="2",
            CARETAKER_S3_CONNECT_TIMEOUT="2.5",
            CARETAKER_S3_READ_TIMEOUT="2m",
            CARETAKER_S3_CONDITIONAL_WRITES="off",
        )
        assert (found.concurrency, found.max_attempts) == (16, 2)
        assert (found.connect_timeout, found.read_timeout, found.conditional_writes) == (2.5, 120.0, "off")

    def test_every_bad_value_is_reported_at_once(self, tmp_path: Path) -> None:
        found = problems(
            CARETAKER_S3_CONCURRENCY="0",
            CARETAKER_S3_MAX_ATTEMPTS="many",
            CARETAKER_S3_SSE="rot13",
            CARETAKER_S3_STORAGE_CLASS="GLACIER",
            CARETAKER_S3_CONNECT_TIMEOUT="-1",
            CARETAKER_S3_PATH_STYLE="maybe",
            CARETAKER_S3_CA_BUNDLE=str(tmp_path / "missing.pem"),
            CARETAKER_S3_SSE_KMS_KEY_ID="k",
            CARETAKER_S3_ENDPOINT="minio:9000",
        )
        assert set(found) == {
            "CARETAKER_S3_CONCURRENCY",
            "CARETAKER_S3_MAX_ATTEMPTS",
            "CARETAKER_S3_SSE",
            "CARETAKER_S3_STORAGE_CLASS",
            "CARETAKER_S3_CONNECT_TIMEOUT",
            "CARETAKER_S3_PATH_STYLE",
            "CARETAKER_S3_CA_BUNDLE",
            "CARETAKER_S3_SSE_KMS_KEY_ID",
            "CARETAKER_S3_ENDPOINT",
        }
        assert "STANDARD_IA" in found["CARETAKER_S3_STORAGE_CLASS"]  # GLACIER is not offered

    def test_ca_bundle_from_aws_ca_bundle(self, tmp_path: Path) -> None:
        bundle = tmp_path / "ca.pem"
        bundle.write_text("-----BEGIN CERTIFICATE-----\n")
        assert settings(AWS_CA_BUNDLE=str(bundle)).ca_bundle == str(bundle)


class TestCredentials:
    def test_keys_from_the_environment(self) -> None:
        found = settings(AWS_ACCESS_KEY_ID="AKID", AWS_SECRET_ACCESS_KEY=SECRET, AWS_SESSION_TOKEN="tok")
        assert found.credentials == Credentials("AKID", SECRET, "tok")
        assert SECRET not in repr(found)

    def test_keys_from_files_are_stripped(self, tmp_path: Path) -> None:
        (tmp_path / "id").write_text("AKID\n")
        (tmp_path / "secret").write_text(SECRET + "\n")
        found = settings(
            AWS_ACCESS_KEY_ID_FILE=str(tmp_path / "id"), AWS_SECRET_ACCESS_KEY_FILE=str(tmp_path / "secret")
        )
        assert found.credentials == Credentials("AKID", SECRET, None)

    def test_unreadable_or_empty_files(self, tmp_path: Path) -> None:
        (tmp_path / "empty").write_text("\n")
        found = problems(
            AWS_ACCESS_KEY_ID_FILE=str(tmp_path / "empty"),
            AWS_SECRET_ACCESS_KEY_FILE=str(tmp_path / "missing"),
        )
        assert found["AWS_ACCESS_KEY_ID_FILE"] == "file is empty"
        assert found["AWS_SECRET_ACCESS_KEY_FILE"].startswith("cannot read")

    def test_a_key_and_its_file_together_are_ambiguous(self, tmp_path: Path) -> None:
        (tmp_path / "secret").write_text(SECRET)
        found = problems(
            AWS_ACCESS_KEY_ID="AKID",
            AWS_SECRET_ACCESS_KEY=SECRET,
            AWS_SECRET_ACCESS_KEY_FILE=str(tmp_path / "secret"),
        )
        assert "not both" in found["AWS_SECRET_ACCESS_KEY"]

    def test_half_a_key_pair_is_an_error(self) -> None:
        assert "together" in problems(AWS_ACCESS_KEY_ID="AKID")["AWS_SECRET_ACCESS_KEY"]

    def test_no_keys_leaves_the_standard_chain_to_botocore(self) -> None:
        assert settings(AWS_PROFILE="backup").credentials is None
        assert settings(AWS_PROFILE="backup").profile == "backup"
