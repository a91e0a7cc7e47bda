"""Folders on a volume that someone else can write, handled through descriptors only.

The data volume is shared with the app, which may have left anything in it — also in
caretaker's own state folder: a symlink to a folder outside the volume where a folder of
ours belongs, a FIFO where a file of ours belongs. A path names whatever is there when it
is resolved, so a `Folder` is an open descriptor instead, and everything inside it is
reached relative to that descriptor without following a symlink:

- folders are opened with `O_DIRECTORY | O_NOFOLLOW`: a symlink or a file in their place
  is refused (`UnsafeVolumeError`, naming what was found), never followed;
- files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` (never an existing file opened
  for writing) and replaced with `renameat`; a file is read only once `fstat` on a
  descriptor that does not open it (`O_PATH`) says it is a regular file, so a FIFO cannot
  stall a read and a device is never opened;
- renames and removals (`renameat2`, `unlinkat`, `rmdir` with `dir_fd`) act on the name,
  never on what a link points to; a rename never replaces what is at its destination
  (`RENAME_NOREPLACE`); a folder is removed by walking its descriptors;
- the app's files, which a backup reads by the thousand (`restore.scan`), are opened in one
  step by `open_seen`: `O_NOFOLLOW | O_NONBLOCK` relative to their folder's descriptor, then
  `fstat` must show the very regular file the walk looked at before a byte is read.

A folder moved meanwhile keeps receiving what is done through its descriptor wherever it
now is — on the same filesystem, inside the volume. `Folder.anchor` gives a path for
code that only takes paths (the repository's restore, a git subprocess): it is resolved by
the kernel through the descriptor (`/proc/<pid>/fd/<n>/<name>`), not through the names
above it. Linux only, as the init container is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from restore import libc
from restore.errors import UnsafeVolumeError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {
    stat.S_IFDIR: "folder",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def kind_of(mode: int) -> str:
    """`folder`, `file`, `symlink`, `FIFO`, `socket`, `character device` or `block device`."""
    return _KINDS.get(stat.S_IFMT(mode), "special file")


def wrong_kinds(found: Sequence[tuple[Path, str, str]]) -> UnsafeVolumeError:
    """The error for entries that are not what caretaker keeps there: (path, what is
    there, what belongs there) each."""
    listed = "; ".join(f"{path} is a {kind} where caretaker keeps a {wanted}" for path, kind, wanted in found)
    return UnsafeVolumeError(
        f"{listed}. caretaker did not put it there and does not follow, open or replace it: "
        "remove it (the app, or whoever else can write the volume, did)"
    )


def wrong_kind(path: Path, found: str, wanted: str) -> UnsafeVolumeError:
    return wrong_kinds([(path, found, wanted)])


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


class NotAFileError(OSError):
    """Something other than a regular file is where a file was expected."""

    def __init__(self, path: str, found: str) -> None:
        super().__init__(errno.EINVAL, f"a {found}, not a file", path)
        self.found = found


class ReplacedError(OSError):
    """An entry is no longer the file that was looked at; `found` says what is there now."""

    def __init__(self, path: str, found: str) -> None:
        super().__init__(errno.ESTALE, f"replaced by a {found}", path)
        self.found = found


def open_seen(folder: int, name: str, seen: os.stat_result) -> tuple[int, os.stat_result]:
    """Open for reading the regular file `seen` describes, by `name` in the folder open as
    `folder`, and return the descriptor with its `fstat`.

    One `openat` with `O_NOFOLLOW | O_NONBLOCK`: a symlink swapped in since `seen` is not
    followed, a FIFO swapped in does not block the open (nor a device with a driver that
    would); `fstat` then checks that the descriptor is the very file `seen` describes (a
    regular file, same device and inode) before a byte is read.

    Raise FileNotFoundError if nothing is there now, ReplacedError naming what is there if it
    is anything else (another file included; without opening it if `seen` says so already),
    OSError otherwise.
    """
    if not stat.S_ISREG(seen.st_mode):
        raise ReplacedError(name, kind_of(seen.st_mode))
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=folder)
    except OSError as error:
        # ELOOP: a symlink; ENXIO: a socket or a driverless device; EAGAIN: a write lease
        # (another process holds the file; a blocking open would wait up to 45 s for it).
        if error.errno not in (errno.ELOOP, errno.ENXIO, errno.EAGAIN):
            raise
        found = "file held under a lease" if error.errno == errno.EAGAIN else _kind_at(folder, name)
        raise ReplacedError(name, found) from error
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) == (seen.st_dev, seen.st_ino):
        return fd, info
    os.close(fd)
    raise ReplacedError(name, "different file" if stat.S_ISREG(info.st_mode) else kind_of(info.st_mode))


def _kind_at(folder: int, name: str) -> str:
    try:
        return kind_of(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return "special file"


def write_fully(fd: int, data: bytes) -> None:
    """Write all of `data` (a regular file takes it in one call but for a full disk or a signal)."""
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]


def open_regular(path: str | Path, flags: int, *, dir_fd: int | None = None) -> int:
    """Open an existing regular file without following a symlink at its last name, and
    without opening anything else that is there (a FIFO would block, a device has effects).

    Raise FileNotFoundError if it is missing, NotAFileError naming what is there instead.
    """
    probe = os.open(path, _PATH_FLAGS, dir_fd=dir_fd)
    try:
        found = os.fstat(probe).st_mode
        if not stat.S_ISREG(found):
            raise NotAFileError(str(path), kind_of(found))
        # Reopening the descriptor opens the very inode just checked, whatever the name holds now.
        return os.open(_fd_path(probe), flags | os.O_CLOEXEC)
    finally:
        os.close(probe)


class Folder:
    """An open folder; `path` is where it was found, for messages only (never opened)."""

    def __init__(self, fd: int, path: Path | str) -> None:
        self.fd = fd
        self._where = str(path)  # a string: a Path per level of a deep tree costs O(depth) each

    @property
    def path(self) -> Path:
        return Path(self._where)

    @classmethod
    def at(cls, path: Path, *, create: bool = False) -> Folder:
        """Open a folder named by the operator (`--path`): the one path caretaker trusts.

        Raise FileNotFoundError if it is missing (and not `create`), OSError otherwise.
        """
        if create:
            os.makedirs(path, exist_ok=True)
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)

    @classmethod
    def exact(cls, path: Path) -> Folder:
        """Open the folder at `path` (a restore's target, usually an `anchor`) without
        following a symlink at its last name. Raise OSError if it is not a real folder."""
        return cls(os.open(path, DIR_FLAGS), path)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- looking -------------------------------------------------------------------------

    def lstat(self, name: str) -> os.stat_result | None:
        """What `name` is (a symlink itself, not its target); None if nothing is there."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def kind(self, name: str) -> str | None:
        info = self.lstat(name)
        return kind_of(info.st_mode) if info else None

    def describe(self, name: str) -> str:
        """What `name` is, for a message: `FIFO`, `symlink to '/etc'`, `missing entry`."""
        found = self.kind(name) or "missing entry"
        if found == "symlink":
            with contextlib.suppress(OSError):
                found += f" to {os.readlink(name, dir_fd=self.fd)!r}"
        return found

    def names(self) -> list[str]:
        return sorted(os.listdir(self.fd))

    def identity(self, name: str) -> tuple[int, int] | None:
        """(device, inode) of entry `name` itself; None if nothing is there."""
        info = self.lstat(name)
        return (info.st_dev, info.st_ino) if info else None

    def same(self, name: str, other: Folder) -> bool:
        """Whether `name` here is the folder `other` has open."""
        there = os.fstat(other.fd)
        return self.identity(name) == (there.st_dev, there.st_ino)

    def anchor(self, name: str) -> Path:
        """A path to `name` in this folder that no rename or symlink above it redirects
        (usable by other processes while this one holds the folder open)."""
        return Path(f"/proc/{os.getpid()}/fd/{self.fd}") / name

    # -- folders -------------------------------------------------------------------------

    def open(self, name: str) -> Folder:
        """Open the real folder `name`. Raise FileNotFoundError if nothing is there,
        UnsafeVolumeError if something else is (a symlink is never followed)."""
        try:
            return Folder(os.open(name, DIR_FLAGS, dir_fd=self.fd), f"{self._where}/{name}")
        except OSError as error:
            if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            raise wrong_kind(self.path / name, self.describe(name), "folder") from error

    def open_if_present(self, name: str) -> Folder | None:
        try:
            return self.open(name)
        except FileNotFoundError:
            return None

    def make(self, name: str) -> Folder:
        """Open folder `name`, creating it if missing (see `open` for what is refused)."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=self.fd)
        return self.open(name)

    def make_new(self, name: str) -> Folder | None:
        """Create and open folder `name`; None if the name is taken."""
        try:
            os.mkdir(name, dir_fd=self.fd)
        except FileExistsError:
            return None
        return self.open(name)

    # -- files ---------------------------------------------------------------------------

    def read(self, name: str, *, limit: int) -> bytes | None:
        """Return the content of regular file `name` (None if missing).

        Raise UnsafeVolumeError if something else is there, ValueError if it is larger
        than `limit` bytes.
        """
        try:
            fd = open_regular(name, os.O_RDONLY, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except NotAFileError as error:
            raise wrong_kind(self.path / name, self.describe(name), "file") from error
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"{self.path / name} is larger than {limit} bytes")
        return data

    def replace(self, name: str, data: bytes, *, temp: str) -> None:
        """Replace file `name` with `data` atomically and durably, writing `temp` first.

        A regular file left at `temp` by a killed run is removed first. Raise
        UnsafeVolumeError if `name` or `temp` holds anything but a regular file.
        """
        for each in (name, temp):
            if self.kind(each) not in (None, "file"):
                raise wrong_kind(self.path / each, self.describe(each), "file")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=self.fd)
        fd = os.open(temp, CREATE_FLAGS, 0o644, dir_fd=self.fd)
        try:
            write_fully(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        self.fsync()

    # -- moving and removing -------------------------------------------------------------

    def rename(self, name: str, into: Folder) -> None:
        """Move entry `name` (whatever it is: a symlink moves as itself) into `into`, never
        over an entry of that name there: FileExistsError, and what the app made stays."""
        libc.rename_noreplace(self.fd, name, into.fd)

    def unlink(self, name: str) -> None:
        os.unlink(name, dir_fd=self.fd)

    def rmdir(self, name: str) -> None:
        os.rmdir(name, dir_fd=self.fd)

    def remove_tree(self, name: str) -> None:
        """Delete entry `name` and, if it is a real folder, everything below it; a missing
        name is fine. Symlinks are removed, never followed; read-only folders (a restored
        snapshot may hold mode 0555 or 0000 folders) are opened up first. Iterative, with
        one descriptor per level: a hostile snapshot's deep nesting cannot exhaust the stack."""
        info = self.lstat(name)
        if info is None:
            return
        if not stat.S_ISDIR(info.st_mode):
            self.unlink(name)
            return
        top = self.open_for_removal(name)
        stack = [(self, name, top, iter(top.names()))]
        try:
            while stack:
                parent, here, inner, pending = stack[-1]
                child = next(pending, None)
                if child is None:
                    stack.pop()
                    inner.close()
                    parent.rmdir(here)
                    continue
                found = inner.lstat(child)
                if found is not None and stat.S_ISDIR(found.st_mode):
                    sub = inner.open_for_removal(child)
                    stack.append((inner, child, sub, iter(sub.names())))
                elif found is not None:
                    inner.unlink(child)
        finally:
            for _, _, inner, _ in stack:
                inner.close()

    def empty(self) -> None:
        """Delete everything in this folder (see `remove_tree`)."""
        for name in self.names():
            self.remove_tree(name)

    def open_for_removal(self, name: str) -> Folder:
        try:
            inner = self.open(name)
        except PermissionError:
            # Not readable (mode 0000 as non-root): chmod it through an O_PATH descriptor,
            # which names exactly this folder — a path would follow a swapped-in link.
            probe = os.open(name, _PATH_FLAGS | os.O_DIRECTORY, dir_fd=self.fd)
            try:
                os.chmod(_fd_path(probe), stat.S_IRWXU)
            finally:
                os.close(probe)
            inner = self.open(name)
        with contextlib.suppress(OSError):
            os.fchmod(inner.fd, stat.S_IRWXU)  # so its entries can be unlinked (not owner: no-op)
        return inner

    # -- durability ----------------------------------------------------------------------

    def fsync(self) -> None:
        """Make this folder's entries (creations, renames, removals) durable."""
        os.fsync(self.fd)

    def sync_filesystem(self) -> None:
        """Flush everything written on this folder's filesystem (syncfs)."""
        libc.syncfs(self.fd)
