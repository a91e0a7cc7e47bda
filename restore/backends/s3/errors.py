"""botocore errors → caretaker errors, at the edge of the S3 backend (borgstore's habit).

The store retries what is translated to TransientBackendError (exit 4 once its attempts or
the deadline are used up); permanent errors say what to fix (exit 5). Messages name the
bucket, key and endpoint (redacted), never a credential.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import botocore.exceptions

from restore.errors import (
    BackendError,
    IntegrityError,
    ObjectNotFoundError,
    PermanentBackendError,
    RepositoryFullError,
    TransientBackendError,
    resource_limit,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mypy_boto3_s3.type_defs import ErrorTypeDef

NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
    }
)
# Stores that take no more data (MinIO, Ceph quotas, 507 Insufficient Storage): exit 12.
_FULL_CODES = frozenset({"XMinioStorageFull", "QuotaExceeded", "InsufficientStorage", "507"})
_REGION_CODES = frozenset({"PermanentRedirect", "301", "IllegalLocationConstraintException"})
# The store asks us to slow down: retried after longer pauses than other failures.
_THROTTLING_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests", "429"}
)
_TRANSIENT_CODES = _THROTTLING_CODES | {"RequestTimeout", "ServiceUnavailable", "InternalError"}
# Raised while talking to the server or reading a body: the server may be back soon.
TRANSIENT_EXCEPTIONS: tuple[type[Exception], ...] = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.IncompleteReadError,
)
_CHECKSUM_EXCEPTIONS = (
    botocore.exceptions.FlexibleChecksumError,
    botocore.exceptions.ChecksumError,
)


class PreconditionFailedError(PermanentBackendError):
    """A conditional write lost (412): the object exists, or changed since it was read."""


class ConditionalWritesUnsupportedError(PermanentBackendError):
    """The store answered 501 NotImplemented to a conditional write header."""


class RangeNotSatisfiableError(PermanentBackendError):
    """A ranged read started at or beyond the object's end (416)."""


@dataclasses.dataclass(frozen=True)
class Where:
    """What a request was about, for messages: `s3://bucket/prefix/key at http://endpoint`."""

    url: str
    endpoint: str
    bucket: str

    def at(self, key: str | None = None) -> str:
        target = f"{self.url.rstrip('/')}/{key}" if key else self.url
        return f"{target} at {self.endpoint}"


def error_code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def http_status(error: botocore.exceptions.ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def backoff_seconds(error: Exception, attempt: int, random: Callable[[], float]) -> float:
    """The pause before attempt `attempt` + 1, as botocore's standard retry mode computes it:
    full jitter up to 2^(attempt-1) times 1 s after throttling, 50 ms after anything else,
    at most 20 s."""
    cause = error.__cause__
    throttled = isinstance(cause, botocore.exceptions.ClientError) and error_code(cause) in _THROTTLING_CODES
    scale = 1.0 if throttled else 0.05
    return random() * min(scale * 2.0 ** (attempt - 1), 20.0)


def brief(error: Exception) -> str:
    """What a translated error was at the wire, in a word: `ReadTimeoutError`, `SlowDown`."""
    cause = error.__cause__
    if isinstance(cause, botocore.exceptions.ClientError):
        return error_code(cause) or str(http_status(cause))
    return type(cause or error).__name__


def translate(  # noqa: PLR0911 - one rung per kind of error, read top to bottom
    error: Exception, where: Where, operation: str, key: str | None = None
) -> Exception:
    """Return the caretaker error for a botocore error (the error itself if it is a bug).

    NoSuchKey → ObjectNotFoundError; missing bucket, denied, bad credentials, wrong region,
    TLS failures → PermanentBackendError; refused connections, timeouts, 5xx, throttling →
    TransientBackendError.
    """
    if (exhausted := resource_limit(error, f"S3 {operation} {where.at(key)}")) is not None:
        return exhausted
    if isinstance(error, botocore.exceptions.ClientError):
        return _client_error(error, where, operation, key)
    if isinstance(error, botocore.exceptions.SSLError):
        return PermanentBackendError(
            f"TLS verification failed for {where.endpoint} ({operation}): "
            "set CARETAKER_S3_CA_BUNDLE to the CA that signed the endpoint's certificate"
        )
    if isinstance(error, TRANSIENT_EXCEPTIONS):
        return TransientBackendError(
            f"S3 unreachable: {operation} {where.at(key)}: {type(error).__name__}: {error}"
        )
    if isinstance(error, _CHECKSUM_EXCEPTIONS):
        return IntegrityError(f"S3 object {where.at(key)} failed its checksum on read: {error}")
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return PermanentBackendError(
            f"no S3 credentials for {where.at()}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or their *_FILE twins), a profile, or a web identity"
        )
    if isinstance(error, botocore.exceptions.ParamValidationError):
        return error  # a bug in how we call botocore, not a storage problem
    if isinstance(error, botocore.exceptions.BotoCoreError):
        name = type(error).__name__
        return PermanentBackendError(f"S3 {operation} {where.at(key)}: {name}: {error}")
    return error


def _client_error(  # noqa: C901, PLR0911 - one rung per kind of answer, read top to bottom
    error: botocore.exceptions.ClientError, where: Where, operation: str, key: str | None
) -> BackendError:
    code, status = error_code(error), http_status(error)
    detail = f"{code or status}: {error.response.get('Error', {}).get('Message', '')}".rstrip(": ")
    what = where.at(key)
    if code in NOT_FOUND_CODES and key is not None:
        return ObjectNotFoundError(key)
    if code in PRECONDITION_CODES:
        return PreconditionFailedError(f"S3 {operation} {what}: condition not met ({detail})")
    if code in UNSUPPORTED_CODES:
        return ConditionalWritesUnsupportedError(f"S3 {operation} {what}: unsupported ({detail})")
    if code == "InvalidRange" or status == 416:
        return RangeNotSatisfiableError(f"S3 {operation} {what}: range beyond the end ({detail})")
    if code == "NoSuchBucket":
        return PermanentBackendError(f"S3 bucket {where.bucket!r} not found at {where.endpoint}")
    if code in _CREDENTIAL_CODES:
        return PermanentBackendError(
            f"S3 rejected the credentials for {where.at()} ({detail}); check AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY and the region"
        )
    if code in _REGION_CODES:
        return PermanentBackendError(
            f"S3 bucket {where.bucket!r} is in another region than configured ({detail}); "
            "set CARETAKER_S3_REGION"
        )
    if code in _FULL_CODES or status == 507:
        return RepositoryFullError(f"S3 {operation} {what}: the store takes no more data ({detail})")
    if code in _TRANSIENT_CODES or status >= 500 or status == 429:
        return TransientBackendError(f"S3 {operation} {what} failed: {detail}")
    if status == 403 or code in {"AccessDenied", "AllAccessDisabled", "AccountProblem"}:
        # A HEAD answer has no body: a bare 403 may be a bad key as well as a missing grant.
        hint = "wrong credentials, or " if code in {"403", "Forbidden"} else ""
        return PermanentBackendError(
            f"S3 access denied: {operation} {what} ({detail}); {hint}the credentials need "
            "s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on the bucket and prefix"
        )
    return PermanentBackendError(f"S3 {operation} {what} failed: {detail}")


def delete_failure(failed: Sequence[ErrorTypeDef], where: Where) -> BackendError:
    """The error for a DeleteObjects answer that lists keys it could not delete."""
    first = failed[0]
    code = first.get("Code", "")
    message = (
        f"S3 could not delete {len(failed)} objects under {where.at()}; "
        f"first {first.get('Key', '?')}: {code} {first.get('Message', '')}".rstrip()
    )
    if code in _TRANSIENT_CODES:
        return TransientBackendError(message)
    return PermanentBackendError(message)
