"""Walk a data folder in manifest order without following symlinks."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from restore.errors import LocalIOError
from restore.excludes import Excludes


class Scanned(NamedTuple):
    path: str  # relative, `/`-separated
    full: str
    stat: os.stat_result


def scan(root: Path, excludes: Excludes, on_special: Callable[[str, str], None]) -> Iterator[Scanned]:
    """Yield every folder, file and symlink under `root`, depth-first, names sorted.

    Sockets, FIFOs and devices are reported to `on_special(path, kind)` and skipped.
    Raise LocalIOError if the root or a folder cannot be read.
    """
    try:
        info = os.stat(root)
    except OSError as error:
        raise LocalIOError(f"cannot read data folder {root}: {error.strerror}") from error
    if not stat.S_ISDIR(info.st_mode):
        raise LocalIOError(f"data folder {root} is not a directory")
    yield from _walk(str(root), "", excludes, on_special)


def _special_kind(mode: int) -> str:
    kinds = {
        stat.S_ISSOCK: "socket",
        stat.S_ISFIFO: "fifo",
        stat.S_ISCHR: "char-device",
        stat.S_ISBLK: "block-device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "unknown")


def _walk(
    full: str, rel: str, excludes: Excludes, on_special: Callable[[str, str], None]
) -> Iterator[Scanned]:
    try:
        with os.scandir(full) as iterator:
            names = sorted(entry.name for entry in iterator)
    except FileNotFoundError:
        return  # removed while we walked: it simply is not in this snapshot
    except OSError as error:
        raise LocalIOError(f"cannot list {full}: {error.strerror}") from error
    for name in names:
        child_rel = f"{rel}/{name}" if rel else name
        if excludes.excluded(child_rel):
            continue
        child_full = os.path.join(full, name)
        try:
            info = os.lstat(child_full)
        except FileNotFoundError:
            continue
        except OSError as error:
            raise LocalIOError(f"cannot stat {child_full}: {error.strerror}") from error
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            yield Scanned(child_rel, child_full, info)
            yield from _walk(child_full, child_rel, excludes, on_special)
        elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            yield Scanned(child_rel, child_full, info)
        else:
            on_special(child_rel, _special_kind(mode))
