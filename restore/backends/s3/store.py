"""`s3://bucket/prefix`: an ObjectStore on S3 or any S3-compatible store (botocore).

The client comes from botocore, boto3's core, not from boto3: boto3's session imports and
wires up its transfer manager and resources, which caretaker does not use (multipart is
ours); without them every S3 process, init containers included, starts about 0.04 s sooner.

The engine calls every method from several threads at once. One client is shared
(clients are thread-safe; sessions are not), and a semaphore of
CARETAKER_S3_CONCURRENCY slots bounds the requests in flight, multipart parts included.

Retries are ours, not botocore's (its retries are switched off), so that the run's
deadline governs them: refused connections, timeouts, 5xx, throttling and a body that
breaks off or stalls while being read are tried again with exponential backoff and jitter,
up to CARETAKER_S3_MAX_ATTEMPTS attempts, each attempt bounded by what is left of the
deadline (`Deadline.run`), and the error that ends them says how many attempts were made
and how long they took. Errors are translated once, in `s3_errors`.

Conditional writes (`create`, `replace`) use If-None-Match / If-Match. Stores without
them are detected once per process and emulated by write-then-read-back (docs/s3.md).
"""

from __future__ import annotations

import contextlib
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypedDict, TypeVar, cast

import botocore.config
import botocore.exceptions
import botocore.session
import structlog

from restore import __version__
from restore.backends.s3 import multipart as s3_multipart
from restore.backends.s3.errors import (
    ConditionalWritesUnsupportedError,
    PreconditionFailedError,
    RangeNotSatisfiableError,
    Where,
    backoff_seconds,
    brief,
    delete_failure,
    translate,
)
from restore.backends.s3.models import S3Models
from restore.backends.s3.settings import S3Settings
from restore.deadline import Deadline, DeadlineExceededError, Window
from restore.errors import ConfigError, ObjectNotFoundError, TransientBackendError
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
_MIN_SOCKET_TIMEOUT = 0.5  # a shorter one would fail healthy requests on a busy machine
_SLOT_POLL_SECONDS = 0.5


class _Condition(TypedDict, total=False):
    IfNoneMatch: str
    IfMatch: str


class _Tries:
    """The attempts of one request so far, for the message that ends them."""

    def __init__(self, operation: str, where: str, deadline: Deadline) -> None:
        self.operation = operation
        self.where = where
        self.count = 0
        self.last = ""  # what the last failed attempt ran into, briefly
        self._deadline = deadline
        self._started = deadline.elapsed()

    def gave_up(self, error: TransientBackendError | None) -> TransientBackendError:
        """The final error: its cause (or the deadline), the attempts made and how long they took."""
        tries = "1 attempt" if self.count == 1 else f"{self.count} attempts"
        took = f"{tries} in {self._deadline.elapsed() - self._started:.1f}s"
        if error is not None:
            return TransientBackendError(f"{error} ({took})")
        last = f"; the last ran into {self.last}" if self.last else ""
        return DeadlineExceededError(
            f"S3 unreachable: {self.operation} {self.where}: no answer within "
            f"{self._deadline.describe()} ({took}{last})"
        )


def make_client(settings: S3Settings, deadline: Deadline | None = None) -> S3Client:
    """An S3 client for the settings. Raise ConfigError for an unknown AWS_PROFILE.

    Socket timeouts never exceed the deadline, so a request given up on by `Deadline.run`
    ends by itself soon after.
    """
    config = botocore.config.Config(
        region_name=settings.region,
        connect_timeout=_socket_timeout(settings.connect_timeout, deadline),
        read_timeout=_socket_timeout(settings.read_timeout, deadline),
        retries={"total_max_attempts": 1},  # ours: see the module docstring
        max_pool_connections=settings.concurrency,
        tcp_keepalive=True,
        s3={"addressing_style": settings.addressing_style},
        user_agent_extra=f"caretaker/{__version__}",
    )
    keys = settings.credentials
    try:
        session = botocore.session.Session(profile=settings.profile)
        session.register_component("data_loader", S3Models.of(session))
        client = session.create_client(
            "s3",
            endpoint_url=settings.endpoint,
            verify=settings.ca_bundle,
            aws_access_key_id=keys.access_key if keys else None,
            aws_secret_access_key=keys.secret_key if keys else None,
            aws_session_token=keys.session_token if keys else None,
            config=config,
        )
    except botocore.exceptions.ProfileNotFound as error:
        raise ConfigError.single("AWS_PROFILE", settings.profile, str(error)) from error
    return cast("S3Client", client)


def _socket_timeout(configured: float, deadline: Deadline | None) -> float:
    limit = deadline.seconds if deadline is not None else None
    return max(min(configured, limit or configured), _MIN_SOCKET_TIMEOUT)


class S3Store:
    """Objects under `s3://bucket/prefix/`; see the module docstring for threads and retries."""

    def __init__(self, settings: S3Settings, client: S3Client, deadline: Deadline | None = None) -> None:
        self.settings = settings
        self._client = client
        self._deadline = deadline or Deadline()
        self._root = f"{settings.prefix}/" if settings.prefix else ""
        self._where = Where(settings.url, redact_url(settings.endpoint or "AWS S3"), settings.bucket)
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._parts = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="s3-part")
        self._probe_lock = threading.Lock()
        self._conditional: bool | None = {"on": True, "off": False}.get(settings.conditional_writes)
        self._log = structlog.get_logger().bind(repository=settings.url)

    @classmethod
    def from_url(
        cls, url: SplitResult, environ: Mapping[str, str], deadline: Deadline | None = None
    ) -> S3Store:
        """Open `s3://bucket/prefix` with settings from `environ`. Raise ConfigError if bad.

        Nothing is sent yet: a missing bucket or bad credentials surface on first use.
        """
        settings = S3Settings.from_url(url, environ)
        deadline = deadline or Deadline()
        return cls(settings, make_client(settings, deadline), deadline)

    def describe(self) -> str:
        return self.settings.url

    def _call(self, operation: str, key: str | None, request: Callable[[], _T]) -> _T:
        """Run one request, retried while it fails transiently (see the module docstring).

        Raise the translated error (see s3_errors) of the last attempt, or
        DeadlineExceededError naming the attempts when the deadline ends them.
        """
        tries = _Tries(operation, self._where.at(key), self._deadline)
        while True:
            try:
                return self._attempt(operation, key, request, tries)
            except DeadlineExceededError as error:
                if not tries.count:
                    raise  # it passed before a request was sent: nothing to add
                raise tries.gave_up(None) from error
            except TransientBackendError as error:
                if tries.count >= self.settings.max_attempts:
                    raise tries.gave_up(error) from error
                tries.last = brief(error)
                pause = backoff_seconds(error, tries.count, random.random)
            self._deadline.sleep(pause)

    def _attempt(self, operation: str, key: str | None, request: Callable[[], _T], tries: _Tries) -> _T:
        """One attempt in a request slot, bounded by the deadline; botocore errors translated."""
        what = f"S3 {operation} {tries.where}"
        window = self._deadline.window(what)

        def sent() -> _T:
            tries.count += 1
            return request()

        with self._slot(window, what):
            try:
                return self._deadline.run(sent, what=what, window=window)
            except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
                translated = translate(error, self._where, operation, key)
                if translated is error:
                    raise
                raise translated from error

    @contextlib.contextmanager
    def _slot(self, window: Window, what: str) -> Iterator[None]:
        while not self._slots.acquire(timeout=self._deadline.waited(window, _SLOT_POLL_SECONDS)):
            self._deadline.watch(window, what)
        try:
            yield
        finally:
            self._slots.release()

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
        """GET an object (or a range); a body that breaks off or stalls is fetched again."""
        request: GetObjectRequestTypeDef = {"Bucket": self.settings.bucket, "Key": self._root + key}
        if byte_range is not None:
            request["Range"] = byte_range

        def fetch() -> bytes:
            return self._client.get_object(**request)["Body"].read()

        return self._call("GetObject", key, fetch)

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
