"""S3Store against a real SeaweedFS: what the contract suite cannot show for every store.

Multipart uploads, encryption and storage class headers, the `*_FILE` credential twins,
and the translation of real failures (bad credentials, missing bucket, no server) into
caretaker's errors with messages that name the place and never the secret.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from structlog.testing import capture_logs

from restore.backends.s3.settings import MiB
from restore.backends.s3.store import S3Store, make_client
from restore.errors import (
    EXIT_BACKEND_DENIED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ConfigError,
    PermanentBackendError,
    TransientBackendError,
)
from tests.support.seaweed import SeaweedServer, free_ports

pytestmark = pytest.mark.integration


def open_store(url: str, environ: dict[str, str]) -> S3Store:
    return S3Store.from_url(urlsplit(url), environ)


def without_keys(s3_env: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """The server's environment without its AWS_* variables, plus `extra`."""
    return {k: v for k, v in s3_env.items() if not k.startswith("AWS_")} | extra


def writes_and_reads(store: S3Store) -> None:
    store.put("k", b"v")
    assert store.get("k") == b"v"
    store.close()


def bucket_and_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.netloc, parts.path.strip("/")


class TestMultipart:
    def test_large_object_is_uploaded_in_parts_and_reads_back(
        self, s3_url: str, s3_env: dict[str, str], s3_server: SeaweedServer
    ) -> None:
        base = open_store(s3_url, s3_env)
        settings = dataclasses.replace(
            base.settings, multipart_threshold=5 * MiB, multipart_part_size=5 * MiB
        )
        store = S3Store(settings, make_client(settings))
        data = os.urandom(17 * MiB + 123)
        store.put("data/big", data)
        assert store.get("data/big") == data
        assert store.get_range("data/big", 15 * MiB, 10) == data[15 * MiB : 15 * MiB + 10]
        bucket, prefix = bucket_and_prefix(s3_url)
        head = s3_server.client().head_object(Bucket=bucket, Key=f"{prefix}/data/big")
        assert head["ETag"].strip('"').endswith("-4")  # S3's mark of a 4-part upload
        assert head["ContentLength"] == len(data)
        uploads = s3_server.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
        assert not uploads.get("Uploads")
        store.close()
        base.close()


class TestWriteOptions:
    def test_sse_and_storage_class_reach_the_server(
        self, s3_url: str, s3_env: dict[str, str], s3_server: SeaweedServer
    ) -> None:
        environ = {**s3_env, "CARETAKER_S3_SSE": "AES256", "CARETAKER_S3_STORAGE_CLASS": "STANDARD_IA"}
        store = open_store(s3_url, environ)
        store.put("data/x", b"secret data")
        assert store.create("lease", b"{}")
        bucket, prefix = bucket_and_prefix(s3_url)
        for key in ("data/x", "lease"):
            head = s3_server.client().head_object(Bucket=bucket, Key=f"{prefix}/{key}")
            assert head.get("ServerSideEncryption") == "AES256"
            assert head.get("StorageClass") == "STANDARD_IA"
        store.close()

    def test_credentials_from_files(self, s3_url: str, s3_env: dict[str, str], tmp_path: Path) -> None:
        (tmp_path / "id").write_text(s3_env["AWS_ACCESS_KEY_ID"] + "\n")
        (tmp_path / "secret").write_text(s3_env["AWS_SECRET_ACCESS_KEY"] + "\n")
        environ = without_keys(
            s3_env,
            {
                "AWS_ACCESS_KEY_ID_FILE": str(tmp_path / "id"),
                "AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret"),
            },
        )
        writes_and_reads(open_store(s3_url, environ))

    def test_credentials_from_a_named_profile(
        self, s3_url: str, s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        shared = tmp_path / "credentials"
        shared.write_text(
            f"[backup]\naws_access_key_id = {s3_env['AWS_ACCESS_KEY_ID']}\n"
            f"aws_secret_access_key = {s3_env['AWS_SECRET_ACCESS_KEY']}\n"
        )
        # botocore reads where the shared files are from the process environment.
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        writes_and_reads(open_store(s3_url, without_keys(s3_env, {"AWS_PROFILE": "backup"})))

    def test_a_profile_that_does_not_exist_is_a_config_error_naming_it(
        self, s3_url: str, s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        with pytest.raises(ConfigError, match="AWS_PROFILE") as raised:
            open_store(s3_url, without_keys(s3_env, {"AWS_PROFILE": "nobody"}))
        assert "nobody" in str(raised.value)
        assert raised.value.exit_code == EXIT_USAGE

    def test_store_with_conditional_writes_is_detected_without_warning(
        self, s3_url: str, s3_env: dict[str, str]
    ) -> None:
        store = open_store(s3_url, s3_env)
        with capture_logs() as logs:
            assert store.create("lease", b"1")
            assert not store.create("lease", b"2")
        assert not [e for e in logs if e["event"] == "s3.conditional_writes.unsupported"]
        assert [item.key for item in store.list("")] == ["lease"]  # the probe left nothing behind
        store.close()


class TestFailures:
    def test_wrong_secret_is_permanent_and_never_echoed(self, s3_url: str, s3_env: dict[str, str]) -> None:
        wrong = "definitely-not-the-secret-0123456789"
        store = open_store(s3_url, {**s3_env, "AWS_SECRET_ACCESS_KEY": wrong})
        for call in (lambda: list(store.list("")), lambda: store.put("k", b"v"), lambda: store.stat("k")):
            with pytest.raises(PermanentBackendError) as caught:
                call()
            assert caught.value.exit_code == EXIT_BACKEND_DENIED
            assert wrong not in str(caught.value)
            assert urlsplit(s3_url).netloc in str(caught.value)
        store.close()

    def test_unknown_access_key_is_permanent(self, s3_url: str, s3_env: dict[str, str]) -> None:
        store = open_store(s3_url, {**s3_env, "AWS_ACCESS_KEY_ID": "nobody"})
        with pytest.raises(PermanentBackendError, match="rejected the credentials"):
            store.get("k")
        store.close()

    def test_missing_bucket_is_permanent_and_named(self, s3_env: dict[str, str]) -> None:
        store = open_store("s3://no-such-bucket-here/repo", s3_env)
        for call in (lambda: list(store.list("")), lambda: store.get("k"), lambda: store.put("k", b"v")):
            with pytest.raises(
                PermanentBackendError, match=r"'no-such-bucket-here' not found at http://127\.0\.0\.1"
            ):
                call()
        store.close()

    def test_no_server_is_transient_after_a_bounded_number_of_attempts(self, s3_env: dict[str, str]) -> None:
        (port,) = free_ports(1)
        environ = {
            **s3_env,
            "CARETAKER_S3_ENDPOINT": f"http://127.0.0.1:{port}",
            "CARETAKER_S3_MAX_ATTEMPTS": "3",
        }
        store = open_store("s3://some-bucket/repo", environ)
        started = time.monotonic()
        for call in (lambda: list(store.list("")), lambda: store.get("k"), lambda: store.create("k", b"v")):
            with pytest.raises(TransientBackendError, match=f"unreachable.*127.0.0.1:{port}") as caught:
                call()
            assert caught.value.exit_code == EXIT_UNREACHABLE
        assert time.monotonic() - started < 30  # 3 attempts each, backoff capped
        store.close()
