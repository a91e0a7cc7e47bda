"""The writer lease: one writer per repository, and no manual unlock after a crash.

The lease is one object holding owner and expiry. It is taken with a conditional create
(S3 `If-None-Match: *`), renewed in the background with a conditional replace (`If-Match`),
and taken over only after it expired — so a pod killed mid-backup blocks others for at
most one lease period.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

import structlog

from restore.clock import Clock, format_time, parse_time
from restore.errors import CaretakerError, LeaseHeldError
from restore.snapshots.format import LEASE_KEY
from restore.snapshots.store import ObjectStore

DEFAULT_TTL = timedelta(minutes=5)


class Lease:
    def __init__(self, store: ObjectStore, *, owner: str, clock: Clock, ttl: timedelta = DEFAULT_TTL) -> None:
        self._store = store
        self._owner = owner
        self._clock = clock
        self._ttl = ttl
        self._version = ""
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _document(self) -> bytes:
        now = self._clock()
        return json.dumps(
            {"owner": self._owner, "acquired": format_time(now), "expires": format_time(now + self._ttl)}
        ).encode()

    def _remember_version(self) -> None:
        current = self._store.stat(LEASE_KEY)
        self._version = current.version if current else ""

    def acquire(self) -> None:
        """Take the lease. Raise LeaseHeldError naming the holder if it is held and not expired."""
        if self._store.create(LEASE_KEY, self._document()):
            self._remember_version()
        else:
            self._take_over_expired()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease", daemon=True)
        self._renewer.start()

    def _take_over_expired(self) -> None:
        current = self._store.stat(LEASE_KEY)
        if current is None:  # released between our create and stat: try once more
            if not self._store.create(LEASE_KEY, self._document()):
                raise LeaseHeldError("repository lease was taken by another writer just now")
            self._remember_version()
            return
        holder, expires = _read(self._store.get(LEASE_KEY))
        # Our own lease (this process failed to release it, e.g. storage died mid-backup)
        # is ours to take back at once; anyone else's only once it expired.
        if holder != self._owner and expires > self._clock():
            raise LeaseHeldError(
                f"repository is locked by {holder} until {format_time(expires)}; "
                "another backup or prune is running (the lease expires by itself if that writer died)"
            )
        if not self._store.replace(LEASE_KEY, self._document(), version=current.version):
            raise LeaseHeldError("repository lease was taken by another writer just now")
        structlog.get_logger().warning(
            "lease.taken_over", previous_owner=holder, expired=format_time(expires)
        )
        self._remember_version()

    def _renew_loop(self) -> None:
        interval = self._ttl.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                if not self._store.replace(LEASE_KEY, self._document(), version=self._version):
                    self._lost = "the lease was taken over by another writer"
                    return
                self._remember_version()
            except CaretakerError as error:
                structlog.get_logger().warning("lease.renew_failed", error=str(error))

    def check(self) -> None:
        """Raise LeaseHeldError if the lease was lost (then nothing may be committed)."""
        if self._lost:
            raise LeaseHeldError(f"lost the repository lease: {self._lost}")

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        current = self._store.stat(LEASE_KEY)
        if current is not None and current.version == self._version and not self._lost:
            self._store.delete([LEASE_KEY])

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read(data: bytes) -> tuple[str, datetime]:
    try:
        document = json.loads(data)
        return str(document["owner"]), parse_time(document["expires"])
    except (KeyError, TypeError, ValueError, AttributeError):
        # An unreadable lease must not lock the repository forever: treat it as expired.
        return "unknown (unreadable lease)", datetime.min.replace(
            tzinfo=parse_time("2000-01-01T00:00:00Z").tzinfo
        )
