"""Multipart upload of one large object, its parts sent in parallel.

Done by hand rather than through boto3's TransferManager so that every part request goes
through the store's request slots: CARETAKER_S3_CONCURRENCY then bounds the requests in
flight across all threads, whatever mix of small and large objects the engine writes.
A failed upload is aborted, so no orphaned parts keep costing storage.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor, Future

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from restore.backends.s3.settings import S3Settings

_T = TypeVar("_T")


class Caller(Protocol):
    """Runs one request in a concurrency slot, translating botocore errors."""

    def __call__(self, operation: str, key: str | None, request: Callable[[], _T]) -> _T: ...


def upload(
    *,
    client: S3Client,
    call: Caller,
    pool: Executor,
    settings: S3Settings,
    key: str,
    full_key: str,
    data: bytes | bytearray,
) -> None:
    """Store `data` at `full_key` in parts of settings.multipart_part_size.

    Raise the translated backend error of the first part that fails (after aborting).
    """
    bucket = settings.bucket
    created = call(
        "CreateMultipartUpload",
        key,
        lambda: client.create_multipart_upload(
            Bucket=bucket, Key=full_key, ChecksumAlgorithm="CRC32", **settings.write_arguments()
        ),
    )
    upload_id = created["UploadId"]

    def send(number: int, start: int) -> CompletedPartTypeDef:
        body = bytes(memoryview(data)[start : start + settings.multipart_part_size])
        answer = call(
            "UploadPart",
            key,
            lambda: client.upload_part(
                Bucket=bucket,
                Key=full_key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm="CRC32",
            ),
        )
        checksum = answer.get("ChecksumCRC32", "")
        return {"ETag": answer["ETag"], "PartNumber": number, "ChecksumCRC32": checksum}

    futures: list[Future[CompletedPartTypeDef]] = []
    try:
        starts = range(0, len(data), settings.multipart_part_size)
        futures.extend(pool.submit(send, number, start) for number, start in enumerate(starts, 1))
        parts = [future.result() for future in futures]
        call(
            "CompleteMultipartUpload",
            key,
            lambda: client.complete_multipart_upload(
                Bucket=bucket, Key=full_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            ),
        )
    except BaseException:
        for future in futures:
            future.cancel()
        _abort(client, bucket, full_key, upload_id)
        raise


def _abort(client: S3Client, bucket: str, full_key: str, upload_id: str) -> None:
    # Best effort: the upload already failed, and that error is the one worth reporting.
    with contextlib.suppress(Exception):
        client.abort_multipart_upload(Bucket=bucket, Key=full_key, UploadId=upload_id)
