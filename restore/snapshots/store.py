"""The storage interface of the snapshot engine: a flat namespace of immutable objects.

The engine owns this interface; the local-directory and S3 backends implement it
(`restore.backends.local`, `restore.backends.s3`). The objects' format is docs/format.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from restore.errors import IntegrityError


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """One object of an ObjectStore listing. `version` changes whenever content does."""

    key: str
    size: int
    modified: datetime
    version: str = ""


class ObjectStore(Protocol):
    """A flat namespace of objects under the repository URL.

    Keys are `/`-separated relative names (`data/ab/abcd…`). `put` is atomic: readers see
    the whole object or nothing. Errors are translated inside the store to
    TransientBackendError / PermanentBackendError / ObjectNotFoundError.
    """

    def describe(self) -> str:
        """The store's URL with credentials removed."""

    def get(self, key: str) -> bytes:
        """Return the whole object. Raise ObjectNotFoundError if absent."""

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return `length` bytes from offset `start`. Raise ObjectNotFoundError if absent."""

    def put(self, key: str, data: bytes | bytearray) -> None:
        """Store an object durably (overwriting is allowed, but the engine never does it
        for content-addressed keys)."""

    def create(self, key: str, data: bytes) -> bool:
        """Store only if the key does not exist yet (If-None-Match: *). Return False if it
        existed. Stores without conditional writes emulate it (see their docs)."""

    def replace(self, key: str, data: bytes, *, version: str) -> bool:
        """Overwrite only if the current version is `version` (If-Match). Return False if
        the object changed or vanished."""

    def stat(self, key: str) -> StoredObject | None:
        """Return the object's listing entry, or None if absent."""

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with `prefix`, in key order."""

    def delete(self, keys: Sequence[str]) -> None:
        """Delete objects; a missing key is not an error."""

    def close(self) -> None:
        """Release connections."""


def get_small(store: ObjectStore, key: str, limit: int) -> bytes:
    """The whole object `key`, reading at most `limit` + 1 bytes: for objects caretaker keeps
    small (config, key slots, snapshot records), which whoever can write to the storage could
    replace by gigabytes. Raise IntegrityError if it is larger than `limit`."""
    data = store.get_range(key, 0, limit + 1)
    if len(data) > limit:
        where = store.describe()
        raise IntegrityError(f"{key} in {where} is larger than {limit} bytes, which caretaker never writes")
    return data
