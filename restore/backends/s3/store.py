"""`s3://bucket/prefix`: an ObjectStore on S3 or any S3-compatible store (boto3).

The engine calls every method from several threads at once. One boto3 client is shared
(clients are thread-safe; sessions and resources are not), and a semaphore of
CARETAKER_S3_CONCURRENCY slots bounds the requests in flight, multipart parts included.

Retries: botocore's "standard" mode retries refused connections, timeouts, 5xx and
throttling with exponential backoff and jitter, up to CARETAKER_S3_MAX_ATTEMPTS attempts;
a body that breaks off while being read (which botocore does not retry) is re-fetched
here with the same budget. What still fails is translated once, in `s3_errors`.

Conditional writes (`create`, `replace`) use If-None-Match / If-Match. Stores without
them are detected once per process and emulated by write-then-read-back (docs/s3.md).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypedDict, TypeVar, cast

import boto3
import botocore.config
import botocore.exceptions
import structlog

from restore import __version__
from restore.backends.s3 import multipart as s3_multipart
from restore.backends.s3.errors import (
    TRANSIENT_EXCEPTIONS,
    ConditionalWritesUnsupportedError,
    PreconditionFailedError,
    RangeNotSatisfiableError,
    Where,
    delete_failure,
    translate,
)
from restore.backends.s3.settings import S3Settings
from restore.errors import ConfigError, ObjectNotFoundError
from restore.redaction import redact_url
from restore.snapshots.store import StoredObject

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from urllib.parse import SplitResult

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        GetObjectRequestTypeDef,
        ListObjectsV2RequestTypeDef,
        ObjectIdentifierTypeDef,
    )

_T = TypeVar("_T")
_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


class _Condition(TypedDict, total=False):
    IfNoneMatch: str
    IfMatch: str


class _BodyInterruptedError(Exception):
    """The response headers arrived but the body broke off: worth fetching again."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def make_client(settings: S3Settings) -> S3Client:
    """A boto3 S3 client for the settings. Raise ConfigError for an unknown AWS_PROFILE."""
    config = botocore.config.Config(
        region_name=settings.region,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        max_pool_connections=settings.concurrency,
        tcp_keepalive=True,
        s3={"addressing_style": settings.addressing_style},
        user_agent_extra=f"caretaker/{__version__}",
    )
    try:
        session = boto3.session.Session(profile_name=settings.profile)
    except botocore.exceptions.ProfileNotFound as error:
        raise ConfigError.single("AWS_PROFILE", settings.profile, str(error)) from error
    keys = settings.credentials
    return session.client(
        "s3",
        endpoint_url=settings.endpoint,
        verify=settings.ca_bundle,
        aws_access_key_id=keys.access_key if keys else None,
        aws_secret_access_key=keys.secret_key if keys else None,
        aws_session_token=keys.session_token if keys else None,
        config=config,
    )


class S3Store:
    """Objects under `s3://bucket/prefix/`; see the module docstring for threads and retries."""

    def __init__(self, settings: S3Settings, client: S3Client) -> None:
        self.settings = settings
        self._client = client
        self._root = f"{settings.prefix}/" if settings.prefix else ""
        self._where = Where(settings.url, redact_url(settings.endpoint or "AWS S3"), settings.bucket)
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._parts = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="s3-part")
        self._probe_lock = threading.Lock()
        self._conditional: bool | None = {"on": True, "off": False}.get(settings.conditional_writes)
        self._log = structlog.get_logger().bind(repository=settings.url)

    @classmethod
    def from_url(cls, url: SplitResult, environ: Mapping[str, str]) -> S3Store:
        """Open `s3://bucket/prefix` with settings from `environ`. Raise ConfigError if bad.

        Nothing is sent yet: a missing bucket or bad credentials surface on first use.
        """
        settings = S3Settings.from_url(url, environ)
        return cls(settings, make_client(settings))

    def describe(self) -> str:
        return self.settings.url

    def _call(self, operation: str, key: str | None, request: Callable[[], _T]) -> _T:
        """Run one request in a slot; raise its botocore error translated (see s3_errors)."""
        with self._slots:
            try:
                return request()
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
                translated = translate(error, self._where, operation, key)
                if translated is error:
                    raise
                raise translated from error

    def get(self, key: str) -> bytes:
        return self._read(key, None)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:  # S3 has no empty range; still tell a missing object apart
            if self.stat(key) is None:
                raise ObjectNotFoundError(key)
            return b""
        try:
            return self._read(key, f"bytes={start}-{start + length - 1}")
        except RangeNotSatisfiableError:
            return b""  # like a file read past its end

    def _read(self, key: str, byte_range: str | None) -> bytes:
        """GET an object (or a range), fetching again if the body breaks off midway."""
        request: GetObjectRequestTypeDef = {"Bucket": self.settings.bucket, "Key": self._root + key}
        if byte_range is not None:
            request["Range"] = byte_range

        def fetch() -> bytes:
            body = self._client.get_object(**request)["Body"]
            try:
                return body.read()
            except TRANSIENT_EXCEPTIONS as error:
                raise _BodyInterruptedError(error) from error

        attempt = 1
        while True:
            try:
                return self._call("GetObject", key, fetch)
            except _BodyInterruptedError as interrupted:
                if attempt >= self.settings.max_attempts:
                    raise translate(interrupted.error, self._where, "GetObject", key) from interrupted.error
            time.sleep(random.uniform(0, min(2.0**attempt, 20.0)) / 4)  # noqa: S311 - jitter, not crypto
            attempt += 1

    def put(self, key: str, data: bytes | bytearray) -> None:
        if len(data) >= self.settings.multipart_threshold:
            s3_multipart.upload(
                client=self._client,
                call=self._call,
                pool=self._parts,
                settings=self.settings,
                key=key,
                full_key=self._root + key,
                data=data,
            )
            return
        self._put(key, data, _Condition())

    def _put(self, key: str, data: bytes | bytearray, condition: _Condition) -> None:
        self._call(
            "PutObject",
            key,
            lambda: self._client.put_object(
                Bucket=self.settings.bucket,
                Key=self._root + key,
                # botocore sends any bytes-like body; the stubs only name bytes. Packs arrive
                # as bytearrays so that no 16 MiB copy is made per pack.
                Body=cast("bytes", data),
                **self.settings.write_arguments(),
                **condition,
            ),
        )

    def _put_if(self, key: str, data: bytes, condition: _Condition) -> bool:
        try:
            self._put(key, data, condition)
        except (PreconditionFailedError, ObjectNotFoundError):
            return False
        return True

    def create(self, key: str, data: bytes) -> bool:
        if self._conditional_writes():
            return self._put_if(key, data, _Condition(IfNoneMatch="*"))
        if self.stat(key) is not None:
            return False
        self._put(key, data, _Condition())
        return self._read_back(key, data)

    def replace(self, key: str, data: bytes, *, version: str) -> bool:
        if self._conditional_writes():
            return self._put_if(key, data, _Condition(IfMatch=version))
        current = self.stat(key)
        if current is None or current.version != version:
            return False
        self._put(key, data, _Condition())
        return self._read_back(key, data)

    def _read_back(self, key: str, data: bytes) -> bool:
        # Emulation only: a concurrent writer's content read back means we lost the race.
        try:
            return self.get(key) == data
        except ObjectNotFoundError:
            return False

    def _conditional_writes(self) -> bool:
        """Whether the store honours If-None-Match/If-Match (probed once, unless configured)."""
        with self._probe_lock:
            if self._conditional is None:
                self._conditional = self._probe_conditional_writes()
                if not self._conditional:
                    self._log.warning(
                        "s3.conditional_writes.unsupported",
                        endpoint=self._where.endpoint,
                        fallback="write, then read back; a race between two writers is possible",
                    )
            return self._conditional

    def _probe_conditional_writes(self) -> bool:
        # Some stores reject the header (501), others silently ignore it: a second
        # create of the same key must fail for the feature to count as present.
        probe = f".caretaker-probe-{uuid.uuid4().hex}"
        try:
            first = self._put_if(probe, b"", _Condition(IfNoneMatch="*"))
            second = self._put_if(probe, b"", _Condition(IfNoneMatch="*"))
        except ConditionalWritesUnsupportedError:
            return False
        finally:
            self.delete([probe])
        return first and not second

    def stat(self, key: str) -> StoredObject | None:
        try:
            head = self._call(
                "HeadObject",
                key,
                lambda: self._client.head_object(Bucket=self.settings.bucket, Key=self._root + key),
            )
        except ObjectNotFoundError:
            return None
        return StoredObject(key, head["ContentLength"], head["LastModified"], head["ETag"])

    def list(self, prefix: str) -> Iterator[StoredObject]:
        request: ListObjectsV2RequestTypeDef = {
            "Bucket": self.settings.bucket,
            "Prefix": self._root + prefix,
        }
        while True:
            page = self._call("ListObjectsV2", None, lambda: self._client.list_objects_v2(**request))
            for item in page.get("Contents", []):
                key = item["Key"][len(self._root) :]
                yield StoredObject(key, item["Size"], item["LastModified"], item["ETag"])
            if not page.get("IsTruncated"):
                return
            request["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            self._delete_batch(keys[start : start + _DELETE_BATCH])

    def _delete_batch(self, keys: Sequence[str]) -> None:
        objects: list[ObjectIdentifierTypeDef] = [{"Key": self._root + key} for key in keys]
        answer = self._call(
            "DeleteObjects",
            None,
            lambda: self._client.delete_objects(
                Bucket=self.settings.bucket, Delete={"Objects": objects, "Quiet": True}
            ),
        )
        failed = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
        if failed:
            raise delete_failure(failed, self._where)

    def close(self) -> None:
        self._parts.shutdown(wait=True, cancel_futures=True)
        self._client.close()
