"""S3 settings: the `s3://bucket/prefix` URL plus the environment, checked all at once.

Only what caretaker adds is read here (`CARETAKER_S3_*`, the `*_FILE` twins of the AWS
keys, and the AWS variables we must pass to botocore explicitly because the environment is
handed to us as a mapping). Everything else — shared config/credentials files, profiles,
web identity (IRSA), container and instance roles — is left to botocore's standard chain.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Literal, TypedDict, cast

from restore.backends.envreader import EnvReader
from restore.clock import parse_duration
from restore.errors import ConfigError
from restore.redaction import has_userinfo, redact_url
from restore.values import boolean as parse_bool

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from urllib.parse import SplitResult

    from mypy_boto3_s3.literals import ServerSideEncryptionType, StorageClassType

MiB = 1024 * 1024
ConditionalWrites = Literal["auto", "on", "off"]
SSE_MODES = ("AES256", "aws:kms")
# Classes whose objects can be read at once. GLACIER and DEEP_ARCHIVE need a restore
# request before every read, which an init container cannot wait for.
STORAGE_CLASSES = (
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "REDUCED_REDUNDANCY",
    "EXPRESS_ONEZONE",
)
_BUCKET_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")
# Defaults of the CARETAKER_S3_* tunables, used both as field defaults and when unset.
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
DEFAULT_CONDITIONAL_WRITES: ConditionalWrites = "auto"
_NO_URL_CREDENTIALS = (
    "no credentials in URLs: use AWS_ACCESS_KEY_ID_FILE and AWS_SECRET_ACCESS_KEY_FILE "
    "(mounted Secret files), the AWS_* variables or IRSA"
)


class WriteArguments(TypedDict, total=False):
    """What every PutObject/CreateMultipartUpload carries besides bucket, key and body."""

    ServerSideEncryption: ServerSideEncryptionType
    SSEKMSKeyId: str
    StorageClass: StorageClassType


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Static keys given in the environment (or in files named by `*_FILE`)."""

    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class S3Settings:
    """Everything S3Store needs besides a client. Durations are in seconds."""

    bucket: str
    prefix: str = ""  # no leading or trailing "/"; "" is the bucket's root
    endpoint: str | None = None
    region: str | None = None
    # None: path-style when a custom endpoint is set (MinIO, SeaweedFS, Ceph), else botocore's choice.
    path_style: bool | None = None
    sse: str | None = None
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    ca_bundle: str | None = None
    profile: str | None = None
    credentials: Credentials | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    conditional_writes: ConditionalWrites = DEFAULT_CONDITIONAL_WRITES
    multipart_threshold: int = 64 * MiB
    multipart_part_size: int = 16 * MiB

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def addressing_style(self) -> Literal["auto", "virtual", "path"]:
        if self.path_style is None:
            return "path" if self.endpoint else "auto"
        return "path" if self.path_style else "virtual"

    def write_arguments(self) -> WriteArguments:
        extra = WriteArguments()
        if self.sse:
            extra["ServerSideEncryption"] = cast("ServerSideEncryptionType", self.sse)
        if self.sse_kms_key_id:
            extra["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.storage_class:
            extra["StorageClass"] = cast("StorageClassType", self.storage_class)
        return extra

    @classmethod
    def from_url(cls, url: SplitResult, environ: Mapping[str, str]) -> S3Settings:
        """Read the URL and the environment. Raise ConfigError naming every bad key."""
        reader = _Reader(environ)
        bucket, prefix = reader.location(url)
        settings = cls(
            bucket=bucket,
            prefix=prefix,
            endpoint=reader.first("CARETAKER_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
            region=reader.first("CARETAKER_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
            path_style=reader.parsed("CARETAKER_S3_PATH_STYLE", parse_bool, None),
            sse=reader.choice("CARETAKER_S3_SSE", SSE_MODES),
            sse_kms_key_id=reader.first("CARETAKER_S3_SSE_KMS_KEY_ID"),
            storage_class=reader.choice("CARETAKER_S3_STORAGE_CLASS", STORAGE_CLASSES),
            ca_bundle=reader.existing_file("CARETAKER_S3_CA_BUNDLE", "AWS_CA_BUNDLE"),
            profile=reader.first("AWS_PROFILE"),
            credentials=reader.credentials(),
            concurrency=reader.parsed("CARETAKER_S3_CONCURRENCY", _bounded_int(1, 256), DEFAULT_CONCURRENCY),
            max_attempts=reader.parsed(
                "CARETAKER_S3_MAX_ATTEMPTS", _bounded_int(1, 100), DEFAULT_MAX_ATTEMPTS
            ),
            connect_timeout=reader.parsed("CARETAKER_S3_CONNECT_TIMEOUT", _seconds, DEFAULT_CONNECT_TIMEOUT),
            read_timeout=reader.parsed("CARETAKER_S3_READ_TIMEOUT", _seconds, DEFAULT_READ_TIMEOUT),
            conditional_writes=reader.parsed(
                "CARETAKER_S3_CONDITIONAL_WRITES", _tristate, DEFAULT_CONDITIONAL_WRITES
            ),
        )
        if settings.sse_kms_key_id and settings.sse != "aws:kms":
            reader.problem(
                "CARETAKER_S3_SSE_KMS_KEY_ID", settings.sse_kms_key_id, "needs CARETAKER_S3_SSE=aws:kms"
            )
        if settings.endpoint and not settings.endpoint.startswith(("http://", "https://")):
            reader.problem("CARETAKER_S3_ENDPOINT", settings.endpoint, "must start with http:// or https://")
        if settings.endpoint and has_userinfo(settings.endpoint):
            reader.problem("CARETAKER_S3_ENDPOINT", redact_url(settings.endpoint), _NO_URL_CREDENTIALS)
        if reader.problems:
            raise ConfigError(reader.problems)
        return settings


class _Reader(EnvReader):
    """The S3 rules: AWS credentials given together, bucket names S3 accepts."""

    def credentials(self) -> Credentials | None:
        access, secret = self.secret("AWS_ACCESS_KEY_ID"), self.secret("AWS_SECRET_ACCESS_KEY")
        token = self.secret("AWS_SESSION_TOKEN")
        if access is None and secret is None:
            return None  # botocore's chain: shared files, web identity, instance roles
        if access is None or secret is None:
            missing = "AWS_ACCESS_KEY_ID" if access is None else "AWS_SECRET_ACCESS_KEY"
            self.problem(missing, None, "access key id and secret key must be given together")
            return None
        return Credentials(access, secret, token)

    def location(self, url: SplitResult) -> tuple[str, str]:
        """Bucket and prefix of `s3://bucket/prefix`; never echoes credentials put in the URL."""
        # Not url.hostname: it lowercases, and S3 would reject "MyBucket" only much later.
        bucket = url.netloc.rpartition("@")[2]
        shown = redact_url(f"s3://{bucket}{url.path}")
        if has_userinfo(url.geturl()):
            self.problem("repository", redact_url(url.geturl()), _NO_URL_CREDENTIALS)
            return bucket, url.path.strip("/")
        if ":" in bucket or url.query or url.fragment:
            self.problem("repository", shown, "an s3:// URL has no port, query or fragment")
        if (why := bucket_problem(bucket)) is not None:
            self.problem("repository", shown, why)
        prefix = url.path.strip("/")
        if "//" in prefix:
            self.problem("repository", shown, "prefix has an empty path segment")
        return bucket, prefix


def bucket_problem(bucket: str) -> str | None:
    """Why S3 would refuse `bucket` as a bucket name (its naming rules), or None."""
    if not bucket:
        return "the URL names no bucket: write s3://bucket/prefix"
    if not 3 <= len(bucket) <= 63 or not set(bucket) <= _BUCKET_CHARS:
        return "a bucket name is 3-63 characters of a-z, 0-9, '.' and '-'"
    if not (bucket[0] + bucket[-1]).isalnum() or ".." in bucket or ".-" in bucket or "-." in bucket:
        return "a bucket name starts and ends with a letter or digit, with no '..', '.-' or '-.'"
    if _IP_ADDRESS.fullmatch(bucket) or bucket.startswith("xn--") or bucket.endswith("-s3alias"):
        return "a bucket name is not an IP address and has no xn-- prefix or -s3alias suffix"
    return None


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _seconds(text: str) -> float:
    """`2.5` (seconds) or a duration such as `30s`, `2m`."""
    try:
        value = float(text)
    except ValueError:
        return parse_duration(text).total_seconds()
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _tristate(text: str) -> ConditionalWrites:
    if text.strip().lower() == "auto":
        return "auto"
    return "on" if parse_bool(text) else "off"
