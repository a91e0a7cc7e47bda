"""`file:///dir`: an object store in a local directory (a PVC, an NFS mount, tests).

Writes go to a hidden temporary file in the target's folder, are fsynced, then renamed
into place, so a reader sees a whole object or none. Conditional writes use `link()`
(fails if the name exists) and an advisory lock for compare-and-swap.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import SplitResult, unquote

from restore.diskflush import fsync_dir
from restore.errors import (
    CaretakerError,
    ConfigError,
    IntegrityError,
    ObjectNotFoundError,
    PermanentBackendError,
    RepositoryFullError,
    TransientBackendError,
    resource_limit,
)
from restore.safefs import NotAFileError, open_regular
from restore.snapshots.store import StoredObject

_TEMP_MARK = ".tmp-"
# The filesystem takes no more data: exit 12, not "denied" (5): the fix is room, not rights.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


class LocalStore:
    """An ObjectStore in a directory; created on first write, inside a folder that exists.

    The folder holding the repository must exist: `file:///backups/app` with no `/backups`
    is a typo or a volume that is not mounted, and is refused (exit 5, like a missing
    bucket) instead of being read as an empty repository (a first boot on an empty volume)
    or written into the container's own filesystem.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_url(cls, url: SplitResult) -> LocalStore:
        """Raise ConfigError unless the URL is `file:///absolute/path` (or `file://localhost/…`)."""
        path = unquote(url.path)
        if url.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ConfigError.single(
                "repository", url.geturl(), "a file repository needs an absolute path: file:///dir"
            )
        if url.query or url.fragment:
            raise ConfigError.single("repository", url.geturl(), "file URLs take no query or fragment")
        return cls(Path(path))

    def describe(self) -> str:
        return f"file://{self.root}"

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in {"", ".", ".."} for p in parts):
            raise ValueError(f"invalid object key: {key!r}")
        return self.root.joinpath(*parts)

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError as error:
            raise ObjectNotFoundError(key) from error
        except OSError as error:
            raise self._translate(error, key) from error

    def _translate(self, error: OSError, what: str) -> CaretakerError:
        where = f"{self.describe()}: {what}"
        if (exhausted := resource_limit(error, where)) is not None:
            return exhausted
        if error.errno in _FULL:
            return RepositoryFullError(f"{where}: {error.strerror}")
        if error.errno in {errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EAGAIN}:
            return TransientBackendError(f"{where}: {error.strerror}")
        return PermanentBackendError(f"{where}: {error.strerror}")

    def get(self, key: str) -> bytes:
        with self._errors(key), self._open(key) as handle:
            return handle.read()

    def get_range(self, key: str, start: int, length: int) -> bytes:
        with self._errors(key), self._open(key) as handle:
            handle.seek(start)
            return handle.read(length)

    @contextlib.contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        """An object's file. Raise IntegrityError unless it is a regular file: whoever can write
        to the repository's folder could put a FIFO there (a read that never returns, past any
        --timeout), or a link to /dev/zero (a read that fills memory) or to a file outside it."""
        try:
            fd = open_regular(self._path(key), os.O_RDONLY)
        except NotAFileError as error:
            raise IntegrityError(f"{self.describe()}: {key} is a {error.found}, not an object") from None
        with os.fdopen(fd, "rb") as handle:
            yield handle

    def _missing_parent(self) -> PermanentBackendError | None:
        if self.root.exists() or self.root.parent.is_dir():
            return None
        return PermanentBackendError(
            f"{self.describe()}: no such folder {self.root.parent} to hold the repository "
            "(a typo in the URL, or a volume that is not mounted?)"
        )

    def _make_root(self) -> None:
        if (missing := self._missing_parent()) is not None:
            raise missing
        self.root.mkdir(exist_ok=True)

    def _write_temp(self, path: Path, data: bytes | bytearray) -> Path:
        self._make_root()
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}{_TEMP_MARK}{secrets.token_hex(6)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return temp

    def put(self, key: str, data: bytes | bytearray) -> None:
        path = self._path(key)
        with self._errors(key):
            temp = self._write_temp(path, data)
            os.replace(temp, path)
            fsync_dir(path.parent)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        with self._errors(key):
            temp = self._write_temp(path, data)
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
            finally:
                temp.unlink()
            fsync_dir(path.parent)
            return True

    def replace(self, key: str, data: bytes, *, version: str) -> bool:
        path = self._path(key)
        with self._errors(key), self._lock():
            current = self.stat(key)
            if current is None or current.version != version:
                return False
            temp = self._write_temp(path, data)
            os.replace(temp, path)
            fsync_dir(path.parent)
            return True

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self._make_root()
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _entry(self, key: str, stat: os.stat_result) -> StoredObject:
        return StoredObject(
            key=key,
            size=stat.st_size,
            modified=datetime.fromtimestamp(stat.st_mtime, UTC),
            version=f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}",
        )

    def stat(self, key: str) -> StoredObject | None:
        try:
            return self._entry(key, self._path(key).stat())
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> Iterator[StoredObject]:
        if (missing := self._missing_parent()) is not None:
            raise missing
        folder, _, name_prefix = prefix.rpartition("/")
        base = self._path(folder) if folder else self.root
        yield from self._walk(base, folder, name_prefix)

    def _walk(self, directory: Path, key_prefix: str, name_prefix: str) -> Iterator[StoredObject]:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as error:
            raise self._translate(error, f"cannot list {directory}") from error
        for entry in entries:
            if not entry.name.startswith(name_prefix) or _TEMP_MARK in entry.name or entry.name == ".lock":
                continue
            key = f"{key_prefix}/{entry.name}" if key_prefix else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key, "")
            elif entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    yield self._entry(key, entry.stat(follow_symlinks=False))

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            with self._errors(key), contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()

    def close(self) -> None:
        pass
