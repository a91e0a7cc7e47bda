"""The writer claim's slot in an object store: the `lease` object (docs/format.md).

The key is the one the per-backup lease of earlier caretaker versions used, so that an old
and a new writer still see each other during an upgrade. Creation is a conditional create
(S3 `If-None-Match: *`), renewal a conditional replace (`If-Match`); what the document
means is `restore.claims`.
"""

from __future__ import annotations

from restore.claims.record import ClaimRecord, Observed
from restore.errors import ObjectNotFoundError
from restore.snapshots.format import LEASE_KEY
from restore.snapshots.store import ObjectStore

# A claim is a few hundred bytes.
MAX_CLAIM_BYTES = 64 * 1024
# A renewal landing between our stat and get: read again, a few times at most.
_READ_ATTEMPTS = 3


class StoreSlot:
    """The ClaimSlot of a repository on an ObjectStore."""

    def __init__(self, store: ObjectStore, key: str = LEASE_KEY) -> None:
        self._store = store
        self._key = key
        self._cached: tuple[str, bytes] | None = None  # (version, data) of the last read

    def describe(self) -> str:
        return self._store.describe()

    def read(self) -> Observed | None:
        # The version must be the one of the content we return (a conditional replace
        # relies on it): stat, get, and stat again, unless the version is one we have read.
        data = b""
        for _ in range(_READ_ATTEMPTS):
            found = self._store.stat(self._key)
            if found is None:
                return None
            if self._cached is None or self._cached[0] != found.version:
                try:
                    # A document larger than any claim is cut short: unreadable, not gigabytes.
                    data = self._store.get_range(self._key, 0, MAX_CLAIM_BYTES)
                except ObjectNotFoundError:
                    return None
                again = self._store.stat(self._key)
                if again is None or again.version != found.version:
                    continue
                self._cached = (found.version, data)
            return Observed(ClaimRecord.decode(self._cached[1]), found.version)
        # Rewritten under our feet every time: a live claim, with no version to replace.
        return Observed(ClaimRecord.decode(data), "")

    def _version(self) -> str | None:
        found = self._store.stat(self._key)
        return found.version if found else None

    def create(self, data: bytes) -> str | None:
        return self._version() if self._store.create(self._key, data) else None

    def replace(self, data: bytes, *, version: str) -> str | None:
        if not version or not self._store.replace(self._key, data, version=version):
            return None
        return self._version()

    def remove(self, *, version: str) -> bool:
        found = self._store.stat(self._key)
        if found is None or found.version != version:
            return False
        self._store.delete([self._key])
        self._cached = None
        return True
