"""Linux system calls that Python's `os` module does not offer, called through the C
library this process already runs on."""

from __future__ import annotations

import ctypes
import errno
import os

_RENAME_NOREPLACE = 1  # linux/fs.h
_LIBC = ctypes.CDLL(None, use_errno=True)


def rename_noreplace(src_dir: int, name: str, dst_dir: int) -> None:
    """Move `name` from folder `src_dir` to folder `dst_dir` (descriptors) with
    `renameat2(RENAME_NOREPLACE)`: the kernel refuses (FileExistsError) if `name` exists in
    `dst_dir`, in the same step as the move, where a plain rename would silently replace a
    file someone created there after any check. A filesystem without the flag (EINVAL: some
    network and FUSE filesystems), a kernel without the call (ENOSYS), a seccomp profile
    that refuses it (EPERM; a real permission error then comes back from the plain rename)
    or a C library without it (musl before 1.2.5) gets the check and the rename as two
    steps."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is not None:
        encoded = os.fsencode(name)
        if renameat2(src_dir, encoded, dst_dir, encoded, _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
            raise OSError(code, os.strerror(code), name)
    try:
        os.stat(name, dir_fd=dst_dir, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(name, name, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
    else:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), name)


def syncfs(fd: int) -> None:
    """Flush everything written on the filesystem holding `fd` (all filesystems if the call
    fails)."""
    if _LIBC.syncfs(fd) != 0:
        os.sync()
