"""Build and compare data folders in tests."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any, Protocol

from restore.model import STATE_DIR

PAST_NS = 1_600_000_000 * 10**9  # a fixed time well before any snapshot: never "racy"


def describe(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under root with type, mode, mtime and content hash or link target."""
    found: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (Path(folder) == root and d == STATE_DIR)]
        for name in dirs + files:
            full = Path(folder, name)
            rel = full.relative_to(root).as_posix()
            info = full.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(full), info.st_mtime_ns)
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", mode, info.st_mtime_ns)
            else:
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                found[rel] = ("file", mode, info.st_mtime_ns, digest, info.st_uid, info.st_gid)
    return found


class Restorer(Protocol):
    def restore(self, snapshot_id: str, dest: Path) -> object: ...


def restored(repository: Restorer, snapshot_id: str, dest: Path) -> dict[str, tuple[Any, ...]]:
    """Restore a snapshot into the new folder `dest`; return what it holds (see `describe`)."""
    dest.mkdir()
    repository.restore(snapshot_id, dest)
    return describe(dest)


def write_file(path: Path, data: bytes, *, mtime_ns: int = PAST_NS, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def age_tree(root: Path, mtime_ns: int = PAST_NS) -> None:
    """Set every mtime to the past, so a following backup may trust metadata (not "racy")."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            os.utime(Path(folder, name), ns=(mtime_ns, mtime_ns), follow_symlinks=False)
